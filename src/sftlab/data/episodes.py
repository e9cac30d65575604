"""N-way K-shot episodes for meta-learning, and the few-shot draw `data.samples_per_class`.

An episode is a small classification task: N labels drawn from a label set, K training ("support")
examples per label and Q evaluation ("query") examples per label, with the labels renumbered 0 .. N-1 in
a random order (so no head output is tied to one label across episodes). Meta-training episodes and the
held-out evaluation tasks come from disjoint label sets, e.g. TREC's 50 fine labels
(`data.label_column: fine_label`) split by `split_label_sets`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from sftlab.errors import SftlabError


@dataclass(frozen=True)
class Episode:
    labels: list[str]
    """The episode's labels; label id i of the episode is labels[i]."""
    support: list[tuple[int, int]]
    """(example index, episode label id) for training, K per label."""
    query: list[tuple[int, int]]
    """(example index, episode label id) for evaluation, Q per label."""


def indices_by_label(labels: Sequence[str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        grouped.setdefault(label, []).append(index)
    return grouped


def split_label_sets(
    labels: Sequence[str], held_out: int, min_examples: int, seed: int
) -> tuple[list[str], list[str]]:
    """(meta-training labels, held-out labels): the labels with at least `min_examples` examples, split at
    random (seeded) so `held_out` of them never appear in meta-training."""
    counts = {label: len(members) for label, members in indices_by_label(labels).items()}
    usable = sorted(label for label, count in counts.items() if count >= min_examples)
    if len(usable) < held_out + 2:
        raise SftlabError(
            f"meta: only {len(usable)} labels have at least {min_examples} examples (k_shot + query); "
            f"need meta.held_out_labels={held_out} held out plus at least 2 for meta-training"
        )
    random.Random(seed).shuffle(usable)
    return sorted(usable[held_out:]), sorted(usable[:held_out])


def draw_episode(
    by_label: dict[str, list[int]], label_set: Sequence[str], n_way: int, k_shot: int, query: int,
    rng: random.Random,
) -> Episode:  # fmt: skip
    """N labels from `label_set`, then K + Q distinct examples of each (support and query do not overlap)."""
    if len(label_set) < n_way:
        raise SftlabError(f"meta.n_way={n_way}: the label set has only {len(label_set)} labels")
    chosen = rng.sample(sorted(label_set), n_way)
    support, held = [], []
    for label_id, label in enumerate(chosen):
        members = by_label[label]
        if len(members) < k_shot + query:
            raise SftlabError(
                f"label {label!r} has {len(members)} examples; an episode needs k_shot + query = {k_shot + query}"
            )
        picked = rng.sample(members, k_shot + query)
        support.extend((index, label_id) for index in picked[:k_shot])
        held.extend((index, label_id) for index in picked[k_shot:])
    rng.shuffle(support)
    return Episode(chosen, support, held)


def samples_per_class(labels: Sequence[str], count: int, seed: int) -> list[int]:
    """A seeded, stratified few-shot draw: `count` example indices per label (all of a label's examples
    when it has fewer), returned in the table's order."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for _, members in sorted(indices_by_label(labels).items()):
        chosen.extend(members if len(members) <= count else rng.sample(members, count))
    return sorted(chosen)
