"""The cheap checks: no model training, one pass of hashing and tokenization over every split.

Each task says what a row's *key* is (the text two copies share: the input of a classifier, the words of
a sentence, the question, the source, the prompt) and adds its own checks; duplicates, leakage, conflicts,
near-copies and encoding damage are then found the same way for every task. Rows are read from the raw
tables, so the problems that stop `sftlab train` (an empty text, a misplaced answer) are reported here as
findings, each with its file and line, instead of ending the check at the first one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sftlab.data.readers import Table
from sftlab.datacheck.findings import Finding
from sftlab.datacheck.text import encoding_damage, near_duplicate_pairs, normalize

SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    """Rows per split."""
    lengths: dict[str, list[int]] = field(default_factory=dict)
    """Input length in tokens of every row, per split (for the length histogram)."""
    max_length: int = 0
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Rows per label (classification) or entities per type (token classification), per split."""
    notes: list[str] = field(default_factory=list)
    """Remarks about the data as a whole (e.g. 'tags are IOB1, converted to IOB2')."""
    tables: dict[str, Table] = field(default_factory=dict)
    """The tables the findings' row indices refer to (SQuAD-layout QA files flattened to one row per question)."""


@dataclass
class Rows:
    """What the shared checks need from one split: a key per row (None: the row has no usable input), an
    optional label per row, and the texts to scan for encoding damage."""

    keys: list[str | None]
    labels: list[Any] | None = None
    texts: list[list[str]] = field(default_factory=list)


def is_blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def run_checks(config: Any, tables: dict[str, Table], tokenizer: Any, near_threshold: float | None,
               cheap_only: bool = False) -> CheckResult:  # fmt: skip
    """Every cheap check for the config's task over all splits. `near_threshold` None skips near-copies;
    `cheap_only` (the pre-training checks) keeps only duplicates, leakage, conflicts and truncation."""
    from sftlab.datacheck import tasks

    tables = dict(tables)  # a task may replace a table (QA flattens SQuAD files); the caller's stays
    result = CheckResult(rows={split: len(table) for split, table in tables.items()}, tables=tables)
    result.max_length = config.data.max_length
    per_task = getattr(tasks, config.task)
    rows = per_task(config, tables, tokenizer, result)
    result.rows = {split: len(table) for split, table in tables.items()}
    collisions(
        tables,
        rows,
        result,
        near_threshold,
        with_labels=config.task in ("classification", "token_classification"),
    )
    if not cheap_only:
        for split, split_rows in rows.items():
            for index, texts in enumerate(split_rows.texts):
                for text in texts:
                    problem = encoding_damage(text)
                    if problem is not None:
                        result.findings.append(
                            Finding("encoding_damage", split, index, tables[split].where(index), problem)
                        )
                        break
    else:
        keep = {"leakage", "near_leakage", "duplicate", "near_duplicate", "conflicting_labels", "truncated_input",
                "truncated_target"}  # fmt: skip
        result.findings = [finding for finding in result.findings if finding.kind in keep]
    return result


def ordered(tables: dict[str, Any]) -> list[str]:
    return sorted(
        tables, key=lambda split: SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER)
    )


