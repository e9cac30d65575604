"""Reptile (Nichol, Achiam & Schulman 2018): the meta-update after adapting to a batch of tasks.

For each task the weights start at θ and train a few steps to θ'_k; the initialisation then moves towards
their mean: θ <- θ + ε (mean_k θ'_k - θ). With one task and ε = 1 this is plain sequential training, with
small ε it is a first-order approximation of MAML's objective that needs no second derivatives.
The step size ε is annealed linearly from `epsilon` to `final_epsilon` over the meta-steps.

First-order MAML (Finn et al. 2017, section 5.2) instead moves θ against the query loss's gradient taken
at the adapted weights θ'_k, ignoring second derivatives; `sftlab meta` feeds that meta-gradient to Adam.
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


def first_order_maml_gradient(
    adapted: Sequence[dict[str, torch.Tensor]],
    stepped: Sequence[dict[str, torch.Tensor]],
    step_size: float,
) -> dict[str, torch.Tensor]:
    """First-order MAML's meta-gradient: the mean over tasks of the query loss's gradient at the adapted
    weights θ'_k. Each gradient is read from one plain SGD step of size `step_size` taken from θ'_k
    (no momentum, decay or clipping): θ''_k = θ'_k - step_size * g_k, so g_k = (θ'_k - θ''_k) / step_size."""
    gradient = {}
    for name in adapted[0]:
        differences = [
            start[name].double() - end[name].double() for start, end in zip(adapted, stepped, strict=True)
        ]
        gradient[name] = (torch.stack(differences).mean(0) / step_size).float()
    return gradient


@torch.no_grad()
def apply_meta_gradient(
    parameters: dict[str, torch.Tensor], gradient: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> None:
    """One step of the outer optimizer (Adam in `sftlab meta`) from the meta-gradient, at θ (the weights
    in `parameters` must already be back at the initial θ)."""
    for name, tensor in parameters.items():
        tensor.grad = gradient[name].to(tensor.dtype)
    optimizer.step()
    for tensor in parameters.values():
        tensor.grad = None
