"""Compare training controls on real data, several seeds each, and print a markdown table.

    python benchmarks/training_controls.py run      # trains the grid, appends one JSON line per run
    python benchmarks/training_controls.py table    # mean ± std per configuration from those lines

Each run is `sftlab train` (in-process, the same code path) on a slice that fits a shared 2-core CPU:
the first 300 training examples, max_length 32 (trec6) / 64 (sms_spam), 2 epochs, batch 32, lr 1e-4,
one evaluation at the end (no best-epoch pick), on the first 200 test examples of sftlab's split, one
torch thread (run with OMP_NUM_THREADS=1 on a shared machine). Seeds are the outer loop, so a partial
run still gives every configuration the same seeds. Results: runs/benchmarks/training_controls.jsonl.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path("runs/benchmarks/training_controls.jsonl")
SEEDS = [1, 2, 3]
COMMON = [
    "data.max_train_samples=300", "data.max_eval_samples=200", "train.epochs=2", "train.batch_size=32",
    "train.learning_rate=1e-4", "train.eval_every=1000",
]  # fmt: skip

# (dataset, label, overrides); 300 examples / 32 = 10 steps per epoch, 20 in all.
GRID = [
    ("trec6", "full fine-tuning (linear, warmup 6%)", []),
    ("trec6", "bottom 4 of 6 blocks frozen", ["freeze.bottom_layers=4"]),
    ("trec6", "gradual unfreezing (one layer every 2 steps)",
     ["freeze.gradual_unfreeze=true", "freeze.unfreeze_every=2", "freeze.unfreeze_unit=step"]),
    ("trec6", "layer-wise LR decay 0.8", ["optim.layer_lr_decay=0.8"]),
    ("trec6", "slanted triangular (cut_frac 0.1, ratio 32)", ["schedule.name=slanted_triangular"]),
    ("sms_spam", "cross-entropy", []),
    ("sms_spam", "class weights auto", ["loss.class_weights=auto"]),
    ("sms_spam", "focal loss (gamma 2)", ["loss.name=focal", "loss.focal_gamma=2"]),
    ("sms_spam", "label smoothing 0.1", ["loss.label_smoothing=0.1"]),
]  # fmt: skip
EXAMPLE = {"trec6": "examples/trec6.yaml", "sms_spam": "examples/sms_spam.yaml"}
LENGTH = {"trec6": 32, "sms_spam": 64}


def command(dataset: str, overrides: list[str], seed: int) -> list[str]:
    return [
        EXAMPLE[dataset], *COMMON, f"data.max_length={LENGTH[dataset]}", f"train.seed={seed}",
        "train.metric_for_best=f1_macro", *overrides, f"output_dir=runs/benchmarks/{dataset}-{seed}",
    ]  # fmt: skip


def run() -> None:
    import sftlab

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["label"], r["seed"]) for r in read_results()}
    for seed in SEEDS:
        for dataset, label, overrides in GRID:
            if (label, seed) in done:
                continue
            args = command(dataset, overrides, seed)
            started = time.time()
            result = sftlab.finetune(args[0], overrides=args[1:], overwrite=True, echo=False)
            metrics = result.metrics
            record = {
                "dataset": dataset, "label": label, "seed": seed, "command": "sftlab train " + " ".join(args),
                "accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"],
                "f1_spam": metrics["per_class"].get("spam", {}).get("f1"),
                "best_epoch": metrics["best_epoch"], "trainable_parameters": metrics["trainable_parameters"],
                "wall_s": round(time.time() - started, 1),
            }  # fmt: skip
            with RESULTS.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


def read_results() -> list[dict]:
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def table() -> None:
    results = read_results()
    for dataset, columns in (("trec6", ["accuracy", "f1_macro"]), ("sms_spam", ["f1_macro", "f1_spam"])):
        print(f"\n| {dataset} | seeds | " + " | ".join(columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for grid_dataset, label, _ in GRID:
            if grid_dataset != dataset:
                continue
            rows = [r for r in results if r["label"] == label]
            cells = [mean_std([r[c] for r in rows if r[c] is not None]) for c in columns]
            print(f"| {label} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    {"run": run, "table": table}[sys.argv[1] if len(sys.argv) > 1 else "table"]()
