"""Two real processes over gloo on the CPU (`torchrun` and `accelerate launch`, one thread each), training the
real MiniLM on real TREC questions: the same run as one process with the per-process batch times two,
evaluation split across the processes at an uneven split, outputs written once, and a launcher killed with
SIGKILL and resumed on two processes ending where the uninterrupted two-process run ends.

Tolerance: the two runs add the same per-example losses in a different order (each process sums its own
micro-batches, then the gradients are averaged over gloo), so fp32 results agree to rounding, not bitwise:
losses to 1e-5 relative, weights to 1e-5 absolute. Resume on the same number of processes is bitwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import REPO, descendants, run_metrics, run_weights

# 56 TREC questions: batches of 4 give 14 micro-batches, 7 per process, so with accumulation 2 the epoch's last
# step holds one micro-batch per process (8 examples): an uneven step, normalised by its real count. 21
# validation and test questions: 11 and 10 per process.
SLICE = [
    "data.dataset=trec6",
    "data.max_train_samples=56",
    "data.max_eval_samples=21",
    "data.max_length=32",
    "train.epochs=2",
    "train.learning_rate=1e-4",
    "train.precision=fp32",
    "train.seed=7",
    "train.group_by_length=false",
    "train.log_every=1",
    "freeze.bottom_layers=2",
]
TWO_PROCESSES = ["train.batch_size=4", "train.gradient_accumulation_steps=2", "train.save_every=2"]
ONE_PROCESS = ["train.batch_size=16"]
TIMING = {"train_runtime_s", "train_samples_per_s", "train_tokens_per_s"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A private folder: pytest's shared base folder is pruned by other sessions' runs on a shared machine."""
    folder = Path(tempfile.mkdtemp(prefix="sftlab-distributed-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def model_without_dropout(scratch: Path) -> Path:
    """The real MiniLM with dropout 0: one process with batch 2B draws other dropout masks than two with B,
    so only a dropout-free model can give the same run on both (the weights are the real ones, linked)."""
    from sftlab.catalog.models import resolve_model

    source, folder = Path(resolve_model("minilm")), scratch / "minilm-no-dropout"
    folder.mkdir()
    for item in source.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item.resolve())
    config = json.loads((source / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _train(launcher: list[str], output: Path, model: Path, *extra: str) -> list[str]:
    return [*launcher, "-m", "sftlab", "train", str(REPO / "examples" / "trec6.yaml"), *SLICE,
            f"model={model}", f"output_dir={output}", *extra]  # fmt: skip


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=_environment(), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(scratch: Path, model_without_dropout: Path) -> dict[str, Any]:
    root = scratch
    one = _run(_train([sys.executable], root / "one", model_without_dropout, *ONE_PROCESS))
    two = _run(_train(TORCHRUN, root / "two", model_without_dropout, *TWO_PROCESSES))
    return {"root": root, "one": (root / "one", one), "two": (root / "two", two)}


@pytest.mark.slow
def test_two_processes_train_as_one_with_twice_the_batch(runs):
    (one, _), (two, launched) = runs["one"], runs["two"]
    # The start-up line, once (only the main process prints): processes, backend, each lever's decision.
    assert launched.stdout.count("sftlab: classification") == 1
    assert "2 processes (MULTI_CPU, gloo)" in launched.stdout
    assert launched.stdout.count("speed levers:") == 1
    assert "prefix cache: on" in launched.stdout and "unpadded blocks: on" in launched.stdout
    assert "used embedding rows: off (2 processes: " in launched.stdout
    single, double = run_metrics(one), run_metrics(two)
    assert double["speed_levers"] == {**single["speed_levers"], "used embedding rows": False}
    assert double["steps"] == single["steps"] == 8
    # Every training step's loss and every evaluation, to fp32 rounding.
    train_losses = [
        [r["train/loss"] for r in m["log_history"] if "train/loss" in r] for m in (single, double)
    ]
    assert len(train_losses[0]) == 8 and train_losses[1] == pytest.approx(train_losses[0], rel=1e-5)
    for ours, theirs in zip(double["history"], single["history"], strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        assert ours["accuracy"] == theirs["accuracy"]
    # The evaluation split 11 / 10 across the processes counts each of the 21 test questions exactly once.
    assert double["num_examples"] == single["num_examples"] == 21
    assert double["confusion_matrix"] == single["confusion_matrix"]
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-5)
    ours, theirs = run_weights(two), run_weights(one)
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.slow
def test_only_the_main_process_writes_outputs(runs):
    two, _ = runs["two"]
    assert sorted(p.name for p in two.iterdir()) == [
        "config.yaml",
        "logs",
        "metrics.json",
        "model",
        "report.html",
    ]
    assert not (two / "checkpoints").exists()


@pytest.mark.slow
def test_killed_launcher_resumes_on_two_processes_where_the_uninterrupted_run_ends(
    runs, model_without_dropout
):
    reference, output = runs["two"][0], runs["root"] / "killed"
    # accelerate's own launcher this time (with --multi_gpu and ACCELERATE_USE_CPU it starts two CPU processes);
    # the launcher and its workers are killed at once, as a lost machine would be.
    launcher = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    launcher[0] = str(Path(sys.executable).with_name("accelerate"))
    command = _train(launcher, output, model_without_dropout, *TWO_PROCESSES)
    environment = {**_environment(), "ACCELERATE_USE_CPU": "true"}
    process = subprocess.Popen(command, cwd=REPO, env=environment, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint = output / "checkpoints" / "step-4"
    deadline = time.monotonic() + 600
    while not (checkpoint / "state.json").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run never wrote its step-4 checkpoint"
        time.sleep(0.01)
    # torch's elastic agent starts its workers in sessions of their own: kill the whole tree at once.
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    assert not (output / "metrics.json").exists()
    assert {p.name for p in checkpoint.iterdir()} >= {"rng-rank0.safetensors", "rng-rank1.safetensors"}

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, cwd=REPO, env=environment,
                             timeout=900)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    ours, theirs = run_weights(output), run_weights(reference)
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    drop = {*TIMING}
    metrics, expected = run_metrics(output), run_metrics(reference)
    assert {k: v for k, v in metrics.items() if k not in drop} == {
        k: v for k, v in expected.items() if k not in drop
    }
    assert sorted(p.name for p in output.iterdir()) == [
        "config.yaml",
        "logs",
        "metrics.json",
        "model",
        "report.html",
    ]
    shutil.rmtree(output)


@pytest.mark.parametrize(
    "path", sorted((REPO / "examples" / "accelerate").glob("*.yaml")), ids=lambda p: p.name
)
def test_accelerate_configs_load_and_show_their_command(path):
    from accelerate.commands.config.config_args import load_config_from_file

    first = path.read_text().splitlines()[0]
    assert (
        first.startswith("# ") and "accelerate launch --config_file examples/accelerate/" + path.name in first
    )
    config = load_config_from_file(str(path))
    assert config.distributed_type.value in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    if config.distributed_type.value == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2


def test_map_sharded_on_one_process_is_a_plain_call():
    from sftlab.distributed import map_sharded

    assert map_sharded(lambda part: [x * 2 for x in part], [3, 1, 2]) == [6, 2, 4]
