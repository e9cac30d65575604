"""Scores for generated answers against reference answers: exact match and token F1 (SQuAD's definitions).

Both compare normalized text: lower-cased, punctuation and the articles a/an/the removed, whitespace
collapsed. With several references an answer scores its best match, as SQuAD and NQ-open are scored.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: list[str]) -> float:
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(reference) for reference in references))


def token_f1(prediction: str, references: list[str]) -> float:
    return max(_f1(normalize_answer(prediction).split(), normalize_answer(ref).split()) for ref in references)


def _f1(predicted: list[str], reference: list[str]) -> float:
    if not predicted or not reference:
        return float(predicted == reference)
    common = sum((Counter(predicted) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def answer_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Mean exact match and token F1 over the answers (0 to 1)."""
    pairs = list(zip(predictions, references, strict=True))
    return {
        "exact_match": sum(exact_match(p, r) for p, r in pairs) / len(pairs),
        "token_f1": sum(token_f1(p, r) for p, r in pairs) / len(pairs),
    }
