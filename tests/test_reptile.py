"""Reptile's meta-update and the N-way K-shot episodes it trains on."""

from __future__ import annotations

import random

import pytest
import torch

from sftlab.data.episodes import draw_episode, indices_by_label, split_label_sets
from sftlab.errors import SftlabError
from sftlab.optim.reptile import annealed_epsilon, reptile_update, snapshot


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
