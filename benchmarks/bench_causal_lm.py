"""sftlab against TRL's SFTTrainer and transformers.pipeline on causal LM work: `python benchmarks/bench_causal_lm.py --quick`.

Same style as `compare_hf.py`: each side of each case runs in its own subprocess (its own peak memory, no
shared warm caches), the sides alternate (TRL, sftlab, TRL, sftlab, ...), a matrix-multiply check runs
before and after, and the last line printed is one JSON object with the figures and the ratios.

Cases (SmolLM2-135M-Instruct, built in; CommonsenseQA instructions, built in; completion-only loss):
  full      full fine-tuning: SFTTrainer at its best here vs sftlab at its defaults
  lora      LoRA r=16 on every linear layer, the same two sides
  generate  `sftlab predict` (Predictor) vs `pipeline("text-generation")`, batched, greedy, same prompts
  ablation  sftlab alone with each causal-LM lever off in turn (chunked loss, packing), and the memory
            case the chunked loss is for: LoRA, loss on every token (data.completion_only_loss=false)

Both training sides get exactly the same tokens: the TRL side receives sftlab's own tokenization (input_ids
and labels, -100 on prompts) in the order of sftlab's first-epoch plan, with sequential sampling, so step 1
sees the same examples on both sides and the logged step-1 training losses must agree (printed, and in the
JSON as a relative difference). Same model, learning rate, linear schedule without warmup, weight decay 0,
gradient clipping 1.0, seed, bf16 autocast. SFTTrainer "at its best" on this CPU: padding_free=True (each
batch flattened into one row, positions restarting per example: what its `bfd` packing also uses), its
fused chunked LM head (on by default in TRL 1.x), completion-only loss (the labels), gradient checkpointing
off (its default is on, which trades ~30% speed for memory). tokens/s counts the real (non-padding)
tokens of the training examples.

    python benchmarks/bench_causal_lm.py --quick          # all cases, ~10 minutes on 2 CPU cores
    python benchmarks/bench_causal_lm.py --cases full,generate
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

MODEL = "smollm2"
DATASET = "commonsense_qa"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}


def matmul_gflops(dtype_name: str, repeats: int = 20) -> float:
    import torch

    from sftlab.runtime import matmul_gflops as measure

    return measure({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name], repeats=repeats)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _shared_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [
        "task=causal_lm",
        f"model={MODEL}",
        f"data.dataset={DATASET}",
        f"data.max_train_samples={args.train_samples}",
        f"data.max_eval_samples={args.eval_samples}",
        f"data.max_length={args.max_length}",
        "train.epochs=1",
        f"train.batch_size={args.batch_size}",
        f"train.learning_rate={args.learning_rate}",
        f"train.seed={args.seed}",
        "train.eval_every=1000000000",
        "train.log_every=1",
        "train.keep_last=0",
        "optim.weight_decay=0.0",
        "schedule.name=linear",
        "schedule.warmup_ratio=0.0",
        "generate.eval_samples=0",
    ]
    if args.case == "lora":
        overrides += ["adapter.type=lora", f"adapter.r={LORA['r']}", f"adapter.alpha={LORA['alpha']}",
                      f"adapter.dropout={LORA['dropout']}", "adapter.target_modules=all-linear"]  # fmt: skip
    return overrides + list(args.extra or [])


def _sftlab_examples(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[int], Any]:
    """sftlab's tokenized training examples, the order its first epoch visits them, and the config."""
    from sftlab.config import load_config
    from sftlab.data.batching import plan_steps
    from sftlab.data.loading import load_tables
    from sftlab.models import load_tokenizer, locate_model
    from sftlab.tasks import task_class

    config = load_config({}, overrides=_shared_overrides(args))
    tables = load_tables(config.data)
    task = task_class(config.task).from_config(config, tables)
    tokenizer = load_tokenizer(locate_model(config.model), config.model, config.trust_remote_code)
    examples = task.encode(tokenizer, tables["train"])
    train = config.train
    steps = plan_steps([len(e["input_ids"]) for e in examples], train.batch_size, 1, train.micro_batch_size,
                       train.group_by_length, train.seed, epoch=0, chunk_batches=train.group_chunk_batches)  # fmt: skip
    batches = [batch for step in steps for batch in step]
    # Sequential batches of batch_size reproduce the plan only if every batch but the last is full.
    assert all(len(batch) == args.batch_size for batch in batches[:-1]), "plan with short batches"
    return examples, [i for batch in batches for i in batch], config


