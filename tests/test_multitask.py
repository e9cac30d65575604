"""Multi-task fine-tuning end to end: TREC-6 and SMS spam on one MiniLM, each saved as its own model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import REPO, run_cli
from sftlab.config import apply_overrides, load_config
from sftlab.errors import ConfigError, SftlabError

SMALL = ["tasks.trec6.data.max_train_samples=96", "tasks.sms_spam.data.max_train_samples=96",
         "tasks.0.data.max_eval_samples=48", "tasks.1.data.max_eval_samples=48", "tasks.0.data.max_length=32",
         "tasks.1.data.max_length=32", "train.epochs=1", "train.seed=5"]  # fmt: skip


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("multi") / "run"
    result = run_cli("train", str(REPO / "examples" / "multitask_trec6_sms.yaml"), *SMALL, f"output_dir={output}",
                     "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return output


def test_each_task_is_its_own_model_that_pipeline_loads(multitask_run, tmp_path) -> None:
    from transformers import pipeline

    summary = json.loads((multitask_run / "metrics.json").read_text())
    texts = {"trec6": ["Who wrote Hamlet ?", "How many feet are in a mile ?", "What is the capital of Peru ?"],
             "sms_spam": ["WINNER!! Claim your free prize now, call 0906", "See you at lunch tomorrow?"]}  # fmt: skip
    labels = {"trec6": {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}, "sms_spam": {"ham", "spam"}}
    for name in ("trec6", "sms_spam"):
        run = multitask_run / name
        assert summary[name]["split"] == "test" and summary[name]["num_examples"] == 48
        assert json.loads((run / "metrics.json").read_text())["accuracy"] == summary[name]["accuracy"]
        classifier = pipeline("text-classification", model=str(run / "model"), device="cpu")
        theirs = classifier(texts[name])
        assert {row["label"] for row in theirs} <= labels[name]
        source, output = tmp_path / f"{name}.txt", tmp_path / f"{name}.jsonl"
        source.write_text("\n".join(texts[name]) + "\n")
        result = run_cli(
            "predict", str(run), "--input", str(source), "--output", str(output), "--precision", "fp32"
        )
        assert result.returncode == 0, result.stderr
        ours = [json.loads(line) for line in output.read_text().splitlines()]
        assert [row["label"] for row in ours] == [row["label"] for row in theirs]
    # One encoder: with one evaluation both tasks keep the same step, so their encoders are the same tensors
    # while the heads differ in shape (6 labels, 2 labels).
    trec, spam = (
        load_file(multitask_run / name / "model" / "model.safetensors") for name in ("trec6", "sms_spam")
    )
    encoder = [key for key in trec if key.startswith("bert.")]
    assert encoder and all(bool((trec[key] == spam[key]).all()) for key in encoder)
    assert trec["classifier.weight"].shape[0] == 6 and spam["classifier.weight"].shape[0] == 2


def test_overrides_reach_list_entries_by_position_or_name() -> None:
    values = {"tasks": [{"name": "a", "data": {"x": 1}}, {"name": "b", "data": {}}]}
    changed = apply_overrides(values, ["tasks.0.data.x=2", "tasks.b.weight=0.5"])
    assert changed["tasks"][0]["data"]["x"] == 2 and changed["tasks"][1]["weight"] == 0.5
    assert values["tasks"][0]["data"]["x"] == 1  # the original is untouched
    with pytest.raises(SftlabError, match="no entry 'c'"):
        apply_overrides(values, ["tasks.c.weight=1"])


def test_multitask_config_checks() -> None:
    one = {"task": "multitask", "tasks": [{"name": "a", "data": {"dataset": "trec6"}}]}
    with pytest.raises(ConfigError, match="at least 2"):
        load_config(one)
    twice = {"task": "multitask", "tasks": [{"name": "a", "data": {"dataset": "trec6"}}] * 2}
    with pytest.raises(ConfigError, match="unique"):
        load_config(twice)
    with pytest.raises(ConfigError, match="tasks.0.name"):
        load_config({"task": "multitask", "tasks": [{"name": "model", "data": {"dataset": "trec6"}},
                                                    {"name": "b", "data": {"dataset": "sms_spam"}}]})  # fmt: skip
    with pytest.raises(ConfigError, match="multitask.sampler"):
        load_config({"multitask": {"sampler": "uniform"}})
