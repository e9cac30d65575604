"""sftlab against Hugging Face Trainer / Seq2SeqTrainer on token classification, QA and seq2seq.

    python benchmarks/compare_hf.py --task token_classification --quick   # or: sftlab bench --task ...
    python benchmarks/compare_hf.py --task question_answering --quick
    python benchmarks/compare_hf.py --task seq2seq --quick

As `sftlab.bench` does for classification: each side of each seed runs in its own subprocess (peak memory
is its own), the sides alternate (Trainer, sftlab, Trainer, sftlab, ...) so a noisy stretch hits both, and
a matrix-multiply check runs before and after. Both sides get the same model (all-MiniLM-L6-v2; BERT2BERT
from it for seq2seq), the same rows, batch size, learning rate, schedule (linear, no warmup), weight decay
(0), gradient clipping (1.0) and seeds. The Trainer side runs at its best here: dynamic padding to a
multiple of 8 (the run_* scripts' option; fewer shapes also keep the CPU matrix library's kernel cache,
and so memory, small), `group_by_length`, and bf16 where sftlab's probe finds bf16 fast (the same probe sftlab's `precision: auto`
uses). Quality is scored by the same code on both sides (seqeval-style entity F1; SQuAD EM/F1 after n-best
decoding with the null threshold tuned on validation; sacreBLEU and per-token test loss), so a difference
is a difference in training. The last line printed is one JSON object with the figures and the ratios.

- token_classification: WNUT-16 tweets, `DataCollatorForTokenClassification`, the first sub-token of
  each word labelled (run_ner's default).
- question_answering: DisflQA, run_qa's windowed preprocessing (max_length 384, doc_stride 128, offsets,
  [CLS] for windows without the answer), n-best 20, answers of at most 30 tokens.
- seq2seq: Spanish -> English Bible verses, `Seq2SeqTrainer` with `DataCollatorForSeq2Seq` against
  sftlab's seq2seq task, the same warm-started BERT2BERT (`sftlab.models.load_encoder_decoder`); both
  models generate greedily (64 new tokens at most) with sftlab's generation code for BLEU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from sftlab.bench import _peak_rss_mb, matmul_gflops, shared_overrides

# Per task: dataset, rows, lengths, hyperparameters and the quality figures compared (higher is better
# unless listed in `lower_is_better`); `quick` overrides for --quick.
TASKS: dict[str, dict[str, Any]] = {
    "token_classification": {
        "dataset": "wnut16", "train_samples": 1916, "eval_samples": 239, "max_length": 96, "epochs": 3,
        "batch_size": 16, "learning_rate": 1e-4, "repeats": 5, "quality": ["entity_f1"],
        "quick": {"repeats": 3, "epochs": 2},
    },
    "question_answering": {
        "dataset": "disflqa", "train_samples": 700, "eval_samples": 200, "max_length": 384, "epochs": 2,
        "batch_size": 16, "learning_rate": 1e-4, "repeats": 3, "quality": ["exact_match", "f1"],
        "quick": {"repeats": 2},
    },
    "seq2seq": {
        "dataset": "bible_en_es", "train_samples": 8000, "eval_samples": 200, "max_length": 96, "epochs": 1,
        "batch_size": 32, "learning_rate": 1e-4, "repeats": 3, "quality": ["bleu", "loss"],
        "lower_is_better": ["loss"], "quick": {"train_samples": 2000, "eval_samples": 100, "repeats": 2},
    },
}  # fmt: skip
DOC_STRIDE = 128
MAX_ANSWER_LENGTH = 30
N_BEST = 20
MAX_NEW_TOKENS = 64


def _rows(dataset: str, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """The first rows of each split: what sftlab's data.max_train_samples / max_eval_samples take."""
    from sftlab.catalog.datasets import fetch_dataset

    out = {}
    for split, path in fetch_dataset(dataset).items():
        limit = args.train_samples if split == "train" else args.eval_samples
        lines = path.read_text(encoding="utf-8").splitlines()[:limit]
        out[split] = [json.loads(line) for line in lines]
    return out


