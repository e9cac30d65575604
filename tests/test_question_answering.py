"""Extractive QA end to end: real MiniLM on a real DisflQA slice, through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from sftlab.catalog.datasets import fetch_dataset
from sftlab.data.readers import read_table
from sftlab.tasks.question_answering import QuestionAnsweringTask, flatten_squad

# 48 questions (about 1.5 windows each at 128 tokens), 3 epochs; evaluated on 16 questions.
QUICK = ["data.dataset=disflqa", "data.max_train_samples=48", "data.max_eval_samples=16", "data.max_length=128",
         "data.doc_stride=48", "train.epochs=3", "train.batch_size=8", "train.learning_rate=1e-4", "train.seed=5"]  # fmt: skip


def _config(folder: Path) -> Path:
    path = folder / "qa.yaml"
    path.write_text("task: question_answering\nmodel: minilm\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def qa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run") / "qa"
    result = run_cli(
        "train", str(_config(tmp_path_factory.mktemp("c"))), *QUICK, f"output_dir={output}", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    return output


def test_training_lowers_loss_and_reports_squad_metrics(qa_run):
    metrics = json.loads((qa_run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_examples"] == 16
    assert metrics["num_windows"] >= 16
    assert metrics["has_answer_count"] + metrics["no_answer_count"] == 16
    history = metrics["history"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert 0.0 <= metrics["exact_match"] <= metrics["f1"] <= 100.0


def _plain_transformers_answer(model_dir: Path, question: str, context: str) -> str:
    """The answer plain transformers gives for a one-window context, by brute force over every span.

    transformers 5 removed the question-answering pipeline ("use the text-generation pipeline"), so this
    re-does its decoding independently: best start + end logit over context spans of at most 30 tokens,
    or no answer when [CLS] scores higher.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    encoded = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    in_context = [i for i, sequence in enumerate(encoded.sequence_ids(0)) if sequence == 1]
    with torch.inference_mode():
        output = model(**encoded)
    start, end = output.start_logits[0], output.end_logits[0]
    best, answer = float(start[0] + end[0]), ""
    for i in in_context:
        for j in in_context:
            if i <= j < i + 30 and float(start[i] + end[j]) > best:
                best, answer = float(start[i] + end[j]), context[offsets[i][0] : offsets[j][1]]
    return answer


def test_predict_spans_round_trip_and_agree_with_plain_transformers(qa_run, tmp_path):
    rows = [json.loads(line) for line in fetch_dataset("disflqa")["test"].read_text().splitlines()]
    # short contexts: one window each, so the brute-force reference sees exactly the same input
    rows = [r for r in rows if len(r["context"]) < 350][:6]
    source = tmp_path / "questions.jsonl"
    source.write_text(
        "".join(json.dumps({"question": r["question"], "context": r["context"]}) + "\n" for r in rows)
    )
    output = tmp_path / "answers.jsonl"
    result = run_cli(
        "predict", str(qa_run), "--input", str(source), "--output", str(output), "--precision", "fp32"
    )
    assert result.returncode == 0, result.stderr
    predicted = [json.loads(line) for line in output.read_text().splitlines()]
    assert [p["question"] for p in predicted] == [r["question"] for r in rows]
    for row, ours in zip(rows, predicted, strict=True):
        assert 0.0 <= ours["score"] <= 1.0
        if ours["answer"]:
            assert row["context"][ours["start"] : ours["end"]] == ours["answer"]
        else:
            assert ours["start"] is None and ours["end"] is None
        assert ours["answer"] == _plain_transformers_answer(qa_run / "model", row["question"], row["context"])


