"""QuAC as a built-in QA set, and `data.extra_train`: more training rows from a built-in set or a file."""

from __future__ import annotations

import json

import pytest

from sftlab.catalog.datasets import fetch_dataset, quac_first_answer
from sftlab.config import load_config
from sftlab.data.loading import load_tables
from sftlab.data.readers import read_table
from sftlab.errors import SftlabError


def test_quac_first_answer_is_the_first_of_the_joined_gold_spans():
    passage = "In May 1983, she married Nikos Karvelas, a composer, and moved to Athens."
    joined = "In May 1983, she married Nikos Karvelas, In May 1983, she married Nikos Karvelas, a composer,"
    assert quac_first_answer(passage, joined) == (0, "In May 1983, she married Nikos Karvelas,")
    assert quac_first_answer(passage, "moved to Athens. moved to Athens.") == (
        passage.index("moved"),
        "moved to Athens.",
    )
    assert quac_first_answer(passage, "CANNOTANSWER CANNOTANSWER") is None
    assert quac_first_answer(passage, "nowhere in it") is None


def test_quac_rows_are_spans_of_their_passages():
    splits = {name: read_table(path).rows for name, path in fetch_dataset("quac").items()}
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 2400,
        "validation": 300,
        "test": 300,
    }
    rows = [row for rows in splits.values() for row in rows]
    assert sum(not row["answers"]["text"] for row in rows) == 451  # CANNOTANSWER
    for row in rows:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True):
            assert text and row["context"][start : start + len(text)] == text
    assert rows[0]["question"] == "what happened in 1983?"
    assert rows[0]["answers"]["text"] == ["In May 1983, she married Nikos Karvelas,"]
    # No QuAC passage is a DisflQA passage, so QuAC can train a DisflQA model without leaking its test.
    disflqa = {row["context"] for path in fetch_dataset("disflqa").values() for row in read_table(path).rows}
    assert not disflqa & {row["context"] for row in rows}


def test_extra_train_appends_rows_after_max_train_samples(tmp_path):
    extra = tmp_path / "more.jsonl"
    extra.write_text(
        "".join(json.dumps({"text": f"What is thing {i} ?", "label": "DESC"}) + "\n" for i in range(5))
    )
    config = load_config({"data": {"dataset": "trec6", "max_train_samples": 10, "extra_train": [str(extra), "trec6"],
                                   "max_extra_train_samples": 3}})  # fmt: skip
    tables = load_tables(config.data)
    train, plain = tables["train"], read_table(fetch_dataset("trec6")["train"])
    assert len(train) == 16
    assert train.rows[:10] == plain.rows[:10] and train.rows[13:] == plain.rows[:3]
    assert train.rows[10]["text"] == "What is thing 0 ?"
    # Each row still names its own file and line.
    assert train.where(0) == f"{fetch_dataset('trec6')['train']} line 1"
    assert train.where(11) == f"{extra} line 2"
    assert train.subset([12, 0]).where(0) == f"{extra} line 3"
    assert len(tables["validation"]) == len(read_table(fetch_dataset("trec6")["validation"]))


def test_extra_train_that_is_neither_a_dataset_nor_a_file_is_one_clear_error():
    config = load_config({"data": {"dataset": "trec6", "extra_train": ["quack"]}})
    with pytest.raises(
        SftlabError, match=r"data.extra_train: 'quack' is neither a built-in dataset \(.*quac"
    ):
        load_tables(config.data)
