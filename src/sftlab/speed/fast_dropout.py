"""Dropout for CPU training with a quarter of the random-number draws.

torch's CPU dropout draws one number from its Mersenne-Twister generator per element, single-threaded:
on MiniLM with batch 32 that was ~10 ms of a ~100 ms bf16 training step on 2 cores. Here each 64-bit draw
gives four 16-bit numbers, and an element is kept when its number is at or above round(p * 65536): the
drop probability is p to within 1/65536 (0.100006 for p = 0.1), the kept values are scaled so the
expectation is exact, and each element is still dropped independently. The generator is torch's own, so
`torch.manual_seed` and the checkpointed RNG state make runs reproducible and resumable as before.

Only the model's `nn.Dropout` modules are swapped, only for CPU training (CUDA's dropout is already
fast), and they are swapped back afterwards; evaluation never drops anything.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

LEVELS = 1 << 16


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * keep * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None, None


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean keep-mask (each element kept with probability 1 - p, to within 1/65536) and the scale that
    makes the expectation exact."""
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    dropped_levels = round(p * LEVELS)
    keep = words.view(torch.int16)[:count].view(shape) >= dropped_levels - LEVELS // 2
    return keep, LEVELS / (LEVELS - dropped_levels)


class FastDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        keep, scale = keep_mask(x.shape, self.p, x.device)
        return _MaskedScale.apply(x, keep, scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: nn.Module) -> tuple[int, Callable[[], None]]:
    """Swap the model's nn.Dropout modules for FastDropout (same p); returns how many, and a function that
    swaps them back."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                replacement = FastDropout(child.p)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))

    def restore() -> None:
        for parent, name, child in swapped:
            setattr(parent, name, child)

    return len(swapped), restore


@contextlib.contextmanager
def fast_dropout(model: nn.Module) -> Iterator[int]:
    """Inside, the model's nn.Dropout modules are FastDropout; yields how many were swapped."""
    count, restore = use_fast_dropout(model)
    try:
        yield count
    finally:
        restore()