def test_official_squad_layout_is_flattened(tmp_path):
    squad = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "2", "question": "Where is Rome?", "answers": [], "is_impossible": True}]}]}]}  # fmt: skip
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad), encoding="utf-8")
    table = flatten_squad(read_table(path))
    assert [row["question"] for row in table.rows] == ["Where is Paris?", "Where is Rome?"]
    assert QuestionAnsweringTask().gold_answers(table) == [[("France", 12)], []]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"text": ["France"], "answer_start": [3]},
         r"train.jsonl line 2: answer 'France' is not at answer_start 3 of 'context' \(it occurs at 12\)"),
        ({"text": ["Spain"], "answer_start": [0]}, r"line 2: answer 'Spain' is not at answer_start 0 .*does not occur"),
        ({"text": ["France"]}, r"line 2: 'answers' must be \{\"text\": \[...\], \"answer_start\": \[...\]\}"),
    ],
)  # fmt: skip
def test_bad_answers_give_one_line(tmp_path, answers, expected):
    good = {
        "context": "Paris is in France.",
        "question": "Where is Paris?",
        "answers": {"text": ["France"], "answer_start": [12]},
    }
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps(good) + "\n" + json.dumps({**good, "answers": answers}) + "\n")
    result = run_cli("train", str(_config(tmp_path)), f"data.train={train}", "data.max_length=64",
                     "data.doc_stride=16", f"output_dir={tmp_path / 'o'}")  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(expected, result.stderr), result.stderr
    assert not (tmp_path / "o").exists()


def test_doc_stride_must_leave_room(tmp_path):
    result = run_cli(
        "train",
        str(_config(tmp_path)),
        "data.dataset=disflqa",
        "data.max_length=128",
        f"output_dir={tmp_path / 'o'}",
    )
    assert result.returncode == 2
    assert "data.doc_stride (128) must be less than half of data.max_length (128)" in result.stderr


def test_oracle_logits_decode_to_the_gold_answers_across_windows():
    """Preprocessing and postprocessing, independent of how well a model trained: logits that peak at the
    gold start/end tokens (and below them at [CLS]) must decode to exactly the gold character span, also
    when short windows split each context and the answer sits in a later window."""
    import torch
    from transformers import AutoTokenizer

    from sftlab.catalog.models import resolve_model

    table = read_table(fetch_dataset("disflqa")["test"]).subset(list(range(40)))
    task = QuestionAnsweringTask(max_length=64, doc_stride=16, max_answer_length=64)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    golds = task.gold_answers(table)
    questions = [row["question"] for row in table.rows]
    contexts = [row["context"] for row in table.rows]
    features = task.features(tokenizer, questions, contexts, golds)
    assert len(features) > 2 * len(table), "short windows split every context"
    logits = []
    for feature in features:
        start = torch.full((len(feature["input_ids"]),), -10.0)
        end = start.clone()
        if feature["start_positions"]:  # the answer lies in this window
            start[feature["start_positions"]], end[feature["end_positions"]] = 10.0, 10.0
        start[0], end[0] = 0.0, 0.0  # [CLS]: below a found answer, above every other span
        logits.append((start, end))
    answers = task.best_answers(features, logits)
    # The token-aligned gold span: from the first labelled window of each question.
    aligned = {}
    for feature in features:
        if feature["start_positions"] and feature["example"] not in aligned:
            offsets = feature["offsets"]
            aligned[feature["example"]] = (
                offsets[feature["start_positions"]][0],
                offsets[feature["end_positions"]][1],
            )
    answerable = exact = 0
    for index, (answer, gold, context) in enumerate(zip(answers, golds, contexts, strict=True)):
        if not gold:
            assert answer["answer"] == "" and answer["start"] is None
            continue
        answerable += 1
        text, start_char = gold[0]
        assert (answer["start"], answer["end"]) == aligned[index]
        assert context[answer["start"] : answer["end"]] == answer["answer"]
        assert (
            answer["start"] <= start_char and start_char + len(text) <= answer["end"]
        )  # covers the gold text
        exact += answer["answer"] == text
    assert answerable >= 25
    # Gold answers are word-aligned except a few DisflQA oddities (e.g. "4" located inside "1864").
    assert exact >= answerable - 2
    in_later_window = [f for f in features if f["start_positions"] and features.index(f) > 0
                       and features[features.index(f) - 1]["example"] == f["example"]]  # fmt: skip
    assert in_later_window, "some answers are only reachable through a later window"
