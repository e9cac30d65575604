"""Few-shot classification: plain fine-tuning vs sftlab few-shot vs the `setfit` library, same MiniLM body.

    pip install -c /work/constraints.txt setfit          # for this benchmark only (not a test dependency)
    python benchmarks/few_shot.py run                    # the full matrix: trec6 + sms_spam, 8/16/32 per
                                                         # label, 5 seeded draws, 3 methods
    python benchmarks/few_shot.py run --datasets trec6 --shots 8 --seeds 3    # what fits a shared CPU
    python benchmarks/few_shot.py table                  # mean ± std per (dataset, shots, method)

Each seed s draws the training set with `data.samples_per_class=K, data.sample_seed=s` (sftlab's
stratified draw; SetFit gets exactly the same rows) and every method trains with seed s. All three are
scored on the full test split of sftlab's dataset: accuracy for trec6, macro F1 for sms_spam. Wall time is
training plus the test predictions, in this process. One JSON line per run in
runs/benchmarks/few_shot.jsonl (`--results` for another file); a rerun skips the runs already there, so a
partial run still counts. The sftlab runs evaluate on the first VALIDATION validation examples only.

- plain: `sftlab train` on the K-per-label set, 10 epochs, batch 8, lr 5e-5, linear schedule, last model.
- sftlab: `few_shot: {method: contrastive}` with its defaults (pairs_per_example 40, capped at 4,000,
  pair batch 16, 1 epoch at 2e-5; then the logistic head, head_l2_c 1 as SetFit's LogisticRegression: 300
  full-batch Adam steps at 3e-2 on the frozen encoder; pooling auto, which is mean for MiniLM, as SetFit).
- sftlab-cls: the same with `few_shot.pooling=cls` (the classifier's own [CLS] pooler).
- setfit: SetFit 1.2, `Trainer` with batch_size 16, num_iterations 20, num_epochs 1 (its defaults for
  the body, lr 2e-5), LogisticRegression head; the same MiniLM folder as the body.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path("runs/benchmarks/few_shot.jsonl")
METRIC = {"trec6": "accuracy", "sms_spam": "f1_macro"}
EXAMPLE = {"trec6": "examples/trec6.yaml", "sms_spam": "examples/sms_spam.yaml"}
METHODS = ("plain", "sftlab", "sftlab-cls", "setfit")
VALIDATION = 64
"""Validation examples the sftlab runs evaluate on (their stages keep their last weights, so this picks
nothing; SetFit evaluates none): a few-shot user has no 546-question validation split, and the three
stages would each pass over all of it. Every method is scored on the full test split."""


def draw(dataset: str, shots: int, seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(train texts, train labels, test texts, test labels) with sftlab's own loader and few-shot draw."""
    from sftlab.config import load_config
    from sftlab.data.loading import load_tables

    config = load_config(EXAMPLE[dataset], [f"data.samples_per_class={shots}", f"data.sample_seed={seed}"])
    tables = load_tables(config.data)
    text, label = config.data.text_column, config.data.label_column
    return ([r[text] for r in tables["train"].rows], [str(r[label]) for r in tables["train"].rows],
            [r[text] for r in tables["test"].rows], [str(r[label]) for r in tables["test"].rows])  # fmt: skip


def run_sftlab(dataset: str, shots: int, seed: int, method: str, output: Path) -> dict[str, float]:
    import sftlab

    overrides = [f"data.samples_per_class={shots}", f"data.sample_seed={seed}", f"train.seed={seed}",
                 "data.max_length=64", f"data.max_validation_samples={VALIDATION}", f"output_dir={output}"]  # fmt: skip
    if method == "plain":
        overrides += [
            "train.epochs=10",
            "train.batch_size=8",
            "train.learning_rate=5e-5",
            "train.eval_every=1000000",
        ]
    else:
        overrides += [
            "few_shot.method=contrastive",
            f"few_shot.pooling={'cls' if method == 'sftlab-cls' else 'auto'}",
        ]
    result = sftlab.finetune(EXAMPLE[dataset], overrides, overwrite=True, echo=False)
    return {"accuracy": result.metrics["accuracy"], "f1_macro": result.metrics["f1_macro"]}


