"""Check a config's data before training: `sftlab data check CONFIG`, top to bottom.

load every split -> cheap checks (hashing, MinHash LSH, one tokenization pass) -> K-fold out-of-fold
label check through the engine (classification) -> summary table, data_report.json, data_report.html ->
optionally cleaned copies. `pre_training_checks` is the cheap part that `sftlab train` runs first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sftlab.config import Config
from sftlab.data.loading import load_tables
from sftlab.data.readers import Table
from sftlab.datacheck.checks import CheckResult, run_checks
from sftlab.datacheck.clean import REMOVED_BY_DEFAULT, write_clean
from sftlab.datacheck.findings import Finding
from sftlab.datacheck.report import format_summary, report_json, summarize, write_report
from sftlab.errors import SftlabError
from sftlab.models import load_tokenizer, locate_model, quiet_transformers

FATAL = ("leakage", "conflicting_labels")
"""What `data.check: error` stops training for."""


@dataclass
class DataReport:
    findings: list[Finding]
    summary: list[dict[str, Any]]
    report: dict[str, Any]
    report_dir: Path | None = None
    clean_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def kinds(self) -> dict[str, int]:
        return {entry["kind"]: entry["count"] for entry in self.summary}


def report_dir_for(config: Config) -> Path:
    return config.data_check.report_dir or config.output_dir.with_name(config.output_dir.name + "-data-check")


def data_check(config: Config, write_clean_dir: Path | str | None = None, relabel: bool = False,
               remove: tuple[str, ...] = REMOVED_BY_DEFAULT, echo: bool = True, finetune: Any = None) -> DataReport:  # fmt: skip
    """Every check for `config`'s data; writes the report (and cleaned copies when `write_clean_dir` is set)."""
    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)
    check = config.data_check
    if relabel and write_clean_dir is None:
        raise SftlabError(
            "--relabel applies suggested labels in the cleaned copies: it needs --write-clean DIR"
        )
    clean_dir = Path(write_clean_dir) if write_clean_dir is not None else None
    if clean_dir is not None and clean_dir.exists() and (not clean_dir.is_dir() or any(clean_dir.iterdir())):
        raise SftlabError(
            f"{clean_dir}: already exists and is not an empty folder; --write-clean needs a new one"
        )
    tables = load_tables(config.data)
    tokenizer = load_tokenizer(locate_model(config.model), config.model, config.trust_remote_code)
    result = run_checks(
        config, tables, tokenizer, check.near_duplicate_similarity if check.near_duplicates else None
    )
    extra: dict[str, Any] = {"task": config.task, "model": str(config.model)}

    if check.label_issues and config.task == "classification":
        extra["label_check"] = label_check(config, result, log, finetune)
    elif check.label_issues and config.task == "token_classification":
        extra["label_check"] = token_label_check(config, result, log, finetune)

    summary = summarize(result)
    report = report_json(summary, result, extra)
    directory = report_dir_for(config)
    json_path, html_path = write_report(directory, report, result)
    log(format_summary(summary, result))
    log(f"\nwrote {json_path} and {html_path}")
    data_report = DataReport(result.findings, summary, report, directory)
    if clean_dir is not None:
        data = config.data
        data_report.clean_counts = write_clean(clean_dir, result.tables, result.findings, remove,
                                               relabel, data.label_column, data.conll_tag_field, data.tags_column)  # fmt: skip
        for split, counts in data_report.clean_counts.items():
            log(f"{clean_dir}/{split}.jsonl: {counts['kept']} of {counts['rows']} rows kept "
                f"({counts['removed']} removed, {counts['relabeled']} relabeled)")  # fmt: skip
        overrides = " ".join(f"data.{split}={clean_dir}/{split}.jsonl" for split in data_report.clean_counts)
        log(f"changes listed in {clean_dir}/changes.jsonl; train on them with: data.dataset=null {overrides}")
    return data_report