def _training_arguments(args: argparse.Namespace, scratch: str, seq2seq: bool = False) -> Any:
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    from sftlab.runtime import cpu_has_fast_bf16

    bf16 = cpu_has_fast_bf16() if not torch.cuda.is_available() else True
    settings = dict(
        output_dir=scratch, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        learning_rate=args.learning_rate, num_train_epochs=args.epochs, seed=args.seed, bf16=bf16,
        train_sampling_strategy="group_by_length", save_strategy="no", eval_strategy="no",
        logging_strategy="no", report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    if seq2seq:
        return Seq2SeqTrainingArguments(**settings)
    return TrainingArguments(**settings)


def _trainer_result(output: Any, samples: int, tokens: int, args: argparse.Namespace, **quality: Any) -> dict[str, Any]:  # fmt: skip
    runtime = output.metrics["train_runtime"]
    return {
        "side": "trainer",
        "train_runtime_s": runtime,
        "train_samples_per_s": samples * args.epochs / runtime,
        "train_tokens_per_s": tokens * args.epochs / runtime,
        "train_samples": samples,
        "peak_rss_mb": _peak_rss_mb(),
        **quality,
    }


def trainer_token_classification(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import (  # fmt: skip
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
    )

    from sftlab.catalog.models import resolve_model
    from sftlab.evaluation.entities import entity_metrics

    rows = _rows(args.dataset, args)
    labels = sorted({tag for row in rows["train"] for tag in row["tags"]}, key=lambda t: (t != "O", t[2:], t))
    label2id = {label: index for index, label in enumerate(labels)}
    location = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(location)

    def encode(split: str) -> list[dict[str, Any]]:  # run_ner's tokenize_and_align_labels
        words = [row["tokens"] for row in rows[split]]
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=args.max_length)
        features = []
        for index, row in enumerate(rows[split]):
            word_ids, previous, aligned = encoded.word_ids(index), None, []
            for word in word_ids:
                tag = row["tags"][word] if word is not None else None
                aligned.append(-100 if word is None or word == previous else label2id.get(tag, 0))
                previous = word
            features.append({**{key: encoded[key][index] for key in encoded}, "labels": aligned})
        return features

    train, test = encode("train"), encode("test")
    torch.manual_seed(args.seed)
    model = AutoModelForTokenClassification.from_pretrained(
        location, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(model=model, args=_training_arguments(args, scratch), train_dataset=train,
                          data_collator=DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8))  # fmt: skip
        output = trainer.train()
        predictions = _predict_in_order(trainer, test)
    guesses = np.argmax(predictions.predictions, -1)
    true_tags, pred_tags = [], []
    for row, feature, guess in zip(rows["test"], test, guesses, strict=True):
        firsts = [p for p, label in enumerate(feature["labels"]) if label != -100]
        predicted = [labels[guess[p]] for p in firsts] + ["O"] * (len(row["tags"]) - len(firsts))
        true_tags.append(row["tags"])
        pred_tags.append(predicted)
    metrics = entity_metrics(true_tags, pred_tags)
    tokens = sum(len(f["input_ids"]) for f in train)
    return _trainer_result(
        output, len(train), tokens, args, entity_f1=metrics["entity_f1"], precision=_precision(trainer)
    )


def _predict_in_order(trainer: Any, features: list[dict[str, Any]]) -> Any:
    """`trainer.predict` with rows in the order given. Under `train_sampling_strategy="group_by_length"`
    transformers 5's Trainer also length-groups (and shuffles) its evaluation batches, and `predict` then
    returns the rows in that order; the training order is not needed any more, so it goes back to random."""
    trainer.args.train_sampling_strategy = "random"
    return trainer.predict(features)


def _precision(trainer: Any) -> str:
    return "bf16" if trainer.args.bf16 else "fp32"


def trainer_question_answering(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, Trainer

    from sftlab.catalog.models import resolve_model
    from sftlab.evaluation.squad import squad_metrics
    from sftlab.tasks.question_answering import QuestionAnsweringTask, best_threshold

    rows = _rows(args.dataset, args)
    location = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(location)

    def features(split: str) -> list[dict[str, Any]]:  # run_qa's prepare_train/validation_features
        questions = [row["question"].lstrip() for row in rows[split]]
        contexts = [row["context"] for row in rows[split]]
        encoded = tokenizer(questions, contexts, truncation="only_second", max_length=args.max_length,
                            stride=DOC_STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True)  # fmt: skip
        out = []
        for index, example in enumerate(encoded["overflow_to_sample_mapping"]):
            sequence_ids = encoded.sequence_ids(index)
            offsets = encoded["offset_mapping"][index]
            answers = rows[split][example]["answers"]
            start_position = end_position = 0  # [CLS]: no answer, or not in this window
            if answers["answer_start"]:
                start_char = answers["answer_start"][0]
                end_char = start_char + len(answers["text"][0])
                first = sequence_ids.index(1)
                last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
                if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                    start_position = first
                    while start_position <= last and offsets[start_position][0] <= start_char:
                        start_position += 1
                    start_position -= 1
                    end_position = last
                    while end_position >= first and offsets[end_position][1] >= end_char:
                        end_position -= 1
                    end_position += 1
            out.append({
                "input_ids": encoded["input_ids"][index], "token_type_ids": encoded["token_type_ids"][index],
                "attention_mask": encoded["attention_mask"][index], "start_positions": start_position,
                "end_positions": end_position, "example": example, "context": contexts[example],
                "offsets": [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence_ids, strict=True)],
            })  # fmt: skip
        return out

    model_keys = ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions")
    train = features("train")
    torch.manual_seed(args.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(location)
    task = QuestionAnsweringTask(max_length=args.max_length, doc_stride=DOC_STRIDE,
                                 max_answer_length=MAX_ANSWER_LENGTH, n_best=N_BEST)  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(model=model, args=_training_arguments(args, scratch),
                          train_dataset=[{k: f[k] for k in model_keys} for f in train],
                          data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8))  # fmt: skip
        output = trainer.train()
        decoded = {}
        for split in ("validation", "test"):
            split_features = features(split)
            predicted = _predict_in_order(
                trainer, [{k: f[k] for k in model_keys[:3]} for f in split_features]
            )
            starts, ends = predicted.predictions
            logits = [(torch.tensor(starts[i, : len(f["input_ids"])]).float(),
                       torch.tensor(ends[i, : len(f["input_ids"])]).float()) for i, f in enumerate(split_features)]  # fmt: skip
            golds = [row["answers"]["text"] for row in rows[split]]
            decoded[split] = (task.candidates(split_features, logits), golds)
    threshold = best_threshold(*decoded["validation"])[0]  # as sftlab's null_threshold: auto
    candidates, golds = decoded["test"]
    metrics = squad_metrics([task.choose(c, threshold)["answer"] for c in candidates], golds)
    tokens = sum(len(f["input_ids"]) for f in train)
    return _trainer_result(output, len(train), tokens, args, exact_match=metrics["exact_match"],
                           f1=metrics["f1"], precision=_precision(trainer))  # fmt: skip


def trainer_seq2seq(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer

    from sftlab.catalog.models import resolve_model
    from sftlab.config import GenerationConfig
    from sftlab.evaluation.generation_metrics import generation_metrics
    from sftlab.models import load_encoder_decoder
    from sftlab.tasks.seq2seq import Seq2SeqTask

    rows = _rows(args.dataset, args)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))

    def encode(split: str) -> list[dict[str, Any]]:
        sources = tokenizer([row["es"] for row in rows[split]], truncation=True, max_length=args.max_length)
        targets = tokenizer(text_target=[row["en"] for row in rows[split]], truncation=True,
                            max_length=args.max_length)["input_ids"]  # fmt: skip
        # The decoder starts from [CLS]: the target drops its own leading [CLS] (as sftlab's task does).
        return [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": target[1:]}
                for ids, target in zip(sources["input_ids"], targets, strict=True)]  # fmt: skip

    train, test = encode("train"), encode("test")
    torch.manual_seed(args.seed)
    model = load_encoder_decoder("minilm", "minilm")
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Seq2SeqTrainer(model=model, args=_training_arguments(args, scratch, seq2seq=True),
                                 train_dataset=train, data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, pad_to_multiple_of=8))  # fmt: skip
        output = trainer.train()
    # Scored by the code that scores sftlab's side (greedy, length-sorted batches of 64): BLEU then differs
    # only by what training did.
    settings = GenerationConfig(num_beams=1, max_new_tokens=MAX_NEW_TOKENS).model_dump()  # sftlab's defaults
    task = Seq2SeqTask(generation=settings)
    autocast = _autocast(trainer.args.bf16)
    texts = task.generate(model, tokenizer, test, tokenizer.pad_token_id, 64, torch.device("cpu"), autocast)
    metrics = generation_metrics(texts, [row["en"] for row in rows["test"]])
    loss = task.loss(model, test, tokenizer.pad_token_id, 64, torch.device("cpu"), autocast)
    tokens = sum(len(f["input_ids"]) for f in train)  # real source tokens, as sftlab counts them
    return _trainer_result(output, len(train), tokens, args, bleu=metrics["bleu"], loss=loss, precision=_precision(trainer))  # fmt: skip


