"""`sftlab meta` end to end: Reptile over TREC's fine labels, on a real MiniLM, in a tiny budget."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import REPO, run_cli

TINY = ["meta.n_way=3", "meta.k_shot=2", "meta.query=2", "meta.meta_steps=2", "meta.meta_batch=1",
        "meta.inner_steps=1", "meta.eval_episodes=2", "meta.eval_shots=[2]", "meta.held_out_labels=3",
        "data.max_length=24"]  # fmt: skip


def test_meta_learns_an_encoder_that_is_usable_as_model(tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification

    from sftlab.catalog.models import resolve_model

    output = tmp_path / "meta"
    result = run_cli(
        "meta", str(REPO / "examples" / "meta_trec50.yaml"), *TINY, f"output_dir={output}", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((output / "metrics.json").read_text())
    assert [step["epsilon"] for step in metrics["history"]] == [1.0, 0.0]  # annealed 1 -> 0
    assert len(metrics["held_out_labels"]) == 3
    assert not set(metrics["held_out_labels"]) & set(metrics["meta_training_labels"])
    row = metrics["comparison"]["2_shot"]
    assert 0.0 <= row["meta_learned"]["mean"] <= 1.0 and 0.0 <= row["pretrained"]["mean"] <= 1.0
    # The folder is a plain encoder: a classifier loads it with a fresh head, its encoder weights as saved,
    # and they moved away from the pretrained MiniLM.
    saved = load_file(output / "model" / "model.safetensors")
    model = AutoModelForSequenceClassification.from_pretrained(output / "model", num_labels=6)
    pretrained = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=6)
    name = "encoder.layer.5.output.dense.weight"
    assert torch.equal(model.bert.state_dict()[name], saved[name])
    assert not torch.equal(saved[name], pretrained.bert.state_dict()[name])
    plan = run_cli("plan", str(REPO / "examples" / "trec6.yaml"), f"model={output / 'model'}")
    assert plan.returncode == 0, plan.stderr


def test_first_order_maml_meta_step_is_one_adam_step_on_the_query_gradient(tmp_path) -> None:
    from sftlab.catalog.models import resolve_model

    output = tmp_path / "fomaml"
    single = [*TINY, "meta.meta_steps=1", "meta.eval_episodes=0"]
    result = run_cli("meta", str(REPO / "examples" / "meta_trec50.yaml"), *single, "meta.algorithm=fomaml",
                     "meta.outer_learning_rate=1e-4", f"output_dir={output}", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["history"][0]["meta_gradient_norm"] > 0 and "epsilon" not in metrics["history"][0]
    # Adam's first step moves each weight by the rate times g / (|g| + 1e-8): by 1e-4 wherever the query
    # gradient is not tiny, never more.
    name = "encoder.layer.5.output.dense.weight"
    moved = (load_file(output / "model" / "model.safetensors")[name]
             - load_file(Path(resolve_model("minilm")) / "model.safetensors")[name]).abs()  # fmt: skip
    assert float(moved.max()) <= 1e-4 * 1.001
    assert float(moved.median()) > 0.9e-4
