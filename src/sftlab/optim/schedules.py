"""Learning-rate schedules as pure functions: `factor(step)` multiplies each group's peak learning rate.

Steps count optimizer updates from 0. Warmup rises linearly from 0 (at step 0 the factor is
1/(warmup+1), so the first update is never a zero-size step wasted) to 1 at step `warmup`; every
schedule but slanted_triangular (whose rise is its own cut_frac) starts with it. The one adaptive
schedule, reduce_on_plateau, is a small object whose factor also changes when it is told an evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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


def step_decay(total_steps: int, warmup_steps: int = 0, step_size: int = 1, gamma: float = 0.5) -> Schedule:
    """Warmup, then the factor is multiplied by `gamma` every `step_size` steps (a staircase)."""

    def factor(step: int) -> float:
        rising = _warmup(step, warmup_steps)
        if rising is not None:
            return rising
        return gamma ** ((step - warmup_steps) // step_size)

    return factor


def exponential(total_steps: int, warmup_steps: int = 0, step_size: int = 1, gamma: float = 0.5) -> Schedule:
    """Warmup, then smooth exponential decay: `gamma` per `step_size` steps, applied a little every step."""

    def factor(step: int) -> float:
        rising = _warmup(step, warmup_steps)
        if rising is not None:
            return rising
        return gamma ** ((step - warmup_steps) / step_size)

    return factor


def polynomial(
    total_steps: int, warmup_steps: int = 0, power: float = 1.0, end_factor: float = 0.0
) -> Schedule:
    """Warmup, then (1 - progress)^power from 1 down to `end_factor` at `total_steps` (power 1 = linear)."""

    def factor(step: int) -> float:
        rising = _warmup(step, warmup_steps)
        if rising is not None:
            return rising
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return end_factor + (1.0 - end_factor) * (1.0 - progress) ** power

    return factor


def inverse_sqrt(total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Warmup, then sqrt(max(1, warmup) / step): the Transformer paper's decay, 1 at the end of warmup."""
    anchor = max(1, warmup_steps)

    def factor(step: int) -> float:
        rising = _warmup(step, warmup_steps)
        if rising is not None:
            return rising
        return math.sqrt(anchor / max(anchor, step))

    return factor


def slanted_triangular(
    total_steps: int, warmup_steps: int = 0, cut_frac: float = 0.1, ratio: float = 32.0
) -> Schedule:
    """ULMFiT (Howard & Ruder 2018, eq. 3): a short linear rise over the first `cut_frac` of the steps,
    then a long linear fall; the lowest factor is 1/ratio. `warmup_steps` is not used: the rise is the cut.

    cut = floor(T * cut_frac); p = t / cut before the cut, else 1 - (t - cut) / (cut * (1/cut_frac - 1));
    factor = (1 + p * (ratio - 1)) / ratio.
    """
    cut = max(1, math.floor(total_steps * cut_frac))

    def factor(step: int) -> float:
        rising, falling = step / cut, 1.0 - (step - cut) / (cut * (1.0 / cut_frac - 1.0))
        p = rising if step < cut else max(0.0, falling)
        return (1.0 + p * (ratio - 1.0)) / ratio

    return factor


class ReduceOnPlateau:
    """Adaptive: warmup, then a constant factor that is multiplied by `gamma` whenever the watched eval
    metric has not improved for `patience` evaluations in a row (never below `min_factor`)."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, gamma: float = 0.5, patience: int = 1,
                 min_factor: float = 0.0, lower_is_better: bool = False) -> None:  # fmt: skip
        self.warmup_steps, self.gamma, self.patience = warmup_steps, gamma, patience
        self.min_factor, self.lower_is_better = min_factor, lower_is_better
        self.level, self.best, self.bad_evaluations = 1.0, None, 0

    def __call__(self, step: int) -> float:
        rising = _warmup(step, self.warmup_steps)
        return self.level if rising is None else rising * self.level

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue adapting exactly where it stopped (plain JSON values)."""
        return {"level": self.level, "best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.level, self.best, self.bad_evaluations = state["level"], state["best"], state["bad_evaluations"]

    def observe(self, value: float) -> None:
        """Told each evaluation's metric; lowers the level after `patience` evaluations without progress."""
        if self.best is None or (value < self.best if self.lower_is_better else value > self.best):
            self.best, self.bad_evaluations = value, 0
            return
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            self.level = max(self.min_factor, self.level * self.gamma)
            self.bad_evaluations = 0


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "step": step_decay,
    "exponential": exponential,
    "polynomial": polynomial,
    "inverse_sqrt": inverse_sqrt,
    "slanted_triangular": slanted_triangular,
    "reduce_on_plateau": ReduceOnPlateau,
}


def build_schedule(name: str, total_steps: int, warmup_steps: int, **options: object) -> Schedule:
    """The named schedule; `options` holds its own settings (gamma, cut_frac, ...), others are ignored."""
    import inspect

    builder = SCHEDULES[name]
    accepted = inspect.signature(builder).parameters
    return builder(
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        **{key: value for key, value in options.items() if key in accepted},
    )


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    if warmup_steps is not None:
        return min(warmup_steps, total_steps)
    return int(math.ceil(total_steps * warmup_ratio))
