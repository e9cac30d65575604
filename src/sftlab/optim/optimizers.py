"""Optimizers by name, with weight decay decided by tensor rank (nanoGPT's rule): matrices and embeddings
decay, biases and normalization weights (rank 1) do not. No lists of parameter names to keep in sync.

Each parameter group carries `peak_lr` (its rate before the schedule's factor) and `layer` (its layer
name, for `sftlab plan` and the log), so layer-wise learning rates are just groups with different peaks.
"""

from __future__ import annotations

from typing import Any

import torch


def parameter_groups(
    named_layers: list[tuple[str, list[tuple[str, torch.nn.Parameter]]]],
    learning_rates: dict[str, float],
    weight_decay: float,
) -> list[dict[str, Any]]:
    """Two groups per layer (decayed matrices, undecayed vectors) at that layer's learning rate.

    Parameters that never train are left out; parameters frozen only for a while (gradual unfreezing) are
    in: an optimizer skips a parameter whose gradient is None, so it neither moves nor gathers state.
    """
    groups: list[dict[str, Any]] = []
    for layer, parameters in named_layers:
        decay = [parameter for _, parameter in parameters if parameter.ndim >= 2]
        no_decay = [parameter for _, parameter in parameters if parameter.ndim < 2]
        for params, decay_value in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                groups.append(
                    {
                        "params": params,
                        "weight_decay": decay_value,
                        "peak_lr": learning_rates[layer],
                        "layer": layer,
                    }
                )
    return groups


def layer_learning_rates(
    layer_names: list[str],
    learning_rate: float,
    layer_lr_decay: float = 1.0,
    head_learning_rate: float | None = None,
) -> dict[str, float]:
    """Peak learning rate per layer (layer names bottom up: embeddings, block 0..N-1, pooler, head).

    Sun et al. (2019): the top block gets `learning_rate`, each lower block the rate of the block above
    times `layer_lr_decay`, and the embeddings the rate of block 0 times the factor once more. The pooler
    and the head get `learning_rate`, or `head_learning_rate` for the head when it is set.
    """
    blocks = [name for name in layer_names if name.startswith("block ")]
    rates: dict[str, float] = {}
    for name in layer_names:
        if name.startswith("block "):
            depth_from_top = len(blocks) - 1 - blocks.index(name)
            rates[name] = learning_rate * layer_lr_decay**depth_from_top
        elif name == "embeddings":
            rates[name] = learning_rate * layer_lr_decay ** len(blocks)
        elif name == "head" and head_learning_rate is not None:
            rates[name] = head_learning_rate
        else:
            rates[name] = learning_rate
    return rates


def sgd(groups: list[dict[str, Any]], learning_rate: float, momentum: float = 0.0, nesterov: bool = False,
        **_: Any) -> torch.optim.Optimizer:  # fmt: skip
    return torch.optim.SGD(groups, lr=learning_rate, momentum=momentum, nesterov=nesterov, foreach=True)


def _adam_kernel(
    optimizer: type[torch.optim.Optimizer], groups: list[dict[str, Any]], **options: Any
) -> torch.optim.Optimizer:
    # The fused kernel updates every tensor in one pass: on MiniLM's 22.7M parameters an AdamW step took
    # 17 ms fused against 87-92 ms with foreach on this 2-core CPU (about a quarter of a training step).
    # Devices or dtypes without a fused kernel fall back to foreach.
    try:
        return optimizer(groups, fused=True, **options)
    except (RuntimeError, ValueError):
        return optimizer(groups, foreach=True, **options)


def adam(groups: list[dict[str, Any]], learning_rate: float, beta1: float = 0.9, beta2: float = 0.999,
         eps: float = 1e-8, **_: Any) -> torch.optim.Optimizer:  # fmt: skip
    # Adam's weight_decay is the classic L2 penalty added to the gradient (coupled), unlike AdamW's.
    return _adam_kernel(torch.optim.Adam, groups, lr=learning_rate, betas=(beta1, beta2), eps=eps)


def adamw(groups: list[dict[str, Any]], learning_rate: float, beta1: float = 0.9, beta2: float = 0.999,
          eps: float = 1e-8, **_: Any) -> torch.optim.Optimizer:  # fmt: skip
    return _adam_kernel(torch.optim.AdamW, groups, lr=learning_rate, betas=(beta1, beta2), eps=eps)


def adagrad(
    groups: list[dict[str, Any]], learning_rate: float, eps: float = 1e-10, **_: Any
) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(groups, lr=learning_rate, eps=eps, foreach=True)


def rmsprop(groups: list[dict[str, Any]], learning_rate: float, momentum: float = 0.0, eps: float = 1e-8,
            alpha: float = 0.99, **_: Any) -> torch.optim.Optimizer:  # fmt: skip
    return torch.optim.RMSprop(
        groups, lr=learning_rate, alpha=alpha, eps=eps, momentum=momentum, foreach=True
    )


def adafactor(groups: list[dict[str, Any]], learning_rate: float, **_: Any) -> torch.optim.Optimizer:
    # torch's Adafactor (factored second moments: memory O(rows + cols) per matrix); decay is decoupled.
    return torch.optim.Adafactor(groups, lr=learning_rate, foreach=True)


OPTIMIZERS = {
    "sgd": sgd,
    "adam": adam,
    "adamw": adamw,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adafactor": adafactor,
}


def build_optimizer(
    named_layers: list[tuple[str, list[tuple[str, torch.nn.Parameter]]]],
    name: str,
    learning_rates: dict[str, float],
    weight_decay: float,
    **options: Any,
) -> torch.optim.Optimizer:
    """The named optimizer over the given layers; each group's `lr` is set from `peak_lr` by the loop."""
    groups = parameter_groups(named_layers, learning_rates, weight_decay)
    if not groups:
        from sftlab.errors import SftlabError

        raise SftlabError("freeze: every parameter is frozen; nothing would train")
    return OPTIMIZERS[name](groups, learning_rate=max(learning_rates.values()), **options)
