"""The data report: a summary table for the terminal, data_report.json, and a self-contained HTML page.

The HTML page has no external references: its plots (label distribution per split, input lengths with the
max_length cut, confidence of flagged labels) are matplotlib PNGs inlined as base64.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sftlab.datacheck.checks import CheckResult, ordered
from sftlab.datacheck.findings import KINDS, Finding
from sftlab.errors import SftlabError

EXAMPLES = 3


def summarize(result: CheckResult) -> list[dict[str, Any]]:
    """One entry per issue type found: count, share of the rows of the splits it occurs in, severity,
    count per split, and the first examples (file and line)."""
    by_kind: dict[str, list[Finding]] = defaultdict(list)
    for finding in result.findings:
        by_kind[finding.kind].append(finding)
    summary = []
    for kind in KINDS:
        findings = by_kind.get(kind)
        if not findings:
            continue
        flagged = {(finding.split, finding.row) for finding in findings}
        per_split = Counter(split for split, _ in flagged)
        rows = sum(result.rows[split] for split in per_split)
        flagged_rows = len(flagged)
        summary.append({
            "kind": kind, "severity": KINDS[kind][0], "meaning": KINDS[kind][1], "count": flagged_rows,
            "share": flagged_rows / rows if rows else 0.0,
            "per_split": {split: per_split[split] for split in ordered(per_split)},
            "examples": [_example(finding) for finding in findings[:EXAMPLES]],
        })  # fmt: skip
    return summary


def _example(finding: Finding) -> str:
    return finding.where + (f" (= {finding.other})" if finding.other else "")


def format_summary(summary: list[dict[str, Any]], result: CheckResult) -> str:
    rows = ", ".join(f"{split} {count}" for split, count in result.rows.items())
    if not summary:
        return f"data check: no problems found ({rows} rows)"
    lines = [f"data check: {rows} rows", ""]
    header = f"{'issue':<22}{'severity':<10}{'count':>7}{'share':>8}  splits / examples"
    lines += [header, "-" * len(header)]
    for entry in summary:
        splits = ", ".join(f"{split} {count}" for split, count in entry["per_split"].items())
        lines.append(
            f"{entry['kind']:<22}{entry['severity']:<10}{entry['count']:>7}{entry['share']:>8.1%}  {splits}"
        )
        for example in entry["examples"]:
            lines.append(f"{'':<49}{example}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def report_json(summary: list[dict[str, Any]], result: CheckResult, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "rows": result.rows, "max_length": result.max_length, "notes": result.notes,
        "label_counts": result.label_counts, **extra, "summary": summary,
        "findings": [finding.as_json() for finding in result.findings],
    }  # fmt: skip


def write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SftlabError(f"{path}: cannot write: {error.strerror or error}") from None


def write_report(directory: Path, report: dict[str, Any], result: CheckResult) -> tuple[Path, Path]:
    """data_report.json and data_report.html in `directory` (created; earlier reports there are replaced)."""
    if directory.exists() and not directory.is_dir():
        raise SftlabError(f"{directory}: exists and is not a folder (data_check.report_dir)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SftlabError(f"{directory}: cannot create: {error.strerror or error}") from None
    json_path, html_path = directory / "data_report.json", directory / "data_report.html"
    write_text_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(html_path, render_html(report, result))
    return json_path, html_path


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(result: CheckResult) -> dict[str, str]:
    """Title -> base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, str] = {}
    if result.label_counts:
        names = sorted({name for counts in result.label_counts.values() for name in counts})[:40]
        figure, axes = plt.subplots(figsize=(max(5, 0.5 * len(names) + 2), 3.2))
        width = 0.8 / max(1, len(result.label_counts))
        for offset, (split, counts) in enumerate(result.label_counts.items()):
            total = sum(counts.values()) or 1
            axes.bar([i + offset * width for i in range(len(names))], [counts.get(n, 0) / total for n in names],
                     width, label=split)  # fmt: skip
        axes.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=45, ha="right")
        axes.set_ylabel("share of rows")
        axes.legend()
        images["Label distribution per split"] = _png(figure)
        plt.close(figure)
    if any(result.lengths.values()):
        figure, axes = plt.subplots(figsize=(6, 3.2))
        for split, lengths in result.lengths.items():
            if lengths:
                axes.hist(lengths, bins=40, alpha=0.5, label=split)
        axes.axvline(
            result.max_length, color="red", linestyle="--", label=f"data.max_length = {result.max_length}"
        )
        axes.set_xlabel("tokens")
        axes.set_ylabel("rows")
        axes.legend()
        images["Input length in tokens"] = _png(figure)
        plt.close(figure)
    flagged = [f for f in result.findings if f.kind == "label_issue"]
    if flagged:
        figure, axes = plt.subplots(figsize=(6, 3.2))
        axes.hist(
            [f.details["confidence"] for f in flagged],
            bins=20,
            range=(0, 1),
            alpha=0.6,
            label="suggested label",
        )
        axes.hist([f.details["given_label_probability"] for f in flagged], bins=20, range=(0, 1), alpha=0.6,
                  label="given label")  # fmt: skip
        axes.set_xlabel("out-of-fold probability")
        axes.set_ylabel("flagged rows")
        axes.legend()
        images["Confidence of flagged labels"] = _png(figure)
        plt.close(figure)
    return images


