from pathlib import Path

import pytest
import yaml

from sftlab.config import Config, apply_overrides, load_config, parse_override
from sftlab.errors import ConfigError, SftlabError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_a_complete_run():
    config = load_config({})
    assert config.task == "classification"
    assert config.model == "minilm"
    assert config.data.dataset == "trec6"
    assert (config.data.text_column, config.data.label_column) == ("text", "label")
    assert config.train.precision == "auto"


def test_overrides_parse_yaml_values_and_nest():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override("train.learning_rate=2e-5") == (["train", "learning_rate"], 2e-5)
    assert parse_override("data.max_train_samples=null") == (["data", "max_train_samples"], None)
    values = apply_overrides({"train": {"epochs": 1}}, ["train.epochs=4", "data.dataset=sms_spam"])
    assert values == {"train": {"epochs": 4}, "data": {"dataset": "sms_spam"}}
    config = load_config({"train": {"epochs": 1}}, ["train.epochs=4", "model=some/model"])
    assert config.train.epochs == 4 and config.model == "some/model"


def test_bad_override_syntax():
    with pytest.raises(SftlabError, match="expected key=value"):
        parse_override("train.epochs")


def test_every_bad_key_is_reported_at_once_with_suggestions():
    bad = {
        "modle": "minilm",
        "data": {"datset": "trec6"},
        "train": {"learnin_rate": 1e-4, "epochs": 0, "precision": "bf17"},
        "schedule": {"name": "triangle"},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    lines = caught.value.lines()
    assert len(lines) == 6
    joined = "\n".join(lines)
    assert "modle: unknown key (did you mean 'model'?)" in joined
    assert "data.datset: unknown key (did you mean 'data.dataset'?)" in joined
    assert "train.learnin_rate: unknown key (did you mean 'train.learning_rate'?)" in joined
    assert "train.epochs: Input should be greater than or equal to 1 (got 0)" in joined
    assert "train.precision: must be one of 'auto', 'bf16', 'fp16' or 'fp32' (got 'bf17')" in joined
    assert "schedule.name: must be one of 'constant', 'linear', 'cosine', 'step'," in joined
    assert "'slanted_triangular' or 'reduce_on_plateau' (got 'triangle')" in joined


def test_unknown_key_without_near_match_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"train.zzz: unknown key \(allowed: epochs, batch_size"):
        load_config({"train": {"zzz": 1}})


def test_data_source_must_be_one_of_dataset_or_files():
    with pytest.raises(ConfigError, match="set data.dataset or data.train/validation/test, not both"):
        load_config({"data": {"dataset": "trec6", "train": "a.csv"}})
    with pytest.raises(ConfigError, match="set either data.dataset"):
        load_config({"data": {"text_column": "x"}})


def test_yaml_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: classification\ntrain:\n  epochs: [1\n", encoding="utf-8")
    with pytest.raises(SftlabError, match=r"bad.yaml line \d+: invalid YAML"):
        load_config(path)
    with pytest.raises(SftlabError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(SftlabError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


def test_config_file_errors_are_prefixed_with_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epocs: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.lines() == [f"{path}: train.epocs: unknown key (did you mean 'train.epochs'?)"]


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_example_config_loads(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# sftlab "), "every example opens with the command that runs it"
    config = load_config(path)
    assert isinstance(config, Config)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    from sftlab.config import save_config

    config = load_config({"train": {"epochs": 2}, "data": {"dataset": "sms_spam"}})
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["epochs"] == 2
