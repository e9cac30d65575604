"""Entity-level precision / recall / F1 over IOB tag sequences, computed as seqeval computes them.

`default` mode follows conlleval (and seqeval's default): a chunk starts at B-X, at an I-X whose type
differs from the previous tag's, or after O; IOB1 and IOB2 sequences both decode. `strict` mode follows
seqeval's `mode="strict", scheme=IOB2`: an entity is exactly B-X followed by I-X tokens; an I-X that
does not continue a B-X/I-X of its own type belongs to no entity.
"""

from __future__ import annotations

from typing import Any


def split_tag(tag: str) -> tuple[str, str]:
    """ "B-PER" -> ("B", "PER"); "O" -> ("O", ""); a tag without a type ("B") gets type "_" as in seqeval."""
    if tag == "O" or not tag:
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind or "_"


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 (B- only between two adjacent entities of one type) to IOB2 (every entity starts with B-).

    IOB2 input comes back unchanged, so this is safe to apply to any IOB sequence.
    """
    converted = []
    previous = "O"
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I":
            previous_prefix, previous_kind = split_tag(previous)
            if previous_prefix == "O" or previous_kind != kind:
                tag = f"B-{kind}"
        converted.append(tag)
        previous = tag
    return converted


def _ends(previous: str, previous_kind: str, prefix: str, kind: str) -> bool:
    # conlleval's endOfChunk, restricted to IOB/IOBES prefixes as seqeval implements it.
    if previous == "E" or previous == "S":
        return True
    if previous == "B" and prefix in ("B", "S", "O"):
        return True
    if previous == "I" and prefix in ("B", "S", "O"):
        return True
    return previous != "O" and previous_kind != kind


def _starts(previous: str, previous_kind: str, prefix: str, kind: str) -> bool:
    # conlleval's startOfChunk.
    if prefix in ("B", "S"):
        return True
    if previous in ("E", "S", "O") and prefix in ("I", "E"):
        return True
    return prefix != "O" and previous_kind != kind


def entity_spans(tags: list[str], strict: bool = False) -> list[tuple[str, int, int]]:
    """(type, first token, last token) of every entity in one sentence's tags."""
    if strict:
        spans = []
        i = 0
        while i < len(tags):
            prefix, kind = split_tag(tags[i])
            if prefix != "B":
                i += 1
                continue
            end = i
            while end + 1 < len(tags) and split_tag(tags[end + 1]) == ("I", kind):
                end += 1
            spans.append((kind, i, end))
            i = end + 1
        return spans
    spans = []
    previous, previous_kind, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = split_tag(tag)
        if _ends(previous, previous_kind, prefix, kind) and previous != "O":
            spans.append((previous_kind, begin, i - 1))
        if _starts(previous, previous_kind, prefix, kind):
            begin = i
        previous, previous_kind = prefix, kind
    return spans


def _scores(true_count: int, pred_count: int, correct: int) -> dict[str, float]:
    precision = correct / pred_count if pred_count else 0.0
    recall = correct / true_count if true_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": true_count}


def entity_metrics(
    true_tags: list[list[str]], pred_tags: list[list[str]], strict: bool = False
) -> dict[str, Any]:
    """Overall (micro) and per-type entity precision / recall / F1, macro F1, and token accuracy.

    An entity counts as correct only when its type and both boundaries match (seqeval's rule).
    """
    true_set: set[tuple[int, str, int, int]] = set()
    pred_set: set[tuple[int, str, int, int]] = set()
    correct_tokens = total_tokens = 0
    for sentence, (truth, guess) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(truth) != len(guess):
            raise ValueError(f"sentence {sentence}: {len(truth)} true tags but {len(guess)} predicted")
        true_set.update((sentence, *span) for span in entity_spans(truth, strict))
        pred_set.update((sentence, *span) for span in entity_spans(guess, strict))
        correct_tokens += sum(t == p for t, p in zip(truth, guess, strict=True))
        total_tokens += len(truth)
    kinds = sorted({span[1] for span in true_set | pred_set})
    per_type = {}
    for kind in kinds:
        truth = {span for span in true_set if span[1] == kind}
        guess = {span for span in pred_set if span[1] == kind}
        per_type[kind] = _scores(len(truth), len(guess), len(truth & guess))
    overall = _scores(len(true_set), len(pred_set), len(true_set & pred_set))
    return {
        "entity_precision": overall["precision"],
        "entity_recall": overall["recall"],
        "entity_f1": overall["f1"],
        "entity_f1_macro": sum(s["f1"] for s in per_type.values()) / len(per_type) if per_type else 0.0,
        "token_accuracy": correct_tokens / total_tokens if total_tokens else 0.0,
        "num_entities": len(true_set),
        "num_predicted_entities": len(pred_set),
        "per_type": per_type,
        "mode": "strict" if strict else "default",
    }
