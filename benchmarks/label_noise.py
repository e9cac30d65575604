"""Label-issue detection on planted noise: precision / recall / F1 of sftlab's label check.

    PYTHONPATH=src python benchmarks/label_noise.py --dataset trec6 --rows 600 --noise 0.05 0.10 --save oof/ --retrain
    PYTHONPATH=src python benchmarks/label_noise.py --dataset sms_spam --rows 600 --noise 0.05 0.10 --save oof/ --retrain

The first `--rows` rows of the built-in dataset's train split get `noise` of their labels flipped at random
to another class (seeded); sftlab's label check makes the K-fold out-of-fold probabilities (fold models
trained through the engine). On those same probabilities it scores every detector: sftlab's two
`data_check.method`s (`loss`: the highest out-of-fold losses, as many as cleanlab's `num_label_issues`
estimates; `cleanlab`: `find_label_issues` with its default filter, prune_by_noise_rate), cleanlab alone
with its `both` and `confident_learning` filters, and the plain loss ranking cut at the true number of
flips (an oracle). With --retrain it trains the run's model (by default 3 epochs, learning rate 1e-4,
the whole model; --retrain-* change that) on the noisy rows, on the rows `--method` leaves at each
`--keep-per-class` floor (what `--write-clean` writes) and, once per dataset, on the original labels, over
`--retrain-seeds`, and reports each test accuracy (mean and std). `--save DIR` keeps the out-of-fold
probabilities and reuses them when they are already there. One JSON line per (dataset, noise).
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
from sftlab.datacheck.labels import OutOfFold, flag_rows, out_of_fold
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


def method_scores(oof: OutOfFold, flipped: set[int]) -> dict[str, dict[str, float]]:
    """Every detector on the same out-of-fold probabilities."""
    from cleanlab.filter import find_label_issues

    probabilities = np.clip(oof.probabilities, 1e-12, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    result = {}
    for method in ("loss", "cleanlab"):  # sftlab's two data_check.method values
        flagged, loss = flag_rows(oof, method)
        result[f"sftlab_{method}"] = scores(set(flagged.tolist()), flipped)
    for filter_by in ("both", "confident_learning"):  # cleanlab alone, its other filters
        flagged = find_label_issues(oof.labels, probabilities, filter_by=filter_by)
        result[f"cleanlab_{filter_by}"] = scores(set(np.flatnonzero(flagged).tolist()), flipped)
    # Plain loss ranking told the true number of flips (an oracle cut-off: its precision equals its recall).
    result["loss_top_k_oracle"] = scores(set(np.argsort(-loss)[: len(flipped)].tolist()), flipped)
    return result


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
    parser.add_argument(
        "--method", default="loss", help="the data_check.method whose flags --retrain removes"
    )
    parser.add_argument(
        "--keep-per-class", type=float, nargs="+", default=[0.0],
        help="data_check.keep_per_class values: each one's flags are scored and (with --retrain) retrained",
    )  # fmt: skip
    parser.add_argument("--retrain-seeds", type=int, nargs="+", default=[0], help="seeds of each retrain run")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--retrain-epochs", type=int, default=3)
    parser.add_argument("--retrain-learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--retrain-freeze", type=int, default=0, help="bottom blocks frozen in the retrained models"
    )
    parser.add_argument(
        "--save", type=Path, default=None, help="folder for the out-of-fold probabilities (.npz); when the "
        "file for this (dataset, rows, noise) is already there, it is loaded instead of running the K folds"
    )  # fmt: skip
    args = parser.parse_args()

    paths = fetch_dataset(args.dataset)
    train = read_table(paths["train"])
    work = Path(tempfile.mkdtemp(prefix="label-noise-"))
    original_accuracy: dict[str, float] = {}
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
        saved = args.save / f"{args.dataset}-{args.rows}-{noise}.npz" if args.save is not None else None
        if saved is not None and saved.exists():
            stored = np.load(saved)
            assert set(stored["flipped"].tolist()) == flipped, "saved probabilities of another planting"
            oof = OutOfFold(list(range(len(table))), stored["labels"], stored["probabilities"],
                            [str(name) for name in stored["names"]], float(stored["seconds"]) if "seconds" in stored.files else float("nan"))  # fmt: skip
        else:
            oof = out_of_fold(config, table, list(range(len(table))), labels, echo=False, finetune=finetune)
            if saved is not None:
                saved.parent.mkdir(parents=True, exist_ok=True)
                np.savez(saved, probabilities=oof.probabilities, labels=oof.labels, flipped=np.array(sorted(flipped)),
                         names=np.array(oof.label_names), seconds=oof.seconds)  # fmt: skip
        result = {"dataset": args.dataset, "rows": len(rows), "noise": noise, "flipped": len(flipped),
                  "folds": args.folds, "epochs": args.epochs, "frozen_bottom_layers": args.freeze,
                  "kfold_seconds": round(oof.seconds, 1),
                  "out_of_fold_accuracy_on_given": round(float((oof.probabilities.argmax(1) == oof.labels).mean()), 4)}  # fmt: skip
        result.update(method_scores(oof, flipped))
        for keep in args.keep_per_class:  # the per-class floor on the same probabilities
            flagged_kept = set(flag_rows(oof, args.method, keep)[0].tolist())
            result[f"sftlab_{args.method}_keep_{keep}"] = scores(flagged_kept, flipped)
        if args.retrain:
            runs = [("noisy", noisy, None)]
            for keep in args.keep_per_class:
                flagged = set(flag_rows(oof, args.method, keep)[0].tolist())
                clean = work / f"{args.dataset}-{noise}-clean-{keep}.jsonl"
                write_jsonl(clean, [row for i, row in enumerate(rows) if i not in flagged])
                result[f"retrain_removed_keep_{keep}"] = len(flagged)
                result[f"retrain_removed_flipped_keep_{keep}"] = len(flagged & flipped)
                runs.append((f"clean_keep_{keep}", clean, keep))
            if not original_accuracy:
                original = work / f"{args.dataset}-original.jsonl"
                write_jsonl(original, train.rows[: args.rows])
                runs.append(("original", original, None))
            for name, path, _ in runs:
                accuracies, f1s, seconds = [], [], []
                for seed in args.retrain_seeds:
                    run = load_config({**config.to_yaml_dict(), "output_dir": str(work / f"run-{name}"),
                                       "data": {**config.to_yaml_dict()["data"], "train": str(path), "check": "off"},
                                       "train": {**config.to_yaml_dict()["train"], "epochs": args.retrain_epochs,
                                                 "learning_rate": args.retrain_learning_rate, "seed": seed},
                                       "freeze": {"bottom_layers": args.retrain_freeze}})  # fmt: skip
                    started = time.perf_counter()
                    metrics = finetune(run, overwrite=True, echo=False).metrics
                    accuracies.append(metrics["accuracy"])
                    f1s.append(metrics["f1_macro"])
                    seconds.append(time.perf_counter() - started)
                summary = {"accuracy": [round(a, 4) for a in accuracies], "f1_macro": [round(f, 4) for f in f1s],
                           "accuracy_mean": round(float(np.mean(accuracies)), 4),
                           "accuracy_std": round(float(np.std(accuracies)), 4),
                           "f1_macro_mean": round(float(np.mean(f1s)), 4),
                           "train_seconds_mean": round(float(np.mean(seconds)), 1)}  # fmt: skip
                if name == "original":
                    original_accuracy.update(summary)
                result[f"test_{name}"] = summary
            result["retrain"] = {
                "epochs": args.retrain_epochs,
                "learning_rate": args.retrain_learning_rate,
                "frozen_bottom_layers": args.retrain_freeze,
                "seeds": args.retrain_seeds,
            }
            result["test_original"] = original_accuracy
        print(json.dumps(result), flush=True)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
