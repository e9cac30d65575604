"""Hugging Face `datasets` as input: a folder written by `save_to_disk`, or a Hub dataset name.

Both become the same `Table`s as files do, so column names, checks and error messages are the files' own.
Class-label columns (integers with names, e.g. `ner_tags` of a NER set) come back as their names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sftlab.data.readers import Table
from sftlab.errors import SftlabError


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and any(
        (path / name).exists() for name in ("dataset_dict.json", "dataset_info.json")
    )


def load_hf_tables(
    name: str, config_name: str | None, splits: dict[str, str | None], builtin_names: list[str]
) -> dict[str, Table]:
    """{"train", ["validation"], ["test"]} from a saved folder or the Hub. `splits` maps sftlab's split to
    the dataset's split name; None takes that name when the dataset has it (validation, test) and skips it
    otherwise, while a name the dataset lacks is an error listing the splits it has."""
    try:
        import datasets
    except ImportError:
        raise SftlabError(
            f"data.dataset '{name}': reading Hugging Face datasets needs the `datasets` package "
            "(pip install datasets)"
        ) from None
    path = Path(name).expanduser()
    if is_saved_dataset(path):
        if config_name is not None:
            raise SftlabError(
                f"data.dataset_config: '{name}' is a saved dataset folder, which has no configs"
            )
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as error:
            raise SftlabError(f"{path}: not a readable `save_to_disk` folder: {error}") from None
    else:
        try:
            loaded = datasets.load_dataset(name, config_name)
        except (
            Exception
        ) as error:  # the Hub, the network and the dataset's own script all raise their own kinds
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SftlabError(
                f"data.dataset: unknown dataset '{name}' (built-in: {', '.join(builtin_names)}; not a "
                f"save_to_disk folder; datasets.load_dataset: {reason})"
            ) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    tables = {}
    for split, wanted in splits.items():
        split_name = wanted or split
        if split_name not in loaded:
            if wanted is not None or split == "train":
                raise SftlabError(
                    f"data.{split}_split: '{name}' has no split '{split_name}' (it has {', '.join(loaded)})"
                )
            continue
        tables[split] = dataset_table(loaded[split_name], Path(f"{name}[{split_name}]"))
    return tables


def dataset_table(dataset: Any, where: Path) -> Table:
    """Rows of one split as a Table (positions are row numbers from 1); class labels become their names."""
    rows = dataset.to_list()
    for column, feature in dataset.features.items():
        names = _label_names(feature)
        if names is None:
            continue
        for row in rows:
            value = row[column]
            row[column] = [names[v] for v in value] if isinstance(value, list) else names[value]
    return Table(where, rows, list(range(1, len(rows) + 1)), "row")


def _label_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel column, or of a list of ClassLabels (one tag per word); else None."""
    import datasets

    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and len(feature) == 1:
        inner = feature[0]
    for candidate in (feature, inner):
        if isinstance(candidate, datasets.ClassLabel):
            return list(candidate.names)
    return None
