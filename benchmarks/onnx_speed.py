"""ONNX fp32 and int8 against PyTorch on a finished run's report split: speed and accuracy, one invocation.

    .venv/bin/python benchmarks/onnx_speed.py runs/trec6 [--repeats 3] [--threads N] [--precision fp32]

Exports the run first when RUN/onnx/ has no int8 model (`sftlab export RUN --format onnx --quantize int8`).
Each backend predicts the whole report split (the same tokenization, batching and post-processing: only
the model call differs) `--repeats` times after one warm-up pass; the best time counts. Prints examples/s,
the ratio to PyTorch and the accuracy against the split's labels (classification) or agreement with
PyTorch's predictions (other tasks).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sftlab.config import load_config
from sftlab.data.loading import load_tables
from sftlab.onnx_export import INT8_FILE, ONNX_DIR, OnnxPredictor, export_onnx
from sftlab.predictor import load


def best_time(predict, table, repeats: int) -> tuple[float, list]:
    predictions = predict(table)  # warm-up: onnxruntime and oneDNN pick their kernels on first use
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictions = predict(table)
        best = min(best, time.perf_counter() - started)
    return best, predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and onnxruntime threads (default: all)"
    )
    parser.add_argument(
        "--precision", default="fp32", help="PyTorch's precision (auto picks bf16 where fast)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.run / ONNX_DIR / INT8_FILE).is_file():
        export_onnx(args.run, quantize="int8")
    config = load_config(args.run / "config.yaml")
    tables = load_tables(config.data)
    table = tables["test" if "test" in tables else "validation"]
    label_column = config.data.label_column

    backends = {
        f"pytorch {args.precision}": load(args.run, precision=args.precision, device="cpu"),
        "onnx fp32": OnnxPredictor(args.run, quantized=False, threads=args.threads),
        "onnx int8": OnnxPredictor(args.run, quantized=True, threads=args.threads),
    }
    print(f"{args.run}: {config.task}, {len(table)} {'test' if 'test' in tables else 'validation'} examples, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")  # fmt: skip
    print(
        f"{'backend':<16}{'seconds':>9}{'examples/s':>12}{'vs pytorch':>12}{'accuracy':>10}{'same as pytorch':>17}"
    )
    baseline_seconds, baseline = None, None
    for name, predictor in backends.items():
        seconds, predictions = best_time(predictor.predict_table, table, args.repeats)
        if baseline_seconds is None:
            baseline_seconds, baseline = seconds, predictions
        labels = [p.get("label", p.get("tags", p.get("answer"))) for p in predictions]
        reference = [p.get("label", p.get("tags", p.get("answer"))) for p in baseline]
        agreement = sum(a == b for a, b in zip(labels, reference, strict=True)) / len(labels)
        accuracy = (
            sum(str(row[label_column]) == str(label) for row, label in zip(table.rows, labels, strict=True))
            / len(labels)
            if config.task == "classification"
            else float("nan")
        )
        print(f"{name:<16}{seconds:>9.3f}{len(table) / seconds:>12.1f}{baseline_seconds / seconds:>11.2f}x"
              f"{accuracy:>10.4f}{agreement:>17.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
