"""Token classification end to end: real MiniLM on the real CoNLL-2003 excerpt, through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from sftlab.data.readers import read_table
from sftlab.errors import SftlabError

# 120 training sentences of the excerpt, 3 epochs at a high learning rate: enough to start finding PER and LOC.
QUICK = ["data.dataset=conll2003_sample", "data.max_train_samples=120", "data.max_length=40", "train.epochs=3",
         "train.batch_size=8", "train.learning_rate=3e-4", "train.seed=3"]  # fmt: skip

TEXTS = ["Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria .",
         "Nadim Ladki scored twice for Japan in Al Ain ,", "Peter Blackburn and John Smith live in London ."]  # fmt: skip


@pytest.fixture(scope="session")
def ner_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run") / "ner"
    config = tmp_path_factory.mktemp("config") / "ner.yaml"
    config.write_text("task: token_classification\nmodel: minilm\n", encoding="utf-8")
    result = run_cli("train", str(config), *QUICK, f"output_dir={output}", "--quiet")
    assert result.returncode == 0, result.stderr
    return output


def test_training_lowers_loss_and_reports_entity_metrics(ner_run):
    metrics = json.loads((ner_run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_examples"] == 23
    history = metrics["history"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert set(metrics["per_type"]) <= {"PER", "LOC", "ORG", "MISC"}
    assert metrics["token_accuracy"] > 0.8 and 0.0 <= metrics["entity_f1"] <= 1.0
    config = json.loads((ner_run / "model" / "config.json").read_text())
    assert config["id2label"]["0"] == "O"
    assert sorted(config["label2id"]) == sorted(
        ["O"] + [f"{p}-{k}" for k in ("LOC", "MISC", "ORG", "PER") for p in "BI"]
    )


def test_predict_offsets_round_trip_and_pipeline_agrees(ner_run, tmp_path):
    from transformers import pipeline

    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    result = run_cli(
        "predict", str(ner_run), "--input", str(source), "--output", str(output), "--precision", "fp32"
    )
    assert result.returncode == 0, result.stderr
    predicted = [json.loads(line) for line in output.read_text().splitlines()]
    assert [p["text"] for p in predicted] == TEXTS
    assert sum(len(p["entities"]) for p in predicted) > 0, "the model should find some entity after training"
    for row in predicted:
        for entity in row["entities"]:
            assert row["text"][entity["start"] : entity["end"]] == entity["text"]
    tagger = pipeline(
        "token-classification", model=str(ner_run / "model"), aggregation_strategy="first", device="cpu"
    )
    for row, reference in zip(predicted, tagger(TEXTS), strict=True):
        assert [(e["label"], e["start"], e["end"]) for e in row["entities"]] == [
            (e["entity_group"], e["start"], e["end"]) for e in reference
        ]
        for ours, theirs in zip(row["entities"], reference, strict=True):
            assert ours["score"] == pytest.approx(float(theirs["score"]), abs=1e-4)


def test_word_input_text_is_the_words_joined_by_spaces(ner_run):
    import sftlab

    predictor = sftlab.load(ner_run, precision="fp32")
    words = ["Peter", "Blackburn", "went", "to", "London", "."]
    (by_words,) = predictor.predict([{"tokens": words}])
    (by_text,) = predictor.predict([" ".join(words)])
    assert by_words["text"] == "Peter Blackburn went to London ."
    assert by_words["tags"] == by_text["tags"] and by_words["entities"] == by_text["entities"]
    for entity in by_words["entities"]:
        assert by_words["text"][entity["start"] : entity["end"]] == entity["text"]


def test_eval_reads_conll_files_and_strict_mode(ner_run, tmp_path):
    conll = tmp_path / "dev.conll"
    # IOB1 tags (entities start with I-) in a 4-column file: converted to IOB2 on reading
    conll.write_text("-DOCSTART- -X- -X- O\n\nPeter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n"
                     "visited VBD B-VP O\nLondon NNP B-NP I-LOC\n\nJohn NNP B-NP I-PER\nsmiled VBD B-VP O\n",
                     encoding="utf-8")  # fmt: skip
    out = tmp_path / "eval.json"
    result = run_cli("eval", str(ner_run), "--data", str(conll), "--output", str(out), "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["num_examples"] == 2 and metrics["num_entities"] == 3
    assert "entity F1 (default mode)" in result.stdout


def test_conll_reader_and_its_errors(tmp_path):
    path = tmp_path / "a.conll"
    path.write_text("-DOCSTART- O\n\nEU B-ORG\nrejects O\n\t\nPeter B-PER\n", encoding="utf-8")
    table = read_table(path)
    assert [row["tokens"] for row in table.rows] == [["EU", "rejects"], ["Peter"]]
    assert table.rows[0]["fields"] == [["EU", "rejects"], ["B-ORG", "O"]]
    assert table.where(1) == f"{path} line 6"
    path.write_text("EU NNP B-ORG\nrejects VBZ\n", encoding="utf-8")
    with pytest.raises(
        SftlabError, match=r"a.conll line 2: expected 3 whitespace-separated columns .* found 2"
    ):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "rows", "expected"),
    [
        ("tags length", '{"tokens": ["EU", "rejects"], "tags": ["B-ORG"]}\n',
         r"train.jsonl line 1: 'tags' must be a list of 2 tags, one per word"),
        ("not IOB", '{"tokens": ["EU", "rejects"], "tags": ["ORG", "O"]}\n',
         r"train.jsonl: data.tag_scheme iob2 needs tags O, B-TYPE, I-TYPE, found 'ORG'"),
        ("tokens not a list", '{"tokens": "EU rejects", "tags": ["B-ORG", "O"]}\n',
         r"train.jsonl line 1: 'tokens' must be a non-empty list of words"),
    ],
)  # fmt: skip
def test_bad_token_input_gives_one_line(tmp_path, name, rows, expected):
    train = tmp_path / "train.jsonl"
    train.write_text(rows * 12, encoding="utf-8")
    result = run_cli("train", str(_config(tmp_path)), f"data.train={train}", "data.tag_scheme=iob2",
                     f"output_dir={tmp_path / 'o'}")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.search(expected, result.stderr), name
    assert not (tmp_path / "o").exists()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "ner.yaml"
    path.write_text("task: token_classification\n", encoding="utf-8")
    return path
