"""The speed levers keep results right: each one is checked against the plain computation it replaces,
on the real MiniLM and real TREC questions."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from sftlab.catalog.datasets import fetch_dataset
from sftlab.catalog.models import resolve_model
from sftlab.optim.clipping import can_fold, clear_folded_clip, clip_gradients
from sftlab.optim.optimizers import adamw
from sftlab.runtime import keep_freed_memory, matmul_speed_ratio


@pytest.fixture(scope="module")
def minilm_batch():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    location = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(location)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=6)
    rows = [json.loads(line) for line in fetch_dataset("trec6")["train"].read_text().splitlines()[:16]]
    batch = tokenizer([row["text"] for row in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([index % 6 for index in range(len(rows))])
    return model, dict(batch), labels


def _train_steps(model, batch, labels, clip, steps=3):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = copy.deepcopy(model)
    model.eval()  # no dropout: both runs see the same forward pass
    optimizer = adamw([{"params": list(model.parameters()), "weight_decay": 0.01}], learning_rate=1e-3)
    norms = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
        loss.backward()
        norms.append(float(clip(model, optimizer, accelerator)))
        optimizer.step()
        clear_folded_clip(optimizer)
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer, accelerator, norms


@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # clipping active on every step / never
def test_clip_folded_into_fused_adamw_gives_the_clipped_update(minilm_batch, max_norm):
    model, batch, labels = minilm_batch

    def plain(m, optimizer, accelerator):
        return torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm)

    def folded(m, optimizer, accelerator):
        return clip_gradients(m, optimizer, accelerator, max_norm)

    reference, _, _, reference_norms = _train_steps(model, batch, labels, plain)
    ours, optimizer, accelerator, norms = _train_steps(model, batch, labels, folded)
    assert can_fold(optimizer, accelerator)  # the fused path really ran
    assert getattr(optimizer, "grad_scale", None) is None  # and was cleared after the step
    assert norms == pytest.approx(reference_norms, rel=1e-5)
    if max_norm < 1:
        assert min(norms) > max_norm  # the clip was active on every step
    for (name, expected), actual in zip(reference.named_parameters(), ours.parameters(), strict=True):
        if name.endswith("key.bias"):
            # Softmax cancels a key bias, so its gradient is rounding noise (~1e-10) that Adam scales up to
            # full-size steps: any reordering of float operations changes it.
            continue
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=name)
    moved = sum(not torch.equal(a, b) for a, b in zip(model.parameters(), ours.parameters(), strict=True))
    assert moved == len(list(model.parameters()))  # every parameter was updated


def test_foreach_optimizer_falls_back_to_plain_clipping(minilm_batch):
    from accelerate import Accelerator

    model, _, _ = minilm_batch
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, foreach=True)
    assert not can_fold(sgd, Accelerator(cpu=True))


def test_bf16_probe_and_allocator_setting():
    ratio = matmul_speed_ratio(rows=128, repeats=2)
    assert 0.05 < ratio < 100  # a real measurement of this machine, not a constant
    assert keep_freed_memory() in (True, False)
    before = torch.zeros(30522, 384)  # a freed 47 MB block is handed out again, zeroed as asked
    del before
    assert torch.count_nonzero(torch.zeros(30522, 384)) == 0