def _autocast(bf16: bool) -> Any:
    import torch

    return lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def worker_sftlab(args: argparse.Namespace) -> dict[str, Any]:
    """sftlab at its defaults apart from the shared hyperparameters."""
    import sftlab

    overrides = [f"task={args.task}", *shared_overrides(args)] + [
        f"train.{lever}=false" for lever in args.levers_off
    ]
    if args.task == "question_answering":
        overrides += [f"data.doc_stride={DOC_STRIDE}", f"data.max_answer_length={MAX_ANSWER_LENGTH}", f"data.n_best={N_BEST}"]  # fmt: skip
    elif args.task == "seq2seq":
        overrides += ["model.encoder=minilm", "model.decoder=minilm", "data.source_column=es",
                      "data.target_column=en", f"data.max_target_length={args.max_length}",
                      "generation.num_beams=1", f"generation.max_new_tokens={MAX_NEW_TOKENS}"]  # fmt: skip
    else:
        overrides += ["model=minilm"]
    result = sftlab.finetune({}, overrides=overrides, overwrite=True, echo=False)
    metrics = result.metrics
    quality = {key: metrics[key] for key in TASKS[args.task]["quality"]}
    return {
        "side": "sftlab",
        "train_runtime_s": metrics["train_runtime_s"],
        "train_samples_per_s": metrics["train_samples_per_s"],
        "train_tokens_per_s": metrics["train_tokens_per_s"],
        "train_samples": metrics["train_examples"],
        "precision": metrics["precision"],
        "peak_rss_mb": _peak_rss_mb(),
        **quality,
    }


