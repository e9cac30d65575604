"""Use a finished run: `sftlab.load(OUTPUT_DIR)` gives a predictor for new texts and labeled files."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from sftlab.config import load_config
from sftlab.data.readers import Table, read_table
from sftlab.errors import SftlabError
from sftlab.models import quiet_transformers
from sftlab.runtime import resolve_precision, wants_cuda
from sftlab.tasks.classification import ClassificationTask


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


class Predictor:
    """A fine-tuned classifier with the label maps and columns it was trained with."""

    def __init__(self, output_dir: Path | str, precision: str = "auto", device: str = "auto") -> None:
        quiet_transformers()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.output_dir = Path(output_dir)
        model_dir = self.output_dir / "model"
        config_path = self.output_dir / "config.yaml"
        if not model_dir.is_dir() or not config_path.exists():
            raise SftlabError(
                f"{self.output_dir}: not an sftlab run (expected model/ and config.yaml inside)"
            )
        self.config = load_config(config_path)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        use_cuda = wants_cuda(device)
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.precision = resolve_precision(precision, use_cuda)
        self.model.to(self.device).eval()
        id2label = self.model.config.id2label
        self.task = ClassificationTask(
            [id2label[i] for i in range(len(id2label))], self.config.data.text_column,
            self.config.data.label_column, self.config.data.max_length,
        )  # fmt: skip
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _logits(self, examples: list[dict[str, Any]], batch_size: int) -> torch.Tensor:
        return self.task.logits(
            self.model,
            examples,
            self.pad_id,
            batch_size,
            self.device,
            _autocast(self.device, self.precision),
        )

    def predict(self, texts: list[str], batch_size: int | None = None) -> list[dict[str, Any]]:
        """[{"label": ..., "score": ...}] per text, score being the predicted label's softmax probability."""
        table = Table(
            Path("<texts>"),
            [{self.task.text_column: text} for text in texts],
            list(range(1, len(texts) + 1)),
            "item",
        )
        return self._predict_table(table, batch_size)

    def _predict_table(self, table: Table, batch_size: int | None) -> list[dict[str, Any]]:
        examples = self.task.encode(self.tokenizer, table, with_labels=False)
        probabilities = self._logits(examples, batch_size or self.config.train.eval_batch_size).softmax(-1)
        scores, ids = probabilities.max(-1)
        return [
            {"label": self.task.label_names[i], "score": float(s)}
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
        ]

    def predict_file(
        self, path: Path | str, batch_size: int | None = None
    ) -> tuple[Table, list[dict[str, Any]]]:
        """Read texts from a data file (the run's text column) or a .txt file (one text per line)."""
        path = Path(path)
        if path.suffix.lower() == ".txt" and path.is_file():
            table = _read_lines(path, self.task.text_column)
        else:
            table = read_table(path)
        return table, self._predict_table(table, batch_size)

    def evaluate(self, path: Path | str, batch_size: int | None = None) -> dict[str, Any]:
        """Metrics on a labeled file; a label the model does not know is an error naming the line."""
        examples = self.task.encode(self.tokenizer, read_table(path))
        return self.task.evaluate(
            self.model, examples, self.pad_id, batch_size or self.config.train.eval_batch_size,
            self.device, _autocast(self.device, self.precision),
        )  # fmt: skip


def _read_lines(path: Path, column: str) -> Table:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise SftlabError(f"{path}: not valid UTF-8 (byte offset {error.start})") from None
    rows, positions = [], []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            rows.append({column: line})
            positions.append(number)
    if not rows:
        raise SftlabError(f"{path}: no texts (expected one text per line)")
    return Table(path, rows, positions, "line")


def load(output_dir: Path | str, precision: str = "auto", device: str = "auto") -> Predictor:
    """Load a finished sftlab run for prediction and evaluation."""
    return Predictor(output_dir, precision=precision, device=device)
