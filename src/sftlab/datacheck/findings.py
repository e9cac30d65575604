"""What a data check finds: one `Finding` per flagged row, each naming its file and line."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]

# Issue type -> (severity, one-line meaning). The order is the order of the summary table.
KINDS: dict[str, tuple[Severity, str]] = {
    "leakage": ("error", "the same text (after case/punctuation/space normalisation) is in another split"),
    "conflicting_labels": ("error", "the same text carries different labels"),
    "empty_input": ("error", "empty or whitespace-only input"),
    "empty_target": ("error", "empty or missing target / label"),
    "invalid_tags": ("error", "invalid IOB2 sequence (I-X after O or after another type) or tag name"),
    "answer_not_at_start": ("error", "the answer text is not at its answer_start in the context"),
    "no_assistant_turn": ("error", "a conversation without an assistant answer to train on"),
    "near_leakage": ("warning", "a near-copy (edit similarity >= threshold) is in another split"),
    "duplicate": ("warning", "an exact copy of an earlier row in the same split"),
    "label_issue": ("warning", "likely wrong label (out-of-fold predictions + confident learning)"),
    "near_duplicate": ("warning", "a near-copy of another row in the same split"),
    "truncated_input": ("warning", "input longer than data.max_length tokens (cut in training)"),
    "truncated_target": ("warning", "target / completion cut by the token limit"),
    "answer_too_long": ("warning", "answer longer than data.max_answer_length tokens or the window"),
    "target_equals_source": ("warning", "target identical to the source"),
    "label_only_in_split": ("warning", "a label or tag type present in this split but not in train"),
    "class_imbalance": ("warning", "a class with under a fifth of the uniform share of rows"),
    "encoding_damage": ("warning", "mojibake, control characters or HTML remnants"),
    "unanswerable": ("info", "a question without an answer (SQuAD 2.0 style)"),
}


@dataclass
class Finding:
    kind: str
    split: str
    row: int
    """Index of the row in its split's table (what --write-clean removes or relabels)."""
    where: str
    """'file line N' of the row."""
    message: str
    score: float | None = None
    """How sure or how strong: similarity for near-copies, the label's out-of-fold probability, ..."""
    other: str | None = None
    """'file line N' of the row it collides with (leakage, duplicates, conflicts)."""
    details: dict[str, Any] = field(default_factory=dict)
    """label_issue: given_label, suggested_label, confidence; others as useful."""

    @property
    def severity(self) -> Severity:
        return KINDS[self.kind][0]

    def as_json(self) -> dict[str, Any]:
        return {"severity": self.severity, **asdict(self)}