WORKERS = {
    "token_classification": trainer_token_classification,
    "question_answering": trainer_question_answering,
    "seq2seq": trainer_seq2seq,
}


def _run_worker(side: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--task", args.task, "--worker", side]
    settings = {**vars(args), **extra}
    for key in ("train_samples", "eval_samples", "max_length", "epochs", "batch_size", "learning_rate", "seed",
                "output_dir"):  # fmt: skip
        if settings.get(key) is not None:
            command += [f"--{key.replace('_', '-')}", str(settings[key])]
    if settings.get("levers_off"):
        command += ["--levers-off", ",".join(settings["levers_off"])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{args.task} worker {side} {extra} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, Any]], quality: list[str]) -> dict[str, Any]:
    """The median run by samples/s (the slower of two), each run's figures, quality as the mean over seeds."""
    ordered = sorted(runs, key=lambda run: run["train_samples_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_train_samples_per_s"] = [round(run["train_samples_per_s"], 2) for run in runs]
    for key in quality:
        values = [run[key] for run in runs]
        chosen[f"runs_{key}"] = [round(value, 4) for value in values]
        chosen[key] = statistics.mean(values)
        chosen[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    chosen["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return chosen


def ablate(args: argparse.Namespace) -> dict[str, Any]:
    """sftlab at its defaults against sftlab with the `--ablate` levers off, alternating, same seeds."""
    spec = TASKS[args.task]
    off = [name for name in args.ablate.split(",") if name]
    on_runs, off_runs = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            seed = args.seed + repeat
            off_runs.append(
                _run_worker("sftlab", args, seed=seed, output_dir=f"{scratch}/off", levers_off=off)
            )
            on_runs.append(_run_worker("sftlab", args, seed=seed, output_dir=f"{scratch}/on"))
            print(f"seed {seed}: {','.join(off)} off {off_runs[-1]['train_samples_per_s']:.1f} samples/s, "
                  f"on {on_runs[-1]['train_samples_per_s']:.1f} samples/s", flush=True)  # fmt: skip
    with_lever, without = _median(on_runs, spec["quality"]), _median(off_runs, spec["quality"])
    summary = {"task": args.task, "ablated": off, "train_samples": args.train_samples, "epochs": args.epochs,
               "speedup": round(with_lever["train_samples_per_s"] / without["train_samples_per_s"], 3),
               "samples_per_s": {"off": without["runs_train_samples_per_s"], "on": with_lever["runs_train_samples_per_s"]},
               "peak_rss_mb": {"off": round(without["peak_rss_mb"]), "on": round(with_lever["peak_rss_mb"])}}  # fmt: skip
    for key in spec["quality"]:
        summary[key] = {"off": without[f"runs_{key}"], "on": with_lever[f"runs_{key}"]}
    return summary


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    spec = TASKS[args.task]
    torch.set_num_threads(os.cpu_count() or 1)
    before = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    print(
        f"matmul check before: fp32 {before['fp32']:.0f} GFLOP/s, bf16 {before['bf16']:.0f} GFLOP/s",
        flush=True,
    )
    trainer_runs, sftlab_runs = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):  # A B A B, seed + repeat on both sides
            seed = args.seed + repeat
            trainer_runs.append(_run_worker("trainer", args, seed=seed))
            sftlab_runs.append(_run_worker("sftlab", args, seed=seed, output_dir=f"{scratch}/run"))
            print(f"seed {seed}: Trainer {trainer_runs[-1]['train_samples_per_s']:.1f} samples/s, "
                  f"sftlab {sftlab_runs[-1]['train_samples_per_s']:.1f} samples/s", flush=True)  # fmt: skip
    after = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    print(
        f"matmul check after: fp32 {after['fp32']:.0f} GFLOP/s, bf16 {after['bf16']:.0f} GFLOP/s", flush=True
    )
    trainer, ours = _median(trainer_runs, spec["quality"]), _median(sftlab_runs, spec["quality"])
    print(_table(args.task, trainer, ours, spec["quality"]))
    summary: dict[str, Any] = {
        "task": args.task,
        "dataset": args.dataset,
        "train_samples": args.train_samples,
        "epochs": args.epochs,
        "seeds": [args.seed + repeat for repeat in range(args.repeats)],
        "levers_off": args.levers_off,
        "matmul_gflops_before": before,
        "matmul_gflops_after": after,
        "speedup": round(ours["train_samples_per_s"] / trainer["train_samples_per_s"], 3),
        "samples_per_s": {
            "trainer": round(trainer["train_samples_per_s"], 2),
            "sftlab": round(ours["train_samples_per_s"], 2),
        },  # fmt: skip
        "runs_samples_per_s": {
            "trainer": trainer["runs_train_samples_per_s"],
            "sftlab": ours["runs_train_samples_per_s"],
        },  # fmt: skip
        "peak_rss_mb": {"trainer": round(trainer["peak_rss_mb"]), "sftlab": round(ours["peak_rss_mb"])},
        "peak_memory_ratio": round(ours["peak_rss_mb"] / trainer["peak_rss_mb"], 3),
        "precision": {"trainer": trainer["precision"], "sftlab": ours["precision"]},
    }
    for key in spec["quality"]:
        summary[key] = {"trainer": round(trainer[key], 4), "sftlab": round(ours[key], 4)}
        summary[f"runs_{key}"] = {"trainer": trainer[f"runs_{key}"], "sftlab": ours[f"runs_{key}"]}
        # Points: EM, F1 and BLEU are 0-100, entity F1 0-1 (times 100 here); loss as a relative change in %.
        if key in spec.get("lower_is_better", []):
            summary[f"{key}_relative_change_percent"] = round(100 * (ours[key] / trainer[key] - 1), 2)
        else:
            scale = 100 if key == "entity_f1" else 1
            summary[f"{key}_delta_points"] = round(scale * (ours[key] - trainer[key]), 2)
    return summary


def _table(task: str, trainer: dict[str, Any], ours: dict[str, Any], quality: list[str]) -> str:
    header = " | ".join(f"{key} (mean ± std)" for key in quality)
    lines = ["", f"| {task} | samples/s | tokens/s | train s | {header} | peak RSS MB | precision |",
             "|---|---|---|---|" + "---|" * len(quality) + "---|---|"]  # fmt: skip
    for side, row in (("Trainer", trainer), ("sftlab", ours)):
        figures = " | ".join(f"{row[key]:.4f} ± {row[key + '_std']:.4f}" for key in quality)
        lines.append(f"| {side} | {row['train_samples_per_s']:.1f} | {row['train_tokens_per_s']:.0f} | "
                     f"{row['train_runtime_s']:.1f} | {figures} | {row['peak_rss_mb']:.0f} | {row['precision']} |")  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sftlab bench --task TASK", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer seeds: under ~8 minutes"
    )
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repeats", type=int, default=None, help="seeds per side (median speed, mean quality)"
    )
    parser.add_argument("--levers-off", default="",
                        help="sftlab's side with these train.* levers false, e.g. unpad,used_embedding_rows (ablation)")  # fmt: skip
    parser.add_argument("--ablate", default="",
                        help="instead of Trainer: sftlab with these train.* levers off against sftlab's defaults")  # fmt: skip
    parser.add_argument("--worker", choices=["trainer", "sftlab"], help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = TASKS[args.task]
    args.dataset = spec["dataset"]
    args.levers_off = [name for name in args.levers_off.split(",") if name]
    defaults = {**spec, **(spec["quick"] if args.quick else {})}
    for key in (
        "train_samples",
        "eval_samples",
        "max_length",
        "epochs",
        "batch_size",
        "learning_rate",
        "repeats",
    ):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if args.worker:
        worker = worker_sftlab if args.worker == "sftlab" else WORKERS[args.task]
        print(json.dumps(worker(args)))
        return 0
    print(json.dumps(ablate(args) if args.ablate else orchestrate(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
