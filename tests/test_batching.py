import random

from sftlab.data.batching import (
    inference_batches,
    length_grouped_batches,
    plan_steps,
    random_batches,
    shard_batches,
    token_budget_batches,
)


def _flatten(batches):
    return [index for batch in batches for index in batch]


def test_random_batches_cover_each_example_once_and_depend_on_seed_and_epoch():
    batches = random_batches(103, 10, seed=1, epoch=0)
    assert sorted(_flatten(batches)) == list(range(103))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert batches == random_batches(103, 10, seed=1, epoch=0)
    assert batches != random_batches(103, 10, seed=1, epoch=1)
    assert batches != random_batches(103, 10, seed=2, epoch=0)


def test_length_grouped_batches_cover_once_and_cut_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(1000)]
    grouped = length_grouped_batches(lengths, 32, seed=3, epoch=0)
    assert sorted(_flatten(grouped)) == list(range(1000))
    assert grouped == length_grouped_batches(lengths, 32, seed=3, epoch=0)

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    plain = random_batches(len(lengths), 32, seed=3, epoch=0)
    assert padding(grouped) < padding(plain) / 4


def test_inference_batches_sorted_longest_first():
    lengths = [3, 9, 1, 7]
    assert inference_batches(lengths, 2) == [[1, 3], [0, 2]]


def test_shards_are_disjoint_and_equal_in_count():
    batches = [[i] for i in range(11)]
    shards = [shard_batches(batches, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(_flatten([b for s in shards for b in s])) == list(range(9))
    assert shard_batches(batches, 0, 1) == batches


def test_plan_steps_sgd_minibatch_accumulation_and_full_batch():
    lengths = [5] * 10
    sgd = plan_steps(lengths, 1, 1, 32, True, seed=0, epoch=0)
    assert len(sgd) == 10 and all(len(step) == 1 and len(step[0]) == 1 for step in sgd)
    accumulated = plan_steps(lengths, 2, 3, 32, False, seed=0, epoch=0)
    assert [[len(b) for b in step] for step in accumulated] == [[2, 2, 2], [2, 2]]
    full = plan_steps(lengths, "full", 1, 4, False, seed=0, epoch=0)
    assert len(full) == 1 and [len(b) for b in full[0]] == [4, 4, 2]
    for plan in (sgd, accumulated, full):
        assert sorted(i for step in plan for batch in step for i in batch) == list(range(10))


def test_token_budget_batches_cover_each_example_once_within_the_budget():
    rng = random.Random(3)
    lengths = [rng.choice([5, 9, 13, 14, 22, 37, 120]) for _ in range(1000)]
    for epoch in (0, 1):
        batches = token_budget_batches(lengths, 512, seed=11, epoch=epoch)
        flat = [index for batch in batches for index in batch]
        assert sorted(flat) == list(range(1000))  # every example exactly once per epoch
        for batch in batches:
            padded = -(-max(lengths[i] for i in batch) // 8) * 8
            assert padded * len(batch) <= 512 or len(batch) == 1
        # short examples share big batches, long ones small: the sizes really follow the lengths
        sizes = {max(lengths[i] for i in batch): len(batch) for batch in batches}
        assert sizes[120] <= 4 and max(sizes.values()) >= 32
        assert max(lengths[i] for i in batches[0]) == 120  # the longest batch first
    assert token_budget_batches(lengths, 512, 11, 0) == token_budget_batches(lengths, 512, 11, 0)
    assert token_budget_batches(lengths, 512, 11, 0) != token_budget_batches(lengths, 512, 11, 1)
    # an example over the budget gets a batch of its own rather than being dropped
    assert [len(b) for b in token_budget_batches([700, 5, 5], 256, 0, 0) if 0 in b] == [1]


def test_plan_steps_with_a_token_budget_replaces_the_example_count():
    lengths = [10] * 640
    steps = plan_steps(lengths, 32, 1, 32, True, seed=0, epoch=0, batch_tokens=320)  # 16 tokens x 20 examples
    assert len(steps) == 32 and all(len(step[0]) == 20 for step in steps)
    steps = plan_steps(
        lengths, 32, 2, 32, True, seed=0, epoch=0, batch_tokens=320
    )  # accumulation still applies
    assert len(steps) == 16 and all(len(step) == 2 for step in steps)
