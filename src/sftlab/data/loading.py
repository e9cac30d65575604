"""Turn the `data` section of a config into tables for train, validation and (optionally) test."""

from __future__ import annotations

from pathlib import Path

from sftlab.catalog.datasets import BUILTIN_DATASETS, SPLIT_SEED, fetch_dataset, stratified_split
from sftlab.config import DataConfig
from sftlab.data.episodes import samples_per_class
from sftlab.data.readers import Table, concat_tables, read_table, require_columns
from sftlab.errors import SftlabError


def load_tables(data: DataConfig) -> dict[str, Table]:
    """{"train", "validation"[, "test"]}: from a built-in dataset, a Hugging Face dataset or files; validation
    carved from train (stratified by label when rows have one, fixed seed) when none is given;
    `max_*_samples` applied last."""
    hf_keys = {"dataset_config": data.dataset_config, "train_split": data.train_split,
               "validation_split": data.validation_split, "test_split": data.test_split}  # fmt: skip
    if data.dataset is not None and data.dataset in BUILTIN_DATASETS:
        given = [key for key, value in hf_keys.items() if value is not None]
        if given:
            raise SftlabError(
                f"data.{given[0]}: is for Hugging Face datasets; built-in '{data.dataset}' has fixed splits"
            )
        paths = fetch_dataset(data.dataset)
        tables = {split: read_table(path) for split, path in paths.items()}
    elif data.dataset is not None:
        from sftlab.data.hf_datasets import load_hf_tables

        splits = {"train": data.train_split, "validation": data.validation_split, "test": data.test_split}
        tables = load_hf_tables(data.dataset, data.dataset_config, splits, list(BUILTIN_DATASETS))
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
    if data.samples_per_class is not None:
        tables["train"] = few_shot_draw(tables["train"], data)
    if data.max_train_samples is not None:
        tables["train"] = tables["train"].subset(
            list(range(min(data.max_train_samples, len(tables["train"]))))
        )
    if data.extra_train:
        tables["train"] = concat_tables(
            [tables["train"], *(extra_rows(source, data) for source in data.extra_train)]
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


def few_shot_draw(train: Table, data: DataConfig) -> Table:
    """`data.samples_per_class` training rows per label, drawn with `data.sample_seed` (stratified)."""
    assert data.samples_per_class is not None
    require_columns(train, [data.label_column])
    labels = []
    for index, row in enumerate(train.rows):
        label = row[data.label_column]
        if isinstance(label, list):
            raise SftlabError(
                f"{train.where(index)}: data.samples_per_class draws per label, but '{data.label_column}' "
                "holds a list (multi-label data)"
            )
        labels.append(str(label))
    return train.subset(samples_per_class(labels, data.samples_per_class, data.sample_seed))


def extra_rows(source: str, data: DataConfig) -> Table:
    """The training rows of one `data.extra_train` entry: a built-in dataset's train split or a data file,
    cut to `data.max_extra_train_samples`."""
    if source in BUILTIN_DATASETS:
        table = read_table(fetch_dataset(source)["train"])
    elif Path(source).exists():
        table = read_table(source)
    else:
        known = ", ".join(BUILTIN_DATASETS)
        raise SftlabError(f"data.extra_train: '{source}' is neither a built-in dataset ({known}) nor a file")
    if data.max_extra_train_samples is not None:
        table = table.subset(list(range(min(data.max_extra_train_samples, len(table)))))
    return table
