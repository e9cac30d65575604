"""Label-issue detection on planted noise: precision / recall / F1 of sftlab's label check.

    PYTHONPATH=src python benchmarks/label_noise.py --dataset trec6 --rows 600 --noise 0.05 0.10
    PYTHONPATH=src python benchmarks/label_noise.py --dataset sms_spam --rows 600 --noise 0.05 0.10 --retrain

A train slice of the built-in dataset gets `noise` of its labels flipped at random to another class
(seeded); the K-fold out-of-fold probabilities come from sftlab's label check (fold models trained through
the engine); on the same probabilities it scores: cleanlab's `find_label_issues` (sftlab's default),
the `num_label_issues` highest-loss rows (`data_check.method: loss`), and the oracle loss ranking (the k
highest-loss rows, k = the true number of flips). With --retrain it also trains the model on the noisy
slice and on the slice after `--write-clean` (flagged rows removed) and reports both test accuracies.
Numbers go to stdout as one JSON line per (dataset, noise).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sftlab.catalog.datasets import fetch_dataset
from sftlab.config import load_config
from sftlab.data.readers import read_table, write_jsonl
from sftlab.datacheck.labels import flag_rows, out_of_fold
from sftlab.recipes.finetune import finetune


def scores(flagged: set[int], truth: set[int]) -> dict[str, float]:
    hits = len(flagged & truth)
    precision = hits / len(flagged) if flagged else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "flagged": len(flagged),
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "f1": round(f1, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="trec6")
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.10])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--freeze", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument(
        "--save", type=Path, default=None, help="folder for the out-of-fold probabilities (.npz)"
    )
    args = parser.parse_args()

    paths = fetch_dataset(args.dataset)
    train = read_table(paths["train"])
    work = Path(tempfile.mkdtemp(prefix="label-noise-"))
    for noise in args.noise:
        rng = random.Random(args.seed)
        rows = [dict(row) for row in train.rows[: args.rows]]
        names = sorted({row["label"] for row in rows})
        flipped = set(rng.sample(range(len(rows)), round(noise * len(rows))))
        for index in flipped:
            rows[index]["label"] = rng.choice([name for name in names if name != rows[index]["label"]])
        noisy = work / f"{args.dataset}-{noise}.jsonl"
        write_jsonl(noisy, rows)
        config = load_config({
            "task": "classification", "model": "minilm", "output_dir": str(work / "run"),
            "data": {"train": str(noisy), "validation": str(paths["validation"]), "test": str(paths["test"]),
                     "max_length": args.max_length},
            "train": {"learning_rate": args.learning_rate, "seed": args.seed},
            "data_check": {"folds": args.folds, "epochs": args.epochs, "freeze_bottom_layers": args.freeze},
        })  # fmt: skip
        table = read_table(noisy)
        labels = [str(row["label"]) for row in table.rows]
        oof = out_of_fold(config, table, list(range(len(table))), labels, echo=False, finetune=finetune)
        result = {"dataset": args.dataset, "rows": len(rows), "noise": noise, "flipped": len(flipped),
                  "folds": args.folds, "epochs": args.epochs, "frozen_bottom_layers": args.freeze,
                  "kfold_seconds": round(oof.seconds, 1),
                  "out_of_fold_accuracy_on_given": round(float((oof.probabilities.argmax(1) == oof.labels).mean()), 4)}  # fmt: skip
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(args.save / f"{args.dataset}-{args.rows}-{noise}.npz", probabilities=oof.probabilities,
                     labels=oof.labels, flipped=np.array(sorted(flipped)), names=np.array(oof.label_names))  # fmt: skip
        for method in ("cleanlab", "loss"):
            flagged, loss = flag_rows(oof, method)
            result[method] = scores(set(flagged.tolist()), flipped)
        result["loss_oracle_k"] = scores(set(np.argsort(-loss)[: len(flipped)].tolist()), flipped)
        if args.retrain:
            flagged, _ = flag_rows(oof, "cleanlab")
            clean = work / f"{args.dataset}-{noise}-clean.jsonl"
            write_jsonl(clean, [row for i, row in enumerate(rows) if i not in set(flagged.tolist())])
            for name, path in (("noisy", noisy), ("clean", clean), ("original", None)):
                if path is None:
                    path = work / f"{args.dataset}-original.jsonl"
                    write_jsonl(path, train.rows[: args.rows])
                run = load_config({**config.to_yaml_dict(), "output_dir": str(work / f"run-{name}"),
                                   "data": {**config.to_yaml_dict()["data"], "train": str(path), "check": "off"},
                                   "train": {**config.to_yaml_dict()["train"], "epochs": 3, "learning_rate": 1e-4}})  # fmt: skip
                started = time.perf_counter()
                metrics = finetune(run, overwrite=True, echo=False).metrics
                result[f"test_accuracy_{name}"] = round(metrics["accuracy"], 4)
                result[f"test_f1_macro_{name}"] = round(metrics["f1_macro"], 4)
                result[f"train_seconds_{name}"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result), flush=True)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
