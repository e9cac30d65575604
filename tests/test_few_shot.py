"""Few-shot classification end to end: a real MiniLM, a real few-shot draw of TREC-6, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from sftlab.config import load_config
from sftlab.data.loading import load_tables
from sftlab.errors import ConfigError, SftlabError

FEW = ["data.samples_per_class=4", "few_shot.pairs_per_example=8", "data.max_eval_samples=48",
       "data.max_length=32", "train.seed=3"]  # fmt: skip


@pytest.fixture(scope="module")
def few_shot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("few") / "run"
    result = run_cli(
        "train", str(REPO / "examples" / "trec6_few_shot.yaml"), *FEW, f"output_dir={output}", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    return output


def test_samples_per_class_draws_a_seeded_stratified_training_set() -> None:
    config = load_config(REPO / "examples" / "trec6_few_shot.yaml", ["data.samples_per_class=3"])
    train = load_tables(config.data)["train"]
    assert Counter(row["label"] for row in train.rows) == dict.fromkeys(
        ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"], 3
    )
    again = load_tables(config.data)["train"]
    other = load_config(
        REPO / "examples" / "trec6_few_shot.yaml", ["data.samples_per_class=3", "data.sample_seed=1"]
    )
    assert again.rows == train.rows != load_tables(other.data)["train"].rows
    fine = load_config(config, ["data.label_column=fine_label", "data.samples_per_class=2"])
    assert len(load_tables(fine.data)["train"]) <= 100  # 50 fine labels, at most 2 each


def test_few_shot_saves_an_ordinary_model_that_pipeline_loads_with_the_same_predictions(
    few_shot_run, tmp_path
) -> None:
    from transformers import pipeline

    metrics = json.loads((few_shot_run / "metrics.json").read_text())
    assert metrics["train_examples"] == 24 and metrics["contrastive_pairs"] == 24 * 8
    assert metrics["pooling"] == "mean"  # auto: MiniLM is a sentence-transformers model, mean pooling
    # The contrastive stage shaped the embedding: held-out pairs are closer to their targets after it.
    assert metrics["validation_pairs"]["after"]["loss"] < metrics["validation_pairs"]["before"]["loss"]
    files = {path.name for path in (few_shot_run / "model").iterdir()}
    assert "model.safetensors" in files and not {
        name for name in files if name.endswith((".pkl", ".bin", ".pt"))
    }
    assert json.loads((few_shot_run / "model" / "config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"
    ]
    # MiniLM's 6 blocks and the fixed mean-pooling layer, saved as a 7th: pipeline needs nothing else.
    assert json.loads((few_shot_run / "model" / "config.json").read_text())["num_hidden_layers"] == 7
    texts = ["What is the capital of Peru ?", "Who wrote Hamlet ?", "How many feet are in a mile ?",
             "What does NASA stand for ?", "Why is the sky blue ?", "What kind of animal is a dingo ?"]  # fmt: skip
    source = tmp_path / "questions.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    result = run_cli("predict", str(few_shot_run), "--input", str(source), "--output", str(output),
                     "--precision", "fp32")  # fmt: skip
    assert result.returncode == 0, result.stderr
    ours = [json.loads(line) for line in output.read_text().splitlines()]
    theirs = pipeline("text-classification", model=str(few_shot_run / "model"), device="cpu")(texts)
    assert [row["label"] for row in ours] == [row["label"] for row in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine["score"] == pytest.approx(reference["score"], abs=1e-4)


def test_the_head_stage_is_sklearns_logistic_regression_on_the_frozen_features(few_shot_run) -> None:
    # The default head (head_l2_c: 1) minimises SetFit's head objective, LogisticRegression(C=1), on the
    # very features it reads: the same weights, the same predictions as scikit-learn's solver.
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = load_config(REPO / "examples" / "trec6_few_shot.yaml", FEW)
    tables = load_tables(config.data)
    model = AutoModelForSequenceClassification.from_pretrained(few_shot_run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(few_shot_run / "model")
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def features(split: str) -> np.ndarray:
        texts = [row["text"] for row in tables[split].rows]
        batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            return model.base_model(**batch).pooler_output.numpy()

    labels = [names.index(row["label"]) for row in tables["train"].rows]
    reference = LogisticRegression(C=1.0, tol=1e-8, max_iter=10_000).fit(features("train"), labels)
    ours = model.classifier.weight.detach().numpy()
    assert np.linalg.norm(ours - reference.coef_) < 0.03 * np.linalg.norm(reference.coef_)
    held_out = features("validation")
    with torch.no_grad():
        predicted = model.classifier(torch.from_numpy(held_out)).argmax(-1).numpy()
    assert (predicted == reference.predict(held_out)).mean() >= 0.97


def test_logistic_head_stage_config_follows_sklearns_penalty() -> None:
    from sftlab.recipes.few_shot import stage_configs

    config = load_config(REPO / "examples" / "trec6_few_shot.yaml", ["few_shot.head_l2_c=0.5"])
    head = dict(stage_configs(config, num_train=48, num_labels=6))["head"]
    assert (head.optim.name, head.train.batch_size, head.train.epochs) == ("adam", "full", 300)
    assert head.optim.weight_decay == pytest.approx(1 / (48 * 0.5))
    binary = dict(stage_configs(config, num_train=16, num_labels=2))["head"]
    assert binary.optim.weight_decay == pytest.approx(2 / (16 * 0.5))  # sklearn's one-vector binary model
    old = load_config(config, ["few_shot.head_l2_c=null", "few_shot.head_epochs=25"])
    minibatch = dict(stage_configs(old, num_train=48, num_labels=6))["head"]
    assert (minibatch.optim.name, minibatch.train.batch_size) == (old.optim.name, old.train.batch_size)


def test_few_shot_config_checks() -> None:
    with pytest.raises(ConfigError, match="few_shot.pair_batch_size"):
        load_config({"few_shot": {"pair_batch_size": 15}})
    with pytest.raises(ConfigError, match="few_shot applies to task: classification"):
        load_config({"task": "token_classification", "data": {"dataset": "wnut16"}, "few_shot": {}})
    with pytest.raises(ConfigError, match="few_shot.head_l2_c"):
        load_config({"few_shot": {"head_l2_c": 0}})
    with pytest.raises(ConfigError, match="few_shot.pairs_per_exampel"):
        load_config({"few_shot": {"pairs_per_exampel": 4}})


def test_samples_per_class_refuses_multi_label_data(tmp_path) -> None:
    data = tmp_path / "multi.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"t{i}", "label": ["a", "b"]}) for i in range(20)) + "\n")
    config = load_config({"data": {"train": str(data), "samples_per_class": 2}})
    with pytest.raises(SftlabError, match="multi-label"):
        load_tables(config.data)


def test_mean_pooling_layer_computes_the_standardized_mean_and_auto_follows_the_model() -> None:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    from sftlab.catalog.models import resolve_model
    from sftlab.tasks.pooling import add_mean_pooling_layer, resolve_pooling

    location = resolve_model("minilm")
    assert resolve_pooling("auto", location) == "mean"  # a sentence-transformers folder, mean pooling
    assert resolve_pooling("auto", resolve_model("paraphrase_minilm_l3")) == "cls"  # a plain BERT folder
    assert resolve_pooling("cls", location) == "cls"
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=3).eval()
    batch = tokenizer(["What is the capital of Peru ?", "Who ?"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)  # sentence-transformers' mean over the real tokens
        standardized = (mean - mean.mean(-1, keepdim=True)) / mean.std(-1, unbiased=False, keepdim=True)
        fixed = add_mean_pooling_layer(model)
        outputs = model.bert(**batch)
    assert (
        fixed == [r"^bert\.encoder\.layer\.6\.", r"^bert\.pooler\."] and model.config.num_hidden_layers == 7
    )
    assert torch.allclose(outputs.last_hidden_state[:, 0], standardized, atol=1e-3)
    assert torch.allclose(outputs.pooler_output, torch.tanh(standardized), atol=1e-3)
    other = DistilBertForSequenceClassification(
        DistilBertConfig(n_layers=1, dim=32, hidden_dim=64, n_heads=2)
    )
    with pytest.raises(SftlabError, match="few_shot.pooling: cls"):
        add_mean_pooling_layer(other)
