"""ONNX export of a finished run (`sftlab export RUN --format onnx [--quantize int8]`) and the onnxruntime
backend that `sftlab predict/serve --backend onnx` use.

The encoder tasks (classification, token_classification, question_answering) export through
`torch.onnx.export(dynamo=True)` (torch.export + onnxscript), with dynamic batch and sequence axes. The
export is checked before anything is kept: onnxruntime's logits on sample inputs from the run's data must
match PyTorch's fp32 logits within `FP32_TOLERANCE` with the same argmax everywhere, or the export fails
and leaves nothing behind. int8 (onnxruntime dynamic quantization of the matrix products) is checked for
the share of argmax decisions it keeps, reported in `onnx/export.json`.

The backend wraps the onnxruntime session as a model the tasks call like the PyTorch one (`model(**batch)`
-> logits), so tokenization, batching and post-processing are the very code `sftlab predict` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from sftlab.errors import SftlabError

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
FP32_TOLERANCE = 1e-3
"""Largest |onnxruntime - PyTorch| fp32 logit difference accepted (measured: ~1e-6 for MiniLM)."""
INT8_WARN_AGREEMENT = 0.9
"""A warning when int8 keeps fewer of PyTorch's argmax decisions on the sample inputs than this."""
SAMPLES = 32
EXPORTABLE = {"classification": ("logits",), "token_classification": ("logits",),
              "question_answering": ("start_logits", "end_logits")}  # fmt: skip


