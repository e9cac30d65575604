"""Bad input to `sftlab train`: one clear line naming the file/line/key, exit code 2, no traceback,
no output directory, input files untouched."""

from __future__ import annotations

import re
from pathlib import Path

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
        r"model 'no-such-org-sftlab/no-such-model': not a built-in name \(minilm, smollm2, paraphrase_minilm_l3, mpnet_base, multilingual_e5_small\), a local folder, or a loadable",
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


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _train_file(name, content, validation=None):
    """A case whose training file (and maybe validation file) is `content`, written as `name`."""

    def make(tmp_path):
        train = _write(tmp_path, name, content)
        overrides, inputs = [f"data.train={train}"], [train]
        if validation is not None:
            checked = _write(tmp_path, "validation" + Path(name).suffix, validation)
            overrides.append(f"data.validation={checked}")
            inputs.append(checked)
        return overrides, inputs

    return make


def _parquet(name, columns):
    def make(tmp_path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / name
        pq.write_table(pa.table(columns), path)
        return [f"data.train={path}"], [path]

    return make


def _config_file(content):
    """A case whose YAML config itself is the bad input (the config path replaces the default one)."""

    def make(tmp_path):
        path = _write(tmp_path, "bad.yaml", content)
        return [f"--config={path}"], [path]

    return make


GOOD_JSONL = '{"text": "Where is Rome ?", "label": "LOC"}\n{"text": "Who is Ada ?", "label": "HUM"}\n'
LONG_FIELD = "text,label\n" + "Who " * 40_000 + "?,HUM\nWhere is Rome ?,LOC\n"

# More malformed inputs, per format. Each: (make(tmp_path) -> (overrides, input files), expected message).
# A new task type adds its own rows here (e.g. CoNLL lines with the wrong column count).
CASES.update(
    {
        # CSV
        "csv empty file": (_train_file("train.csv", ""), r"train.csv: empty file, expected a header line"),
        "csv header only": (_train_file("train.csv", "text,label\n"), r"train.csv: no data rows"),
        "csv not utf-8": (
            _train_file("train.csv", b"text,label\nWhere is Rome ?,LOC\nCaf\xe9 ?,ENTY\n"),
            r"train.csv line 3: not valid UTF-8",
        ),
        "csv unterminated quote": (
            _train_file("train.csv", GOOD_ROWS + '"Where is Rome ?,LOC\n'),
            r"train.csv line \d+: malformed CSV",
        ),
        "csv duplicate column": (
            _train_file("train.csv", "text,text\na,b\n"),
            r"train.csv line 1: duplicate column name\(s\) text",
        ),
        "csv over-long field": (
            _train_file("train.csv", LONG_FIELD),
            r"train.csv line 2: malformed CSV: field larger than field limit",
        ),
        "csv missing label column": (
            _train_file("train.csv", "text\nWhere is Rome ?\nWho is Ada ?\n"),
            r"train.csv line 2: missing column 'label' \(columns: text\)",
        ),
        "csv unsupported suffix": (
            _train_file("train.xlsx", "text,label\n"),
            r"train.xlsx: unsupported file type '.xlsx'",
        ),
        "csv single label": (
            _train_file("train.csv", "text,label\nWhere is Rome ?,LOC\nWhere is Oslo ?,LOC\n"),
            r"train.csv: 'label' has a single label \('LOC'\)",
        ),
        # TSV
        "tsv ragged": (
            _train_file("train.tsv", "text\tlabel\nWhere is Rome ?\tLOC\nWho is Ada ?\tHUM\textra\n"),
            r"train.tsv line 3: expected 2 fields",
        ),
        "tsv not utf-8": (
            _train_file("train.tsv", b"text\tlabel\n\xff\xfe\tLOC\n"),
            r"train.tsv line 2: not valid UTF-8",
        ),
        "tsv empty text": (
            _train_file("train.tsv", "text\tlabel\nWhere is Rome ?\tLOC\n   \tHUM\n"),
            r"train.tsv line 3: empty 'text'",
        ),
        # JSON
        "json empty file": (
            _train_file("train.json", "  \n"),
            r"train.json: empty file, expected a JSON array",
        ),
        "json not an array": (
            _train_file("train.json", '{"text": "Where is Rome ?", "label": "LOC"}'),
            r"train.json: expected a JSON array of objects",
        ),
        "json broken": (
            _train_file("train.json", '[{"text": "Where is Rome ?", "label": "LOC"},\n {"text": }]'),
            r"train.json line 2: invalid JSON",
        ),
        "json record not an object": (
            _train_file("train.json", '[{"text": "Where is Rome ?", "label": "LOC"}, ["Who", "HUM"]]'),
            r"train.json record 2: expected a JSON object, got list",
        ),
        "json fractional label": (
            _train_file("train.json", '[{"text": "a", "label": 1}, {"text": "b", "label": 1.5}]'),
            r"train.json record 2: 'label' must be a label \(text or integer\), got 1.5",
        ),
        "json boolean label": (
            _train_file("train.json", '[{"text": "a", "label": true}, {"text": "b", "label": false}]'),
            r"train.json record 1: 'label' must be a label \(text or integer\), got True",
        ),
        "json NaN target": (
            _train_file("train.json", '[{"text": "a", "label": 1}, {"text": "b", "label": NaN}]'),
            r"train.json record 2: 'label' must be a label \(text or integer\), got nan",
        ),
        "json text not a string": (
            _train_file("train.json", '[{"text": "a", "label": "x"}, {"text": 42, "label": "y"}]'),
            r"train.json record 2: 'text' must be text, got int 42",
        ),
        # JSONL
        "jsonl line not an object": (
            _train_file("train.jsonl", GOOD_JSONL + '["Who is Ada ?", "HUM"]\n'),
            r"train.jsonl line 3: expected a JSON object, got list",
        ),
        "jsonl row without label": (
            _train_file("train.jsonl", GOOD_JSONL + '{"text": "Who is Ada ?"}\n'),
            r"train.jsonl line 3: missing column 'label'",
        ),
        "jsonl null text": (
            _train_file("train.jsonl", GOOD_JSONL + '{"text": null, "label": "HUM"}\n'),
            r"train.jsonl line 3: empty 'text'",
        ),
        "jsonl validation label unknown": (
            _train_file("train.jsonl", GOOD_JSONL, '{"text": "How far ?", "label": "NUM"}\n'),
            r"validation.jsonl line 1: label 'NUM' is not one of the training labels \(HUM, LOC\)",
        ),
        # Parquet
        "parquet corrupt": (
            _train_file("train.parquet", b"PAR1 this is not parquet"),
            r"train.parquet: not a readable Parquet file",
        ),
        "parquet missing column": (
            _parquet(
                "train.parquet", {"question": ["Where is Rome ?", "Who is Ada ?"], "label": ["LOC", "HUM"]}
            ),
            r"train.parquet row 1: missing column 'text' \(columns: question, label\)",
        ),
        "parquet NaN target": (
            _parquet("train.parquet", {"text": ["a", "b", "c"], "label": [1.0, float("nan"), 0.0]}),
            r"train.parquet row 2: 'label' must be a label \(text or integer\), got nan",
        ),
        "parquet null text": (
            _parquet("train.parquet", {"text": ["Where is Rome ?", None], "label": ["LOC", "HUM"]}),
            r"train.parquet row 2: empty 'text'",
        ),
        # YAML config
        "yaml invalid": (
            _config_file("model: minilm\ntrain: [epochs: 2\n"),
            r"bad.yaml line \d+: invalid YAML",
        ),
        "yaml not a mapping": (
            _config_file("- model\n- minilm\n"),
            r"bad.yaml: expected a mapping of config keys at the top level, got list",
        ),
        "yaml not utf-8": (_config_file(b"model: minilm\n# caf\xe9\n"), r"bad.yaml: not UTF-8 text"),
        "yaml missing": (
            lambda t: ([f"--config={t / 'none.yaml'}"], []),
            r"none.yaml: config file not found",
        ),
        "yaml is a directory": (
            lambda t: ([f"--config={t}"], []),
            r": is a directory, expected a YAML config file",
        ),
        # Paths and the output directory
        "data path is a directory": (
            lambda t: ([f"data.train={t}"], []),
            r": is a directory, expected a data file",
        ),
        "output_dir under a regular file": (
            lambda t: (
                ["data.dataset=trec6", f"output_dir={_write(t, 'file.txt', 'x') / 'run'}"],
                [t / "file.txt"],
            ),
            r"output_dir .*file.txt/run: .*file.txt is not writable",
        ),
        "resume without checkpoints": (
            lambda t: (["data.dataset=trec6", "--resume"], []),
            r"no valid checkpoint to resume from",
        ),
        "resume from a missing path": (
            lambda t: (["data.dataset=trec6", f"--resume={t / 'nowhere'}"], []),
            r"--resume .*nowhere: no such checkpoint",
        ),
        "resume with overwrite": (
            lambda t: (["data.dataset=trec6", "--resume", "--overwrite"], []),
            r"--resume continues the run in output_dir and --overwrite replaces it: choose one",
        ),
        "config check: save_every without checkpoints": (
            lambda t: (["data.dataset=trec6", "train.save_every=5", "train.keep_last=0"], []),
            r"train: train.save_every needs train.keep_last of at least 1",
        ),
    }
)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_gives_one_clear_line(tmp_path, capsys, case):
    """Run in-process through the CLI's main(): exit code 2, one `sftlab: error:` line, nothing written."""
    from sftlab.cli import main

    make, expected = CASES[case]
    arguments, inputs = make(tmp_path)
    before = {path: path.read_bytes() for path in inputs}
    listing = sorted(p.name for p in tmp_path.iterdir())
    output = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text("task: classification\nmodel: minilm\n", encoding="utf-8")
    flags = [a for a in arguments if a.startswith("--") and not a.startswith("--config=")]
    overrides = [a for a in arguments if not a.startswith("--")]
    chosen = next((a.removeprefix("--config=") for a in arguments if a.startswith("--config=")), str(config))
    if not any(o.startswith("output_dir=") for o in overrides):
        overrides.append(f"output_dir={output}")
    code = main(["train", chosen, *overrides, "train.epochs=1", *flags])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sftlab: error: ")
    assert re.search(expected, lines[0]), lines[0]
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*listing, "config.yaml"})
    assert {path: path.read_bytes() for path in inputs} == before


