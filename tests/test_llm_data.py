"""Instruction data without a model: answer metrics, packing plans, row formats and their errors."""

from __future__ import annotations

import pytest

from sftlab.data.chat import DEFAULT_CHAT_TEMPLATE, conversation, row_format
from sftlab.data.packing import pack_rows, packed_lm_batch
from sftlab.errors import SftlabError
from sftlab.evaluation.answers import answer_metrics, exact_match, normalize_answer, token_f1


def test_answer_normalization_and_scores():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("the eiffel tower", ["Eiffel Tower"]) == 1.0
    assert exact_match("Paris", ["Lyon", "paris."]) == 1.0
    assert exact_match("Paris, France", ["Paris"]) == 0.0
    # "paris france" vs "paris": precision 1/2, recall 1 -> F1 2/3
    assert token_f1("Paris, France", ["Paris"]) == pytest.approx(2 / 3)
    assert token_f1("Lyon", ["Paris"]) == 0.0
    assert answer_metrics(["Paris", "Lyon"], [["paris"], ["Paris"]]) == {"exact_match": 0.5, "token_f1": 0.5}


def test_pack_rows_first_fit_decreasing():
    assert pack_rows([5, 3, 4, 2], capacity=8) == [[0, 1], [2, 3]]
    assert pack_rows([9, 1], capacity=8) == [[0], [1]]  # an example longer than a row gets its own row


def test_packed_batch_restarts_positions_and_masks_padding():
    examples = [
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
        {"input_ids": [4, 5], "labels": [-100, 5]},
        {"input_ids": [6, 7, 8, 9], "labels": [-100, -100, 8, 9]},
    ]
    batch = packed_lm_batch(examples, pad_token_id=0, capacity=6)
    # rows (longest first): [ex2 (4) + ex1 (2)], [ex0 (3) + 3 padding]
    assert batch["input_ids"].tolist() == [[6, 7, 8, 9, 4, 5], [1, 2, 3, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, -100, 8, 9, -100, 5], [-100, 2, 3, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]


def test_row_formats():
    assert row_format(["messages"]) == "messages"
    assert row_format(["prompt", "completion"]) == "prompt"
    assert row_format(["instruction", "input", "output"]) == "instruction"
    alpaca = {"instruction": "Translate", "input": "chat", "output": "cat"}
    assert conversation(alpaca, "instruction", "f line 1", with_answer=True) == [
        {"role": "user", "content": "Translate\n\nchat"},
        {"role": "assistant", "content": "cat"},
    ]
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert conversation(chat, "messages", "f line 1", with_answer=False) == [
        {"role": "user", "content": "hi"}
    ]
    assert "eos_token" in DEFAULT_CHAT_TEMPLATE


@pytest.mark.parametrize(
    ("row", "kind", "message"),
    [
        ({"prompt": "q"}, "prompt", "f line 3: missing 'completion'"),
        ({"prompt": " ", "completion": "a"}, "prompt", "f line 3: empty 'prompt'"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages", "f line 3: message 1 needs a role"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages", "f line 3: the last message must be"),
        ({"instruction": "x", "output": 3}, "instruction", "f line 3: 'output' must be text, got int"),
    ],
)
def test_bad_rows_name_the_line(row, kind, message):
    with pytest.raises(SftlabError, match=message):
        conversation(row, kind, "f line 3", with_answer=True)


def test_no_instruction_columns_is_an_error():
    with pytest.raises(SftlabError, match="expected 'messages', 'prompt'"):
        row_format(["text", "label"])


def test_cli_rejects_a_classification_file_for_causal_lm(tmp_path):
    from tests.conftest import run_cli

    (tmp_path / "train.csv").write_text("text,label\nhello,a\nbye,b\n", encoding="utf-8")
    result = run_cli(
        "train", "examples/smollm2_commonsense_full.yaml", "data.dataset=null", f"data.train={tmp_path / 'train.csv'}",
        f"output_dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "train.csv: no instruction columns (columns: text, label)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_disflqa_instructions_are_disflqa_questions_in_the_same_splits():
    # The causal-LM DisflQA set must score on exactly the questions the extractive set holds out, and its
    # "unknown" replies stand for SQuAD 2.0's empty answer.
    import json

    from sftlab.catalog.datasets import fetch_dataset

    extractive, instructions = fetch_dataset("disflqa"), fetch_dataset("disflqa_instructions")
    for split in ("train", "validation", "test"):
        questions = [json.loads(line) for line in extractive[split].read_text(encoding="utf-8").splitlines()]
        rows = [json.loads(line) for line in instructions[split].read_text(encoding="utf-8").splitlines()]
        assert len(rows) == len(questions)
        for question, row in zip(questions, rows, strict=True):
            assert row["prompt"].endswith(f"Passage: {question['context']}\nQuestion: {question['question']}")
            expected = question["answers"]["text"][0] if question["answers"]["text"] else "unknown"
            assert row["completion"] == expected and row["answers"] == [expected]
    assert sum(row["completion"] == "unknown" for row in rows) == 56  # test: 56 of 200 unanswerable
