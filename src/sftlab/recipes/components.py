"""The one place that turns config sections into training components: which parameters train (and when),
the optimizer with its per-layer learning rates, and the schedule. Used by `finetune` and `sftlab plan`,
so the plan shows exactly what training will do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sftlab.config import Config
from sftlab.errors import SftlabError
from sftlab.freezing import frozen_names, layer_groups, unfreeze_stages
from sftlab.optim.optimizers import build_optimizer, layer_learning_rates
from sftlab.optim.schedules import Schedule, build_schedule, warmup_steps_for


@dataclass
class TrainableLayers:
    layers: list[tuple[str, list[tuple[str, torch.nn.Parameter]]]]
    """(layer name, parameters that will train at some point), bottom up."""
    frozen: set[str]
    """Names frozen for the whole run."""
    stages: list[set[str]] = field(default_factory=list)
    """Gradual unfreezing: the names trainable at each stage (empty when off)."""
    learning_rates: dict[str, float] = field(default_factory=dict)


def uses_layer_order(config: Config) -> bool:
    freeze, optim = config.freeze, config.optim
    return bool(
        freeze.embeddings or freeze.bottom_layers or freeze.gradual_unfreeze
        or optim.layer_lr_decay != 1.0 or optim.head_learning_rate is not None
    )  # fmt: skip


def trainable_layers(model: torch.nn.Module, config: Config) -> TrainableLayers:
    """Apply the freeze section to `model` (requires_grad) and say which layers train at which rate."""
    freeze = config.freeze
    try:
        groups = [(group.name, group.parameters) for group in layer_groups(model)]
    except SftlabError:
        if uses_layer_order(config):
            raise
        groups = [("all", list(model.named_parameters()))]  # an unknown architecture, trained as one layer
    # Parameters the model arrives with frozen stay frozen: a LoRA adapter freezes the whole pretrained body,
    # and turning it back on here would silently train all of it.
    frozen_by_model = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    frozen = frozen_names(model, freeze.embeddings, freeze.bottom_layers, freeze.patterns) | frozen_by_model
    layers = [(name, [(n, p) for n, p in parameters if n not in frozen]) for name, parameters in groups]
    layers = [(name, parameters) for name, parameters in layers if parameters]
    stages: list[set[str]] = []
    if freeze.gradual_unfreeze:
        # Layers frozen for good never join; a stage that would add nothing is skipped.
        for stage in unfreeze_stages(model):
            if not stages or stage - frozen != stages[-1]:
                stages.append(stage - frozen)
    trainable = stages[0] if stages else {n for _, parameters in layers for n, _ in parameters}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trainable)
    if not trainable:
        raise SftlabError("freeze: every parameter is frozen; nothing would train")
    rates = layer_learning_rates(
        [name for name, _ in layers], config.train.learning_rate, config.optim.layer_lr_decay,
        config.optim.head_learning_rate,
    )  # fmt: skip
    return TrainableLayers(layers, frozen, stages, rates)


def make_optimizer(trainable: TrainableLayers, config: Config) -> torch.optim.Optimizer:
    optim = config.optim
    return build_optimizer(
        trainable.layers, optim.name, trainable.learning_rates, optim.weight_decay, beta1=optim.beta1,
        beta2=optim.beta2, eps=optim.eps, momentum=optim.momentum, nesterov=optim.nesterov,
    )  # fmt: skip


def make_schedule(config: Config, total_steps: int, steps_per_epoch: int, metric_for_best: str) -> Schedule:
    schedule = config.schedule
    warmup = warmup_steps_for(total_steps, schedule.warmup_ratio, schedule.warmup_steps)
    plateau_metric = schedule.plateau_metric or metric_for_best
    options: dict[str, Any] = {
        "step_size": schedule.step_size or steps_per_epoch, "gamma": schedule.gamma, "power": schedule.power,
        "end_factor": schedule.end_factor, "cut_frac": schedule.cut_frac, "ratio": schedule.ratio,
        "patience": schedule.patience, "min_factor": schedule.min_factor,
        "lower_is_better": plateau_metric == "loss",
    }  # fmt: skip
    return build_schedule(schedule.name, total_steps, warmup, **options)


def metric_value(metrics: dict[str, Any], name: str, key: str) -> float:
    """A validation metric by name; a name the task does not report is an error naming the config key."""
    if name not in metrics or isinstance(metrics[name], dict):
        available = ", ".join(sorted(k for k, v in metrics.items() if not isinstance(v, dict)))
        raise SftlabError(f"{key}: no validation metric '{name}' (available: {available})")
    return float(metrics[name])
