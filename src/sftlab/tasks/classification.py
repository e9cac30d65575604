"""Text classification (and sentiment): a linear head on the pooled encoder output.

One label per text (softmax + cross-entropy), or, when the label column holds lists, any number of labels
per text (multi-label: one sigmoid per label + binary cross-entropy, a label predicted above
`data.multi_label_threshold`). With `data.text_pair_column` the input is a pair of texts (NLI, BoolQ),
encoded as the model's pair input ([CLS] a [SEP] b [SEP] for BERT).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sftlab.data.batching import inference_batches, padded_length
from sftlab.data.readers import Table, require_columns, require_texts
from sftlab.distributed import local_model, map_sharded
from sftlab.errors import SftlabError
from sftlab.evaluation.metrics import classification_metrics, multilabel_metrics
from sftlab.evaluation.report import format_classification_report
from sftlab.losses import auto_class_weights, classification_loss_sum


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


def row_label_lists(table: Table, column: str) -> list[list[int | str]]:
    """Multi-label rows: each value a list of labels (an empty list means none apply)."""
    lists = []
    for index, row in enumerate(table.rows):
        value = row[column]
        if not isinstance(value, list):
            raise SftlabError(
                f"{table.where(index)}: '{column}' holds {value!r}, but this data is multi-label "
                "(the first training row holds a list); write a list of labels in every row, [] for none"
            )
        labels = [normalize_label(label, table.where(index), column) for label in value]
        lists.append(list(dict.fromkeys(labels)))
    return lists


def is_multi_label(table: Table, column: str) -> bool:
    """The first training row decides: a list of labels makes the data multi-label."""
    return bool(table.rows) and isinstance(table.rows[0].get(column), list)


def table_labels(table: Table, column: str) -> list[int | str]:
    for index, row in enumerate(table.rows):
        if isinstance(row[column], list):
            raise SftlabError(
                f"{table.where(index)}: '{column}' holds a list {row[column]!r}, but this is single-label data "
                "(the first training row holds one label); use lists in every training row for multi-label"
            )
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
    text_pair_column: str | None = None
    multi_label: bool = False
    threshold: float = 0.5
    name: str = "classification"
    main_metric: str = "accuracy"
    class_weights: list[float] | None = None
    """Training-loss weight per label id (loss.class_weights); evaluation loss stays plain cross-entropy."""
    label_smoothing: float = 0.0
    focal_gamma: float | None = None
    """Focal loss exponent when loss.name is focal; None is cross-entropy."""

    def __post_init__(self) -> None:
        if self.multi_label:
            self.main_metric = "f1_micro"

    @classmethod
    def from_config(cls, config: Any, tables: dict[str, Table]) -> ClassificationTask:
        """Label maps from train; every other split is checked against them (an unknown label names its line)."""
        data = config.data
        train = tables["train"]
        require_columns(train, [data.text_column, data.label_column])
        multi_label = is_multi_label(train, data.label_column)
        if multi_label:
            labels = [label for labels in row_label_lists(train, data.label_column) for label in labels]
        else:
            labels = table_labels(train, data.label_column)
        names = [str(label) for label in sorted(set(labels), key=_label_key)]
        if multi_label and not names:
            raise SftlabError(f"{train.path}: '{data.label_column}' lists no labels in any row")
        if not multi_label and len(names) < 2:
            raise SftlabError(
                f"{train.path}: '{data.label_column}' has a single label ({names[0]!r}); classification needs at least 2"
            )
        task = cls(names, data.text_column, data.label_column, data.max_length, data.text_pair_column,
                   multi_label, data.multi_label_threshold)  # fmt: skip
        loss = config.loss
        if multi_label and (
            loss.name != "cross_entropy" or loss.class_weights is not None or loss.label_smoothing
        ):
            raise SftlabError(
                "loss: class_weights, label_smoothing and focal apply to single-label classification; "
                f"'{data.label_column}' holds lists (multi-label, trained with binary cross-entropy)"
            )
        task.label_smoothing = loss.label_smoothing
        task.focal_gamma = loss.focal_gamma if loss.name == "focal" else None
        if loss.class_weights == "auto":
            task.class_weights = auto_class_weights(task.label_ids(train), len(names))
        elif loss.class_weights is not None:
            if len(loss.class_weights) != len(names):
                raise SftlabError(
                    f"loss.class_weights: {len(loss.class_weights)} weights given, expected one per label "
                    f"({len(names)}: {', '.join(names)})"
                )
            task.class_weights = list(loss.class_weights)
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
            task = cls(names, data.text_column, data.label_column, data.max_length, data.text_pair_column)
            return task, load_adapter(base, model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        id2label = model.config.id2label
        names = [id2label[i] for i in range(len(id2label))]
        data = config.data
        multi_label = model.config.problem_type == "multi_label_classification"
        return cls(names, data.text_column, data.label_column, data.max_length, data.text_pair_column,
                   multi_label, data.multi_label_threshold), model  # fmt: skip

    @property
    def input_column(self) -> str:
        """The column `predict` reads (also the key for plain strings passed to Predictor.predict)."""
        return self.text_column

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.label_names)}

    def label_ids(self, table: Table) -> list[Any]:
        """Each row's label id (multi-label: a 0/1 row per label); an unknown label is an error naming the row."""
        require_columns(table, [self.label_column])
        label2id = self.label2id
        if self.multi_label:
            rows = []
            for index, labels in enumerate(row_label_lists(table, self.label_column)):
                indicator = [0] * len(self.label_names)
                for label in labels:
                    if str(label) not in label2id:
                        raise SftlabError(
                            f"{table.where(index)}: label {label!r} is not one of the training labels ({', '.join(self.label_names)})"
                        )
                    indicator[label2id[str(label)]] = 1
                rows.append(indicator)
            return rows
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
        from sftlab.models import load_pretrained_with_head, load_sequence_classifier

        if not self.multi_label:
            model = load_sequence_classifier(
                location, config.model, self.label_names, config.trust_remote_code
            )
        else:
            # problem_type in the saved config makes transformers (and its pipeline) use sigmoid, not softmax.
            model = load_pretrained_with_head(
                "AutoModelForSequenceClassification", location, config.model, config.trust_remote_code,
                num_labels=len(self.label_names), id2label=dict(enumerate(self.label_names)), label2id=self.label2id,
                problem_type="multi_label_classification",
            )  # fmt: skip
        return apply_adapter(model, config.adapter, "SEQ_CLS")

    def encode(self, tokenizer: Any, table: Table, with_labels: bool = True) -> list[dict[str, Any]]:
        require_columns(table, [self.text_column])
        texts = require_texts(table, self.text_column)
        if self.text_pair_column is not None:
            require_columns(table, [self.text_pair_column])
            pairs = require_texts(table, self.text_pair_column)
            # Both texts are cut, longest first, so neither loses everything to the other.
            encoded = tokenizer(texts, pairs, truncation="longest_first", max_length=self.max_length)
        else:
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
        if not self.multi_label:
            return pad_batch(examples, pad_token_id)
        batch = pad_batch([{k: v for k, v in e.items() if k != "labels"} for e in examples], pad_token_id)
        if "labels" in examples[0]:
            batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.float32)
        return batch

    def forward_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """The training loss summed over the batch (the loop divides by the real example count, also when
        classes are weighted: see sftlab.losses)."""
        labels = batch["labels"]
        logits = model(**{key: value for key, value in batch.items() if key != "labels"}).logits
        if self.multi_label:
            # One term per (example, label) decision: the mean equals transformers' BCEWithLogitsLoss.
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="sum")
            return loss, int(labels.numel())
        weights = (
            None if self.class_weights is None else torch.tensor(self.class_weights, device=logits.device)
        )
        loss = classification_loss_sum(logits, labels, weights, self.label_smoothing, self.focal_gamma)
        return loss, int(labels.numel())

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
        # Each process computes its share of the examples (sftlab.distributed), all get every row back.
        rows = map_sharded(lambda part: list(self.logits(local_model(model), part, pad_token_id, batch_size, device,
                                                          autocast)), examples)  # fmt: skip
        logits = torch.stack(rows) if rows else torch.empty((0, len(self.label_names)))
        labels = torch.tensor([example["labels"] for example in examples])
        if self.multi_label:
            predicted = (logits.sigmoid() > self.threshold).long()
            metrics = multilabel_metrics(labels.tolist(), predicted.tolist(), self.label_names)
            metrics["loss"] = float(F.binary_cross_entropy_with_logits(logits, labels.float()))
            return metrics
        metrics = classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), self.label_names)
        metrics["loss"] = float(F.cross_entropy(logits, labels))
        return metrics

    def predict(self, model: Any, tokenizer: Any, table: Table, pad_token_id: int, batch_size: int,
                device: torch.device, autocast: Any) -> list[dict[str, Any]]:  # fmt: skip
        """{"label", "score"} per row; score is the predicted label's softmax probability."""
        examples = self.encode(tokenizer, table, with_labels=False)
        logits = self.logits(model, examples, pad_token_id, batch_size, device, autocast)
        if self.multi_label:
            # {"labels": every label above the threshold, "scores": each label's sigmoid}
            return [
                {"labels": [n for n, p in zip(self.label_names, row, strict=True) if p > self.threshold],
                 "scores": dict(zip(self.label_names, row, strict=True))}
                for row in logits.sigmoid().tolist()
            ]  # fmt: skip
        probabilities = logits.softmax(-1)
        scores, ids = probabilities.max(-1)
        return [
            {"label": self.label_names[i], "score": float(s)}
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
        ]

    def report(self, metrics: dict[str, Any], title: str) -> str:
        return format_classification_report(metrics, title)

    def epoch_summary(self, metrics: dict[str, Any]) -> str:
        if self.multi_label:
            return f"subset accuracy {metrics['accuracy']:.4f}, f1_micro {metrics['f1_micro']:.4f}, f1_macro {metrics['f1_macro']:.4f}"
        return f"accuracy {metrics['accuracy']:.4f}, f1_macro {metrics['f1_macro']:.4f}"


def pad_batch(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example in the batch, rounded up to `batching.PAD_MULTIPLE` (dynamic padding), and
    build the attention mask."""
    longest = padded_length(max(len(example["input_ids"]) for example in examples))
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
