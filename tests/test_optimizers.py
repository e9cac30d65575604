import pytest
import torch

from sftlab.optim.optimizers import OPTIMIZERS, build_optimizer, layer_learning_rates


def test_layer_wise_rates_per_block():
    names = ["embeddings", "block 0", "block 1", "block 2", "pooler", "head"]
    rates = layer_learning_rates(names, 1e-3, layer_lr_decay=0.5, head_learning_rate=1e-2)
    assert rates == {
        "embeddings": 1e-3 * 0.125,
        "block 0": 1e-3 * 0.25,
        "block 1": 1e-3 * 0.5,
        "block 2": 1e-3,
        "pooler": 1e-3,
        "head": 1e-2,
    }
    assert set(layer_learning_rates(names, 2e-5).values()) == {2e-5}


def layers():
    torch.manual_seed(0)
    block = torch.nn.Linear(3, 3)
    head = torch.nn.Linear(3, 2)
    return [("block 0", list(block.named_parameters())), ("head", list(head.named_parameters()))]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_steps_with_groups_decayed_by_rank(name):
    named = layers()
    options = {"momentum": 0.9, "nesterov": True} if name == "sgd" else {}
    optimizer = build_optimizer(named, name, {"block 0": 0.1, "head": 0.2}, weight_decay=0.01, **options)
    groups = [
        (g["layer"], g["weight_decay"], g["peak_lr"], [p.ndim for p in g["params"]])
        for g in optimizer.param_groups
    ]
    assert groups == [("block 0", 0.01, 0.1, [2]), ("block 0", 0.0, 0.1, [1]), ("head", 0.01, 0.2, [2]),
                      ("head", 0.0, 0.2, [1])]  # fmt: skip
    before = [p.detach().clone() for _, ps in named for _, p in ps]
    loss = sum((p**2).sum() for _, ps in named for _, p in ps)
    loss.backward()
    optimizer.step()
    after = [p.detach() for _, ps in named for _, p in ps]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_sgd_update_is_lr_times_gradient():
    named = layers()
    optimizer = build_optimizer(named, "sgd", {"block 0": 0.1, "head": 0.5}, weight_decay=0.0)
    weight = named[1][1][0][1]
    before = weight.detach().clone()
    weight.sum().backward()
    optimizer.step()
    assert torch.allclose(weight.detach(), before - 0.5)
