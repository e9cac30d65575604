"""Calibration of a classifier's confidence: the reliability diagram's bins and the expected calibration
error (Guo et al. 2017, equal-width bins over the top-label probability)."""

from __future__ import annotations

from collections.abc import Sequence


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[dict[str, float]]:
    """Per equal-width confidence bin [low, high): how many predictions, their mean confidence and accuracy
    (a confidence of exactly 1.0 goes into the last bin)."""
    rows = [
        {"low": i / bins, "high": (i + 1) / bins, "count": 0, "confidence": 0.0, "accuracy": 0.0}
        for i in range(bins)
    ]
    for confidence, right in zip(confidences, correct, strict=True):
        row = rows[min(int(confidence * bins), bins - 1)]
        row["count"] += 1
        row["confidence"] += confidence
        row["accuracy"] += float(right)
    for row in rows:
        if row["count"]:
            row["confidence"] /= row["count"]
            row["accuracy"] /= row["count"]
    return rows


def expected_calibration_error(bins: list[dict[str, float]]) -> float:
    """Sum over bins of |accuracy - confidence|, weighted by the bin's share of predictions."""
    total = sum(row["count"] for row in bins)
    if total == 0:
        return 0.0
    return sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in bins)
