"""Turn the `data` section of a config into tables for train, validation and (optionally) test."""

from __future__ import annotations

from sftlab.catalog.datasets import SPLIT_SEED, fetch_dataset, stratified_split
from sftlab.config import DataConfig
from sftlab.data.readers import Table, read_table


def load_tables(data: DataConfig) -> dict[str, Table]:
    """{"train", "validation"[, "test"]}: from a built-in dataset or files; validation carved from train
    (stratified by label when rows have one, fixed seed) when no file is given; `max_*_samples` applied last."""
    if data.dataset is not None:
        paths = fetch_dataset(data.dataset)
        tables = {split: read_table(path) for split, path in paths.items()}
    else:
        assert data.train is not None  # the config validator guarantees it
        tables = {"train": read_table(data.train)}
        if data.validation is not None:
            tables["validation"] = read_table(data.validation)
        if data.test is not None:
            tables["test"] = read_table(data.test)
    if "validation" not in tables:
        train = tables["train"]
        # Stratify by label when the rows have one (classification); other tasks (token, QA, seq2seq rows) get a seeded
        # random split. A classification table without its label column still fails in the task's checks.
        has_labels = all(data.label_column in row for row in train.rows)
        labels = [str(row[data.label_column]) if has_labels else "" for row in train.rows]
        keep, held_out, _ = stratified_split(labels, (data.validation_fraction, 0.0), SPLIT_SEED)
        tables["train"], tables["validation"] = train.subset(keep), train.subset(held_out)
    if data.max_train_samples is not None:
        tables["train"] = tables["train"].subset(
            list(range(min(data.max_train_samples, len(tables["train"]))))
        )
    if data.max_eval_samples is not None:
        for split in ("validation", "test"):
            if split in tables:
                tables[split] = tables[split].subset(
                    list(range(min(data.max_eval_samples, len(tables[split]))))
                )
    if data.max_validation_samples is not None:
        validation = tables["validation"]
        tables["validation"] = validation.subset(
            list(range(min(data.max_validation_samples, len(validation))))
        )
    return tables
