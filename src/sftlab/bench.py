"""sftlab against Hugging Face Trainer on identical work, measured side by side in one invocation.

Each side of each case runs in its own subprocess (so peak memory is its own and one side's warm caches
do not help the other), the sides alternate (Trainer, sftlab, Trainer, sftlab, ...) so a noisy period
hurts both, and a fixed matrix-multiply check runs before and after to show how noisy the machine was.

Cases:
  a  full fine-tuning, Trainer with its defaults (fp32, random order)
  b  full fine-tuning, Trainer at its best here (group_by_length; bf16 where the hardware is fast at it)
  c  embeddings and the bottom 4 of 6 blocks frozen, 3 epochs (Trainer with the same frozen parameters)
  d  inference: `sftlab predict` (Predictor) against `transformers.pipeline` on the same texts

Both sides get the same model, data, batch size, learning rate, schedule (linear, no warmup), weight decay
(0, Trainer's default), gradient clipping (1.0) and seed; each side keeps its own defaults for everything
else, which is the point. The last line printed is one JSON object with the figures and the ratios.

    python benchmarks/compare_hf.py --quick        # all four cases within 15 minutes on 2 CPU cores
    sftlab bench --quick                           # the same
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FROZEN_BLOCKS = 4


def matmul_gflops(dtype_name: str, repeats: int = 20) -> float:
    """Throughput of a BERT-layer-shaped matrix product (4096 tokens x 384 @ 384 x 1536) in GFLOP/s."""
    import torch

    from sftlab.runtime import matmul_gflops as measure

    return measure({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name], repeats=repeats)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _split_rows(dataset: str, train_samples: int, eval_samples: int) -> dict[str, list[dict[str, Any]]]:
    from sftlab.catalog.datasets import fetch_dataset

    paths = fetch_dataset(dataset)
    rows = {
        split: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for split, path in paths.items()
    }
    return {"train": rows["train"][:train_samples], "test": rows["test"][:eval_samples]}


def _non_embedding_parameters(model: Any) -> tuple[int, int]:
    """(trainable, frozen) parameter counts outside the embedding tables: the ones that do matmuls per token."""
    trainable = frozen = 0
    for name, parameter in model.named_parameters():
        if "embeddings" in name:
            continue
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            frozen += parameter.numel()
    return trainable, frozen


def worker_trainer(args: argparse.Namespace) -> dict[str, Any]:
    """Train (and evaluate) with transformers.Trainer."""
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from sftlab.catalog.models import resolve_model
    from sftlab.models import quiet_transformers
    from sftlab.runtime import cpu_has_fast_bf16

    quiet_transformers()
    rows = _split_rows(args.dataset, args.train_samples, args.eval_samples)
    labels = sorted({row["label"] for row in rows["train"]})
    label2id = {label: index for index, label in enumerate(labels)}
    location = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(location)

    def encode(split: str) -> list[dict[str, Any]]:
        encoded = tokenizer([row["text"] for row in rows[split]], truncation=True, max_length=args.max_length)
        return [
            {**{key: encoded[key][i] for key in encoded}, "labels": label2id[row["label"]]}
            for i, row in enumerate(rows[split])
        ]

    train, test = encode("train"), encode("test")
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        location, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    if args.case == "c":
        for parameter in model.bert.embeddings.parameters():
            parameter.requires_grad = False
        for block in model.bert.encoder.layer[:FROZEN_BLOCKS]:
            for parameter in block.parameters():
                parameter.requires_grad = False
    best = args.case in ("b",)
    bf16 = best and cpu_has_fast_bf16() if not torch.cuda.is_available() else best
    with tempfile.TemporaryDirectory() as scratch:
        training_args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=args.learning_rate,
            num_train_epochs=args.epochs,
            seed=args.seed,
            bf16=bf16,
            train_sampling_strategy="group_by_length" if best else "random",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        output = trainer.train()
        predictions = trainer.predict(test)
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    tokens = sum(len(example["input_ids"]) for example in train) * args.epochs
    runtime = output.metrics["train_runtime"]
    trainable, frozen = _non_embedding_parameters(model)
    return {
        "side": "trainer",
        "train_runtime_s": runtime,
        "train_samples_per_s": len(train) * args.epochs / runtime,
        "train_tokens_per_s": tokens / runtime,
        "accuracy": accuracy,
        "precision": "bf16" if bf16 else "fp32",
        "peak_rss_mb": _peak_rss_mb(),
        "trainable_non_embedding": trainable,
        "frozen_non_embedding": frozen,
    }


def shared_overrides(args: argparse.Namespace) -> list[str]:
    """The sftlab side's settings that both sides share: data, epochs, batch, rate, seed, schedule, no decay."""
    return [
        f"data.dataset={args.dataset}",
        f"data.max_train_samples={args.train_samples}",
        f"data.max_eval_samples={args.eval_samples}",
        f"data.max_length={args.max_length}",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}",
        f"train.learning_rate={args.learning_rate}",
        f"train.seed={args.seed}",
        # one evaluation at the very end, like the Trainer side: no best-epoch selection
        "train.eval_every=1000000000",
        "optim.weight_decay=0.0",
        "schedule.name=linear",
        "schedule.warmup_ratio=0.0",
        f"output_dir={args.output_dir}",
    ]


