"""Multi-task samplers: p_i ∝ n_i^(1/T), the annealed schedule, and plans that follow them."""

from __future__ import annotations

import math

import pytest

from sftlab.data.task_sampling import sampler_temperature, task_plan, task_probabilities


def test_probabilities_follow_the_formula() -> None:
    sizes = [4000, 1000, 250]
    assert task_probabilities(sizes, 1.0) == pytest.approx([4000 / 5250, 1000 / 5250, 250 / 5250])
    roots = [math.sqrt(size) for size in sizes]  # T = 2
    assert task_probabilities(sizes, 2.0) == pytest.approx([r / sum(roots) for r in roots])
    assert task_probabilities(sizes, 1e9) == pytest.approx([1 / 3] * 3)


def test_annealed_alpha_falls_from_one_to_a_fifth() -> None:
    alphas = [1 / sampler_temperature("annealed", 99.0, epoch, 5) for epoch in range(5)]
    assert alphas == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert sampler_temperature("proportional", 3.0, 2, 5) == 1.0
    assert sampler_temperature("temperature", 3.0, 2, 5) == 3.0


def test_temperature_sampler_frequencies_match_the_formula() -> None:
    sizes = [3200, 800, 200]
    batches = [[[t * 10_000 + b] for b in range(size // 8)] for t, size in enumerate(sizes)]
    counts = [0, 0, 0]
    for epoch in range(20):
        for task, _ in task_plan(batches, sizes, "temperature", 2.0, seed=1, epoch=epoch, epochs=20):
            counts[task] += 1
    total = sum(counts)
    for count, p in zip(counts, task_probabilities(sizes, 2.0), strict=True):
        # binomial: within 4 standard deviations of n p
        assert abs(count - total * p) < 4 * math.sqrt(total * p * (1 - p))


def test_a_plan_uses_every_batch_of_a_task_before_repeating_one() -> None:
    sizes = [40, 10]
    batches = [[[t, b] for b in range(size // 2)] for t, size in enumerate(sizes)]
    plan = task_plan(batches, sizes, "proportional", 1.0, seed=0, epoch=0, epochs=1)
    assert len(plan) == 25
    seen: dict[int, list[list[int]]] = {0: [], 1: []}
    for task, indices in plan:
        assert indices[0] == task
        seen[task].append(indices)
    for task, drawn in seen.items():
        first_pass = drawn[: len(batches[task])]
        assert len({tuple(b) for b in first_pass}) == len(first_pass)
    assert plan == task_plan(batches, sizes, "proportional", 1.0, seed=0, epoch=0, epochs=1)
