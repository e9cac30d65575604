"""The evaluation report printed at the end of a run and by `sftlab eval`."""

from __future__ import annotations

from typing import Any

from wcwidth import wcswidth


def display_width(text: str) -> int:
    """Terminal columns `text` takes: 2 per Chinese / Japanese character (East Asian Wide), 1 otherwise."""
    width = wcswidth(text)
    return width if width >= 0 else len(text)  # control characters: count them as one column each


def ljust(text: str, width: int) -> str:
    """`text` padded on the right to `width` terminal columns (f-string padding counts characters)."""
    return text + " " * max(0, width - display_width(text))


def rjust(text: str, width: int) -> str:
    return " " * max(0, width - display_width(text)) + text


def format_classification_report(metrics: dict[str, Any], title: str) -> str:
    per_class = metrics["per_class"]
    width = max(12, *(display_width(name) for name in per_class)) + 2
    lines = [title, "", f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, row in per_class.items():
        lines.append(
            f"{ljust(name, width)}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}{row['support']:>10d}"
        )
    total = metrics["num_examples"]
    lines.append("")
    for label, key in (("macro avg", "macro"), ("weighted avg", "weighted"), ("micro avg", "micro")):
        lines.append(
            f"{label:<{width}}{metrics[f'precision_{key}']:>10.4f}{metrics[f'recall_{key}']:>10.4f}{metrics[f'f1_{key}']:>10.4f}{total:>10d}"
        )
    multi_label = "confusion_matrix" not in metrics
    summary = f"{'subset accuracy' if multi_label else 'accuracy'} {metrics['accuracy']:.4f}"
    if "loss" in metrics:
        summary += f"   loss {metrics['loss']:.4f}"
    if multi_label:
        return "\n".join([*lines, "", summary])
    lines += ["", summary, "", "confusion matrix (rows: true label, columns: predicted)"]
    names = metrics["confusion_matrix"]["labels"]
    cell = max(6, *(display_width(name) + 1 for name in names))
    lines.append(" " * width + "".join(rjust(name, cell) for name in names))
    for name, row in zip(names, metrics["confusion_matrix"]["matrix"], strict=True):
        lines.append(ljust(name, width) + "".join(f"{count:>{cell}d}" for count in row))
    return "\n".join(lines)