def worker_sftlab(args: argparse.Namespace) -> dict[str, Any]:
    """Train (and evaluate) with sftlab's own loop, at its defaults apart from the shared hyperparameters."""
    import sftlab

    overrides = ["model=minilm", *shared_overrides(args)]
    if args.case == "c":
        overrides += ["freeze.embeddings=true", f"freeze.bottom_layers={FROZEN_BLOCKS}"]
    result = sftlab.finetune({}, overrides=overrides, overwrite=True, echo=False)
    metrics = result.metrics
    peak_rss_mb = _peak_rss_mb()  # before loading the saved model again just to count its parameters
    predictor = sftlab.load(args.output_dir)
    # The saved model has every parameter trainable again, so case c's split comes from the block index.
    split = _frozen_split if args.case == "c" else _non_embedding_parameters
    trainable, frozen = split(predictor.model)
    return {
        "side": "sftlab",
        "train_runtime_s": metrics["train_runtime_s"],
        "train_samples_per_s": metrics["train_samples_per_s"],
        "train_tokens_per_s": metrics["train_tokens_per_s"],
        "accuracy": metrics["accuracy"],
        "precision": metrics["precision"],
        "peak_rss_mb": peak_rss_mb,
        "trainable_non_embedding": trainable,
        "frozen_non_embedding": frozen,
    }


def _frozen_split(model: Any) -> tuple[int, int]:
    trainable = frozen = 0
    for name, parameter in model.named_parameters():
        if "embeddings" in name:
            continue
        block = name.split("encoder.layer.")[1].split(".")[0] if "encoder.layer." in name else None
        if block is not None and int(block) < FROZEN_BLOCKS:
            frozen += parameter.numel()
        else:
            trainable += parameter.numel()
    return trainable, frozen


