"""Sharded checkpoints (FSDP2): two real processes over gloo save the real MiniLM's shards, and a freshly
sharded model resumed from them continues bitwise as the uninterrupted run (tests/sharded_checkpoint_worker.py).
DeepSpeed checkpoints: tests/test_deepspeed.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.slow
def test_fsdp2_shards_save_and_resume_bitwise_on_two_processes(tmp_path: Path):
    worker = REPO / "tests" / "sharded_checkpoint_worker.py"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*command, str(tmp_path)], capture_output=True, text=True, env=environment, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"result-rank{rank}.json").read_text()) for rank in (0, 1)]
    for result in results:
        assert result["sharded"]
        assert result["restored_equal"]  # weights and both AdamW moments, gathered whole, equal bitwise
        assert result["continued_equal"]  # the resumed run's next step equals the uninterrupted run's
        assert result["changed_by_step_3"]  # ... and that step did change them (the check can fail)
        assert result["best_equal"]  # the best model's shards came back too
    files = results[0]["files"]
    # One shard file per process and the index, nothing gathered into a whole-model file.
    assert {"sharded/__0_0.distcp", "sharded/__1_0.distcp", "sharded/.metadata", "state.json"} <= set(files)
    assert "model.safetensors" not in files and "optimizer.pt" not in files
    state = json.loads((tmp_path / "checkpoints" / "step-2" / "state.json").read_text())
    assert set(state["sha256"]) >= {"sharded/__0_0.distcp", "sharded/__1_0.distcp", "sharded/.metadata"}
    assert results[0][
        "saved_equal"
    ]  # the saved model/ folder holds the whole weights, loadable by transformers


def test_a_damaged_shard_is_refused_by_its_checksum(tmp_path: Path):
    from sftlab.checkpoints import read_state
    from sftlab.errors import SftlabError

    checkpoint = tmp_path / "step-2"
    (checkpoint / "sharded").mkdir(parents=True)
    (checkpoint / "sharded" / "__0_0.distcp").write_bytes(b"shard")
    import hashlib

    digest = hashlib.sha256(b"shard").hexdigest()
    state = {"format": 2, "step": 2, "sha256": {"sharded/__0_0.distcp": digest}}
    (checkpoint / "state.json").write_text(json.dumps(state))
    assert read_state(checkpoint)["step"] == 2
    (checkpoint / "sharded" / "__0_0.distcp").write_bytes(b"shard, damaged")
    with pytest.raises(SftlabError, match=r"__0_0.distcp: checksum mismatch"):
        read_state(checkpoint)
