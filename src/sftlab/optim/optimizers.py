"""Optimizers, with weight decay decided by tensor rank (nanoGPT's rule): matrices and embeddings decay,
biases and normalization weights (rank 1) do not. No lists of parameter names to keep in sync."""

from __future__ import annotations

from typing import Any

import torch


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def adamw(
    groups: list[dict[str, Any]], learning_rate: float, beta1: float, beta2: float, eps: float
) -> torch.optim.Optimizer:
    # foreach runs one fused kernel over all tensors: far less per-parameter Python overhead on a CPU.
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2), eps=eps, foreach=True)


OPTIMIZERS = {"adamw": adamw}


def build_optimizer(
    model: torch.nn.Module, name: str, learning_rate: float, weight_decay: float, **options: Any
) -> torch.optim.Optimizer:
    optimizer = OPTIMIZERS[name](
        parameter_groups(model, weight_decay), learning_rate=learning_rate, **options
    )
    for group in optimizer.param_groups:
        group["peak_lr"] = learning_rate
    return optimizer