def collisions(tables: dict[str, Table], rows: dict[str, Rows], result: CheckResult,
               near_threshold: float | None, with_labels: bool) -> None:  # fmt: skip
    """Exact duplicates within a split, leakage between splits, conflicting labels, near-copies.

    Leakage flags the row in the earlier split (train before validation before test), the copy that
    --write-clean removes, so the evaluation splits stay as they are."""
    splits = ordered(tables)
    rank = {split: position for position, split in enumerate(splits)}
    by_normal: dict[str, list[tuple[str, int]]] = defaultdict(list)
    raw_seen: dict[tuple[str, str], int] = {}
    for split in splits:
        for index, key in enumerate(rows[split].keys):
            if key is None:
                continue
            raw = key.strip()
            first = raw_seen.setdefault((split, raw), index)
            if first != index:
                result.findings.append(Finding("duplicate", split, index, tables[split].where(index),
                                               "exact copy of an earlier row", 1.0, tables[split].where(first)))  # fmt: skip
            by_normal[normalize(key)].append((split, index))

    def where(member: tuple[str, int]) -> str:
        return tables[member[0]].where(member[1])

    for members in by_normal.values():
        present = {split for split, _ in members}
        if len(present) > 1:
            latest = max(present, key=rank.__getitem__)
            target = next(member for member in members if member[0] == latest)
            for member in members:
                if member[0] != latest:
                    result.findings.append(Finding("leakage", member[0], member[1], where(member),
                                                   f"also in {latest}", 1.0, where(target)))  # fmt: skip
        if with_labels and len(members) > 1:
            labels = {member: rows[member[0]].labels[member[1]] for member in members}  # type: ignore[index]
            distinct = {label for label in labels.values() if label is not None}
            if len(distinct) > 1:
                for member in members:
                    other = next(m for m in members if labels[m] != labels[member] and labels[m] is not None)
                    result.findings.append(Finding(
                        "conflicting_labels", member[0], member[1], where(member),
                        f"label {show(labels[member])} here, {show(labels[other])} on the same text", None, where(other),
                        {"labels": sorted(show(label) for label in distinct)},
                    ))  # fmt: skip
        # Same split, same normalised text, different raw text: a near-copy at similarity 1.
        firsts: dict[str, tuple[str, int]] = {}
        for member in members:
            first = firsts.setdefault(member[0], member)
            if (
                first != member
                and rows[member[0]].keys[member[1]].strip() != rows[first[0]].keys[first[1]].strip()
            ):  # type: ignore[union-attr]
                result.findings.append(Finding("near_duplicate", member[0], member[1], where(member),
                                               "same text up to case, punctuation and spacing", 1.0, where(first)))  # fmt: skip
    if near_threshold is None:
        return
    normals = list(by_normal)
    for i, j, similarity in near_duplicate_pairs(normals, near_threshold):
        a_members, b_members = by_normal[normals[i]], by_normal[normals[j]]
        a_first = {split: (split, index) for split, index in reversed(a_members)}
        b_first = {split: (split, index) for split, index in reversed(b_members)}
        for a_split, a in a_first.items():
            for b_split, b in b_first.items():
                if a_split == b_split:
                    later, earlier = (a, b) if a[1] > b[1] else (b, a)
                    result.findings.append(Finding("near_duplicate", later[0], later[1], where(later),
                                                   f"near-copy (similarity {similarity:.2f})", round(similarity, 4), where(earlier)))  # fmt: skip
                else:
                    flagged, kept = (a, b) if rank[a_split] < rank[b_split] else (b, a)
                    result.findings.append(Finding("near_leakage", flagged[0], flagged[1], where(flagged),
                                                   f"near-copy in {kept[0]} (similarity {similarity:.2f})", round(similarity, 4), where(kept)))  # fmt: skip


def show(label: Any) -> str:
    return "[" + ", ".join(map(str, label)) + "]" if isinstance(label, tuple) else repr(label)


def label_balance(tables: dict[str, Table], labels: dict[str, list[Any]], result: CheckResult) -> None:
    """Rows per label per split; labels absent from train; classes far below their uniform share."""
    counts: dict[str, Counter[str]] = {}
    for split in ordered(tables):
        counter: Counter[str] = Counter()
        for label in labels[split]:
            if label is None:
                continue
            for name in label if isinstance(label, tuple) else (label,):
                counter[str(name)] += 1
        counts[split] = counter
        result.label_counts[split] = dict(sorted(counter.items()))
    train = counts.get("train", Counter())
    for split, counter in counts.items():
        if split != "train":
            for name in sorted(set(counter) - set(train)):
                index = next(i for i, label in enumerate(labels[split]) if label is not None
                             and name in (map(str, label) if isinstance(label, tuple) else (str(label),)))  # fmt: skip
                result.findings.append(Finding("label_only_in_split", split, index, tables[split].where(index),
                                               f"label {name!r} is in {split} ({counter[name]} rows) but not in train"))  # fmt: skip
        total = sum(counter.values())
        if total and len(counter) > 1:
            uniform = total / len(counter)
            for name, count in sorted(counter.items()):
                if count < 0.2 * uniform:
                    index = next(i for i, label in enumerate(labels[split]) if label is not None
                                 and name in (map(str, label) if isinstance(label, tuple) else (str(label),)))  # fmt: skip
                    result.findings.append(Finding(
                        "class_imbalance", split, index, tables[split].where(index),
                        f"label {name!r}: {count} of {total} in {split} ({count / total:.1%}; uniform {1 / len(counter):.1%})",
                        count / total,
                    ))  # fmt: skip
