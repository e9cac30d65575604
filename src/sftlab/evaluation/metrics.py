"""Classification metrics computed from label ids alone (no logits kept, so evaluation memory stays flat)."""

from __future__ import annotations

from typing import Any


def confusion_matrix(y_true: list[int], y_pred: list[int], num_labels: int) -> list[list[int]]:
    """matrix[true][predicted] counts."""
    matrix = [[0] * num_labels for _ in range(num_labels)]
    for truth, guess in zip(y_true, y_pred, strict=True):
        matrix[truth][guess] += 1
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    # sklearn's zero_division=0 convention: an undefined precision or recall counts as 0.
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def classification_metrics(y_true: list[int], y_pred: list[int], label_names: list[str]) -> dict[str, Any]:
    """Accuracy; macro, micro and weighted precision/recall/F1; per-class figures; confusion matrix.

    Macro averages run over every label of the model (a label absent from this split counts with 0),
    matching sklearn's `labels=range(num_labels)`; micro F1 equals accuracy for single-label data.
    """
    if not y_true:
        raise ValueError("no examples to evaluate")
    num_labels = len(label_names)
    matrix = confusion_matrix(y_true, y_pred, num_labels)
    per_class: dict[str, dict[str, float | int]] = {}
    true_positives_total = 0
    for index, name in enumerate(label_names):
        true_positives = matrix[index][index]
        predicted = sum(matrix[row][index] for row in range(num_labels))
        support = sum(matrix[index])
        precision = _ratio(true_positives, predicted)
        recall = _ratio(true_positives, support)
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": support,
        }
        true_positives_total += true_positives
    total = len(y_true)
    macro = {
        key: sum(float(c[key]) for c in per_class.values()) / num_labels
        for key in ("precision", "recall", "f1")
    }
    weighted = {
        key: sum(float(c[key]) * int(c["support"]) for c in per_class.values()) / total
        for key in ("precision", "recall", "f1")
    }
    micro = _ratio(true_positives_total, total)
    return {
        "accuracy": micro,
        "precision_macro": macro["precision"],
        "recall_macro": macro["recall"],
        "f1_macro": macro["f1"],
        "precision_micro": micro,
        "recall_micro": micro,
        "f1_micro": micro,
        "precision_weighted": weighted["precision"],
        "recall_weighted": weighted["recall"],
        "f1_weighted": weighted["f1"],
        "num_examples": total,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(label_names), "matrix": matrix},
    }


def multilabel_metrics(
    y_true: list[list[int]], y_pred: list[list[int]], label_names: list[str]
) -> dict[str, Any]:
    """Multi-label figures from 0/1 indicator rows: subset accuracy (every label right), per-label
    precision/recall/F1, their macro and support-weighted means, and micro figures pooled over all
    (example, label) decisions, as sklearn computes them with zero_division=0."""
    if not y_true:
        raise ValueError("no examples to evaluate")
    per_class: dict[str, dict[str, float | int]] = {}
    pooled = {"tp": 0, "predicted": 0, "support": 0}
    for index, name in enumerate(label_names):
        true_positives = sum(t[index] and p[index] for t, p in zip(y_true, y_pred, strict=True))
        predicted = sum(p[index] for p in y_pred)
        support = sum(t[index] for t in y_true)
        precision, recall = _ratio(true_positives, predicted), _ratio(true_positives, support)
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": support,
        }
        pooled["tp"] += true_positives
        pooled["predicted"] += predicted
        pooled["support"] += support
    count = len(label_names)
    macro = {
        key: sum(float(c[key]) for c in per_class.values()) / count for key in ("precision", "recall", "f1")
    }
    weighted = {
        key: _ratio(sum(float(c[key]) * int(c["support"]) for c in per_class.values()), pooled["support"])
        for key in ("precision", "recall", "f1")
    }
    precision_micro = _ratio(pooled["tp"], pooled["predicted"])
    recall_micro = _ratio(pooled["tp"], pooled["support"])
    return {
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true),
        "precision_macro": macro["precision"],
        "recall_macro": macro["recall"],
        "f1_macro": macro["f1"],
        "precision_micro": precision_micro,
        "recall_micro": recall_micro,
        "f1_micro": _f1(precision_micro, recall_micro),
        "precision_weighted": weighted["precision"],
        "recall_weighted": weighted["recall"],
        "f1_weighted": weighted["f1"],
        "num_examples": len(y_true),
        "per_class": per_class,
    }