def label_check(config: Config, result: CheckResult, log: Any, finetune: Any) -> dict[str, Any]:
    """K-fold out-of-fold predictions on the train split's usable rows, then flagged label issues."""
    from sftlab.datacheck.labels import estimate_seconds, frozen_blocks, label_findings, out_of_fold

    check = config.data_check
    train = result.tables["train"]
    unusable = {
        f.row for f in result.findings if f.split == "train" and f.kind in ("empty_input", "empty_target")
    }
    label_column = config.data.label_column
    rows = [i for i in range(len(train)) if i not in unusable]
    multi_label = bool(rows) and isinstance(train.rows[rows[0]].get(label_column), list)
    if multi_label:
        rows = [i for i in rows if isinstance(train.rows[i][label_column], list)]
        labels: list[Any] = [
            tuple(sorted({_label_text(v) for v in train.rows[i][label_column]})) for i in rows
        ]
        distinct = {name for label in labels for name in label}
    else:
        labels = [_label_text(train.rows[i][label_column]) for i in rows]
        distinct = set(labels)
    if len(distinct) < 2 or len(rows) < 2 * check.folds:
        log("label check: skipped (needs at least 2 labels and 2 rows per fold)")
        return {"skipped": "too few rows"}
    estimate = estimate_seconds(config, train, rows)
    log(f"label check: {check.folds}-fold fine-tuning of {config.model} on {len(rows)} train rows, "
        f"{check.epochs} epoch(s) per fold, bottom {frozen_blocks(config)} blocks frozen: about {_duration(estimate)} (from a forward pass timed on 64 rows)")  # fmt: skip
    oof = out_of_fold(config, train, rows, labels, echo=log is not None, finetune=finetune)
    findings = label_findings(
        oof, train, check.method, config.data.multi_label_threshold, check.keep_per_class
    )
    result.findings.extend(findings)
    if oof.multi_label:  # the share of (row, class) decisions that agree with the given labels
        accuracy = float(((oof.probabilities > config.data.multi_label_threshold) == oof.labels).mean())
    else:
        accuracy = float((oof.probabilities.argmax(axis=1) == oof.labels).mean())
    log(f"label check: {len(findings)} likely wrong labels in {_duration(oof.seconds)} "
        f"(out-of-fold accuracy {accuracy:.3f}, method {check.method})")  # fmt: skip
    return {"folds": check.folds, "epochs": check.epochs, "rows": len(rows), "seconds": round(oof.seconds, 1),
            "estimated_seconds": round(estimate, 1), "out_of_fold_accuracy": round(accuracy, 4),
            "method": check.method, "flagged": len(findings)}  # fmt: skip


def token_label_check(config: Config, result: CheckResult, log: Any, finetune: Any) -> dict[str, Any]:
    """K-fold out-of-fold tag probabilities per word, then cleanlab's token-classification filter."""
    from sftlab.datacheck.labels import frozen_blocks, token_label_findings, token_out_of_fold
    from sftlab.tasks.token_classification import TokenClassificationTask

    check = config.data_check
    train = result.tables["train"]
    unusable = {f.row for f in result.findings if f.split == "train"
                and f.kind in ("empty_input", "empty_target", "invalid_tags")}  # fmt: skip
    rows = [i for i in range(len(train)) if i not in unusable]
    if len(rows) < 2 * check.folds:
        log("label check: skipped (needs at least 2 sentences per fold)")
        return {"skipped": "too few rows"}
    log(f"label check: {check.folds}-fold fine-tuning of {config.model} on {len(rows)} train sentences, "
        f"{check.epochs} epoch(s) per fold, bottom {frozen_blocks(config)} blocks frozen")  # fmt: skip
    probabilities, given, names, seconds = token_out_of_fold(
        config, train, rows, echo=log is not None, finetune=finetune
    )
    words = TokenClassificationTask.from_config(config, {"train": train.subset(rows)}).sentences(
        train.subset(rows)
    )[0]
    findings = token_label_findings(train, rows, probabilities, given, names, words)
    result.findings.extend(findings)
    flagged_words = sum(len(f.details["words"]) for f in findings)
    correct = sum(
        int((p.argmax(axis=1) == np.array(g)).sum()) for p, g in zip(probabilities, given, strict=True)
    )
    accuracy = correct / max(1, sum(len(g) for g in given))
    log(f"label check: {flagged_words} likely wrong tags in {len(findings)} sentences in {_duration(seconds)} "
        f"(out-of-fold word accuracy {accuracy:.3f})")  # fmt: skip
    return {"folds": check.folds, "epochs": check.epochs, "rows": len(rows), "seconds": round(seconds, 1),
            "out_of_fold_word_accuracy": round(accuracy, 4), "flagged_sentences": len(findings),
            "flagged_words": flagged_words}  # fmt: skip


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def pre_training_checks(config: Config, tables: dict[str, Table], tokenizer: Any, log: Any) -> list[Finding]:
    """The cheap checks before training: one warning line per problem type and split; with
    `data.check: error`, leakage and conflicting labels stop the run before anything is written."""
    mode = config.data.check
    if mode == "off":
        return []
    check = config.data_check
    result = run_checks(config, tables, tokenizer, check.near_duplicate_similarity if check.near_duplicates else None,
                        cheap_only=True)  # fmt: skip
    summary = summarize(result)
    for entry in summary:
        splits = ", ".join(f"{split} {count}" for split, count in entry["per_split"].items())
        log(f"data check: {entry['severity']}: {entry['kind']}: {entry['count']} rows ({splits}; "
            f"{entry['meaning']}), e.g. {'; '.join(entry['examples'][:2])}")  # fmt: skip
    if summary:
        log(
            "data check: `sftlab data check CONFIG` writes the full report; data.check=off skips these checks"
        )
    fatal = [entry for entry in summary if entry["kind"] in FATAL]
    if mode == "error" and fatal:
        first = fatal[0]
        raise SftlabError(
            f"data.check=error: {first['kind']}: {first['count']} rows ({first['meaning']}), "
            f"e.g. {first['examples'][0]}; fix the data or set data.check=warn"
        )
    return result.findings