def render_html(report: dict[str, Any], result: CheckResult) -> str:
    escape = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sftlab data report</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}"
        ".error{color:#b00}.warning{color:#a60}.info{color:#555}</style></head><body>",
        "<h1>sftlab data report</h1>",
        "<p>"
        + escape(", ".join(f"{split}: {count} rows" for split, count in report["rows"].items()))
        + "</p>",
    ]
    parts += [f"<p>note: {escape(note)}</p>" for note in report["notes"]]
    if "label_check" in report:
        parts.append(f"<p>label check: {escape(json.dumps(report['label_check']))}</p>")
    parts.append("<h2>Summary</h2><table><tr><th>issue</th><th>severity</th><th>count</th><th>share</th>"
                 "<th>per split</th><th>meaning</th><th>examples</th></tr>")  # fmt: skip
    for entry in report["summary"]:
        splits = ", ".join(f"{s} {c}" for s, c in entry["per_split"].items())
        parts.append(
            f"<tr><td>{entry['kind']}</td><td class='{entry['severity']}'>{entry['severity']}</td>"
            f"<td>{entry['count']}</td><td>{entry['share']:.1%}</td><td>{escape(splits)}</td>"
            f"<td>{escape(entry['meaning'])}</td><td>{'<br>'.join(escape(e) for e in entry['examples'])}</td></tr>"
        )
    parts.append("</table>")
    for title, image in plots(result).items():
        parts.append(
            f"<h2>{escape(title)}</h2><img alt='{escape(title)}' src='data:image/png;base64,{image}'>"
        )
    parts.append("<h2>Flagged rows</h2><table><tr><th>issue</th><th>severity</th><th>where</th><th>reason</th>"
                 "<th>score</th><th>other row</th></tr>")  # fmt: skip
    for finding in report["findings"][:5000]:
        score = "" if finding["score"] is None else f"{finding['score']:.3g}"
        parts.append(
            f"<tr><td>{finding['kind']}</td><td class='{finding['severity']}'>{finding['severity']}</td>"
            f"<td>{escape(finding['where'])}</td><td>{escape(finding['message'])}</td><td>{score}</td>"
            f"<td>{escape(finding['other'] or '')}</td></tr>"
        )
    if len(report["findings"]) > 5000:
        parts.append(
            f"<tr><td colspan=6>... {len(report['findings']) - 5000} more in data_report.json</td></tr>"
        )
    parts.append("</table></body></html>\n")
    return "\n".join(parts)