def run_setfit(dataset: str, shots: int, seed: int) -> dict[str, float]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from sftlab.catalog.models import resolve_model
    from sftlab.evaluation.metrics import classification_metrics

    texts, labels, test_texts, test_labels = draw(dataset, shots, seed)
    names = sorted(set(labels))
    model = SetFitModel.from_pretrained(resolve_model("minilm"))
    args = TrainingArguments(batch_size=16, num_iterations=20, num_epochs=1, seed=seed, max_length=64,
                             output_dir="runs/benchmarks/setfit", save_strategy="no", report_to="none",
                             show_progress_bar=False)  # fmt: skip
    train = Dataset.from_dict({"text": texts, "label": [names.index(label) for label in labels]})
    Trainer(model=model, args=args, train_dataset=train).train()
    predicted = [int(p) for p in model.predict(test_texts)]
    metrics = classification_metrics([names.index(label) for label in test_labels], predicted, names)
    return {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"]}


def run(
    datasets: list[str], shots_list: list[int], seeds: int, methods: list[str], budget: float | None
) -> None:
    """Every (seed, dataset, shots, method) run not in the results yet; with `budget` (seconds), no new run
    starts once it is spent, so one invocation can be kept short and the next one continues."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    begun = time.perf_counter()
    done = {(r["dataset"], r["shots"], r["seed"], r["method"]) for r in read_results()}
    for seed in range(seeds):  # seeds outermost: a partial run still gives every cell the same seeds
        for dataset in datasets:
            for shots in shots_list:
                for method in methods:
                    if (dataset, shots, seed, method) in done:
                        continue
                    if budget is not None and time.perf_counter() - begun > budget:
                        return
                    started = time.perf_counter()
                    if method == "setfit":
                        metrics = run_setfit(dataset, shots, seed)
                    else:
                        output = Path(f"runs/benchmarks/few_shot/{dataset}-{shots}-{seed}-{method}")
                        metrics = run_sftlab(dataset, shots, seed, method, output)
                    record = {"dataset": dataset, "shots": shots, "seed": seed, "method": method,
                              "seconds": round(time.perf_counter() - started, 1), **metrics}  # fmt: skip
                    print(json.dumps(record), flush=True)
                    with RESULTS.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(record) + "\n")


def read_results() -> list[dict]:
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]


def table() -> str:
    rows = read_results()
    cells: dict[tuple[str, int, str], list[dict]] = {}
    for row in rows:
        cells.setdefault((row["dataset"], row["shots"], row["method"]), []).append(row)
    lines = ["| dataset | per label | method | seeds | score (mean ± std) | wall s per run (mean) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for (dataset, shots, method), runs in sorted(cells.items(), key=lambda item: (item[0][0], item[0][1],
                                                                                  METHODS.index(item[0][2]))):  # fmt: skip
        scores = [run[METRIC[dataset]] for run in runs]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        lines.append(
            f"| {dataset} | {shots} | {method} | {len(runs)} | {METRIC[dataset]} {statistics.mean(scores):.3f} ± "
            f"{spread:.3f} | {statistics.mean(run['seconds'] for run in runs):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "table"])
    parser.add_argument("--datasets", nargs="+", default=["trec6", "sms_spam"], choices=list(METRIC))
    parser.add_argument("--shots", nargs="+", type=int, default=[8, 16, 32])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--budget", type=float, default=None, help="seconds after which no new run starts")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON-lines file of runs")
    args = parser.parse_args(argv)
    RESULTS = args.results
    if args.action == "run":
        run(args.datasets, args.shots, args.seeds, args.methods, args.budget)
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
