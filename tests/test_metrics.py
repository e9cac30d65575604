import pytest

from sftlab.evaluation.metrics import classification_metrics, confusion_matrix
from sftlab.evaluation.report import format_classification_report

# Three labels, ten examples, worked out by hand:
#   true  a a a a b b b c c c
#   pred  a a b c b b a c c a
# a: TP 2, predicted 4 (idx 0,1,6,9), support 4 -> P 0.5,  R 0.5,  F1 0.5
# b: TP 2, predicted 3 (idx 2,4,5),   support 3 -> P 2/3,  R 2/3,  F1 2/3
# c: TP 2, predicted 3 (idx 3,7,8),   support 3 -> P 2/3,  R 2/3,  F1 2/3
TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 0]


def test_confusion_matrix_by_hand():
    assert confusion_matrix(TRUE, PRED, 3) == [[2, 1, 1], [1, 2, 0], [1, 0, 2]]


def test_metrics_by_hand():
    metrics = classification_metrics(TRUE, PRED, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["f1_micro"] == pytest.approx(0.6)
    assert metrics["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert metrics["recall_macro"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert metrics["f1_macro"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert metrics["f1_weighted"] == pytest.approx((0.5 * 4 + 2 / 3 * 3 + 2 / 3 * 3) / 10)
    assert metrics["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4}
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"] == {
        "labels": ["a", "b", "c"],
        "matrix": [[2, 1, 1], [1, 2, 0], [1, 0, 2]],
    }


def test_unpredicted_and_absent_labels_count_as_zero():
    # label "c" never predicted and never present: precision, recall and F1 all 0 (sklearn zero_division=0)
    metrics = classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b", "c"])
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # a: P 1/2 R 1 F1 2/3; b: P 1 R 1/2 F1 2/3; c: 0
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_report_shows_every_label_and_the_matrix():
    metrics = classification_metrics(TRUE, PRED, ["a", "b", "c"])
    metrics["loss"] = 0.5
    text = format_classification_report(metrics, "title")
    assert "accuracy 0.6000   loss 0.5000" in text
    assert "macro avg" in text and "confusion matrix" in text
    rows = text.splitlines()
    assert any(row.split() == ["a", "0.5000", "0.5000", "0.5000", "4"] for row in rows)
    assert any(row.split() == ["b", "1", "2", "0"] for row in rows)
