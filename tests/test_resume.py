"""Exact resume: a real `sftlab train` killed with SIGKILL (once while a checkpoint is being written, once
at a random moment) and resumed ends with bitwise the weights and the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, run_cli

# 48 real TREC questions, batch 8: 6 steps an epoch, 12 in all; fp32 so every CPU kernel is deterministic.
TINY = [
    "data.dataset=trec6",
    "data.max_train_samples=48",
    "data.max_eval_samples=24",
    "data.max_length=24",
    "train.batch_size=8",
    "train.epochs=2",
    "train.learning_rate=1e-4",
    "train.precision=fp32",
    "train.eval_every=4",
    "train.save_every=2",
    "train.keep_last=2",
    "train.seed=11",
]
TIMING = {"train_runtime_s", "train_samples_per_s", "train_tokens_per_s"}


def _start(output: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "sftlab", "train", str(REPO / "examples" / "trec6.yaml"), *TINY]
    return subprocess.Popen(
        [*command, f"output_dir={output}", "--quiet", *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(process: subprocess.Popen[str], ready, timeout: float = 900.0) -> None:
    """SIGKILL the run as soon as `ready()` is true (polling the filesystem, no hooks in sftlab)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"run ended before it could be killed: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "run never reached the kill point"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _steps(output: Path) -> list[int]:
    root = output / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in root.iterdir() if p.name.startswith("step-"))


def _weights(output: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output / "model" / "model.safetensors"))


@pytest.mark.slow
def test_killed_runs_resume_bitwise(tmp_path):
    reference = tmp_path / "reference"
    done = run_cli(
        "train", str(REPO / "examples" / "trec6.yaml"), *TINY, f"output_dir={reference}", "--quiet"
    )
    assert done.returncode == 0, done.stderr

    output = tmp_path / "killed"
    # 1. Killed while a checkpoint after the first is being written: the previous one must stay usable.
    process = _start(output)
    _kill_when(process, lambda: _steps(output) and list((output / "checkpoints").glob(".step-*.partial")))
    partial = list((output / "checkpoints").glob(".step-*.partial"))
    assert partial, "the kill should have landed inside a checkpoint write"
    kept = _steps(output)
    assert kept and all((output / "checkpoints" / f"step-{s}" / "state.json").exists() for s in kept)
    assert (output / ".sftlab.lock").exists()  # a stale lock from the dead process

    # Without --resume the unfinished run is not clobbered.
    refused = run_cli("train", str(REPO / "examples" / "trec6.yaml"), *TINY, f"output_dir={output}")
    assert refused.returncode == 2 and "holds an unfinished run; pass --resume" in refused.stderr

    # 2. Resumed, then killed again at a random moment after a random later checkpoint.
    rng = random.Random()
    target = rng.choice([s for s in (4, 6, 8) if s > max(kept)] or [max(kept) + 2])
    process = _start(output, "--resume")
    _kill_when(process, lambda: bool(_steps(output)) and max(_steps(output)) >= target)
    time.sleep(rng.uniform(0.0, 0.5))  # lands mid-step, mid-evaluation or mid-save
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output / "metrics.json").exists(), "the run should have been killed before finishing"

    # 3. Resumed to the end.
    finished = run_cli(
        "train", str(REPO / "examples" / "trec6.yaml"), *TINY, f"output_dir={output}", "--resume"
    )
    assert finished.returncode == 0, finished.stderr
    assert "resumed from" in finished.stdout

    ours, theirs = _weights(output), _weights(reference)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    metrics = json.loads((output / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k not in TIMING} == {
        k: v for k, v in expected.items() if k not in TIMING
    }
    assert sorted(p.name for p in output.iterdir()) == [
        "config.yaml",
        "logs",
        "metrics.json",
        "model",
        "report.html",
    ]


def test_resume_refuses_a_changed_config(tmp_path):
    """A checkpoint from a short run; resuming it with another batch size and seed lists both, one line."""
    output = tmp_path / "run"
    first = _start(output)
    _kill_when(first, lambda: bool(_steps(output)))
    changed = run_cli(
        "train", str(REPO / "examples" / "trec6.yaml"), *TINY, f"output_dir={output}", "--resume",
        "train.batch_size=4", "train.seed=12", "train.keep_last=5", "train.eval_batch_size=16",
    )  # fmt: skip
    assert changed.returncode == 2, changed.stderr
    line = changed.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "the config differs from the checkpoint's" in line
    assert "train.batch_size: 8 -> 4" in line and "train.seed: 11 -> 12" in line
    assert "keep_last:" not in line and "eval_batch_size:" not in line  # harmless changes are allowed

    # A checkpoint whose optimizer state carries a pickled object that would run code is refused unrun.
    marker = tmp_path / "code-ran"
    checkpoint = output / "checkpoints" / f"step-{max(_steps(output))}"
    _rewrite_with_payload(checkpoint, marker)
    refused = run_cli("train", str(REPO / "examples" / "trec6.yaml"), *TINY, f"output_dir={output}",
                      f"--resume={checkpoint}")  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().startswith(
        f"sftlab: error: {checkpoint / 'optimizer.pt'}: refused to load: not plain tensors and numbers"
    )
    assert not marker.exists()
    assert not (output / "metrics.json").exists()


@pytest.mark.slow
def test_nonfinite_loss_is_skipped_then_stops_naming_the_step(tmp_path, monkeypatch):
    """NaN losses at steps 2 and 4: the first is skipped (train.skip_nonfinite_batches=1), the second stops
    the run with one line naming step 4 and its likely causes, keeping the last good checkpoint."""
    import sftlab
    from sftlab.tasks.classification import ClassificationTask

    real = ClassificationTask.forward_loss
    calls = []

    def poisoned(self, model, batch):
        loss, terms = real(self, model, batch)
        calls.append(1)
        return (loss * float("nan"), terms) if len(calls) in (2, 4) else (loss, terms)

    monkeypatch.setattr(ClassificationTask, "forward_loss", poisoned)
    output = tmp_path / "run"
    overrides = ["train.batch_size=24", "train.epochs=2", "train.skip_nonfinite_batches=1",
                 f"output_dir={output}"]  # fmt: skip
    with pytest.raises(sftlab.SftlabError) as caught:
        sftlab.finetune(str(REPO / "examples" / "trec6.yaml"), [*TINY, *overrides], echo=False)
    message = str(caught.value)
    assert message.startswith("step 4 (epoch 2): training loss is nan; likely a learning rate too high")
    assert "a bad example or target in this batch (" in message and "train.jsonl line" in message
    assert f"the last good checkpoint {output.resolve() / 'checkpoints' / 'step-2'} is kept" in message
    state = json.loads((output / "checkpoints" / "step-2" / "state.json").read_text())
    assert state["nonfinite_skipped"] == 1 and state["loss_terms"] == 24  # step 2's batch left no trace
    assert not (output / "metrics.json").exists() and not (output / ".sftlab.lock").exists()


def _rewrite_with_payload(checkpoint: Path, marker: Path) -> None:
    """What an attacker would do: a pickle that runs a command on load, with state.json's checksum updated."""
    import hashlib

    from test_checkpoints import RunsCode

    optimizer = checkpoint / "optimizer.pt"
    torch.save({"state": {}, "param_groups": [], "payload": RunsCode(marker)}, optimizer)
    state = json.loads((checkpoint / "state.json").read_text())
    state["sha256"]["optimizer.pt"] = hashlib.sha256(optimizer.read_bytes()).hexdigest()
    (checkpoint / "state.json").write_text(json.dumps(state))
