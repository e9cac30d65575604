"""Bad input to `sftlab train`: one clear line naming the file/line/key, exit code 2, no traceback,
no output directory, input files untouched."""

from __future__ import annotations

import pytest

from conftest import run_cli

GOOD_ROWS = "text,label\nWhat is the capital of Peru ?,LOC\nWho wrote Hamlet ?,HUM\nWhere is Rome ?,LOC\nWho is Ada ?,HUM\n"


def _files(tmp_path, train, validation=None, suffix="csv"):
    train_path = tmp_path / f"train.{suffix}"
    train_path.write_text(train, encoding="utf-8")
    overrides = [f"data.train={train_path}"]
    paths = [train_path]
    if validation is not None:
        validation_path = tmp_path / f"validation.{suffix}"
        validation_path.write_text(validation, encoding="utf-8")
        overrides.append(f"data.validation={validation_path}")
        paths.append(validation_path)
    return overrides, paths


CASES = {
    "missing train file": (lambda t: ([f"data.train={t / 'nope.csv'}"], []), r"nope.csv: file not found"),
    "missing column": (
        lambda t: _files(t, "question,label\nWhere is Rome ?,LOC\nWho is Ada ?,HUM\n"),
        r"train.csv line 2: missing column 'text' \(columns: question, label\)",
    ),
    "empty text": (lambda t: _files(t, GOOD_ROWS + '"",LOC\n'), r"train.csv line 6: empty 'text'"),
    "validation label not in train": (
        lambda t: _files(t, GOOD_ROWS, "text,label\nHow far is it ?,NUM\n"),
        r"validation.csv line 2: label 'NUM' is not one of the training labels \(HUM, LOC\)",
    ),
    "ragged csv": (lambda t: _files(t, GOOD_ROWS + "a,b,c\n"), r"train.csv line 6: expected 2 fields"),
    "broken json line": (
        lambda t: _files(t, '{"text": "Where is Rome ?", "label": "LOC"}\n{"text": "Who\n', suffix="jsonl"),
        r"train.jsonl line 2: invalid JSON",
    ),
    "mixed label types": (
        lambda t: _files(t, '{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n', suffix="jsonl"),
        r"train.jsonl: 'label' mixes integer labels \(.*line 1\) and text labels \(.*line 2\)",
    ),
    "unknown model": (
        lambda t: (["model=./no/such/model", "data.dataset=trec6"], []),
        r"model './no/such/model': no such folder",
    ),
    "unknown hub model": (
        lambda t: (["model=no-such-org-sftlab/no-such-model", "data.dataset=trec6"], []),
        r"model 'no-such-org-sftlab/no-such-model': not a built-in name \(minilm, smollm2\), a local folder, or a loadable",
    ),
    "unknown dataset": (
        lambda t: (["data.dataset=trec7"], []),
        r"data.dataset: unknown dataset 'trec7' \(built-in: trec6, sms_spam",
    ),
    "bad config value": (
        lambda t: (["train.batch_size=0", "data.dataset=trec6"], []),
        r"train.batch_size: must be at least 1, or 'full' \(got 0\)",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_gives_one_clear_line(tmp_path, case):
    make, expected = CASES[case]
    overrides, inputs = make(tmp_path)
    before = {path: path.read_bytes() for path in inputs}
    output = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text("task: classification\nmodel: minilm\n", encoding="utf-8")
    result = run_cli("train", str(config), *overrides, f"output_dir={output}", "train.epochs=1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sftlab: error: ")
    assert "Traceback" not in result.stderr
    import re

    assert re.search(expected, lines[0]), lines[0]
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert {path: path.read_bytes() for path in inputs} == before


def test_config_errors_list_every_bad_key_one_per_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("modle: minilm\ntrain:\n  epocs: 2\n  learning_rate: -1\n", encoding="utf-8")
    result = run_cli("train", str(config), f"output_dir={tmp_path / 'out'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"sftlab: error: {config}: modle: unknown key (did you mean 'model'?)",
        f"sftlab: error: {config}: train.epocs: unknown key (did you mean 'train.epochs'?)",
        f"sftlab: error: {config}: train.learning_rate: Input should be greater than 0 (got -1)",
    ]
    assert not (tmp_path / "out").exists()


def test_predict_and_eval_bad_input(trained_run, tmp_path):
    result = run_cli("predict", str(tmp_path), "--input", "x.txt", "--output", str(tmp_path / "p.jsonl"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"sftlab: error: {tmp_path}: not an sftlab run (expected model/ and config.yaml inside)"
    )
    bad = tmp_path / "labeled.csv"
    bad.write_text("text,label\nWhere is Rome ?,LOC\nHow are you ?,CHAT\n", encoding="utf-8")
    result = run_cli("eval", str(trained_run), "--data", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"sftlab: error: {bad} line 3: label 'CHAT' is not one of the training labels (ABBR, DESC, ENTY, HUM, LOC, NUM)"
    )
    result = run_cli(
        "predict",
        str(trained_run),
        "--input",
        str(tmp_path / "missing.csv"),
        "--output",
        str(tmp_path / "p.jsonl"),
    )
    assert result.returncode == 2 and "missing.csv: file not found" in result.stderr
    assert not (tmp_path / "p.jsonl").exists()