def worker_predict(args: argparse.Namespace) -> dict[str, Any]:
    """Label the test texts (repeated to a fixed count) with sftlab's Predictor or transformers.pipeline."""
    import torch

    rows = _split_rows(args.dataset, 0, args.eval_samples)["test"]
    texts = [row["text"] for row in rows]
    texts = (texts * (args.predict_samples // max(1, len(texts)) + 1))[: args.predict_samples]
    if args.side == "sftlab":
        import sftlab

        predictor = sftlab.load(args.output_dir)
        predictor.predict(texts[:8])
        start = time.perf_counter()
        labels = [p["label"] for p in predictor.predict(texts)]
    else:
        from transformers import pipeline

        from sftlab.models import quiet_transformers

        quiet_transformers()
        classifier = pipeline(
            "text-classification",
            model=str(Path(args.output_dir) / "model"),
            device="cpu" if not torch.cuda.is_available() else 0,
        )
        classifier(texts[:8])
        start = time.perf_counter()
        labels = [p["label"] for p in classifier(texts, batch_size=args.pipeline_batch_size, truncation=True)]
    seconds = time.perf_counter() - start
    return {"side": args.side, "seconds": seconds, "samples_per_s": len(texts) / seconds, "labels": labels,
            "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def _run_worker(worker: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, "-m", "sftlab.bench", "--worker", worker]
    settings = {**vars(args), **extra}
    for key in ("dataset", "train_samples", "eval_samples", "max_length", "epochs", "batch_size", "learning_rate",
                "seed", "case", "output_dir", "side", "predict_samples", "pipeline_batch_size"):  # fmt: skip
        if settings.get(key) is not None:
            command += [f"--{key.replace('_', '-')}", str(settings[key])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"worker {worker} {extra} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    gemm_before = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    print(
        f"matmul check before: fp32 {gemm_before['fp32']:.0f} GFLOP/s, bf16 {gemm_before['bf16']:.0f} GFLOP/s",
        flush=True,
    )
    results: dict[str, Any] = {}
    cases = {"a": (args.epochs, "full fine-tuning vs Trainer defaults"),
             "b": (args.epochs, "full fine-tuning vs Trainer at its best"),
             "c": (args.frozen_epochs, f"embeddings + bottom {FROZEN_BLOCKS} blocks frozen")}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        for case in args.cases:
            if case == "d":
                continue
            epochs, title = cases[case]
            # A B A B: the sides alternate so a noisy stretch of time hits both.
            # Repeat i uses seed + i on both sides: one-epoch accuracy moves by 1-2 points with the seed alone,
            # so accuracy is compared as a mean over seeds, speed as the median run.
            trainer_runs, sftlab_runs = [], []
            for repeat in range(args.repeats):
                seed = args.seed + repeat
                trainer_runs.append(_run_worker("trainer", args, case=case, epochs=epochs, seed=seed))
                sftlab_runs.append(
                    _run_worker(
                        "sftlab", args, case=case, epochs=epochs, seed=seed, output_dir=f"{scratch}/{case}"
                    )
                )
            trainer, ours = _median(trainer_runs), _median(sftlab_runs)
            results[case] = {"title": title, "epochs": epochs, "trainer": trainer, "sftlab": ours}
            print(_case_line(case, results[case]), flush=True)
        if "d" in args.cases:
            model_dir = f"{scratch}/a"
            if not Path(model_dir).exists():
                _run_worker("sftlab", args, case="a", epochs=args.epochs, output_dir=model_dir)
            pipeline_runs, sftlab_runs = [], []
            for _ in range(args.repeats):
                pipeline_runs.append(_run_worker("predict", args, side="pipeline", output_dir=model_dir))
                sftlab_runs.append(_run_worker("predict", args, side="sftlab", output_dir=model_dir))
            pipe, ours = _median(pipeline_runs, "samples_per_s"), _median(sftlab_runs, "samples_per_s")
            agreement = (
                sum(a == b for a, b in zip(pipe.pop("labels"), ours.pop("labels"), strict=True))
                / args.predict_samples
            )
            results["d"] = {
                "title": "inference vs transformers.pipeline",
                "pipeline": pipe,
                "sftlab": ours,
                "label_agreement": agreement,
            }
            print(f"d  predict: pipeline {pipe['samples_per_s']:.1f}/s, sftlab {ours['samples_per_s']:.1f}/s, "
                  f"speedup {ours['samples_per_s'] / pipe['samples_per_s']:.2f}x, labels agree {agreement:.4f}", flush=True)  # fmt: skip
    gemm_after = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    print(
        f"matmul check after: fp32 {gemm_after['fp32']:.0f} GFLOP/s, bf16 {gemm_after['bf16']:.0f} GFLOP/s",
        flush=True,
    )
    summary = _summary(results, gemm_before, gemm_after)
    print(_table(results))
    return summary


def _median(runs: list[dict[str, Any]], key: str = "train_samples_per_s") -> dict[str, Any]:
    """The median run by `key` (the slower of two), with every run's figure and, for training runs, the
    accuracy as mean and standard deviation over the runs (seeds)."""
    ordered = sorted(runs, key=lambda run: run[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_" + key] = [round(run[key], 2) for run in runs]
    if "accuracy" in runs[0]:
        accuracies = [run["accuracy"] for run in runs]
        chosen["runs_accuracy"] = [round(value, 4) for value in accuracies]
        chosen["accuracy"] = statistics.mean(accuracies)
        chosen["accuracy_std"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    chosen["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return chosen


def _case_line(case: str, result: dict[str, Any]) -> str:
    trainer, ours = result["trainer"], result["sftlab"]
    return (
        f"{case}  {result['title']}: Trainer {trainer['train_samples_per_s']:.1f} samples/s (acc {trainer['accuracy']:.4f}), "
        f"sftlab {ours['train_samples_per_s']:.1f} samples/s (acc {ours['accuracy']:.4f}), "
        f"speedup {ours['train_samples_per_s'] / trainer['train_samples_per_s']:.2f}x"
    )


def _table(results: dict[str, Any]) -> str:
    lines = [
        "",
        "| case | side | samples/s | tokens/s | train s | accuracy (mean ± std over seeds) | peak RSS MB | precision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, result in results.items():
        if case == "d":
            for side in ("pipeline", "sftlab"):
                row = result[side]
                lines.append(
                    f"| d | {side} | {row['samples_per_s']:.1f} | | {row['seconds']:.1f} | | {row['peak_rss_mb']:.0f} | |"
                )
            continue
        for side in ("trainer", "sftlab"):
            row = result[side]
            lines.append(
                f"| {case} | {side} | {row['train_samples_per_s']:.1f} | {row['train_tokens_per_s']:.0f} | "
                f"{row['train_runtime_s']:.1f} | {row['accuracy']:.4f} ± {row['accuracy_std']:.4f} | "
                f"{row['peak_rss_mb']:.0f} | {row['precision']} |"
            )
    return "\n".join(lines)


def _summary(
    results: dict[str, Any], gemm_before: dict[str, float], gemm_after: dict[str, float]
) -> dict[str, Any]:
    summary: dict[str, Any] = {"matmul_gflops_before": gemm_before, "matmul_gflops_after": gemm_after}
    names = {"a": "full_default", "b": "full_best", "c": "frozen"}
    memory_ratios = []
    for case, name in names.items():
        if case not in results:
            continue
        trainer, ours = results[case]["trainer"], results[case]["sftlab"]
        summary[f"{name}_speedup"] = round(ours["train_samples_per_s"] / trainer["train_samples_per_s"], 3)
        summary[f"{name}_accuracy_delta_points"] = round(100 * (ours["accuracy"] - trainer["accuracy"]), 2)
        summary[f"{name}_accuracy_runs"] = {
            "trainer": trainer["runs_accuracy"],
            "sftlab": ours["runs_accuracy"],
        }
        summary[f"{name}_samples_per_s"] = {
            "trainer": round(trainer["train_samples_per_s"], 2),
            "sftlab": round(ours["train_samples_per_s"], 2),
        }
        memory_ratios.append(ours["peak_rss_mb"] / trainer["peak_rss_mb"])
    if "d" in results:
        pipe, ours = results["d"]["pipeline"], results["d"]["sftlab"]
        summary["predict_speedup"] = round(ours["samples_per_s"] / pipe["samples_per_s"], 3)
        summary["predict_label_agreement"] = results["d"]["label_agreement"]
        memory_ratios.append(ours["peak_rss_mb"] / pipe["peak_rss_mb"])
    if memory_ratios:
        summary["peak_memory_ratio"] = round(max(memory_ratios), 3)
    if "a" in results:
        ours = results["a"]["sftlab"]
        # Model FLOPs: 6 per trainable non-embedding parameter per token (forward + backward); attention's
        # own score/value products are left out (small at these lengths), so this slightly undercounts.
        flops = 6 * ours["trainable_non_embedding"] * ours["train_tokens_per_s"]
        peak = statistics.mean([gemm_before[ours["precision"]], gemm_after[ours["precision"]]]) * 1e9
        summary["mfu"] = round(flops / peak, 4)
        summary["mfu_precision"] = ours["precision"]
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftlab bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: all four cases within 15 minutes on 2 cores"
    )
    parser.add_argument("--dataset", default="trec6")
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=None)
    parser.add_argument("--predict-samples", type=int, default=None)
    parser.add_argument("--pipeline-batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--frozen-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=None, help="runs per side per case (median reported)")
    parser.add_argument("--cases", default="abcd", help="which cases to run, e.g. 'ad'")
    parser.add_argument(
        "--task",
        default="classification",
        choices=["classification", *TASK_BENCHMARKS],
        help="classification: the cases above; the others run benchmarks/bench_tasks.py or bench_causal_lm.py",
    )
    parser.add_argument("--worker", choices=["trainer", "sftlab", "predict"], help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    return parser


TASK_BENCHMARKS = {
    "token_classification": "bench_tasks.py",
    "question_answering": "bench_tasks.py",
    "seq2seq": "bench_tasks.py",
    "causal_lm": "bench_causal_lm.py",
}
"""`--task` -> the script in benchmarks/ that measures it (its `main(argv)`); classification is this module."""


def run_task_benchmark(task: str, argv: list[str]) -> int:
    """Hand `argv` to the benchmark script of `task` in the source checkout's benchmarks/ folder."""
    import importlib.util

    from sftlab.errors import SftlabError

    path = Path(__file__).resolve().parents[2] / "benchmarks" / TASK_BENCHMARKS[task]
    if not path.is_file():
        raise SftlabError(
            f"--task {task}: its benchmark {path.name} is not at {path} (it lives in the benchmarks/ folder "
            "of a source checkout of sftlab)"
        )
    spec = importlib.util.spec_from_file_location(f"sftlab_benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return int(module.main(argv) or 0)


def _task_of(argv: list[str]) -> tuple[str, list[str]]:
    """(the --task value, argv without it for classification); classification when absent."""
    for index, arg in enumerate(argv):
        if arg == "--task" and index + 1 < len(argv):
            return argv[index + 1], argv[:index] + argv[index + 2 :]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1], argv[:index] + argv[index + 1 :]
    return "classification", argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    task, rest = _task_of(argv)
    if task != "classification":
        if task not in TASK_BENCHMARKS:
            from sftlab.errors import SftlabError

            choices = ", ".join(["classification", *TASK_BENCHMARKS])
            raise SftlabError(f"--task {task!r} is not one of {choices}")
        return run_task_benchmark(task, argv if TASK_BENCHMARKS[task] == "bench_tasks.py" else rest)
    args = build_parser().parse_args(rest)
    if args.worker:
        worker = {"trainer": worker_trainer, "sftlab": worker_sftlab, "predict": worker_predict}[args.worker]
        print(json.dumps(worker(args)))
        return 0
    defaults = {"train_samples": 4360, "eval_samples": 546, "predict_samples": 2000, "repeats": 3} if args.quick else {
        "train_samples": 4360, "eval_samples": 546, "predict_samples": 5000, "repeats": 5}  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.cases = [case for case in args.cases if case in "abcd"]
    summary = orchestrate(args)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
