"""Multi-task (TREC-6 + SMS spam on one encoder) against each task alone with the same budget.

    python benchmarks/multitask.py [--train 400] [--eval 200] [--epochs 2] [--seeds 1]

Each task alone: `sftlab train` on its first N training examples for E epochs. Multi-task: both tasks'
first N examples, E epochs, the proportional sampler (each task gets, in expectation, the steps it gets
alone: the same budget). Batch 32, lr 1e-4, max_length 64, one evaluation at the end of each epoch; the
report is each task's test split (its first --eval examples): accuracy for trec6, macro F1 for sms_spam.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COMMON = ["train.batch_size=32", "train.learning_rate=1e-4"]
METRIC = {"trec6": "accuracy", "sms_spam": "f1_macro"}


def main(argv: list[str]) -> int:
    import sftlab

    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args(argv)
    scores: dict[tuple[str, str], list[float]] = {}
    for seed in range(1, args.seeds + 1):
        budget = [f"train.epochs={args.epochs}", f"train.seed={seed}", *COMMON]
        for name in METRIC:
            result = sftlab.finetune(
                f"examples/{name}.yaml",
                [f"data.max_train_samples={args.train}", f"data.max_eval_samples={args.eval}", "data.max_length=64",
                 *budget, f"output_dir=runs/benchmarks/multitask/{name}-{seed}"],
                overwrite=True, echo=False,
            )  # fmt: skip
            scores.setdefault((name, "alone"), []).append(result.metrics[METRIC[name]])
        sizes = [f"tasks.{name}.data.{key}={value}" for name in METRIC
                 for key, value in (("max_train_samples", args.train), ("max_eval_samples", args.eval), ("max_length", 64))]  # fmt: skip
        result = sftlab.finetune("examples/multitask_trec6_sms.yaml",
                                 [*sizes, *budget, "multitask.sampler=proportional",
                                  f"output_dir=runs/benchmarks/multitask/both-{seed}"], overwrite=True, echo=False)  # fmt: skip
        for name in METRIC:
            scores.setdefault((name, "multi-task"), []).append(result.metrics[name][METRIC[name]])
    print("| task | metric | alone | multi-task (shared encoder) |\n|---|---|---|---|")
    for name, metric in METRIC.items():
        cells = []
        for kind in ("alone", "multi-task"):
            values = scores[(name, kind)]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}")
        print(f"| {name} | {metric} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
