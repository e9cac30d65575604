"""Every task type trains and evaluates from a minimal config (task, model, dataset) with its own defaults."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import run_cli
from sftlab.config import TASK_DEFAULTS, load_config

# Minimal configs as a new user writes them; the slices below only make the runs test-sized.
MINIMAL = {
    "classification": {"model": "minilm", "data": {"dataset": "trec6"}},
    "token_classification": {"model": "minilm", "data": {"dataset": "conll2003_sample"}},
    "question_answering": {"model": "minilm", "data": {"dataset": "disflqa"}},
    "seq2seq": {"model": {"encoder": "minilm", "decoder": "minilm"}, "data": {"dataset": "bible_en_es"}},
    "causal_lm": {"model": "smollm2", "data": {"dataset": "commonsense_qa"}},
}
SLICE = ["data.max_train_samples=24", "data.max_eval_samples=6", "train.epochs=1", "generation.max_new_tokens=8",
         "generate.max_new_tokens=6", "generate.eval_samples=3"]  # fmt: skip
# The first 120 sentences of the CoNLL-2003 excerpt hold all four entity types of its test split.
TASK_SLICE = {"token_classification": ["data.max_train_samples=120"]}
MAIN_METRIC = {"classification": "accuracy", "token_classification": "entity_f1", "question_answering": "f1",
               "seq2seq": "bleu", "causal_lm": "token_f1"}  # fmt: skip


def test_task_defaults_fill_only_unset_keys():
    config = load_config({"task": "question_answering", **MINIMAL["question_answering"]})
    assert (config.data.max_length, config.data.doc_stride) == (384, 128)
    assert (config.train.learning_rate, config.train.epochs, config.train.batch_size) == (1e-4, 4, 16)
    # The user's values win, key by key; the minimal config of the issue no longer contradicts itself.
    mine = load_config({"task": "question_answering", "data": {"dataset": "disflqa", "max_length": 256}})
    assert (mine.data.max_length, mine.data.doc_stride) == (256, 128)
    assert load_config({"data": {"dataset": "trec6"}}).data.max_length == 128
    seq2seq = load_config({"task": "seq2seq", **MINIMAL["seq2seq"]})
    assert (seq2seq.data.source_column, seq2seq.data.target_column) == ("es", "en")
    # A resolved config is stable: validating it again changes nothing.
    assert load_config(mine.to_yaml_dict()).to_yaml_dict() == mine.to_yaml_dict()


def test_sftlab_config_shows_the_per_task_defaults():
    listing = run_cli("config")
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith("data.max_length "))
    assert "Task defaults: question_answering 384, causal_lm 512." in line
    qa = run_cli("config", "--task", "question_answering")
    values = {line.split()[0]: line.split()[1] for line in qa.stdout.splitlines() if line.strip()[:1].isalpha()
              and len(line.split()) > 1}  # fmt: skip
    assert values["task"] == "question_answering" and values["data.max_length"] == "384"
    assert values["data.doc_stride"] == "128" and values["train.learning_rate"] == "0.0001"
    bad = run_cli("config", "--task", "ner")
    assert bad.returncode == 2 and "--task: unknown task 'ner'" in bad.stderr


@pytest.mark.parametrize("task", list(MINIMAL))
def test_minimal_config_trains_and_evaluates(task, tmp_path):
    config = tmp_path / f"{task}.yaml"
    config.write_text(yaml.safe_dump({"task": task, **MINIMAL[task]}), encoding="utf-8")
    output = tmp_path / "run"
    result = run_cli(
        "train", str(config), *SLICE, *TASK_SLICE.get(task, []), f"output_dir={output}", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load((output / "config.yaml").read_text())
    overridden = {item.partition("=")[0] for item in SLICE}
    for section, keys in TASK_DEFAULTS[task].items():
        for key, value in keys.items():
            if f"{section}.{key}" not in overridden:
                assert resolved[section][key] == value, (section, key)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert (
        0.0
        <= metrics[MAIN_METRIC[task]]
        <= (1.0 if task in ("classification", "token_classification") else 100.0)
    )
    assert len(metrics["history"]) == 1 and metrics["history"][0]["train_loss"] > 0
    assert (output / "model").is_dir()


def _span(answer: str, logit: float) -> dict:
    return {"answer": answer, "start": 0, "end": len(answer), "logit": logit, "score": 0.5}


def test_null_threshold_is_the_margin_with_the_best_f1_by_hand():
    from sftlab.tasks.question_answering import QuestionAnsweringTask, best_threshold

    # margin = null score - best span score: 2, 1, 3, 0.5; the first two are answerable.
    candidates = [
        {"span": _span("Paris", 5.0), "null": {"logit": 7.0, "score": 0.9}},
        {"span": _span("1990", 4.0), "null": {"logit": 5.0, "score": 0.6}},
        {"span": _span("blue", 3.0), "null": {"logit": 6.0, "score": 0.8}},
        {"span": _span("red", 2.0), "null": {"logit": 2.5, "score": 0.4}},
    ]
    golds = [["Paris"], ["1990"], [], []]
    # At 0 every question gets no answer: only the two unanswerable are right (F1 50). Answering the
    # questions with margin <= 2 gets Paris and 1990 and wrongly answers "red": F1 (100+100+100+0)/4 = 75.
    assert best_threshold(candidates, golds) == (2.0, 75.0, 50.0)
    choose = QuestionAnsweringTask.choose
    assert [choose(c, 2.0)["answer"] for c in candidates] == ["Paris", "1990", "", "red"]
    assert [choose(c, 0.0)["answer"] for c in candidates] == ["", "", "", ""]
    assert choose(candidates[2], 2.0) == {"answer": "", "start": None, "end": None, "score": 0.8}
    assert "logit" not in choose(candidates[0], 2.0)


def test_trec6_instructions_are_trec6_questions_with_their_answer_type():
    from sftlab.catalog.datasets import fetch_dataset
    from sftlab.data.readers import read_table

    for split in ("train", "test"):
        plain = read_table(fetch_dataset("trec6")[split]).rows
        instructions = read_table(fetch_dataset("trec6_instructions")[split]).rows
        assert len(plain) == len(instructions)
        assert all(
            i["prompt"].endswith(f"Question: {p['text']}") for p, i in zip(plain, instructions, strict=True)
        )
    first = instructions[0]
    assert first["completion"] == {"LOC": "location", "NUM": "number", "HUM": "human", "DESC": "description",
                                   "ENTY": "entity", "ABBR": "abbreviation"}[plain[0]["label"]]  # fmt: skip