class _Logits(torch.nn.Module):
    """The model as a function of plain tensors to a tuple of logits (what torch.onnx.export traces)."""

    def __init__(self, model: Any, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> Any:  # fmt: skip
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return tuple(getattr(output, name) for name in self.outputs)


def sample_batch(predictor: Any, count: int = SAMPLES) -> dict[str, torch.Tensor]:
    """A padded batch of the run's own validation inputs (real lengths, real padding)."""
    from sftlab.data.loading import load_tables

    try:
        table = load_tables(predictor.config.data)["validation"]
    except SftlabError:
        table = None
    task = predictor.task
    if table is None or len(table) == 0:
        raise SftlabError(
            f"{predictor.output_dir}: the run's validation data cannot be read for the parity check"
        )
    table = table.subset(list(range(min(count, len(table)))))
    examples = task.encode(predictor.tokenizer, table)
    keys = ("input_ids", "token_type_ids")
    batch = task.collate([{k: e[k] for k in keys if k in e} for e in examples[:count]], predictor.pad_id)
    return {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}


def torch_logits(model: Any, outputs: tuple[str, ...], batch: dict[str, torch.Tensor]) -> list[Any]:
    with torch.inference_mode():
        output = model(**batch)
    return [getattr(output, name).float().numpy() for name in outputs]


def onnx_logits(path: Path, batch: dict[str, torch.Tensor]) -> list[Any]:
    session = make_session(path)
    wanted = {i.name for i in session.get_inputs()}
    return list(session.run(None, {k: v.numpy() for k, v in batch.items() if k in wanted}))


def make_session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(
    reference: list[Any], path: Path, batch: dict[str, torch.Tensor], tolerance: float
) -> dict[str, Any]:
    """onnxruntime's outputs at `path` against the PyTorch `reference` on `batch`, over real tokens only;
    raises SftlabError when the largest difference exceeds `tolerance` or any decision (argmax) differs
    (tolerance 0: only report). Classification logits (batch, labels) decide per example, token logits
    (batch, sequence, labels) per real token, QA start/end logits (batch, sequence) per example over the
    sequence."""
    import numpy as np

    mask = batch["attention_mask"].numpy().astype(bool)
    largest, agree, total = 0.0, 0, 0
    for expected, actual in zip(reference, onnx_logits(path, batch), strict=True):
        if expected.shape != actual.shape:
            raise SftlabError(
                f"{path}: ONNX parity check failed: output shape {actual.shape}, PyTorch {expected.shape}"
            )
        if expected.ndim == 3:
            difference, same = (
                np.abs(expected - actual)[mask],
                (expected.argmax(-1) == actual.argmax(-1))[mask],
            )
        elif expected.shape == mask.shape:
            difference = np.abs(expected - actual)[mask]
            same = np.where(mask, expected, -np.inf).argmax(-1) == np.where(mask, actual, -np.inf).argmax(-1)
        else:
            difference, same = np.abs(expected - actual), expected.argmax(-1) == actual.argmax(-1)
        largest = max(largest, float(difference.max()))
        agree, total = agree + int(same.sum()), total + int(same.size)
    figures = {"max_abs_difference": largest, "argmax_agreement": agree / max(1, total), "decisions": total}
    if tolerance and (largest > tolerance or agree != total):
        raise SftlabError(
            f"{path}: ONNX parity check failed: largest |logit difference| {largest:.3g} (allowed {tolerance:g}), "
            f"{total - agree} of {total} argmax decisions differ from PyTorch; nothing was kept"
        )
    return figures


def export_onnx(output_dir: Path, quantize: str | None = None, echo: Any = print) -> Path:
    """Write `output_dir/onnx/` (model.onnx, model.int8.onnx with --quantize int8, export.json) after the
    parity check; returns the folder."""
    from sftlab.config import load_config
    from sftlab.outputs import atomic_directory
    from sftlab.predictor import load

    if not (output_dir / "config.yaml").is_file():
        raise SftlabError(f"{output_dir}: not an sftlab run (expected model/ and config.yaml inside)")
    task = load_config(output_dir / "config.yaml").task
    if task not in EXPORTABLE:
        raise SftlabError(
            f"{output_dir}: ONNX export covers {', '.join(EXPORTABLE)} runs; a {task} run generates token by "
            "token (a decoder loop the exporter does not write): use `sftlab export RUN --output DIR` for a "
            "transformers folder instead"
        )
    from sftlab.adapters import merged

    predictor = load(output_dir, precision="fp32", device="cpu")
    model = merged(predictor.model).float().eval()
    outputs = EXPORTABLE[task]
    batch = sample_batch(predictor)
    reference = torch_logits(model, outputs, batch)
    target = output_dir / ONNX_DIR
    # Written aside and renamed into place once checked: a failed export leaves the previous one intact.
    fresh = output_dir / f".{ONNX_DIR}.new-{os.getpid()}"
    started = time.perf_counter()
    echo(f"exporting {output_dir} to ONNX (torch.onnx.export with dynamo; a minute for MiniLM on 2 cores)")
    from tqdm.auto import tqdm

    steps = ["export", "check fp32", *(["quantize int8", "check int8"] if quantize == "int8" else [])]
    with atomic_directory(fresh) as staging, tqdm(total=len(steps), desc="onnx export", file=sys.stderr,
                                                  disable=None, leave=False) as progress:  # fmt: skip
        progress.set_postfix_str(steps[0])
        export_graph(model, outputs, batch, staging / FP32_FILE)
        progress.update()
        fp32 = check_parity(reference, staging / FP32_FILE, batch, FP32_TOLERANCE)
        progress.update()
        echo(f"parity fp32: largest |logit difference| {fp32['max_abs_difference']:.2g} on {len(batch['input_ids'])} "
             f"inputs (allowed {FP32_TOLERANCE:g}), argmax agreement {fp32['argmax_agreement']:.4f}")  # fmt: skip
        record: dict[str, Any] = {"task": task, "outputs": list(outputs), "inputs": list(batch), "fp32": fp32,
                                  "fp32_tolerance": FP32_TOLERANCE}  # fmt: skip
        if quantize == "int8":
            quantize_int8(staging / FP32_FILE, staging / INT8_FILE)
            progress.update()
            int8 = check_parity(reference, staging / INT8_FILE, batch, tolerance=0.0)
            progress.update()
            echo(f"parity int8: largest |logit difference| {int8['max_abs_difference']:.2g}, argmax agreement "
                 f"{int8['argmax_agreement']:.4f} (reported, not enforced: int8 trades exactness for speed)")  # fmt: skip
            if int8["argmax_agreement"] < INT8_WARN_AGREEMENT:
                print(f"sftlab: warning: int8 keeps only {int8['argmax_agreement']:.2%} of PyTorch's decisions on "
                      "the sample inputs; measure it (benchmarks/onnx_speed.py) before using it", file=sys.stderr)  # fmt: skip
            record["int8"] = int8
        record["export_seconds"] = round(time.perf_counter() - started, 1)
        (staging / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    old = output_dir / f".{ONNX_DIR}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(fresh, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def export_graph(model: Any, outputs: tuple[str, ...], batch: dict[str, torch.Tensor], path: Path) -> None:
    """torch.onnx.export with dynamo (the TorchScript exporter's graph differs from PyTorch by ~2e-2 on
    MiniLM at new sequence lengths), batch and sequence axes dynamic, weights inside the one file."""
    import warnings

    from torch.export import Dim

    names = list(batch)
    dims = {0: Dim("batch"), 1: Dim("sequence")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Logits(model, outputs), (), kwargs=batch, input_names=names, output_names=list(outputs),
            dynamo=True, dynamic_shapes={name: dims for name in names}, verbose=False,
        )  # fmt: skip
        program.save(str(path), external_data=False)


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization: int8 weights (one scale per output channel) for the matrix
    products, activations quantized on the fly; the rest, embeddings included, stays fp32. On the TREC-6
    MiniLM run this kept 197 of PyTorch's 200 test decisions; onnxruntime's default (per-tensor scales,
    embeddings quantized too) kept 194, MatMul-only per-tensor 191."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process applies to static (calibrated) quantization
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])  # fmt: skip
    finally:
        root.setLevel(level)


