"""Sentence pairs and multi-label classification on real data slices with the real MiniLM.

Pairs: DisflQA (question, passage) -> answerable / unanswerable, a real BoolQ-like pair task.
Multi-label: WNUT-16 tweets -> the set of entity types they mention (often none, sometimes several).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from sftlab.catalog.datasets import fetch_dataset
from sftlab.evaluation.metrics import multilabel_metrics


def _rows(name: str, split: str) -> list[dict]:
    return [json.loads(line) for line in fetch_dataset(name)[split].read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _pairs(split: str, count: int) -> list[dict]:
    return [{"question": r["question"], "passage": r["context"], "label": "yes" if r["answers"]["text"] else "no"}
            for r in _rows("disflqa", split)[:count]]  # fmt: skip


def _entity_types(split: str, count: int) -> list[dict]:
    rows = []
    for r in _rows("wnut16", split)[:count]:
        types = sorted({tag[2:] for tag in r["tags"] if tag != "O"})
        rows.append({"text": " ".join(r["tokens"]), "labels": types})
    return rows


def _train(tmp_path: Path, train: list[dict], validation: list[dict], *overrides: str) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text("task: classification\nmodel: minilm\n", encoding="utf-8")
    output = tmp_path / "run"
    result = run_cli("train", str(config), f"data.train={_write(tmp_path / 'train.jsonl', train)}",
                     f"data.validation={_write(tmp_path / 'validation.jsonl', validation)}", *overrides,
                     f"output_dir={output}", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return output


def test_multilabel_metrics_by_hand():
    # labels a, b, c; 3 examples
    truth = [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    guess = [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    metrics = multilabel_metrics(truth, guess, ["a", "b", "c"])
    # row 1 misses c, row 2 adds c, row 3 exact: subset accuracy 1/3
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    # pooled: tp 2, predicted 3, support 3 -> P = R = F1 = 2/3; per label F1: a 1, b 1, c 0 -> macro 2/3
    assert metrics["f1_micro"] == pytest.approx(2 / 3)
    assert metrics["f1_macro"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_sentence_pairs_train_and_agree_with_pipeline(tmp_path):
    from transformers import pipeline

    run = _train(tmp_path, _pairs("train", 96), _pairs("validation", 32), "data.text_column=question",
                 "data.text_pair_column=passage", "data.max_length=128", "train.epochs=3", "train.batch_size=16",
                 "train.learning_rate=1e-4")  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    import sftlab

    predictor = sftlab.load(run, precision="fp32")
    rows = _pairs("test", 4)
    ours = predictor.predict([{"question": r["question"], "passage": r["passage"]} for r in rows])
    examples = predictor.task.encode(predictor.tokenizer, predictor_table(rows), with_labels=False)
    assert all(1 in example["token_type_ids"] for example in examples), "the passage is the second segment"
    classifier = pipeline(
        "text-classification", model=str(run / "model"), device="cpu", truncation=True, max_length=128
    )
    theirs = classifier([{"text": r["question"], "text_pair": r["passage"]} for r in rows])
    assert [p["label"] for p in ours] == [p["label"] for p in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def predictor_table(rows: list[dict]):
    from sftlab.data.readers import Table

    return Table(Path("<rows>"), rows, list(range(1, len(rows) + 1)), "item")


def test_multi_label_trains_with_sigmoid_and_pipeline_agrees(tmp_path):
    from transformers import pipeline

    run = _train(tmp_path, _entity_types("train", 160), _entity_types("validation", 40), "data.label_column=labels",
                 "data.max_length=48", "train.epochs=3", "train.batch_size=16", "train.learning_rate=2e-4")  # fmt: skip
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    for key in ("accuracy", "f1_micro", "f1_macro", "precision_micro", "recall_micro", "per_class", "loss"):
        assert key in metrics, key
    assert metrics["metric_for_best"] == "f1_micro"
    import sftlab

    predictor = sftlab.load(run, precision="fp32")
    texts = [r["text"] for r in _entity_types("test", 5)]
    ours = predictor.predict(texts)
    classifier = pipeline("text-classification", model=str(run / "model"), device="cpu", top_k=None)
    for prediction, reference in zip(ours, classifier(texts), strict=True):
        assert prediction["labels"] == [n for n, p in prediction["scores"].items() if p > 0.5]
        for item in reference:  # the pipeline applies sigmoid because of problem_type
            assert prediction["scores"][item["label"]] == pytest.approx(item["score"], abs=1e-4)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ([{"text": "a b", "label": "x"}, {"text": "c d", "label": ["x", "y"]}] + [{"text": "e", "label": "y"}] * 8,
         r"train.jsonl line 2: 'label' holds a list \['x', 'y'\], but this is single-label data"),
        ([{"text": "a b", "label": ["x"]}, {"text": "c d", "label": "y"}] + [{"text": "e", "label": ["y"]}] * 8,
         r"train.jsonl line 2: 'label' holds 'y', but this data is multi-label"),
    ],
)  # fmt: skip
def test_label_kinds_cannot_mix(tmp_path, train, expected):
    config = tmp_path / "c.yaml"
    config.write_text("task: classification\n", encoding="utf-8")
    result = run_cli(
        "train",
        str(config),
        f"data.train={_write(tmp_path / 'train.jsonl', train)}",
        f"output_dir={tmp_path / 'o'}",
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(expected, result.stderr), result.stderr
