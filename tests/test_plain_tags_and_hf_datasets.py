"""Plain tag sets (part-of-speech) in token classification, and Hugging Face `datasets` folders as input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from sftlab.catalog.datasets import fetch_dataset
from sftlab.data.readers import read_table
from sftlab.tasks.token_classification import detect_tag_scheme

# CoNLL-2003 excerpt, column 1 = Penn Treebank POS tags: 120 sentences, 3 epochs at a high learning rate.
POS = ["data.dataset=conll2003_sample", "data.conll_tag_field=1", "data.max_train_samples=120",
       "data.max_length=48", "train.epochs=3", "train.learning_rate=3e-4", "train.seed=3"]  # fmt: skip


@pytest.fixture(scope="module")
def pos_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("run") / "pos"
    config = tmp_path_factory.mktemp("config") / "pos.yaml"
    config.write_text("task: token_classification\nmodel: minilm\n", encoding="utf-8")
    result = run_cli("train", str(config), *POS, f"output_dir={output}")
    assert result.returncode == 0, result.stderr
    return output, result.stdout


def test_detect_tag_scheme():
    assert detect_tag_scheme([["B-PER", "I-PER", "O"], ["B-LOC"]]) == "iob2"
    assert detect_tag_scheme([["I-PER", "I-PER", "O"], ["B-LOC"]]) == "iob1"
    assert detect_tag_scheme([["NNP", "VBZ", "."], ["O"]]) == "plain"
    assert detect_tag_scheme([["B-NP", "I-NP", "B-VP"]]) == "iob2"  # chunk tags are IOB too


def test_pos_tags_train_with_token_accuracy_and_per_tag_scores(pos_run):
    output, stdout = pos_run
    assert "tags: plain (detected; set data.tag_scheme to choose)" in stdout
    metrics = json.loads((output / "metrics.json").read_text())
    gold = read_table(fetch_dataset("conll2003_sample")["test"])
    words = sum(len(row["tokens"]) for row in gold.rows)
    assert metrics["split"] == "test" and metrics["num_words"] == words
    assert "entity_f1" not in metrics and metrics["metric_for_best"] == "token_accuracy"
    # Untrained, the head is at chance over ~40 tags and the most frequent tag (NNP) is 22% of the test words;
    # 24 steps already tag most words right (0.66 measured, validation 0.38 -> 0.55 -> 0.66 by epoch).
    assert metrics["token_accuracy"] > 0.5
    assert {"NNP", "DT", "IN", "."} <= set(metrics["per_tag"])
    assert metrics["per_tag"]["."]["f1"] > 0.8 and metrics["per_tag"]["NNP"]["support"] > 20
    history = metrics["history"]
    assert history[-1]["token_accuracy"] > history[0]["token_accuracy"] - 0.05
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert "token accuracy" in stdout and "NNP" in stdout


def test_pos_predict_returns_one_tag_per_word(pos_run, tmp_path):
    output, _ = pos_run
    inputs = tmp_path / "in.txt"
    inputs.write_text("The company said on Monday it would buy shares .\n", encoding="utf-8")
    result = run_cli("predict", str(output), "--input", str(inputs), "--output", str(tmp_path / "p.jsonl"))
    assert result.returncode == 0, result.stderr
    prediction = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert prediction["tokens"][:2] == ["The", "company"] and len(prediction["tags"]) == 10
    assert "entities" not in prediction
    labels = set(json.loads((output / "model" / "config.json").read_text())["label2id"])
    assert (
        set(prediction["tags"]) <= labels and prediction["tags"][0] == "DT" and prediction["tags"][-1] == "."
    )


def test_iob_scheme_refuses_plain_tags(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"tokens": ["EU", "rejects"], "tags": ["NNP", "VBZ"]}\n' * 12, encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("task: token_classification\n", encoding="utf-8")
    result = run_cli(
        "train", str(config), f"data.train={train}", "data.tag_scheme=iob2", f"output_dir={tmp_path / 'o'}"
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "data.tag_scheme iob2 needs tags O, B-TYPE, I-TYPE, found 'NNP', 'VBZ'" in result.stderr
    assert "data.tag_scheme: plain" in result.stderr and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def trec_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Real TREC questions as a `datasets` DatasetDict (labels as a ClassLabel) written by save_to_disk."""
    datasets = pytest.importorskip("datasets")
    paths = fetch_dataset("trec6")
    rows = {split: read_table(paths[split]).rows for split in ("train", "test")}
    names = sorted({row["label"] for row in rows["train"]})
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    splits = {"train": rows["train"][:160], "test": rows["test"][:48]}
    folder = tmp_path_factory.mktemp("hf") / "trec"
    datasets.DatasetDict({
        split: datasets.Dataset.from_dict(
            {"text": [r["text"] for r in part], "label": [names.index(r["label"]) for r in part]}, features=features
        ) for split, part in splits.items()
    }).save_to_disk(str(folder))  # fmt: skip
    return folder, names


def test_training_reads_a_save_to_disk_folder(trec_folder, tmp_path):
    folder, names = trec_folder
    output = tmp_path / "run"
    result = run_cli("train", "examples/trec6.yaml", f"data.dataset={folder}", "data.max_length=32",
                     "train.epochs=1", f"output_dir={output}", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((output / "metrics.json").read_text())
    # No validation split in the folder: ~10% of its 160 training rows are held out (stratified by label,
    # rounded per label: 15), as for files; test is the folder's.
    assert metrics["split"] == "test" and metrics["num_examples"] == 48 and metrics["train_examples"] == 145
    labels = json.loads((output / "model" / "config.json").read_text())["label2id"]
    assert sorted(labels) == names  # class labels arrive as their names, not as integers
    wrong = run_cli("train", "examples/trec6.yaml", f"data.dataset={folder}", "data.validation_split=dev",
                    f"output_dir={tmp_path / 'o'}")  # fmt: skip
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert (
        "data.validation_split: " in wrong.stderr
        and "has no split 'dev' (it has train, test)" in wrong.stderr
    )
    assert not (tmp_path / "o").exists()