class OnnxModel:
    """An onnxruntime session that the tasks call like a transformers model: `model(**batch)` -> an object
    with the logits as torch tensors."""

    def __init__(self, path: Path, outputs: list[str], threads: int | None = None) -> None:
        self.session = make_session(path, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = outputs

    def __call__(self, **batch: torch.Tensor) -> Any:
        feed = {k: v.cpu().numpy() for k, v in batch.items() if k in self.inputs}
        return SimpleNamespace(
            **{
                n: torch.from_numpy(v)
                for n, v in zip(self.outputs, self.session.run(None, feed), strict=True)
            }
        )

    def eval(self) -> OnnxModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self


class OnnxPredictor:
    """`sftlab.load`'s Predictor with onnxruntime in place of PyTorch (same inputs, same outputs)."""

    def __init__(self, output_dir: Path | str, quantized: bool = False, threads: int | None = None) -> None:
        from sftlab.predictor import Predictor

        self.output_dir = Path(output_dir)
        folder = self.output_dir / ONNX_DIR
        record_path = folder / "export.json"
        if not record_path.is_file():
            raise SftlabError(
                f"{self.output_dir}: no ONNX export; run `sftlab export {self.output_dir} --format onnx` first"
            )
        record = json.loads(record_path.read_text(encoding="utf-8"))
        path = folder / (INT8_FILE if quantized else FP32_FILE)
        if not path.is_file():
            raise SftlabError(f"{path}: missing; export with --quantize int8 to get it")
        self.path = path
        # The task (label maps, columns, post-processing) and tokenizer come from the run as for PyTorch.
        base = Predictor(self.output_dir, precision="fp32", device="cpu")
        self.config, self.tokenizer, self.task, self.pad_id = (
            base.config,
            base.tokenizer,
            base.task,
            base.pad_id,
        )
        self.batch_size = base.batch_size
        del base  # the PyTorch weights are not needed
        self.model = OnnxModel(path, record["outputs"], threads)
        self.device = torch.device("cpu")
        self.autocast = contextlib.nullcontext

    def predict_table(self, table: Any, batch_size: int | None = None) -> list[dict[str, Any]]:
        return self.task.predict(self.model, self.tokenizer, table, self.pad_id, batch_size or self.batch_size,
                                 self.device, self.autocast)  # fmt: skip

    def predict(self, inputs: list[Any], batch_size: int | None = None) -> list[dict[str, Any]]:
        from sftlab.data.readers import Table

        rows = [item if isinstance(item, dict) else {self.task.input_column: item} for item in inputs]
        return self.predict_table(
            Table(Path("<inputs>"), rows, list(range(1, len(rows) + 1)), "item"), batch_size
        )

    def predict_file(
        self, path: Path | str, batch_size: int | None = None
    ) -> tuple[Any, list[dict[str, Any]]]:
        from sftlab.data.readers import read_table
        from sftlab.predictor import predict_with_progress, read_lines

        path = Path(path)
        table = (
            read_lines(path, self.task.input_column)
            if path.suffix.lower() == ".txt" and path.is_file()
            else read_table(path)
        )
        return table, predict_with_progress(
            lambda part: self.predict_table(part, batch_size), table, f"predicting {path.name}"
        )


def load_onnx(output_dir: Path | str, quantized: bool = False) -> OnnxPredictor:
    """The run's ONNX export (`quantized`: the int8 one) as a predictor."""
    print(f"sftlab: onnxruntime backend on {Path(output_dir) / ONNX_DIR}", file=sys.stderr)
    return OnnxPredictor(output_dir, quantized)
