"""Checkpoint files, the run lock and safe loading, checked directly on small tensors (no training)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sftlab.checkpoints import (
    config_differences,
    latest_checkpoint,
    list_checkpoints,
    load_optimizer_state,
    read_state,
    save_checkpoint,
)
from sftlab.errors import SftlabError
from sftlab.outputs import LOCK, check_output_dir, lock_holder, release_lock, take_lock

ONE_PROCESS = SimpleNamespace(is_main_process=True, process_index=0, wait_for_everyone=lambda: None)


def _save(output: Path, step: int, keep_last: int = 2) -> Path:
    weights = {"layer.weight": torch.full((4, 3), float(step)), "layer.bias": torch.zeros(4)}
    optimizer = {"state": {0: {"step": torch.tensor(float(step)), "exp_avg": torch.ones(4, 3)}},
                 "param_groups": [{"lr": 0.1, "params": [0]}]}  # fmt: skip
    return save_checkpoint(ONE_PROCESS, output, step, weights, optimizer, None, {"step": step}, keep_last)


def test_checkpoints_round_trip_and_keep_last(tmp_path):
    for step in (2, 4, 6):
        _save(tmp_path, step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-4", "step-6"]
    path, state = latest_checkpoint(tmp_path)
    assert path.name == "step-6" and state["step"] == 6
    assert set(state["sha256"]) == {
        "model.safetensors",
        "optimizer.pt",
        "rng-rank0.json",
        "rng-rank0.safetensors",
    }
    optimizer = load_optimizer_state(path / "optimizer.pt")
    assert torch.equal(optimizer["state"][0]["exp_avg"], torch.ones(4, 3))
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folder left


def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    _save(tmp_path, 2)
    _save(tmp_path, 4)
    model = tmp_path / "checkpoints" / "step-4" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(SftlabError, match="model.safetensors: checksum mismatch"):
        read_state(model.parent)
    assert latest_checkpoint(tmp_path)[0].name == "step-2"


def test_full_disk_during_a_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A writer that fails with ENOSPC half-way: one clear error, the previous checkpoint intact, no debris."""
    _save(tmp_path, 2)
    before = (tmp_path / "checkpoints" / "step-2" / "model.safetensors").read_bytes()

    def full_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SftlabError) as caught:
        _save(tmp_path, 4)
    message = str(caught.value)
    assert message.endswith(
        "step-4: cannot write checkpoint: No space left on device; the last good checkpoint step-2 is kept"
    )
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-2"]
    assert (tmp_path / "checkpoints" / "step-2" / "model.safetensors").read_bytes() == before
    read_state(tmp_path / "checkpoints" / "step-2")


class RunsCode:
    """Unpickling this object would run a shell command (the classic malicious-checkpoint payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_object_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "optimizer.pt"
    torch.save({"state": {}, "param_groups": [], "payload": RunsCode(marker)}, path)
    with pytest.raises(SftlabError, match=r"optimizer.pt: refused to load: not plain tensors and numbers"):
        load_optimizer_state(path)
    assert not marker.exists()


def test_config_differences_ignore_harmless_keys():
    saved = {
        "model": "minilm",
        "output_dir": "a",
        "train": {"seed": 1, "keep_last": 2, "eval_batch_size": 64},
    }
    current = {"model": "bert", "output_dir": "b", "train": {"seed": 2, "keep_last": 5, "eval_batch_size": 8}}
    assert config_differences(saved, current) == ["model: 'minilm' -> 'bert'", "train.seed: 1 -> 2"]


def test_lock_stops_a_second_writer_and_a_stale_lock_is_taken_over(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (output / LOCK).write_text(f"{sleeper.pid} {socket.gethostname()} -\n")
        assert lock_holder(output) == sleeper.pid
        with pytest.raises(
            SftlabError, match=rf"another sftlab run \(pid {sleeper.pid}\) is writing into it"
        ):
            check_output_dir(output, overwrite=False, resume=True)
        with pytest.raises(SftlabError, match=rf"another sftlab run \(pid {sleeper.pid}\)"):
            take_lock(output, overwrite=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    # The holder died (killed): its lock is stale, and the next run takes it over.
    assert lock_holder(output) is None
    take_lock(output, overwrite=False)
    assert (output / LOCK).read_text().split()[0] == str(os.getpid())
    release_lock(output)
    assert not (output / LOCK).exists()


def test_rng_state_is_plain_json(tmp_path):
    path = _save(tmp_path, 1)
    states = json.loads((path / "rng-rank0.json").read_text())
    assert set(states) == {"python", "numpy"}


def test_model_code_in_a_model_folder_does_not_run_without_trust_remote_code(tmp_path):
    """A model folder whose config points at its own Python file: with trust_remote_code off (the default)
    sftlab loads the built-in architecture and the folder's code never runs."""
    import shutil

    from sftlab.catalog.models import resolve_model
    from sftlab.config import load_config
    from sftlab.models import load_sequence_classifier, load_tokenizer

    folder = tmp_path / "model"
    shutil.copytree(resolve_model("minilm"), folder)
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModelForSequenceClassification": "evil.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    assert load_config({"model": str(folder)}).trust_remote_code is False
    load_tokenizer(str(folder), str(folder))
    model = load_sequence_classifier(str(folder), str(folder), ["a", "b"])
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not marker.exists()
