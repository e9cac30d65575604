"""The on-the-fly pair sampler: balanced, correctly labeled, reproducible, and O(n) memory."""

from __future__ import annotations

import tracemalloc
from collections import Counter

import pytest

from sftlab.data.episodes import samples_per_class
from sftlab.data.pairs import PairSampler, pairs_per_epoch
from sftlab.errors import SftlabError


def test_pairs_are_correctly_labeled_and_every_batch_is_balanced() -> None:
    labels = [0] * 3 + [1] * 10 + [2] * 50 + [3] * 1
    sampler = PairSampler(labels, seed=5)
    for batch in sampler.batches(start=0, count=1000, batch_size=16):
        pairs = [sampler.pair(index) for index in batch]
        assert sum(pair.same for pair in pairs) == len(batch) // 2
        for pair in pairs:
            assert pair.first != pair.second
            assert (labels[pair.first] == labels[pair.second]) == pair.same


def test_labels_meet_equally_often_however_imbalanced() -> None:
    labels = [0] * 5 + [1] * 500
    sampler = PairSampler(labels, seed=1)
    same = Counter(labels[sampler.pair(index).first] for index in range(0, 4000, 2))
    # Same-label pairs pick the label uniformly: about 1000 each, not 10 : 1000 as pooled pairs would.
    assert abs(same[0] - 1000) < 120 and abs(same[1] - 1000) < 120
    # A label with a single example never forms a same-label pair, but does form different-label ones.
    lonely = PairSampler([0] + [1] * 5 + [2] * 5, seed=0)
    assert all(lonely.pair(index).first != 0 for index in range(0, 400, 2))
    assert any(0 in (lonely.pair(index).first, lonely.pair(index).second) for index in range(1, 400, 2))


def test_a_pair_is_a_pure_function_of_seed_and_index() -> None:
    labels = [index % 7 for index in range(300)]
    one, two = PairSampler(labels, seed=3), PairSampler(labels, seed=3)
    assert [one.pair(i) for i in range(50)] == [two.pair(i) for i in range(50)]
    assert [one.pair(i) for i in range(50)] != [PairSampler(labels, seed=4).pair(i) for i in range(50)]


def test_memory_stays_linear_in_the_examples_not_quadratic() -> None:
    # 100,000 examples have ~5e9 pairs (tens of GB as a list); the sampler holds the label index lists only.
    labels = [index % 10 for index in range(100_000)]
    tracemalloc.start()
    sampler = PairSampler(labels, seed=0)
    for batch in sampler.batches(start=0, count=20_000, batch_size=64):
        for index in batch:
            sampler.pair(index)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # bytes: the index lists (~3.6 MB) plus one batch


def test_bad_label_sets_are_refused() -> None:
    with pytest.raises(SftlabError, match="at least 2 labels"):
        PairSampler([1, 1, 1])
    with pytest.raises(SftlabError, match="2 or more"):
        PairSampler([0, 1, 2])


def test_pairs_per_epoch_counts() -> None:
    assert pairs_per_epoch(48, 40) == 1920
    assert pairs_per_epoch(384, 40, max_pairs=4000) == 4000
    assert pairs_per_epoch(3, 1) == 2


def test_samples_per_class_is_stratified_and_seeded() -> None:
    labels = ["a"] * 30 + ["b"] * 5 + ["c"] * 100
    chosen = samples_per_class(labels, 8, seed=0)
    assert Counter(labels[i] for i in chosen) == {"a": 8, "b": 5, "c": 8}
    assert chosen == sorted(chosen) == samples_per_class(labels, 8, seed=0)
    assert chosen != samples_per_class(labels, 8, seed=1)
