"""Tokenized splits cached on disk: a hit returns the very same encoding, any change is a miss."""

from __future__ import annotations

import pytest

from sftlab.checkpoints import data_fingerprint
from sftlab.config import load_config
from sftlab.data import token_cache
from sftlab.data.loading import load_tables
from sftlab.models import load_tokenizer, locate_model
from sftlab.tasks import task_class


def _encode(task, tokenizer, table, config):
    """One split through the run's cache (the digest is the one a run computes for resume checks)."""
    split = {"s": table}
    return token_cache.encode_cached(task, tokenizer, split, config, data_fingerprint(split))["s"]


def _path(config, table, tokenizer):
    return token_cache.cache_path(
        token_cache.settings_digest(config, tokenizer), data_fingerprint({"s": table})["s"]
    )


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    folder = tmp_path / "tokenized"
    monkeypatch.setattr(token_cache, "cache_path", lambda settings, rows: folder / f"{settings}-{rows}.json")
    monkeypatch.setattr(token_cache, "MIN_SECONDS", 0.0)  # cache even this small slice

    def make(**data):
        config = load_config(
            {"model": "minilm", "output_dir": str(tmp_path / "run"),
             "data": {"dataset": "trec6", "max_train_samples": 200, "max_eval_samples": 50, **data}}
        )  # fmt: skip
        tables = load_tables(config.data)
        task = task_class(config.task).from_config(config, tables)
        tokenizer = load_tokenizer(locate_model(config.model), config.model, False)
        return config, tables, task, tokenizer

    return make, tmp_path / "tokenized"


def test_second_run_reads_the_same_encoding_and_changes_miss(setup, monkeypatch):
    make, folder = setup
    config, tables, task, tokenizer = make()
    calls = []
    original = type(task).encode

    def counting(self, tok, table):
        calls.append(len(table))
        return original(self, tok, table)

    monkeypatch.setattr(type(task), "encode", counting)
    first = _encode(task, tokenizer, tables["train"], config)
    assert calls == [200] and len(list(folder.iterdir())) == 1
    again = _encode(task, tokenizer, tables["train"], config)
    assert again == first and calls == [200]  # read back, not tokenized again

    # other settings, other rows: new keys, tokenized afresh
    shorter, *_ = make(max_length=16)
    _encode(task, tokenizer, tables["train"], shorter)
    assert len(calls) == 2 and len(list(folder.iterdir())) == 2
    _encode(task, tokenizer, tables["validation"], config)
    assert len(calls) == 3 and len(list(folder.iterdir())) == 3

    # a damaged file is re-made, not trusted
    path = _path(config, tables["train"], tokenizer)
    path.write_text("{not json", encoding="utf-8")
    assert _encode(task, tokenizer, tables["train"], config) == first
    assert len(calls) == 4 and path.read_text(encoding="utf-8").startswith("[")


def test_off_switch_and_encodings_json_would_change_are_not_cached(setup):
    make, folder = setup
    config, tables, task, tokenizer = make(cache_tokenized=False)
    _encode(task, tokenizer, tables["train"], config)
    assert not folder.exists()
    token_cache.store(folder / "x.json", [{"offsets": (0, 3)}])  # a tuple would come back a list
    assert not (folder / "x.json").exists()
    token_cache.store(folder / "y.json", [{"input_ids": [101, 102]}])
    assert (folder / "y.json").exists()
