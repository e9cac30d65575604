"""The run report (report.html written by every run, `sftlab report`) and TensorBoard tracking, on the
session's real MiniLM run."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from sftlab.reporting.calibration import expected_calibration_error, reliability_bins
from sftlab.tracking import hyperparameters, read_tensorboard

SECTIONS = ("summary", "curves", "confusion", "calibration", "samples", "data", "config", "environment")


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_tensorboard_event_files_hold_every_logged_scalar(trained_run: Path) -> None:
    metrics = metrics_of(trained_run)
    scalars = read_tensorboard(trained_run / "logs")
    logged = [record for record in metrics["log_history"] if "train/loss" in record]
    assert logged, "the engine logged no training records"
    for key in ("train/loss", "train/learning_rate", "train/grad_norm", "train/samples_per_s", "epoch"):
        assert key in scalars, key
    for record in metrics["log_history"]:
        for key, value in record.items():
            if key == "step" or value is None:
                continue
            points = dict(scalars[key])
            assert math.isclose(points[record["step"]], value, rel_tol=1e-6, abs_tol=1e-7), (
                key,
                record["step"],
            )
    # Every validation metric at every evaluation, at the evaluation's step.
    for evaluation in metrics["history"]:
        points = dict(scalars["validation/accuracy"])
        assert math.isclose(points[evaluation["step"]], evaluation["accuracy"], rel_tol=1e-6)
    # The resolved config went in as hyperparameters (accelerate also keeps them as hparams.yml).
    stored = [yaml.safe_load(p.read_text()) for p in (trained_run / "logs").rglob("hparams.yml")]
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert stored and stored[0] == hyperparameters(config)
    assert stored[0]["train.epochs"] == 3 and stored[0]["data.dataset"] == "trec6"


def test_report_has_its_sections_and_images_and_the_numbers_of_metrics_json(trained_run: Path) -> None:
    page = (trained_run / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', page)
    alts = {alt for _, alt in images}
    assert {"loss curves", "validation metric curves", "learning rate", "confusion matrix", "per-class scores",
            "reliability diagram"} <= alts  # fmt: skip
    assert all(len(data) > 2000 for data, _ in images)
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page and "<script" not in page
    metrics = metrics_of(trained_run)
    shown = dict(re.findall(r"data-key=\"([^\"]+)\" data-value='([^']*)'", page))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float | str) and k not in ("split",)}
    assert set(scalars) <= set(shown)
    for key, value in scalars.items():
        assert json.loads(html.unescape(shown[key])) == value, key
    # The confusion matrix cells and the per-evaluation history are those of metrics.json.
    assert f"{metrics['history'][-1]['accuracy']:.4f}" in page
    correct = sum(row[i] for i, row in enumerate(metrics["confusion_matrix"]["matrix"]))
    assert correct == round(metrics["accuracy"] * metrics["num_examples"])


def test_report_calibration_and_samples_come_from_the_saved_model(trained_run: Path, tmp_path: Path) -> None:
    """The ECE in the report is the one computed from `sftlab predict` on the report split; the sample
    table puts errors first."""
    from sftlab.config import load_config
    from sftlab.data.loading import load_tables

    test = load_tables(load_config(trained_run / "config.yaml").data)["test"]
    source = tmp_path / "test.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in test.rows))
    precision = metrics_of(trained_run)["precision"]  # the precision the run (and its report) predicted in
    result = run_cli("predict", str(trained_run), "--input", str(source), "--output", str(tmp_path / "p.jsonl"),
                     "--precision", precision)  # fmt: skip
    assert result.returncode == 0, result.stderr
    predictions = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    correct = [p["label"] == row["label"] for p, row in zip(predictions, test.rows, strict=True)]
    # The report's predictions count as correct exactly as often as evaluation's accuracy says.
    assert sum(correct) == round(metrics_of(trained_run)["accuracy"] * len(test))
    ece = expected_calibration_error(reliability_bins([p["score"] for p in predictions], correct))
    page = (trained_run / "report.html").read_text()
    shown = float(re.search(r"data-key='ece' data-value='([^']+)'", page).group(1))
    assert shown == pytest.approx(ece, abs=1e-4)
    samples = page.split('<section id="samples">')[1].split("</section>")[0]
    classes = re.findall(r'<tr class="(error|ok)">', samples)
    assert classes == sorted(classes, key=lambda c: c != "error") and "error" in classes


def test_sftlab_report_rewrites_one_run_and_compares_several(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("onnx"))
    (run / "report.html").unlink()
    result = run_cli("report", str(run))
    assert result.returncode == 0, result.stderr
    assert (run / "report.html").is_file() and '<section id="calibration">' in (
        run / "report.html"
    ).read_text()
    # A second run that differs in two settings (its config and final metrics edited: what a sweep produces).
    other = tmp_path / "other"
    shutil.copytree(run, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["train"]["learning_rate"], config["train"]["epochs"] = 3e-5, 4
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = metrics_of(other)
    metrics["accuracy"] = 0.5
    (other / "metrics.json").write_text(json.dumps(metrics))
    output = tmp_path / "compare.html"
    result = run_cli("report", str(run), str(other), "--output", str(output))
    assert result.returncode == 0, result.stderr
    page = output.read_text()
    settings = page.split('<section id="settings">')[1].split("</section>")[0]
    assert re.findall(r"<tr><td>([a-z_.]+)</td>", settings) == ["train.epochs", "train.learning_rate"]
    assert "data-run='1' data-key='accuracy' data-value='0.5'" in page
    assert f"data-run='0' data-key='accuracy' data-value='{json.dumps(metrics_of(run)['accuracy'])}'" in page
    assert (
        len(re.findall(r'<img src="data:image/png;base64,', page)) == 3
    )  # validation loss, train loss, accuracy


def test_report_of_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 2
    assert "not a finished sftlab run" in result.stderr and "Traceback" not in result.stderr


def test_reliability_bins_and_ece_exact_values() -> None:
    bins = reliability_bins([0.95, 0.95, 0.55, 1.0], [True, False, True, True], bins=10)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 3]
    assert bins[9]["accuracy"] == pytest.approx(2 / 3) and bins[9]["confidence"] == pytest.approx(2.9 / 3)
    # |2/3 - 0.9667| * 3/4 + |1 - 0.55| * 1/4
    assert expected_calibration_error(bins) == pytest.approx(abs(2 / 3 - 2.9 / 3) * 0.75 + 0.45 * 0.25)


def test_unknown_or_missing_tracker_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli("config", "examples/trec6.yaml", "track=[tensorbord]")
    assert result.returncode == 2 and "did you mean 'tensorboard'" in result.stderr
    result = run_cli("train", "examples/trec6.yaml", "track=[aim]", f"output_dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "aim not installed" in result.stderr
    assert not (tmp_path / "r").exists()


def test_samples_highlight_entities_and_answers_and_put_errors_first() -> None:
    from sftlab.data.readers import Table
    from sftlab.reporting.run_report import Run, render_run

    ner = Run(Path("runs/ner"), {"task": "token_classification", "model": "minilm", "data": {}},
              {"split": "test", "entity_f1": 0.5, "per_type": {"PER": {"precision": 1.0, "recall": 0.5, "f1": 0.6667,
               "support": 2}}, "history": [], "log_history": []})  # fmt: skip
    rows = [{"tokens": ["Paris", "is", "nice"], "tags": ["B-LOC", "O", "O"]},
            {"tokens": ["Angela", "Merkel", "spoke"], "tags": ["B-PER", "I-PER", "O"]}]  # fmt: skip
    predictions = [
        {"text": "Paris is nice", "tags": ["B-LOC", "O", "O"], "entities": [{"label": "LOC", "start": 0, "end": 5, "text": "Paris"}]},
        {"text": "Angela Merkel spoke", "tags": ["B-PER", "O", "O"], "entities": [{"label": "PER", "start": 0, "end": 6, "text": "Angela"}]},
    ]  # fmt: skip
    page = render_run(ner, Table(Path("t.jsonl"), rows, [1, 2]), predictions, None, [])
    samples = page.split('<section id="samples">')[1]
    assert samples.index("Angela") < samples.index("Paris")  # the error first
    assert '<mark title="PER">Angela<sup>PER</sup></mark> Merkel spoke' in samples
    assert "Angela Merkel (PER)" in samples and "1 errors among the first 2" in samples
    qa = Run(Path("runs/qa"), {"task": "question_answering", "model": "minilm", "data": {}},
             {"split": "validation", "exact_match": 100.0, "history": [], "log_history": []})  # fmt: skip
    rows = [
        {
            "question": "Who left?",
            "context": "Then Bob & Ann left.",
            "answers": {"text": ["Bob & Ann"], "answer_start": [5]},
        }
    ]
    page = render_run(
        qa,
        Table(Path("q.jsonl"), rows, [1]),
        [{"answer": "Bob & Ann", "start": 5, "end": 14, "score": 0.9}],
        None,
        [],
    )
    assert 'Then <mark title="answer">Bob &amp; Ann<sup>answer</sup></mark> left.' in page
