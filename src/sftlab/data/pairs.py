"""Same-class / different-class pairs for contrastive few-shot training, drawn on the fly.

SetFit materialises its pairs as a list before training, and its "unique" strategy builds all n(n-1)/2 of
them, which runs out of memory on a few thousand examples (setfit #472, #628). Here a pair is a pure
function of (seed, pair index): nothing but the per-label index lists (O(n)) is ever held, any batch can
be recomputed (a resumed run skips to any step in O(1)), and every batch is exactly balanced: even
indices are same-label pairs, odd indices different-label pairs, and a batch is a run of consecutive
indices. Labels are drawn uniformly, then members uniformly within a label, so rare and common labels
meet equally often (SetFit's "oversampling" does the same by repeating the rare labels' pairs).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from sftlab.errors import SftlabError


@dataclass(frozen=True)
class Pair:
    first: int
    second: int
    same: bool
    """True when both examples have the same label (target similarity 1), else False (target 0)."""


@dataclass
class PairSampler:
    """Balanced pairs of example indices over `labels` (one label id per example)."""

    labels: Sequence[int]
    seed: int = 0
    by_label: dict[int, list[int]] = field(init=False, repr=False)
    pairable: list[int] = field(init=False, repr=False)
    """Labels with at least two examples: the only ones that can form a same-label pair."""

    def __post_init__(self) -> None:
        self.by_label = {}
        for index, label in enumerate(self.labels):
            self.by_label.setdefault(label, []).append(index)
        self.pairable = sorted(label for label, members in self.by_label.items() if len(members) >= 2)
        if len(self.by_label) < 2:
            raise SftlabError("contrastive pairs need at least 2 labels in the training data")
        if not self.pairable:
            raise SftlabError("contrastive pairs need at least one label with 2 or more training examples")
        self._labels_sorted = sorted(self.by_label)

    def pair(self, index: int) -> Pair:
        """Pair number `index`: same-label when `index` is even, different-label when odd."""
        rng = random.Random(self.seed * 1_000_003 + index)
        if index % 2 == 0:
            members = self.by_label[rng.choice(self.pairable)]
            first, second = rng.sample(range(len(members)), 2)
            return Pair(members[first], members[second], True)
        label_a, label_b = rng.sample(self._labels_sorted, 2)
        return Pair(rng.choice(self.by_label[label_a]), rng.choice(self.by_label[label_b]), False)

    def batches(self, start: int, count: int, batch_size: int) -> list[list[int]]:
        """Pair indices start .. start+count-1 cut into batches of `batch_size` consecutive indices (an even
        batch size makes every batch half same-label, half different-label)."""
        stop = start + count
        return [list(range(first, min(first + batch_size, stop))) for first in range(start, stop, batch_size)]


def pairs_per_epoch(num_examples: int, pairs_per_example: int, max_pairs: int | None = None) -> int:
    """Pairs in one contrastive epoch: `pairs_per_example` per training example, capped at `max_pairs`,
    rounded down to an even number (half same-label, half different-label). SetFit's
    `num_iterations=K` draws one same-label and one different-label pair per example K times: 2K pairs per
    example."""
    count = num_examples * pairs_per_example
    if max_pairs is not None:
        count = min(count, max_pairs)
    return max(2, count // 2 * 2)