def test_bad_input_through_the_real_command(tmp_path):
    """The same contract through a subprocess: no traceback on stderr, exit code 2."""
    bad = _write(tmp_path, "train.csv", GOOD_ROWS + "a,b,c\n")
    result = run_cli("train", "examples/trec6.yaml", f"data.train={bad}", "data.dataset=null",
                     f"output_dir={tmp_path / 'out'}")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"sftlab: error: {bad} line 6: expected 2 fields (text, label), found 3"
    assert not (tmp_path / "out").exists()


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


@pytest.fixture
def small_disk(tmp_path):
    """A real 300 MB tmpfs: room for one MiniLM checkpoint (~180-270 MB), not two. Skipped where mounting is
    not permitted; test_checkpoints.py covers the same failure with a patched writer everywhere."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_disk_filling_up_during_a_checkpoint(small_disk):
    output = small_disk / "run"
    result = run_cli(
        "train", "examples/trec6.yaml", "data.max_train_samples=48", "data.max_eval_samples=24",
        "data.max_length=24", "train.batch_size=24", "train.epochs=1", "train.precision=fp32",
        "train.save_every=1", f"output_dir={output}", "--quiet",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    # The disk fills in safetensors' writer (which names the OS error) or in torch.save's (which does not).
    where = f"sftlab: error: {output.resolve() / 'checkpoints' / 'step-2'}: cannot write checkpoint: "
    assert len(lines) == 1 and lines[0].startswith(where), result.stderr
    assert lines[0][len(where) :] in (
        "No space left on device; the last good checkpoint step-1 is kept",
        "No space left on device (torch.save's writer stopped short); the last good checkpoint step-1 is kept",
    ), result.stderr
    from sftlab.checkpoints import read_state

    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["step-1"]
    assert read_state(output / "checkpoints" / "step-1")["step"] == 1
    assert not (output / "metrics.json").exists() and not (output / "model").exists()


def test_read_only_output_directory(tmp_path, capsys):
    """An output_dir on a read-only filesystem (a real read-only tmpfs; root ignores chmod, not `ro`)."""
    import subprocess

    from sftlab.cli import main

    mount = tmp_path / "readonly"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        code = main(["train", "examples/trec6.yaml", f"output_dir={mount / 'run'}"])
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"sftlab: error: output_dir {mount / 'run'}: {mount} is not writable"
    )


def test_write_errors_are_described_in_plain_words():
    from sftlab.outputs import describe_write_error

    assert describe_write_error(OSError(28, "No space left on device")) == "No space left on device"
    safetensors_style = RuntimeError("Error while serializing: I/O error: No space left (os error 28)")
    assert describe_write_error(safetensors_style) == "No space left on device"
    torch_style = RuntimeError(
        "[enforce fail at inline_container.cc:672] . unexpected pos 42636864 vs 42636752"
    )
    assert describe_write_error(torch_style) == "No space left on device (torch.save's writer stopped short)"
