"""Learning-rate schedules as pure functions: `factor(step)` multiplies the peak learning rate.

Steps count optimizer updates from 0. Warmup rises linearly from 0 (at step 0 the factor is
1/(warmup+1), so the first update is never a zero-size step wasted) to 1 at step `warmup`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], float]


def _warmup(step: int, warmup_steps: int) -> float | None:
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return None


def constant(total_steps: int, warmup_steps: int = 0) -> Schedule:
    def factor(step: int) -> float:
        rising = _warmup(step, warmup_steps)
        return 1.0 if rising is None else rising

    return factor


def linear(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Warmup, then a straight line down to 0 at `total_steps`."""

    def factor(step: int) -> float:
        rising = _warmup(step, warmup_steps)
        if rising is not None:
            return rising
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def cosine(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Warmup, then half a cosine wave down to 0 at `total_steps`."""

    def factor(step: int) -> float:
        rising = _warmup(step, warmup_steps)
        if rising is not None:
            return rising
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


SCHEDULES: dict[str, Callable[..., Schedule]] = {"constant": constant, "linear": linear, "cosine": cosine}


def build_schedule(name: str, total_steps: int, warmup_steps: int) -> Schedule:
    return SCHEDULES[name](total_steps=total_steps, warmup_steps=warmup_steps)


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    if warmup_steps is not None:
        return min(warmup_steps, total_steps)
    return int(math.ceil(total_steps * warmup_ratio))
