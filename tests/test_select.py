"""`sftlab select` end to end on real models and real data slices: ranking, a failing candidate, confirm
runs through the training loop, the report files, best.yaml training, token classification, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli

# Estimates on 240 TREC questions; confirm runs fine-tune on 160 questions for 2 epochs.
SMALL = [
    "data.max_train_samples=480",
    "data.max_eval_samples=96",
    "data.max_length=32",
    "train.epochs=2",
    "train.batch_size=16",
    "select.samples=240",
    "select.probe_folds=3",
]


@pytest.fixture(scope="module")
def selection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `sftlab select` run: two built-in encoders and a broken local model folder, top 2 confirmed."""
    work = tmp_path_factory.mktemp("select")
    broken = work / "broken_model"
    broken.mkdir()
    # a config.json that transformers cannot build a model from: the candidate fails to load
    (broken / "config.json").write_text('{"model_type": "bert", "hidden_size": 10, "num_attention_heads": 3}')
    output = work / "out"
    result = run_cli(
        "select", str(REPO / "examples" / "select_trec6.yaml"), *SMALL, f"output_dir={output}",
        "--models", f"minilm,{broken},paraphrase_minilm_l3", "--confirm", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pick:" in result.stdout and "failed" in result.stdout
    (work / "stdout.txt").write_text(result.stdout)
    return output


def test_select_ranks_reports_the_failure_and_confirms(selection: Path):
    record = json.loads((selection / "selection.json").read_text())
    by_name = {Path(c["model"]).name: c for c in record["candidates"]}
    broken = by_name["broken_model"]
    assert broken["status"] == "failed" and broken["error"] and broken["rank"] is None
    estimated = [by_name["minilm"], by_name["paraphrase_minilm_l3"]]
    assert sorted(c["rank"] for c in estimated) == [1, 2]
    for candidate in estimated:
        assert candidate["status"] == "estimated"
        assert candidate["feature_rows"] == 240
        assert candidate["logme"] < 0 and candidate["hscore"] > 0
        assert 1 / 6 < candidate["probe_accuracy"] <= 1
        assert candidate["tokens_per_s"] > 0 and candidate["peak_memory_mb"] >= 0
    assert by_name["minilm"]["parameters"] == 22_713_216
    assert by_name["paraphrase_minilm_l3"]["parameters"] == 17_389_824
    # rank 1 is the higher LogME (rank_by: logme)
    first = min(estimated, key=lambda c: c["rank"])
    assert first["logme"] == max(c["logme"] for c in estimated)
    # both were fine-tuned; the first always finishes, and the pick is the best finished validation metric
    assert all(c["confirm"] is not None for c in estimated)
    assert first["confirm"]["status"] == "finished" and first["confirm"]["evaluations"] == 2
    # successive halving (rate 2): the second run stops at evaluation 1 exactly when it is behind the first
    second = max(estimated, key=lambda c: c["rank"])
    behind = second["confirm"]["history"][0] < first["confirm"]["history"][0]
    assert (second["confirm"]["status"] == "stopped") == behind
    assert second["confirm"]["evaluations"] == (1 if behind else 2)
    # the log says "stopped" only for a run that did stop early (behind at its last evaluation is no stop)
    stdout = (selection.parent / "stdout.txt").read_text()
    assert ("-> stopped (successive halving)" in stdout) == behind
    finished = [c for c in estimated if c["confirm"]["status"] == "finished"]
    best = max(finished, key=lambda c: c["confirm"]["value"])
    assert record["pick"] == best["model"] and record["picked_by"] == "confirm"
    for candidate in estimated:
        run = Path(candidate["confirm"]["output_dir"])
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["best_metric"] == candidate["confirm"]["value"]
        assert 0 <= candidate["confirm"]["value"] <= 1
    assert (selection / "selection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_yaml_trains(selection: Path):
    best = selection / "best.yaml"
    text = best.read_text()
    assert text.startswith(f"# sftlab train {best}")
    values = yaml.safe_load(text)
    record = json.loads((selection / "selection.json").read_text())
    assert values["model"] == record["pick"] and "select" not in values
    assert values["output_dir"] == str(selection / "best")
    result = run_cli("train", str(best), "train.epochs=1", "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((selection / "best" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["accuracy"] > 1 / 6


def test_select_token_classification_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    from sftlab.config import load_config
    from sftlab.recipes import select as select_module

    real_load = select_module.load_encoder

    def load_or_run_out_of_memory(name: str, config: object) -> object:
        if name == "huge_model":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real_load(name, config)

    monkeypatch.setattr(select_module, "load_encoder", load_or_run_out_of_memory)
    config = load_config(
        REPO / "examples" / "conll_ner.yaml",
        ["data.max_length=40", "select.samples=80", "select.probe_folds=3", f"output_dir={tmp_path / 'ner'}"],
    )
    result = select_module.select(
        config, models=["paraphrase_minilm_l3", "huge_model", "minilm"], confirm=0, echo=False
    )
    huge = result.candidates[1]
    assert (
        huge.status == "failed"
        and huge.error == "OutOfMemoryError: CUDA out of memory. Tried to allocate 80.00 GiB"
    )
    assert huge.rank is None and "failed: OutOfMemoryError" in result.table
    result.candidates.remove(huge)
    assert {c.status for c in result.candidates} == {"estimated"}
    for candidate in result.candidates:
        # one feature row per word of the 80 sampled sentences that survived truncation
        assert candidate.feature_rows > 80 * 5
        assert 0 < candidate.probe_f1_macro <= 1 and candidate.probe_accuracy > 0.5
        assert candidate.confirm is None
    ranked = sorted(result.candidates, key=lambda c: c.rank)
    assert result.pick == ranked[0].model and result.picked_by == "logme"
    assert ranked[0].logme >= ranked[1].logme
    assert "probe macro F1" in result.table


def test_select_other_tasks_say_only_confirm_applies(tmp_path: Path):
    result = run_cli(
        "select", str(REPO / "examples" / "disflqa.yaml"), "data.max_train_samples=24", "data.max_eval_samples=8",
        "data.max_length=96", "data.doc_stride=32", "train.epochs=1", "train.batch_size=8", f"output_dir={tmp_path / 'qa'}",
        "--models", "paraphrase_minilm_l3", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "qa" / "selection.json").read_text())
    assert record["estimated"] is False and record["pick"] == "paraphrase_minilm_l3"
    (candidate,) = record["candidates"]
    assert candidate["logme"] is None and candidate["confirm"]["status"] == "finished"
    loud = run_cli(
        "select", str(REPO / "examples" / "disflqa.yaml"), "data.max_train_samples=24", "train.epochs=1",
        f"output_dir={tmp_path / 'qa2'}", "--models", "./no_such_model",
    )  # fmt: skip
    assert "only the confirm stage applies" in loud.stdout
    assert (
        loud.returncode == 2
        and "every candidate failed: ./no_such_model: model './no_such_model'" in loud.stderr
    )
    assert not (tmp_path / "qa2").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", ""], "--models: expected model names separated by commas"),
        (["--models", "minilm,,mpnet_base"], "--models: expected model names"),
        (["--models", "minilm,minilm"], "names a candidate twice: minilm"),
        (["--confirm", "-1"], "--confirm: must be 0"),
        (["select.rank_by=bogus"], "select.rank_by"),
        (["select.sample=10"], "did you mean 'select.samples'"),
        (["--models", "./nope1,./nope2", "--confirm", "0"], "every candidate failed"),
    ],
)
def test_select_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str):
    output = tmp_path / "out"
    result = run_cli("select", str(REPO / "examples" / "select_trec6.yaml"), f"output_dir={output}", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not output.exists()