def worker_trl(args: argparse.Namespace) -> dict[str, Any]:
    """Train with TRL's SFTTrainer on sftlab's tokens, in sftlab's order."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from sftlab.models import locate_model, quiet_transformers

    quiet_transformers()
    examples, order, _ = _sftlab_examples(args)
    rows = [{"input_ids": examples[i]["input_ids"], "labels": examples[i]["labels"]} for i in order]
    location = locate_model(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(location)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    peft_config = None
    if args.case == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                 target_modules="all-linear", task_type="CAUSAL_LM")  # fmt: skip
    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, _args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(
            output_dir=scratch,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            num_train_epochs=1,
            seed=args.seed,
            bf16=True,
            padding_free=True,
            gradient_checkpointing=False,
            max_length=None,  # sftlab's tokens are already cut to max_length; padding_free refuses one
            train_sampling_strategy="sequential",
            lr_scheduler_type="linear",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            dataset_kwargs={"skip_prepare_dataset": True},
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[Losses()])  # fmt: skip
        output = trainer.train()
    runtime = output.metrics["train_runtime"]
    tokens = sum(len(row["input_ids"]) for row in rows)
    return {"side": "trl", "train_runtime_s": runtime, "train_tokens_per_s": tokens / runtime,
            "tokens": tokens, "steps": len(losses), "step1_loss": losses[0], "mean_loss": statistics.mean(losses),
            "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def worker_sftlab(args: argparse.Namespace) -> dict[str, Any]:
    import sftlab

    overrides = [*_shared_overrides(args), f"output_dir={args.output_dir}"]
    result = sftlab.finetune({}, overrides=overrides, overwrite=True, echo=False)
    metrics = result.metrics
    losses = [record["train/loss"] for record in result.log_history if "train/loss" in record]
    return {"side": "sftlab", "train_runtime_s": metrics["train_runtime_s"],
            "train_tokens_per_s": metrics["train_tokens_per_s"], "tokens": result.state.tokens_seen,
            "steps": len(losses), "step1_loss": losses[0], "mean_loss": statistics.mean(losses),
            "test_loss": metrics["loss"], "levers": metrics.get("speed_levers"),
            "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def _prompts(args: argparse.Namespace) -> list[str]:
    from sftlab.catalog.datasets import fetch_dataset

    path = fetch_dataset(DATASET)["test"]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [row["prompt"] for row in rows]
    return (prompts * (args.predict_samples // len(prompts) + 1))[: args.predict_samples]


def worker_generate(args: argparse.Namespace) -> dict[str, Any]:
    """Greedy answers to the same prompts: sftlab's Predictor or transformers.pipeline, batched."""
    import torch

    prompts = _prompts(args)
    if args.side == "sftlab":
        import sftlab

        predictor = sftlab.load(args.output_dir)
        predictor.predict(prompts[:4])
        start = time.perf_counter()
        answers = [p["answer"] for p in predictor.predict(prompts, batch_size=args.generate_batch_size)]
    else:
        from transformers import AutoTokenizer, pipeline

        from sftlab.models import quiet_transformers

        quiet_transformers()
        model_dir = str(Path(args.output_dir) / "model")
        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")  # batched decoding
        generator = pipeline("text-generation", model=model_dir, tokenizer=tokenizer, dtype=torch.float32,
                             device="cpu" if not torch.cuda.is_available() else 0)  # fmt: skip
        settings = {"max_new_tokens": args.max_new_tokens, "do_sample": False, "return_full_text": False,
                    "batch_size": args.generate_batch_size}  # fmt: skip
        chats = [[{"role": "user", "content": prompt}] for prompt in prompts]
        generator(chats[:4], **settings)
        start = time.perf_counter()
        texts = [output[0]["generated_text"] for output in generator(chats, **settings)]
        # A chat input can come back as the conversation with the reply appended.
        answers = [(text[-1]["content"] if isinstance(text, list) else text).strip() for text in texts]
    seconds = time.perf_counter() - start
    return {"side": args.side, "seconds": seconds, "prompts_per_s": len(prompts) / seconds, "answers": answers,
            "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


WORKERS = {"trl": worker_trl, "sftlab": worker_sftlab, "generate": worker_generate}


def _run_worker(worker: str, args: argparse.Namespace, **changes: Any) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", worker]
    settings = {**vars(args), **changes}
    for key in ("train_samples", "eval_samples", "predict_samples", "max_length", "batch_size", "learning_rate",
                "seed", "case", "side", "output_dir", "max_new_tokens", "generate_batch_size"):  # fmt: skip
        if settings.get(key) is not None:
            command += [f"--{key.replace('_', '-')}", str(settings[key])]
    for override in settings.get("extra") or []:
        command += ["--extra", override]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"worker {worker} {changes} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The median run by `key` (the slower of two), with every run's figure; peak memory is the largest."""
    ordered = sorted(runs, key=lambda run: run[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_" + key] = [round(run[key], 2) for run in runs]
    chosen["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return chosen


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    gemm_before = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    print(f"matmul check before: fp32 {gemm_before['fp32']:.0f} GFLOP/s, bf16 {gemm_before['bf16']:.0f} GFLOP/s",
          flush=True)  # fmt: skip
    summary: dict[str, Any] = {"matmul_gflops_before": gemm_before}
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in ("full", "lora"):
            if case not in args.cases:
                continue
            try:
                summary[case] = training_case(args, case, scratch, rows)
            except RuntimeError as error:  # one failing case must not cost the others' figures
                summary[case] = {"error": str(error)[-1500:]}
                print(f"{case}: FAILED {str(error)[-1500:]}", flush=True)
        if "generate" in args.cases:
            try:
                summary["generate"] = generate_case(args, scratch, rows)
            except RuntimeError as error:
                summary["generate"] = {"error": str(error)[-1500:]}
                print(f"generate: FAILED {str(error)[-1500:]}", flush=True)
        if "ablation" in args.cases:
            try:
                summary["ablation"] = ablation(args, scratch, rows)
            except RuntimeError as error:
                summary["ablation"] = {"error": str(error)[-1500:]}
                print(f"ablation: FAILED {str(error)[-1500:]}", flush=True)
    gemm_after = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    summary["matmul_gflops_after"] = gemm_after
    print(f"matmul check after: fp32 {gemm_after['fp32']:.0f} GFLOP/s, bf16 {gemm_after['bf16']:.0f} GFLOP/s")
    print(
        "\n| case | side | tokens/s | train s | step-1 loss | mean train loss | peak RSS MB |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))
    return summary


def training_case(args: argparse.Namespace, case: str, scratch: str, rows: list[str]) -> dict[str, Any]:
    """SFTTrainer and sftlab alternating, `args.repeats` runs each; the median run by tokens/s."""
    trl_runs, sftlab_runs = [], []
    for _ in range(args.repeats):  # A B A B: a noisy stretch of time hits both sides
        trl_runs.append(_run_worker("trl", args, case=case))
        sftlab_runs.append(_run_worker("sftlab", args, case=case, output_dir=f"{scratch}/{case}"))
    trl, ours = _median(trl_runs, "train_tokens_per_s"), _median(sftlab_runs, "train_tokens_per_s")
    agree = abs(ours["step1_loss"] - trl["step1_loss"]) / trl["step1_loss"]
    speedup = ours["train_tokens_per_s"] / trl["train_tokens_per_s"]
    result = {
        "speedup": round(speedup, 3),
        "tokens_per_s": {"trl": round(trl["train_tokens_per_s"], 1), "sftlab": round(ours["train_tokens_per_s"], 1)},
        "runs_tokens_per_s": {"trl": trl["runs_train_tokens_per_s"], "sftlab": ours["runs_train_tokens_per_s"]},
        "tokens": {"trl": trl["tokens"], "sftlab": ours["tokens"]},
        "steps": {"trl": trl["steps"], "sftlab": ours["steps"]},
        "step1_loss": {"trl": round(trl["step1_loss"], 4), "sftlab": round(ours["step1_loss"], 4)},
        "step1_loss_relative_difference": round(agree, 5),
        "mean_train_loss": {"trl": round(trl["mean_loss"], 4), "sftlab": round(ours["mean_loss"], 4)},
        "peak_rss_mb": {"trl": round(trl["peak_rss_mb"]), "sftlab": round(ours["peak_rss_mb"])},
        "peak_memory_ratio": round(ours["peak_rss_mb"] / trl["peak_rss_mb"], 3),
    }  # fmt: skip
    print(f"{case}: SFTTrainer {trl['train_tokens_per_s']:.0f} tokens/s, sftlab {ours['train_tokens_per_s']:.0f} "
          f"tokens/s, speedup {speedup:.2f}x | step-1 loss {trl['step1_loss']:.4f} vs {ours['step1_loss']:.4f} | "
          f"peak RSS {trl['peak_rss_mb']:.0f} vs {ours['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    for side, row in (("SFTTrainer", trl), ("sftlab", ours)):
        rows.append(f"| {case} | {side} | {row['train_tokens_per_s']:.0f} | {row['train_runtime_s']:.1f} | "
                    f"{row['step1_loss']:.4f} | {row['mean_loss']:.4f} | {row['peak_rss_mb']:.0f} |")  # fmt: skip
    return result


def generate_case(args: argparse.Namespace, scratch: str, rows: list[str]) -> dict[str, Any]:
    """Predictor and pipeline alternating on a fully fine-tuned run's model."""
    model_dir = f"{scratch}/full"
    if not Path(model_dir).exists():
        _run_worker("sftlab", args, case="full", output_dir=model_dir)
    pipeline_runs, sftlab_runs = [], []
    for _ in range(args.repeats):
        pipeline_runs.append(_run_worker("generate", args, side="pipeline", output_dir=model_dir))
        sftlab_runs.append(_run_worker("generate", args, side="sftlab", output_dir=model_dir))
    pipe, ours = _median(pipeline_runs, "prompts_per_s"), _median(sftlab_runs, "prompts_per_s")
    same = sum(a == b for a, b in zip(pipe.pop("answers"), ours.pop("answers"), strict=True))
    speedup = ours["prompts_per_s"] / pipe["prompts_per_s"]
    result = {
        "speedup": round(speedup, 3),
        "prompts_per_s": {"pipeline": round(pipe["prompts_per_s"], 2), "sftlab": round(ours["prompts_per_s"], 2)},
        "runs_prompts_per_s": {"pipeline": pipe["runs_prompts_per_s"], "sftlab": ours["runs_prompts_per_s"]},
        "same_answers": round(same / args.predict_samples, 4),
        "peak_rss_mb": {"pipeline": round(pipe["peak_rss_mb"]), "sftlab": round(ours["peak_rss_mb"])},
    }  # fmt: skip
    print(f"generate: pipeline {pipe['prompts_per_s']:.2f} prompts/s, sftlab {ours['prompts_per_s']:.2f} "
          f"prompts/s, speedup {speedup:.2f}x, same answers {same}/{args.predict_samples}", flush=True)  # fmt: skip
    for side, row in (("pipeline", pipe), ("sftlab", ours)):
        rows.append(f"| generate | {side} | {row['prompts_per_s']:.2f} prompts/s | {row['seconds']:.1f} | | | "
                    f"{row['peak_rss_mb']:.0f} |")  # fmt: skip
    return result


ABLATION = {
    "defaults": [],
    "chunked loss off": ["train.chunked_loss=false"],
    "packing off": ["data.packing=false"],
    "both off": ["train.chunked_loss=false", "data.packing=false"],
}


def ablation(args: argparse.Namespace, scratch: str, rows: list[str]) -> dict[str, Any]:
    """sftlab alone, each lever off in turn (full fine-tuning); then the chunked loss where logits dominate
    memory: LoRA with the loss on every token."""
    results: dict[str, Any] = {}
    for name, overrides in ABLATION.items():
        run = _run_worker("sftlab", args, case="full", output_dir=f"{scratch}/ablation", extra=overrides)
        results[name] = {"tokens_per_s": round(run["train_tokens_per_s"], 1), "peak_rss_mb": round(run["peak_rss_mb"]),
                         "step1_loss": round(run["step1_loss"], 4), "mean_loss": round(run["mean_loss"], 4)}  # fmt: skip
        rows.append(f"| ablation full | sftlab, {name} | {run['train_tokens_per_s']:.0f} | {run['train_runtime_s']:.1f} | "
                    f"{run['step1_loss']:.4f} | {run['mean_loss']:.4f} | {run['peak_rss_mb']:.0f} |")  # fmt: skip
        print(
            f"ablation {name}: {run['train_tokens_per_s']:.0f} tokens/s, peak RSS {run['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    every_token = ["data.completion_only_loss=false", f"train.batch_size={args.memory_batch_size}"]
    memory = {}
    for name, overrides in (("chunked", []), ("plain", ["train.chunked_loss=false"])):
        run = _run_worker(
            "sftlab", args, case="lora", output_dir=f"{scratch}/memory", extra=every_token + overrides
        )
        memory[name] = run
        rows.append(f"| LoRA, every token | sftlab, loss {name} | {run['train_tokens_per_s']:.0f} | {run['train_runtime_s']:.1f} | "
                    f"{run['step1_loss']:.4f} | {run['mean_loss']:.4f} | {run['peak_rss_mb']:.0f} |")  # fmt: skip
    results["every_token_lora"] = {
        name: {"tokens_per_s": round(run["train_tokens_per_s"], 1), "peak_rss_mb": round(run["peak_rss_mb"])}
        for name, run in memory.items()
    }
    results["every_token_lora"]["peak_memory_reduction"] = round(
        1 - memory["chunked"]["peak_rss_mb"] / memory["plain"]["peak_rss_mb"], 3
    )
    print(f"ablation LoRA every token: peak RSS chunked {memory['chunked']['peak_rss_mb']:.0f} MB vs plain "
          f"{memory['plain']['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_causal_lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: every case in ~10 minutes on 2 cores"
    )
    parser.add_argument("--cases", default="full,lora,generate,ablation", help="comma-separated")
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=8)
    parser.add_argument("--predict-samples", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--memory-batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--generate-batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None, help="runs per side per case (median reported)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    parser.add_argument("--extra", action="append", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return 0
    defaults = {"train_samples": 96, "predict_samples": 64, "repeats": 2} if args.quick else {
        "train_samples": 400, "predict_samples": 122, "repeats": 3}  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    import importlib.util

    if {"full", "lora"} & set(args.cases) and importlib.util.find_spec("trl") is None:
        print("sftlab bench --task causal_lm: the full and lora cases compare with TRL's SFTTrainer, which is "
              "not installed: pip install -e '.[bench]' (or run --cases generate)", file=sys.stderr)  # fmt: skip
        return 2
    summary = orchestrate(args)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
