"""Training controls on the real MiniLM and real TREC slices: freezing, SGD / BGD step counts, accumulation
equivalence and the full-batch gradient, class weights, `sftlab plan`."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sftlab
from conftest import REPO, run_cli
from sftlab.catalog.models import resolve_model
from sftlab.config import load_config
from sftlab.errors import SftlabError

TINY = [
    "data.dataset=trec6",
    "data.max_eval_samples=16",
    "data.max_length=16",
    "train.epochs=1",
    "train.seed=3",
]
BLOCK = 1_774_464  # parameters in one MiniLM block
POOLER_AND_HEAD = 147_840 + 384 * 6 + 6


def train(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, dict[str, torch.Tensor]]:
    output = tmp_path / name
    result = sftlab.finetune(
        REPO / "examples" / "trec6.yaml", [*TINY, *overrides, f"output_dir={output}"], echo=False
    )
    return result.metrics, load_file(output / "model" / "model.safetensors")


def pretrained_encoder() -> dict[str, torch.Tensor]:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=6)
    return {name: value for name, value in model.state_dict().items() if name.startswith("bert.")}


def test_frozen_layers_are_bitwise_unchanged_and_the_rest_trains(tmp_path):
    metrics, trained = train(tmp_path, "frozen", "data.max_train_samples=48", "freeze.bottom_layers=4")
    before = pretrained_encoder()
    frozen = [
        n for n in before if n.startswith("bert.embeddings.") or any(f".layer.{i}." in n for i in range(4))
    ]
    free = [n for n in before if ".layer.5." in n and n.endswith("weight")]
    assert frozen and free
    assert all(torch.equal(trained[n], before[n]) for n in frozen)
    assert all(not torch.equal(trained[n], before[n]) for n in free)
    assert metrics["trainable_parameters"] == 2 * BLOCK + POOLER_AND_HEAD
    assert metrics["trainable_parameters"] + metrics["frozen_parameters"] == metrics["total_parameters"]


def test_gradual_unfreezing_stage_zero_trains_only_pooler_and_head(tmp_path):
    metrics, trained = train(
        tmp_path, "gradual", "data.max_train_samples=32", "train.batch_size=16",
        "freeze.gradual_unfreeze=true", "freeze.unfreeze_every=100", "freeze.unfreeze_unit=step",
    )  # fmt: skip
    before = pretrained_encoder()
    encoder = [n for n in before if not n.startswith("bert.pooler.")]
    assert all(torch.equal(trained[n], before[n]) for n in encoder)
    assert not torch.equal(trained["bert.pooler.dense.weight"], before["bert.pooler.dense.weight"])
    assert metrics["trainable_parameters_at_start"] == POOLER_AND_HEAD
    assert metrics["steps"] == 2


def test_sgd_makes_one_update_per_example_and_bgd_one_per_epoch(tmp_path):
    # 24: the smallest slice of TREC's train split that holds all six labels.
    sgd, _ = train(tmp_path, "sgd", "data.max_train_samples=24", "train.batch_size=1", "optim.name=sgd")
    assert sgd["steps"] == 24
    bgd, _ = train(
        tmp_path, "bgd", "data.max_train_samples=24", "train.batch_size=full", "train.micro_batch_size=4",
        "train.epochs=2",
    )  # fmt: skip
    assert bgd["steps"] == 2


@pytest.fixture(scope="module")
def dropout_free_minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with dropout off, so a step's gradient depends only on the examples, not on random masks."""
    source = Path(resolve_model("minilm"))
    target = tmp_path_factory.mktemp("minilm-no-dropout")
    for item in source.iterdir():
        if item.is_file() and item.name != "config.json":
            (target / item.name).symlink_to(item)
    config = json.loads((source / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (target / "config.json").write_text(json.dumps(config))
    shutil.copytree(source / "1_Pooling", target / "1_Pooling")
    return target


@pytest.mark.slow  # four short training runs
def test_accumulation_and_bgd_equal_the_full_batch_gradient_update(tmp_path, dropout_free_minilm):
    exact = [
        f"model={dropout_free_minilm}", "data.max_train_samples=24", "optim.name=sgd", "optim.weight_decay=0",
        "train.learning_rate=0.5", "train.max_grad_norm=null", "train.precision=fp32", "schedule.name=constant",
        "schedule.warmup_steps=0",
    ]  # fmt: skip
    _, one_batch = train(tmp_path, "one", *exact, "train.batch_size=24")
    _, accumulated = train(
        tmp_path, "acc", *exact, "train.batch_size=6", "train.gradient_accumulation_steps=4"
    )
    _, full = train(tmp_path, "full", *exact, "train.batch_size=full", "train.micro_batch_size=6")
    _, uneven = train(tmp_path, "uneven", *exact, "train.batch_size=full", "train.micro_batch_size=5")

    # The update from the true full-batch gradient, computed here by hand: w - lr * grad(mean loss over all 24).
    from sftlab.data.loading import load_tables
    from sftlab.models import load_tokenizer
    from sftlab.runtime import set_seed
    from sftlab.tasks.classification import ClassificationTask, pad_batch

    config = load_config(REPO / "examples" / "trec6.yaml", [*TINY, *exact])
    tables = load_tables(config.data)
    task = ClassificationTask.from_config(config, tables)
    examples = task.encode(load_tokenizer(str(dropout_free_minilm), config.model, False), tables["train"])
    set_seed(config.train.seed)
    model = task.load_model(str(dropout_free_minilm), config)
    model.train()
    loss_sum, count = task.forward_loss(model, pad_batch(examples, 0))
    (loss_sum / count).backward()
    expected = {n: (p - 0.5 * p.grad).detach() for n, p in model.named_parameters() if p.grad is not None}

    changed = 0
    for name, value in expected.items():
        for other in (one_batch, accumulated, full, uneven):
            torch.testing.assert_close(other[name], value, atol=2e-6, rtol=1e-5)
        changed += not torch.equal(value, dict(model.named_parameters())[name].detach())
    assert changed > 50


def test_class_weights_auto_from_train_counts():
    config = load_config(
        REPO / "examples" / "trec6.yaml", ["data.max_train_samples=300", "loss.class_weights=auto"]
    )
    from sftlab.data.loading import load_tables
    from sftlab.tasks.classification import ClassificationTask

    tables = load_tables(config.data)
    task = ClassificationTask.from_config(config, tables)
    counts = Counter(task.label_ids(tables["train"]))
    assert task.class_weights == [300 / (6 * counts[c]) for c in range(6)]
    with pytest.raises(SftlabError, match=r"loss.class_weights: 2 weights given, expected one per label \(6"):
        ClassificationTask.from_config(load_config(config, ["loss.class_weights=[1, 2]"]), tables)


def test_plan_shows_groups_rates_and_schedule_without_training(tmp_path):
    result = run_cli(
        "plan", str(REPO / "examples" / "trec6.yaml"), "data.max_train_samples=320", "train.epochs=2",
        "freeze.bottom_layers=4", "optim.layer_lr_decay=0.5", "optim.head_learning_rate=1e-3",
        "schedule.name=slanted_triangular", f"output_dir={tmp_path / 'never'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 epochs x 10 optimizer steps = 20 steps" in out
    assert "block 3        1,774,464  frozen                         -" in out
    assert "block 4        1,774,464  trainable               5.00e-05" in out
    assert "block 5        1,774,464  trainable               1.00e-04" in out
    assert "head               2,310  trainable               1.00e-03" in out
    assert "step 0: 3.125e-06" in out and "step 2: 1.000e-04" in out
    assert not (tmp_path / "never").exists()


def test_freeze_pattern_matching_nothing_is_a_one_line_error(tmp_path):
    result = run_cli("plan", str(REPO / "examples" / "trec6.yaml"), "freeze.patterns=[nothing_matches]")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "sftlab: error: freeze.patterns: 'nothing_matches' matches no parameter name of this model"
    )
