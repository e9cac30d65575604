"""End to end: the real `sftlab` CLI on real MiniLM and real TREC data, as a user runs it."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import run_cli

LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def test_run_writes_model_config_and_metrics(trained_run):
    # onnx/ appears once tests/test_onnx.py has exported this shared run
    entries = sorted(p.name for p in trained_run.iterdir() if p.name != "onnx")
    assert entries == ["config.yaml", "logs", "metrics.json", "model", "report.html"]
    assert (trained_run / "model" / "model.safetensors").exists()
    assert not list(trained_run.parent.glob(".*partial*")), "no staging folder left behind"
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_micro", "loss", "per_class",
                "confusion_matrix", "train_runtime_s", "train_samples_per_s"):  # fmt: skip
        assert key in metrics, key
    assert metrics["split"] == "test"
    assert metrics["num_examples"] == 200
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 200
    assert metrics["train_examples"] == 640 and metrics["epochs"] == 3 and metrics["steps"] == 60
    # 640 examples x 3 epochs takes TREC well above chance (the largest class is 23%)
    assert metrics["accuracy"] >= 0.6
    assert len(metrics["history"]) == 3
    assert metrics["history"][-1]["train_loss"] < 1.2
    resolved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 3 and resolved["data"]["max_train_samples"] == 640


def test_label_maps_round_trip(trained_run):
    config = json.loads((trained_run / "model" / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert config["label2id"] == {name: i for i, name in enumerate(LABELS)}
    import sftlab

    predictor = sftlab.load(trained_run, precision="fp32")
    assert predictor.task.label_names == LABELS
    assert predictor.task.label2id == config["label2id"]


def test_pipeline_agrees_with_sftlab_predict(trained_run, tmp_path):
    from transformers import pipeline

    texts = [
        "What is the capital of Peru ?",
        "Who wrote Hamlet ?",
        "How many feet are in a mile ?",
        "What does NASA stand for ?",
        "Why is the sky blue ?",
        "What kind of animal is a dingo ?",
    ]
    source = tmp_path / "questions.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    result = run_cli(
        "predict", str(trained_run), "--input", str(source), "--output", str(output), "--precision", "fp32"
    )
    assert result.returncode == 0, result.stderr
    predicted = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["text"] for row in predicted] == texts

    classifier = pipeline("text-classification", model=str(trained_run / "model"), device="cpu")
    reference = classifier(texts)
    assert [row["label"] for row in predicted] == [row["label"] for row in reference]
    for ours, theirs in zip(predicted, reference, strict=True):
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4)


def test_eval_command_reproduces_training_metrics(trained_run, tmp_path):
    from sftlab.catalog.datasets import fetch_dataset

    test_rows = fetch_dataset("trec6")["test"].read_text().splitlines()[:200]
    data = tmp_path / "test.jsonl"
    data.write_text("\n".join(test_rows) + "\n", encoding="utf-8")
    out = tmp_path / "eval.json"
    result = run_cli("eval", str(trained_run), "--data", str(data), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "confusion matrix" in result.stdout
    metrics = json.loads(out.read_text())
    trained = json.loads((trained_run / "metrics.json").read_text())
    # same model, same 200 test questions, same precision (auto): the same predictions
    assert metrics["confusion_matrix"] == trained["confusion_matrix"]
    assert metrics["accuracy"] == pytest.approx(trained["accuracy"])


def test_python_api_predict(trained_run):
    import sftlab

    predictor = sftlab.load(trained_run)
    predictions = predictor.predict(
        ["Who was the first president of the United States ?", "How far is the moon ?"]
    )
    assert [set(p) for p in predictions] == [{"label", "score"}] * 2
    assert all(p["label"] in LABELS and 0.0 < p["score"] <= 1.0 for p in predictions)


def test_refuses_to_overwrite_a_finished_run(trained_run):
    before = (trained_run / "metrics.json").read_text()
    result = run_cli("train", "examples/trec6.yaml", f"output_dir={trained_run}")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"sftlab: error: output_dir {trained_run}: already holds files; pass --overwrite or choose another output_dir"
    )
    assert (trained_run / "metrics.json").read_text() == before
