"""Reptile's meta-update and the N-way K-shot episodes it trains on."""

from __future__ import annotations

import random

import pytest
import torch

from conftest import REPO
from sftlab.data.episodes import draw_episode, indices_by_label, split_label_sets
from sftlab.errors import SftlabError
from sftlab.optim.reptile import (
    annealed_epsilon,
    apply_meta_gradient,
    first_order_maml_gradient,
    reptile_update,
    snapshot,
)
from sftlab.recipes.meta import QUERY_STEP, query_step_config


def test_a_meta_step_moves_the_weights_by_exactly_epsilon_times_the_adaptation() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    parameters = dict(model.named_parameters())
    initial = snapshot(parameters)
    adapted = {name: tensor + torch.randn_like(tensor) for name, tensor in initial.items()}
    reptile_update(parameters, initial, [adapted], epsilon=0.25)
    for name, tensor in model.named_parameters():
        assert torch.allclose(tensor - initial[name], 0.25 * (adapted[name] - initial[name]), atol=1e-7)
    # A meta-batch moves towards the mean of the adapted weights.
    other = {name: tensor - 3.0 for name, tensor in initial.items()}
    reptile_update(parameters, initial, [adapted, other], epsilon=1.0)
    for name, tensor in model.named_parameters():
        assert torch.allclose(tensor, (adapted[name] + other[name]) / 2, atol=1e-6)


def test_epsilon_anneals_linearly() -> None:
    assert [annealed_epsilon(step, 5, 1.0, 0.0) for step in range(5)] == pytest.approx(
        [1, 0.75, 0.5, 0.25, 0]
    )


def test_episodes_draw_n_way_k_shot_from_disjoint_label_sets() -> None:
    labels = [f"L{index % 12}" for index in range(12 * 20)] + ["rare"] * 3
    train_labels, held_out = split_label_sets(labels, held_out=4, min_examples=16, seed=0)
    assert len(held_out) == 4 and len(train_labels) == 8 and not set(train_labels) & set(held_out)
    assert "rare" not in train_labels + held_out
    by_label = indices_by_label(labels)
    episode = draw_episode(by_label, train_labels, n_way=5, k_shot=8, query=8, rng=random.Random(1))
    assert len(set(episode.labels)) == 5 and set(episode.labels) <= set(train_labels)
    assert len(episode.support) == 40 and len(episode.query) == 40
    assert not {i for i, _ in episode.support} & {i for i, _ in episode.query}
    for index, label_id in episode.support + episode.query:
        assert labels[index] == episode.labels[label_id]
    with pytest.raises(SftlabError, match="held out"):
        split_label_sets(labels, held_out=11, min_examples=16, seed=0)


def sgd_step(
    weights: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, rate: float
) -> dict:
    """One plain SGD step on a linear model's squared error (torch.autograd.grad, as the engine's probe)."""
    leaves = {name: tensor.detach().requires_grad_(True) for name, tensor in weights.items()}
    loss = ((inputs @ leaves["weight"].T + leaves["bias"] - targets) ** 2).mean()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return {name: (leaves[name] - rate * g).detach() for name, g in zip(leaves, grads, strict=True)}


def test_first_order_maml_reads_the_query_gradient_from_one_plain_sgd_step() -> None:
    torch.manual_seed(0)
    inputs, targets = torch.randn(16, 4), torch.randn(16, 3)
    adapted = [{"weight": torch.randn(3, 4), "bias": torch.randn(3)} for _ in range(2)]
    stepped = [sgd_step(weights, inputs, targets, 0.5) for weights in adapted]
    gradient = first_order_maml_gradient(adapted, stepped, 0.5)
    for name in ("weight", "bias"):
        expected = []
        for weights in adapted:
            leaf = {key: value.clone().requires_grad_(True) for key, value in weights.items()}
            loss = ((inputs @ leaf["weight"].T + leaf["bias"] - targets) ** 2).mean()
            expected.append(torch.autograd.grad(loss, leaf[name])[0])
        assert torch.allclose(gradient[name], torch.stack(expected).mean(0), atol=1e-5)
    # The probe the recipe hands the engine is that plain step: SGD, no momentum, decay, clipping or warmup.
    from sftlab.config import load_config

    probe = query_step_config(load_config(REPO / "examples" / "meta_trec50.yaml"))
    assert (probe.optim.name, probe.optim.momentum, probe.optim.weight_decay) == ("sgd", 0.0, 0.0)
    assert probe.train.learning_rate == QUERY_STEP and probe.train.max_grad_norm is None
    assert (probe.train.epochs, probe.train.batch_size, probe.schedule.name) == (1, "full", "constant")


def test_first_order_maml_learns_an_initialisation_that_adapts_in_one_step() -> None:
    """A family of linear tasks y = W_k x, W_k = W* + small noise: from the zero initialisation one inner
    step leaves a large query loss; after FO-MAML meta-training the same one step nearly solves a new task."""
    generator = torch.Generator().manual_seed(0)
    center = torch.randn(3, 4, generator=generator) * 2

    def task() -> tuple[torch.Tensor, ...]:
        truth = center + 0.1 * torch.randn(3, 4, generator=generator)
        support, query = torch.randn(8, 4, generator=generator), torch.randn(8, 4, generator=generator)
        return support, support @ truth.T, query, query @ truth.T

    def query_loss_after_adaptation(weights: dict[str, torch.Tensor], count: int = 20) -> float:
        losses = []
        for _ in range(count):
            support, support_y, query, query_y = task()
            adapted = sgd_step(weights, support, support_y, 0.05)
            losses.append(float(((query @ adapted["weight"].T + adapted["bias"] - query_y) ** 2).mean()))
        return sum(losses) / len(losses)

    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.zero_(), model.bias.zero_()
    parameters = dict(model.named_parameters())
    before = query_loss_after_adaptation(snapshot(parameters))
    outer = torch.optim.Adam(parameters.values(), lr=0.05)
    for _ in range(300):
        adapted, stepped = [], []
        for _ in range(2):
            support, support_y, query, query_y = task()
            adapted.append(sgd_step(snapshot(parameters), support, support_y, 0.05))
            stepped.append(sgd_step(adapted[-1], query, query_y, QUERY_STEP))
        apply_meta_gradient(parameters, first_order_maml_gradient(adapted, stepped, QUERY_STEP), outer)
    after = query_loss_after_adaptation(snapshot(parameters))
    assert after < 0.05 * before
