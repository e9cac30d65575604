"""Reptile (Nichol, Achiam & Schulman 2018): the meta-update after adapting to a batch of tasks.

For each task the weights start at θ and train a few steps to θ'_k; the initialisation then moves towards
their mean: θ <- θ + ε (mean_k θ'_k - θ). With one task and ε = 1 this is plain sequential training, with
small ε it is a first-order approximation of MAML's objective that needs no second derivatives.
The step size ε is annealed linearly from `epsilon` to `final_epsilon` over the meta-steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def snapshot(parameters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached copy of the tensors (the initial θ, or one adapted θ')."""
    return {name: tensor.detach().clone() for name, tensor in parameters.items()}


@torch.no_grad()
def reptile_update(
    parameters: dict[str, torch.Tensor],
    initial: dict[str, torch.Tensor],
    adapted: Sequence[dict[str, torch.Tensor]],
    epsilon: float,
) -> None:
    """Set each tensor in `parameters` (in place) to θ + ε (mean_k θ'_k − θ), θ = `initial`."""
    for name, tensor in parameters.items():
        mean = torch.stack([weights[name].to(torch.float64) for weights in adapted]).mean(0)
        start = initial[name].to(torch.float64)
        tensor.copy_(start + epsilon * (mean - start))


def annealed_epsilon(step: int, steps: int, epsilon: float, final_epsilon: float) -> float:
    """ε at meta-step `step` (0-based) of `steps`: linear from `epsilon` to `final_epsilon`."""
    if steps <= 1:
        return epsilon
    return epsilon + (final_epsilon - epsilon) * step / (steps - 1)
