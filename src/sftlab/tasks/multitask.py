"""Several tasks on one shared encoder (MT-DNN): one head per task, one task per optimizer step.

The model is one ordinary Hugging Face model per task (e.g. a `BertForSequenceClassification` and a
`BertForTokenClassification`) whose encoder attribute is the *same module*: the encoder's parameters
exist once (training updates them from every task), each head belongs to its task, and each task's model
saves as its own folder that `transformers.pipeline` loads.

Examples of all tasks sit in one list, each tagged with its task number; a batch holds one task's
examples (the plan from `sftlab.data.task_sampling` guarantees it), and `forward_loss` hands it to that
task's own `forward_loss` with that task's model, times the task's loss weight. Evaluation reports each
task's metrics as `NAME/metric`, plus `score`, the mean of the tasks' best-model metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sftlab.recipes.components import metric_value


class SharedEncoderModels(nn.Module):
    """One Hugging Face model per task; all share the first model's encoder module."""

    def __init__(self, models: dict[str, nn.Module]) -> None:
        super().__init__()
        first = next(iter(models.values()))
        prefix = first.base_model_prefix
        for model in models.values():
            setattr(model, prefix, getattr(first, prefix))
        self.tasks = nn.ModuleDict(models)
        # The encoder's config: freezing and layer-wise rates then find its layers by their names
        # (tasks.NAME.bert.encoder.layer.3...), every head counting as the head.
        self.config = first.config

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("call the model of one task: shared.tasks[name](...)")


@dataclass
class SubTask:
    name: str
    task: Any
    """The task object (ClassificationTask, TokenClassificationTask) that collates, scores and evaluates."""
    weight: float = 1.0
    metric: str = ""
    """The validation metric that picks this task's best model (default: the task's main metric)."""

    def __post_init__(self) -> None:
        self.metric = self.metric or self.task.main_metric


@dataclass
class MultiTask:
    tasks: list[SubTask]
    name: str = "multitask"
    main_metric: str = "score"

    def split(self, examples: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """The examples of each task, in order, without their task tag."""
        grouped: list[list[dict[str, Any]]] = [[] for _ in self.tasks]
        for example in examples:
            grouped[example["task"]].append({k: v for k, v in example.items() if k != "task"})
        return grouped

    def target_count(self, example: dict[str, Any]) -> int:
        return int(self.tasks[example["task"]].task.target_count(example))

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        task = examples[0]["task"]
        if any(example["task"] != task for example in examples):
            raise ValueError("a multi-task batch must hold examples of one task")
        batch = self.tasks[task].task.collate(
            [{k: v for k, v in e.items() if k != "task"} for e in examples], pad_token_id
        )
        batch["task"] = torch.tensor(task)
        return batch

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        sub = self.tasks[int(batch["task"])]
        inputs = {key: value for key, value in batch.items() if key != "task"}
        loss_sum, terms = sub.task.forward_loss(model.tasks[sub.name], inputs)
        return loss_sum * sub.weight, terms

    def evaluate(self, model: Any, examples: Sequence[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        metrics: dict[str, Any] = {}
        mains, losses = [], []
        for sub, own in zip(self.tasks, self.split(examples), strict=True):
            if not own:
                continue
            result = sub.task.evaluate(model.tasks[sub.name], own, pad_token_id, batch_size, device, autocast)
            metrics.update({f"{sub.name}/{key}": value for key, value in result.items()})
            mains.append(metric_value(result, sub.metric, f"tasks.{sub.name}.metric_for_best"))
            losses.append(float(result["loss"]))
        metrics["score"] = sum(mains) / len(mains)
        metrics["loss"] = sum(losses) / len(losses)
        metrics["num_examples"] = len(examples)
        return metrics

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        parts = [
            f"{sub.name} {sub.metric} {metrics[f'{sub.name}/{sub.metric}']:.4f}"
            for sub in self.tasks
            if f"{sub.name}/{sub.metric}" in metrics
        ]
        return ", ".join(parts) + f", score {metrics['score']:.4f}"
