"""DeepSpeed ZeRO through `accelerate launch --use_deepspeed` on the CPU: two real processes over gloo
(DeepSpeed's CPU accelerator; no oneCCL) train the real MiniLM on real TREC questions, write DeepSpeed
checkpoints, are killed with SIGKILL after one, and `--resume` ends where the uninterrupted run ends.

Measured here (docs/distributed.md): a resumed ZeRO-2 or ZeRO-3 run on the same two processes is bitwise
the uninterrupted one (weights and metrics), so the test asserts equality.
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

import pytest
import torch

from conftest import REPO, descendants, run_metrics, run_weights

pytest.importorskip("deepspeed")

# 32 questions, batches of 4 with accumulation 2 over 2 processes: 2 steps an epoch, 4 in all; the
# evaluation at step 2 writes the checkpoint the run is killed after.
SLICE = [
    "data.dataset=trec6",
    "data.max_train_samples=32",
    "data.max_eval_samples=8",
    "data.max_length=24",
    "train.epochs=2",
    "train.learning_rate=1e-4",
    "train.precision=fp32",
    "train.seed=7",
    "train.log_every=1",
    "train.batch_size=4",
    "train.gradient_accumulation_steps=2",
    "freeze.bottom_layers=2",
    "report=false",
]
TIMING = {"train_runtime_s", "train_samples_per_s", "train_tokens_per_s"}


def _launcher(stage: int) -> list[str]:
    return [str(Path(sys.executable).with_name("accelerate")), "launch", "--use_deepspeed", "--zero_stage",
            str(stage), "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--gradient_accumulation_steps", "2"]  # fmt: skip


def _command(stage: int, output: Path) -> list[str]:
    return [*_launcher(stage), "-m", "sftlab", "train", str(REPO / "examples" / "trec6.yaml"), *SLICE,
            f"output_dir={output}"]  # fmt: skip


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="sftlab-deepspeed-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [3])
def test_killed_deepspeed_run_resumes_where_the_uninterrupted_run_ends(scratch: Path, stage: int):
    reference, output = scratch / f"zero{stage}", scratch / f"zero{stage}-killed"
    done = subprocess.run(_command(stage, reference), capture_output=True, text=True, cwd=REPO,
                          env=_environment(), timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 processes (DEEPSPEED, gloo)" in done.stdout and done.stdout.count("sftlab: classification") == 1

    process = subprocess.Popen(_command(stage, output), cwd=REPO, env=_environment(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint = output / "checkpoints" / "step-2"
    deadline = time.monotonic() + 600
    while not (checkpoint / "state.json").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run never wrote its step-2 checkpoint"
        time.sleep(0.01)
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    assert not (output / "metrics.json").exists()
    # DeepSpeed's own layout, one partition file per process, and each process's best weights and RNGs.
    state = json.loads((checkpoint / "state.json").read_text())
    files = set(state["sha256"])
    assert {f"deepspeed/state/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)} <= files
    assert {"rng-rank0.safetensors", "rng-rank1.safetensors"} <= files

    resumed = subprocess.run([*_command(stage, output), "--resume"], capture_output=True, text=True, cwd=REPO,
                             env=_environment(), timeout=900)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    ours, theirs = run_weights(output), run_weights(reference)
    assert set(ours) == set(theirs)
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    metrics, expected = run_metrics(output), run_metrics(reference)
    assert {k: v for k, v in metrics.items() if k not in TIMING} == {
        k: v for k, v in expected.items() if k not in TIMING
    }
    assert sorted(p.name for p in output.iterdir()) == ["config.yaml", "logs", "metrics.json", "model"]

    # The saved model is whole (ZeRO-3 gathered it) and loads in transformers as it is.
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(
        output / "model", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    trained = model.state_dict()["classifier.weight"]
    assert torch.equal(trained, theirs["classifier.weight"]) and trained.shape == (6, 384)


def test_a_deepspeed_checkpoint_resumes_only_a_deepspeed_run(tmp_path: Path):
    from types import SimpleNamespace

    from sftlab.checkpoints import restore_checkpoint
    from sftlab.errors import SftlabError

    checkpoint = tmp_path / "step-2"
    (checkpoint / "deepspeed" / "state").mkdir(parents=True)
    model = torch.nn.Linear(2, 2)
    accelerator = SimpleNamespace(unwrap_model=lambda m: m, process_index=0, scaler=None)
    with pytest.raises(
        SftlabError, match=r"step-2: written by a DeepSpeed run; resume it with the same kind"
    ):
        restore_checkpoint(checkpoint, {"step": 2, "best_step": 2}, accelerator, model, None)
