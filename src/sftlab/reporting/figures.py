"""The report's figures: matplotlib (Agg, no display) drawn to PNG and inlined as base64 data URIs, so a
report is one file that opens offline."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

Curve = tuple[str, Sequence[float], Sequence[float]]
"""A labelled line: (label, x values, y values)."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    _pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def line_chart(curves: Sequence[Curve], title: str, xlabel: str, ylabel: str, log_y: bool = False) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.4, 3.2))
    for label, xs, ys in curves:
        marker = "o" if len(xs) <= 30 else None
        axes.plot(list(xs), list(ys), label=label, marker=marker, markersize=4, linewidth=1.6)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if log_y:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if len(curves) > 1 or curves[0][0]:
        axes.legend(fontsize=8)
    return to_data_uri(figure)


def heatmap(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> str:
    """A confusion matrix: rows true labels, columns predicted, each cell annotated with its count."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    size = max(3.6, 0.55 * len(labels) + 1.8)
    figure, axes = plt.subplots(figsize=(size + 1.0, size))
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(title=title, xlabel="predicted", ylabel="true")
    threshold = counts.max() / 2 if counts.size else 0
    if len(labels) <= 30:
        for row in range(counts.shape[0]):
            for column in range(counts.shape[1]):
                axes.text(column, row, f"{int(counts[row, column])}", ha="center", va="center", fontsize=8,
                          color="white" if counts[row, column] > threshold else "black")  # fmt: skip
    return to_data_uri(figure)


def grouped_bars(names: Sequence[str], series: dict[str, Sequence[float]], title: str, ylabel: str) -> str:
    """One group of bars per name (a class or entity type), one bar per series (precision, recall, F1)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(5.4, 0.3 * len(names) * len(series)), 3.2))
    width = 0.8 / max(1, len(series))
    for offset, (label, values) in enumerate(series.items()):
        axes.bar([i + offset * width for i in range(len(names))], list(values), width, label=label)
    axes.set_xticks(
        [i + width * (len(series) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right"
    )
    axes.set(title=title, ylabel=ylabel, ylim=(0, 1.05))
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return to_data_uri(figure)


def reliability_diagram(bins: list[dict[str, float]], ece: float) -> str:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.4, 4.0))
    filled = [b for b in bins if b["count"]]
    width = 1.0 / len(bins)
    axes.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width, align="edge",
             edgecolor="#1f4e79", color="#6fa8dc", label="accuracy")  # fmt: skip
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    axes.set(
        title=f"reliability (ECE {ece:.4f})", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1)
    )
    axes.legend(fontsize=8, loc="upper left")
    return to_data_uri(figure)
