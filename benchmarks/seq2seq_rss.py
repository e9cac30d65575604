"""Peak memory of sftlab's side of `sftlab bench --task seq2seq --quick`, step by step.

    python benchmarks/seq2seq_rss.py                          # the bench's settings: 2,000 verses, batch 32
    python benchmarks/seq2seq_rss.py train.chunked_loss=false  # any override, e.g. a lever off
    SFTLAB_SYSTEM_MALLOC=1 python benchmarks/seq2seq_rss.py    # malloc as glibc sets it

Prints the process's resident memory every 8 optimizer steps, then one JSON line: samples/s, the peak
during training and at the end (VmHWM), BLEU and test loss.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_tasks  # noqa: E402

import sftlab  # noqa: E402


def _memory_mb() -> tuple[int, int]:
    """(current, peak) resident memory of this process, MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def main(extra: list[str]) -> None:
    args = bench_tasks.build_parser().parse_args(["--task", "seq2seq"])
    spec = {**bench_tasks.TASKS["seq2seq"], **bench_tasks.TASKS["seq2seq"]["quick"]}
    args.dataset, args.train_samples, args.eval_samples = (
        spec["dataset"],
        spec["train_samples"],
        spec["eval_samples"],
    )
    args.max_length, args.epochs, args.batch_size = spec["max_length"], spec["epochs"], spec["batch_size"]
    args.learning_rate, args.output_dir = spec["learning_rate"], "runs/seq2seq_rss"
    overrides = ["task=seq2seq", *bench_tasks.shared_overrides(args), "model.encoder=minilm", "model.decoder=minilm",
                 "data.source_column=es", "data.target_column=en", f"data.max_target_length={args.max_length}",
                 "generation.num_beams=1", f"generation.max_new_tokens={bench_tasks.MAX_NEW_TOKENS}",
                 "train.log_every=1", *extra]  # fmt: skip
    trace: list[tuple[int, int, int]] = []

    def on_log(state: object, record: dict[str, float]) -> None:
        if "train/loss" in record:
            trace.append((int(record["step"]), *_memory_mb()))

    result = sftlab.finetune({}, overrides=overrides, overwrite=True, echo=False, on_log=on_log)
    print("RSS MB every 8 steps:", [rss for _, rss, _ in trace][::8])
    current, peak = _memory_mb()
    print(json.dumps({"overrides": extra, "train_samples_per_s": round(result.metrics["train_samples_per_s"], 2),
                      "peak_during_training_mb": trace[-1][2], "peak_mb": peak, "rss_end_mb": current,
                      "bleu": result.metrics["bleu"], "loss": result.metrics["loss"]}))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
