"""Which task each multi-task optimizer step trains: one task per step (MT-DNN), drawn by a named sampler.

With n_i training examples in task i, a step trains task i with probability p_i ∝ n_i^(1/T):
- `proportional` (T = 1): as if the tasks' examples were pooled; large tasks dominate.
- `temperature` (T = multitask.temperature): T > 1 flattens towards uniform (T5 uses T = 2 to 3.3;
  BAM!'s alpha = 0.75 is T = 1.33), T -> inf is uniform.
- `annealed` (PALs, Stickland & Murray 2019): alpha = 1/T falls linearly over the epochs from 1 to 0.2,
  alpha_e = 1 - 0.8 e / (E - 1) for epoch e = 0 .. E-1: proportional first, close to uniform at the end.

Each task keeps its own shuffled batch order; a task drawn more often than it has batches starts another
pass over its data. A plan is a pure function of (sizes, sampler, seed, epoch), like `batching.plan_steps`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

SAMPLERS = ("proportional", "temperature", "annealed")


def task_probabilities(sizes: Sequence[int], temperature: float) -> list[float]:
    """p_i = n_i^(1/T) / sum_j n_j^(1/T)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    weights = [size ** (1.0 / temperature) for size in sizes]
    total = sum(weights)
    return [weight / total for weight in weights]


def sampler_temperature(sampler: str, temperature: float, epoch: int, epochs: int) -> float:
    """The temperature the sampler uses in `epoch` (0-based) of `epochs`."""
    if sampler == "proportional":
        return 1.0
    if sampler == "temperature":
        return temperature
    if sampler == "annealed":
        alpha = 1.0 - 0.8 * epoch / (epochs - 1) if epochs > 1 else 1.0
        return 1.0 / alpha
    raise ValueError(f"unknown task sampler {sampler!r} (known: {', '.join(SAMPLERS)})")


def task_plan(
    batches_per_task: Sequence[Sequence[list[int]]],
    sizes: Sequence[int],
    sampler: str,
    temperature: float,
    seed: int,
    epoch: int,
    epochs: int,
) -> list[tuple[int, list[int]]]:
    """One epoch as (task id, example indices of that task) per optimizer step. An epoch has as many
    steps as all tasks have batches together; which task each step trains is drawn from the sampler."""
    rng = random.Random(seed * 1_000_003 + epoch)
    probabilities = task_probabilities(sizes, sampler_temperature(sampler, temperature, epoch, epochs))
    steps = sum(len(batches) for batches in batches_per_task)
    drawn = rng.choices(range(len(sizes)), weights=probabilities, k=steps)
    positions = [0] * len(sizes)
    orders = [_shuffled(len(batches), rng) for batches in batches_per_task]
    plan = []
    for task in drawn:
        if positions[task] == len(orders[task]):  # this task's data is used up: another pass
            orders[task], positions[task] = _shuffled(len(batches_per_task[task]), rng), 0
        plan.append((task, list(batches_per_task[task][orders[task][positions[task]]])))
        positions[task] += 1
    return plan


def _shuffled(count: int, rng: random.Random) -> list[int]:
    order = list(range(count))
    rng.shuffle(order)
    return order
