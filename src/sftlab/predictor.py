"""Use a finished run: `sftlab.load(OUTPUT_DIR)` gives a predictor for new inputs and labeled files.

The predictor is task-neutral: it reads the run's resolved config, asks the task type to rebuild itself
and its model from the saved folder, and hands prediction and evaluation to the task.
"""

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
from sftlab.tasks import task_class


def autocast_for(device: torch.device, precision: str) -> Any:
    """A zero-argument context factory: autocast in bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


class Predictor:
    """A fine-tuned model with the task settings (label maps, columns) it was trained with."""

    def __init__(self, output_dir: Path | str, precision: str = "auto", device: str = "auto") -> None:
        quiet_transformers()
        from transformers import AutoTokenizer

        self.output_dir = Path(output_dir)
        model_dir = self.output_dir / "model"
        config_path = self.output_dir / "config.yaml"
        if not model_dir.is_dir() or not config_path.exists():
            raise SftlabError(
                f"{self.output_dir}: not an sftlab run (expected model/ and config.yaml inside)"
            )
        self.config = load_config(config_path)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.task, self.model = task_class(self.config.task).from_saved(model_dir, self.config)
        use_cuda = wants_cuda(device)
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.precision = resolve_precision(precision, use_cuda)
        self.autocast = autocast_for(self.device, self.precision)
        self.model.to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.batch_size = self.config.train.eval_batch_size

    def predict_table(self, table: Table, batch_size: int | None = None) -> list[dict[str, Any]]:
        """One prediction dict per row of `table`, in order."""
        return self.task.predict(
            self.model,
            self.tokenizer,
            table,
            self.pad_id,
            batch_size or self.batch_size,
            self.device,
            self.autocast,
        )

    def predict(self, inputs: list[Any], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Predictions for plain inputs: texts for text tasks, or row dicts with the run's columns."""
        rows = [item if isinstance(item, dict) else {self.task.input_column: item} for item in inputs]
        table = Table(Path("<inputs>"), rows, list(range(1, len(rows) + 1)), "item")
        return self.predict_table(table, batch_size)

    def predict_file(
        self, path: Path | str, batch_size: int | None = None
    ) -> tuple[Table, list[dict[str, Any]]]:
        """Read inputs from a data file (the run's columns) or a .txt file (one text per line)."""
        path = Path(path)
        table = (
            read_lines(path, self.task.input_column)
            if path.suffix.lower() == ".txt" and path.is_file()
            else read_table(path)
        )
        return table, predict_with_progress(
            lambda part: self.predict_table(part, batch_size), table, f"predicting {path.name}"
        )

    def evaluate(self, path: Path | str, batch_size: int | None = None) -> dict[str, Any]:
        """Metrics on a labeled file; a label the model does not know is an error naming the line."""
        examples = self.task.encode(self.tokenizer, read_table(path))
        return self.task.evaluate(
            self.model, examples, self.pad_id, batch_size or self.batch_size, self.device, self.autocast
        )

    def report(self, metrics: dict[str, Any], title: str) -> str:
        return self.task.report(metrics, title)


def predict_with_progress(
    predict_table: Any, table: Table, description: str, chunk: int = 4096
) -> list[dict[str, Any]]:
    """`predict_table` over `table` in chunks of rows, with a progress bar on stderr once it takes more than
    two seconds (none when stderr is not a terminal). Chunks are large because `predict_table` sorts each
    one by length into batches: chunks of 256 rows padded more and cost ~15% of `sftlab predict`'s speed."""
    import sys

    from tqdm.auto import tqdm

    predictions: list[dict[str, Any]] = []
    with tqdm(total=len(table), desc=description, unit="input", file=sys.stderr, disable=None, leave=False,
              delay=2) as progress:  # fmt: skip
        for start in range(0, len(table), chunk):
            part = table.subset(list(range(start, min(start + chunk, len(table)))))
            predictions.extend(predict_table(part))
            progress.update(len(part))
    return predictions


def read_lines(path: Path, column: str) -> Table:
    """A .txt file as a table: one non-empty line per row, in `column`."""
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
