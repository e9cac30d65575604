import collections
import json

from sftlab.catalog.datasets import fetch_dataset, stratified_split


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_trec6_splits_are_fixed_stratified_and_disjoint():
    paths = fetch_dataset("trec6")
    splits = {name: _rows(path) for name, path in paths.items()}
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 4360,
        "validation": 546,
        "test": 546,
    }
    # train_5500's class counts, split 80/10/10 within each class
    total = collections.Counter(row["label"] for rows in splits.values() for row in rows)
    assert total == {"ENTY": 1250, "HUM": 1223, "DESC": 1162, "NUM": 896, "LOC": 835, "ABBR": 86}
    test_counts = collections.Counter(row["label"] for row in splits["test"])
    assert test_counts == {label: round(count * 0.1) for label, count in total.items()}
    first = splits["train"][0]
    assert set(first) == {"text", "label", "fine_label"} and first["fine_label"].startswith(
        first["label"] + ":"
    )


def test_sms_spam_split():
    splits = {name: _rows(path) for name, path in fetch_dataset("sms_spam").items()}
    assert sum(len(rows) for rows in splits.values()) == 4837
    total = collections.Counter(row["label"] for rows in splits.values() for row in rows)
    assert total == {"ham": 4199, "spam": 638}


def test_stratified_split_is_deterministic_and_proportional():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    first = stratified_split(labels, (0.1, 0.2), seed=5)
    assert first == stratified_split(labels, (0.1, 0.2), seed=5)
    train, validation, test = first
    assert sorted(train + validation + test) == list(range(100))
    assert collections.Counter(labels[i] for i in test) == {"a": 10, "b": 6, "c": 4}
    assert collections.Counter(labels[i] for i in validation) == {"a": 5, "b": 3, "c": 2}
    assert first != stratified_split(labels, (0.1, 0.2), seed=6)


def test_ner_datasets_are_split_at_random_with_fixed_counts():
    wnut = {name: _rows(path) for name, path in fetch_dataset("wnut16").items()}
    assert {name: len(rows) for name, rows in wnut.items()} == {"train": 1916, "validation": 239, "test": 239}
    tags = collections.Counter(tag for rows in wnut.values() for row in rows for tag in row["tags"])
    assert tags["B-person"] == 449 and tags["O"] == 44007 and len(tags) == 21
    assert all(len(row["tokens"]) == len(row["tags"]) for rows in wnut.values() for row in rows)
    conll = {name: _rows(path) for name, path in fetch_dataset("conll2003_sample").items()}
    assert {name: len(rows) for name, rows in conll.items()} == {"train": 180, "validation": 23, "test": 23}
    first = conll["train"][0]
    assert first["tokens"][:3] == ["SOCCER", "-", "JAPAN"] and first["tags"][:3] == ["O", "O", "B-LOC"]
    # Every CoNLL column is kept (word, POS, chunk, NER) for data.conll_tag_field.
    assert [column[:3] for column in first["fields"][1:]] == [
        ["NN", ":", "NNP"],
        ["B-NP", "O", "B-NP"],
        first["tags"][:3],
    ]


def test_disflqa_answers_sit_at_their_start():
    splits = {name: _rows(path) for name, path in fetch_dataset("disflqa").items()}
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 700,
        "validation": 100,
        "test": 200,
    }
    rows = [row for rows in splits.values() for row in rows]
    unanswerable = [row for row in rows if not row["answers"]["text"]]
    assert len(unanswerable) == 245
    for row in rows:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True):
            assert row["context"][start : start + len(text)] == text
