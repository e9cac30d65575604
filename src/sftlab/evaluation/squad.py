"""Exact match and F1 for extractive QA, as the official SQuAD v1.1 / v2.0 evaluation scripts compute them."""

from __future__ import annotations

import collections
import re
import string
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD's normalization)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1; when either side is empty (an unanswerable question) it is 1 only if both are."""
    predicted = normalize_answer(prediction).split()
    truth = normalize_answer(gold).split()
    if not predicted or not truth:
        return float(predicted == truth)
    common = collections.Counter(predicted) & collections.Counter(truth)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(truth)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: list[str], golds: list[list[str]]) -> dict[str, Any]:
    """EM and F1 in percent, each the max over the gold answers (no gold answers = unanswerable, gold "")."""
    exact, f1, has_answer = [], [], []
    for prediction, answers in zip(predictions, golds, strict=True):
        answers = [a for a in answers if normalize_answer(a)] or [""]
        exact.append(max(exact_match(prediction, a) for a in answers))
        f1.append(max(token_f1(prediction, a) for a in answers))
        has_answer.append(answers != [""])

    def mean(values: list[float]) -> float:
        return 100.0 * sum(values) / len(values) if values else 0.0

    answerable = [i for i, flag in enumerate(has_answer) if flag]
    unanswerable = [i for i, flag in enumerate(has_answer) if not flag]
    return {
        "exact_match": mean(exact),
        "f1": mean(f1),
        "num_examples": len(predictions),
        "has_answer_exact_match": mean([exact[i] for i in answerable]),
        "has_answer_f1": mean([f1[i] for i in answerable]),
        "has_answer_count": len(answerable),
        "no_answer_exact_match": mean([exact[i] for i in unanswerable]),
        "no_answer_count": len(unanswerable),
    }
