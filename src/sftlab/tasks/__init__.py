"""Task types: what a task adds to the shared training loop in `sftlab.recipes.finetune`.

A task turns tables into encoded examples, builds the model with its head, collates batches, returns a
*summed* loss with the number of terms it sums (so the loop normalizes by the real count of examples or
tokens across accumulation and processes), evaluates, and formats its report.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import torch

from sftlab.data.readers import Table


class Task(Protocol):
    name: str
    main_metric: str
    """Validation metric that picks the best model unless train.metric_for_best says otherwise."""

    @classmethod
    def from_config(cls, config: Any, tables: dict[str, Table]) -> Task:
        """Build from the training table and check every split against it."""
        ...

    @classmethod
    def from_saved(cls, model_dir: Any, config: Any) -> tuple[Task, Any]:
        """The task and the fine-tuned model, rebuilt from a finished run (for predict and eval)."""
        ...

    @property
    def input_column(self) -> str:
        """The column `predict` reads from input files (and the key for plain strings)."""
        ...

    def load_model(self, location: str, config: Any) -> Any:
        """The pretrained model with this task's head."""
        ...

    def encode(self, tokenizer: Any, table: Table) -> list[dict[str, Any]]:
        """Tokenized examples (dicts with `input_ids` and the targets)."""
        ...

    def target_count(self, example: dict[str, Any]) -> int:
        """Loss terms one example contributes (1 per label, or its number of target tokens)."""
        ...

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        """A padded batch of tensors."""
        ...

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """The loss summed over the batch and how many terms it sums."""
        ...

    def evaluate(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        """Metrics (including `loss`) over the examples."""
        ...

    def predict(self, model: Any, tokenizer: Any, table: Table, pad_token_id: int, batch_size: int,
                device: torch.device, autocast: Any) -> list[dict[str, Any]]:  # fmt: skip
        """One JSON-able prediction dict per row of `table`."""
        ...

    def report(self, metrics: dict[str, Any], title: str) -> str:
        """The printed evaluation table."""
        ...

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        """The few figures shown after each evaluation."""
        ...


# Task name -> "module:class"; imported only when used, so the CLI stays fast.
TASKS = {
    "classification": "sftlab.tasks.classification:ClassificationTask",
    "token_classification": "sftlab.tasks.token_classification:TokenClassificationTask",
    "question_answering": "sftlab.tasks.question_answering:QuestionAnsweringTask",
    "seq2seq": "sftlab.tasks.seq2seq:Seq2SeqTask",
    "causal_lm": "sftlab.tasks.causal_lm:CausalLMTask",
}


def task_class(name: str) -> Any:
    module, _, attribute = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
