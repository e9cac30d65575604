"""`--write-clean DIR`: cleaned copies of every split, and the list of what changed. Inputs are only read."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from sftlab.data.readers import Table
from sftlab.datacheck.checks import ordered
from sftlab.datacheck.findings import KINDS, Finding
from sftlab.errors import SftlabError
from sftlab.outputs import atomic_directory

REMOVED_BY_DEFAULT = (
    "leakage", "conflicting_labels", "empty_input", "empty_target", "invalid_tags", "answer_not_at_start",
    "no_assistant_turn", "duplicate", "label_issue",
)  # fmt: skip


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """`--remove a,b`: issue types, each checked against the known ones."""
    if text is None:
        return REMOVED_BY_DEFAULT
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise SftlabError(f"--remove: unknown issue type {unknown[0]!r} (known: {', '.join(KINDS)})")
    return kinds


def write_clean(directory: Path, tables: dict[str, Table], findings: list[Finding], remove: tuple[str, ...],
                relabel: bool, label_column: str, conll_tag_field: int, tags_column: str) -> dict[str, Any]:  # fmt: skip
    """Each split as DIR/<split>.jsonl without the rows of the `remove` issue types (with --relabel, rows
    flagged as label issues get the suggested label instead), and DIR/changes.jsonl, one line per change."""
    inputs = {table.path.resolve() for table in tables.values()}
    if directory.resolve() in {path.parent for path in inputs} and directory.exists():
        raise SftlabError(f"{directory}: holds the input files; --write-clean needs a new folder")
    by_row: dict[tuple[str, int], list[Finding]] = defaultdict(list)
    for finding in findings:
        by_row[(finding.split, finding.row)].append(finding)
    changes: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    with atomic_directory(directory) as staging:
        for split in ordered(tables):
            table = tables[split]
            kept, removed, relabeled = [], 0, 0
            for index, row in enumerate(table.rows):
                flagged = by_row.get((split, index), [])
                kinds = sorted({finding.kind for finding in flagged})
                label_issue = next((finding for finding in flagged if finding.kind == "label_issue"), None)
                others = [kind for kind in kinds if kind in remove and kind != "label_issue"]
                if relabel and label_issue is not None and not others and "words" in label_issue.details:
                    row = _retag(row, label_issue.details["words"], tags_column, conll_tag_field)
                    changes.append({"split": split, "where": table.where(index), "action": "relabeled", "kinds": kinds,
                                    "words": label_issue.details["words"]})  # fmt: skip
                    relabeled += 1
                elif relabel and label_issue is not None and not others:
                    new = label_issue.details["suggested_label"]
                    old = row.get(label_column)
                    row = {**row, label_column: _same_type(new, old)}
                    changes.append({"split": split, "where": table.where(index), "action": "relabeled",
                                    "kinds": kinds, "old_label": old, "new_label": row[label_column]})  # fmt: skip
                    relabeled += 1
                elif any(kind in remove for kind in kinds):
                    changes.append({"split": split, "where": table.where(index), "action": "removed",
                                    "kinds": [kind for kind in kinds if kind in remove]})  # fmt: skip
                    removed += 1
                    continue
                if "fields" in row and "tokens" in row and tags_column not in row:  # CoNLL sentence
                    row = {"tokens": row["tokens"], tags_column: row["fields"][conll_tag_field]}
                kept.append(row)
            with open(staging / f"{split}.jsonl", "w", encoding="utf-8") as sink:
                for row in kept:
                    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            counts[split] = {
                "rows": len(table),
                "kept": len(kept),
                "removed": removed,
                "relabeled": relabeled,
            }
        with open(staging / "changes.jsonl", "w", encoding="utf-8") as sink:
            for change in changes:
                sink.write(json.dumps(change, ensure_ascii=False) + "\n")
    return counts


def _retag(
    row: dict[str, Any], words: list[dict[str, Any]], tags_column: str, conll_tag_field: int
) -> dict[str, Any]:
    """A sentence with the suggested IOB2 tags at its flagged words (the other tags as IOB2 too)."""
    from sftlab.evaluation.entities import iob1_to_iob2

    tags = row[tags_column] if tags_column in row else row["fields"][conll_tag_field]
    tags = iob1_to_iob2([tag.strip() for tag in tags])
    for word in words:
        tags[word["position"]] = word["suggested_label"]
    return {"tokens": row["tokens"], tags_column: tags} if "fields" in row else {**row, tags_column: tags}


def _same_type(new: Any, old: Any) -> Any:
    """The suggested label in the type of the given one (integer labels stay integers)."""
    if isinstance(new, list):
        kinds = old if isinstance(old, list) and old else [None]
        return [_same_type(name, kinds[0]) for name in new]
    if isinstance(old, int) and new.lstrip("-").isdigit():
        return int(new)
    return new
