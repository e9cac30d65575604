"""Text classification (and sentiment): one label per text, a linear head on the pooled encoder output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sftlab.data.batching import inference_batches
from sftlab.data.readers import Table, require_columns, require_texts
from sftlab.errors import SftlabError
from sftlab.evaluation.metrics import classification_metrics
from sftlab.evaluation.report import format_classification_report


def _label_key(value: Any) -> tuple[int, Any]:
    # Integer labels sort numerically (0, 1, 2, ..., 10), text labels alphabetically.
    return (0, value) if isinstance(value, int) else (1, str(value))


def normalize_label(value: Any, where: str, column: str) -> int | str:
    """Labels are strings or integers; floats that are whole numbers (pandas' 1.0) count as integers."""
    if isinstance(value, bool) or value is None:
        raise SftlabError(f"{where}: '{column}' must be a label (text or integer), got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or not value.is_integer():
            raise SftlabError(f"{where}: '{column}' must be a label (text or integer), got {value!r}")
        return int(value)
    if isinstance(value, str):
        if not value.strip():
            raise SftlabError(f"{where}: empty '{column}'")
        return value.strip()
    raise SftlabError(f"{where}: '{column}' must be a label (text or integer), got {type(value).__name__}")


def table_labels(table: Table, column: str) -> list[int | str]:
    labels = [normalize_label(row[column], table.where(i), column) for i, row in enumerate(table.rows)]
    kinds = {type(label) for label in labels}
    if len(kinds) > 1:
        first_text = next(i for i, label in enumerate(labels) if isinstance(label, str))
        first_int = next(i for i, label in enumerate(labels) if isinstance(label, int))
        raise SftlabError(
            f"{table.path}: '{column}' mixes integer labels ({table.where(first_int)}) and text labels "
            f"({table.where(first_text)}); use one kind"
        )
    return labels


@dataclass
class ClassificationTask:
    """Label maps plus the column names; built from the training table, then applied to every split."""

    label_names: list[str]
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 128
    name: str = "classification"
    main_metric: str = "accuracy"

    @classmethod
    def from_config(cls, config: Any, tables: dict[str, Table]) -> ClassificationTask:
        """Label maps from train; every other split is checked against them (an unknown label names its line)."""
        data = config.data
        train = tables["train"]
        require_columns(train, [data.text_column, data.label_column])
        labels = table_labels(train, data.label_column)
        names = [str(label) for label in sorted(set(labels), key=_label_key)]
        if len(names) < 2:
            raise SftlabError(
                f"{train.path}: '{data.label_column}' has a single label ({names[0]!r}); classification needs at least 2"
            )
        task = cls(names, data.text_column, data.label_column, data.max_length)
        for split, table in tables.items():
            if split != "train":
                task.label_ids(table)
        return task

    @classmethod
    def from_saved(cls, model_dir: Path, config: Any) -> tuple[ClassificationTask, Any]:
        """The task and the fine-tuned model from a finished run's model/ folder."""
        from transformers import AutoModelForSequenceClassification

        from sftlab.adapters import base_config, is_adapter_dir, load_adapter
        from sftlab.models import load_sequence_classifier, locate_model

        data = config.data
        if is_adapter_dir(model_dir):
            # A LoRA run: the pretrained body, then the adapter and the trained head saved with it.
            id2label = base_config(model_dir)["id2label"]
            names = [id2label[str(i)] for i in range(len(id2label))]
            base = load_sequence_classifier(
                locate_model(config.model), config.model, names, config.trust_remote_code
            )
            return cls(names, data.text_column, data.label_column, data.max_length), load_adapter(
                base, model_dir
            )
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        id2label = model.config.id2label
        names = [id2label[i] for i in range(len(id2label))]
        return cls(names, data.text_column, data.label_column, data.max_length), model

    @property
    def input_column(self) -> str:
        """The column `predict` reads (also the key for plain strings passed to Predictor.predict)."""
        return self.text_column

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.label_names)}

    def label_ids(self, table: Table) -> list[int]:
        """Each row's label id; a label the model does not know is an error naming the row."""
        require_columns(table, [self.label_column])
        label2id = self.label2id
        ids = []
        for index, label in enumerate(table_labels(table, self.label_column)):
            if str(label) not in label2id:
                raise SftlabError(
                    f"{table.where(index)}: label {label!r} is not one of the training labels ({', '.join(self.label_names)})"
                )
            ids.append(label2id[str(label)])
        return ids

    def load_model(self, location: str, config: Any) -> Any:
        from sftlab.adapters import apply_adapter
        from sftlab.models import load_sequence_classifier

        model = load_sequence_classifier(location, config.model, self.label_names, config.trust_remote_code)
        return apply_adapter(model, config.adapter, "SEQ_CLS")

    def encode(self, tokenizer: Any, table: Table, with_labels: bool = True) -> list[dict[str, Any]]:
        require_columns(table, [self.text_column])
        texts = require_texts(table, self.text_column)
        encoded = tokenizer(texts, truncation=True, max_length=self.max_length)
        examples = [{"input_ids": ids} for ids in encoded["input_ids"]]
        if "token_type_ids" in encoded:
            for example, types in zip(examples, encoded["token_type_ids"], strict=True):
                example["token_type_ids"] = types
        if with_labels:
            for example, label in zip(examples, self.label_ids(table), strict=True):
                example["labels"] = label
        return examples

    def target_count(self, example: dict[str, Any]) -> int:
        """How many loss terms an example contributes: one label."""
        return 1

    def collate(self, examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
        return pad_batch(examples, pad_token_id)

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Cross-entropy summed over the batch (the loop divides by the real example count)."""
        labels = batch["labels"]
        logits = model(**{key: value for key, value in batch.items() if key != "labels"}).logits
        return F.cross_entropy(logits.float(), labels, reduction="sum"), int(labels.numel())

    @torch.inference_mode()
    def logits(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
               device: torch.device, autocast: Any) -> torch.Tensor:  # fmt: skip
        """Logits for every example in input order; length-sorted batches cut padding."""
        model.eval()
        lengths = [len(example["input_ids"]) for example in examples]
        out = torch.empty((len(examples), len(self.label_names)), dtype=torch.float32)
        for batch_indices in inference_batches(lengths, batch_size):
            unlabeled = [{k: v for k, v in examples[i].items() if k != "labels"} for i in batch_indices]
            batch = self.collate(unlabeled, pad_token_id)
            with autocast():
                logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
            out[batch_indices] = logits.float().cpu()
        return out

    def evaluate(self, model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
                 device: torch.device, autocast: Any) -> dict[str, Any]:  # fmt: skip
        """Metrics and mean cross-entropy; only (examples x labels) floats are kept, never hidden states."""
        logits = self.logits(model, examples, pad_token_id, batch_size, device, autocast)
        labels = torch.tensor([example["labels"] for example in examples])
        metrics = classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), self.label_names)
        metrics["loss"] = float(F.cross_entropy(logits, labels))
        return metrics

    def predict(self, model: Any, tokenizer: Any, table: Table, pad_token_id: int, batch_size: int,
                device: torch.device, autocast: Any) -> list[dict[str, Any]]:  # fmt: skip
        """{"label", "score"} per row; score is the predicted label's softmax probability."""
        examples = self.encode(tokenizer, table, with_labels=False)
        probabilities = self.logits(model, examples, pad_token_id, batch_size, device, autocast).softmax(-1)
        scores, ids = probabilities.max(-1)
        return [
            {"label": self.label_names[i], "score": float(s)}
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
        ]

    def report(self, metrics: dict[str, Any], title: str) -> str:
        return format_classification_report(metrics, title)

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        return f"accuracy {metrics['accuracy']:.4f}, f1_macro {metrics['f1_macro']:.4f}"


def pad_batch(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example in the batch (dynamic padding) and build the attention mask."""
    longest = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    token_types = (
        torch.zeros((len(examples), longest), dtype=torch.long) if "token_type_ids" in examples[0] else None
    )
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"])
        attention_mask[row, :length] = 1
        if token_types is not None:
            token_types[row, :length] = torch.tensor(example["token_type_ids"])
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_types is not None:
        batch["token_type_ids"] = token_types
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([example["labels"] for example in examples], dtype=torch.long)
    return batch
