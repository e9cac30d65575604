"""Frozen-prefix caching gives the model's own outputs and gradients, from the real MiniLM on TREC text."""

from __future__ import annotations

import pytest
import torch

from conftest import trec_texts
from sftlab.catalog.models import resolve_model
from sftlab.speed.prefix_cache import compute_prefix, frozen_prefix_depth, pad_prefix, run_from_prefix
from sftlab.tasks.classification import pad_batch


@pytest.fixture(scope="module")
def setup():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    location = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(location)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=6)
    encoded = tokenizer(trec_texts("validation", 24), truncation=True, max_length=48)
    examples = [
        {"input_ids": ids, "token_type_ids": types}
        for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"], strict=True)
    ]
    return model, examples


def _freeze(model, blocks):
    for parameter in model.parameters():
        parameter.requires_grad = True
    for parameter in model.bert.embeddings.parameters():
        parameter.requires_grad = False
    for layer in model.bert.encoder.layer[:blocks]:
        for parameter in layer.parameters():
            parameter.requires_grad = False


def test_depth_follows_the_frozen_blocks(setup):
    model, _ = setup
    _freeze(model, 4)
    assert frozen_prefix_depth(model) == 4
    _freeze(model, 0)  # embeddings frozen, block 0 trainable: nothing worth caching
    assert frozen_prefix_depth(model) == 0
    for parameter in model.bert.embeddings.parameters():
        parameter.requires_grad = True
    assert frozen_prefix_depth(model) == 0


def test_cached_prefix_gives_the_same_logits_and_gradients(setup):
    model, examples = setup
    _freeze(model, 4)
    depth = frozen_prefix_depth(model)
    cached = compute_prefix(
        model,
        examples,
        depth,
        lambda b: pad_batch(b, 0),
        8,
        torch.device("cpu"),
        lambda: torch.autocast("cpu", enabled=False),
    )
    assert [c.shape[0] for c in cached] == [len(e["input_ids"]) for e in examples]
    indices = list(range(0, 24, 2))
    batch = pad_batch([examples[i] for i in indices], 0)
    labels = torch.arange(len(indices)) % 6
    model.eval()  # dropout off in both passes, so they must agree exactly up to float rounding
    plain = model(**batch).logits
    with run_from_prefix(model, depth, pad_prefix(cached, indices, batch["input_ids"].shape[1])):
        from_cache = model(**batch).logits
    torch.testing.assert_close(from_cache, plain, rtol=1e-4, atol=1e-5)
    # the model is restored afterwards
    assert len(model.bert.encoder.layer) == 6 and not hasattr(model.bert.embeddings, "hidden")

    grads = {}
    for name, use_cache in (("plain", False), ("cached", True)):
        model.zero_grad()
        context = (
            run_from_prefix(model, depth, pad_prefix(cached, indices, batch["input_ids"].shape[1]))
            if use_cache
            else torch.enable_grad()
        )
        with context:
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
        loss.backward()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads["plain"]) == set(grads["cached"]) and len(grads["plain"]) > 10
    for name in grads["plain"]:
        torch.testing.assert_close(grads["cached"][name], grads["plain"][name], rtol=1e-3, atol=1e-6)


def test_a_bf16_cache_halves_the_memory_and_stays_within_bf16_rounding(setup):
    model, examples = setup
    _freeze(model, 4)
    depth = frozen_prefix_depth(model)
    args = (model, examples, depth, lambda b: pad_batch(b, 0), 8, torch.device("cpu"))
    fp32 = compute_prefix(*args, lambda: torch.autocast("cpu", enabled=False))
    bf16 = compute_prefix(*args, lambda: torch.autocast("cpu", enabled=False), torch.bfloat16)
    assert all(c.dtype == torch.bfloat16 for c in bf16)
    assert sum(c.nbytes for c in bf16) * 2 == sum(c.nbytes for c in fp32)
    indices = list(range(6))
    padded = pad_prefix(bf16, indices, 40)
    assert padded.dtype == torch.float32 and padded.shape[1] == 40  # the top blocks get fp32, padded as asked
    torch.testing.assert_close(padded, pad_prefix(fp32, indices, 40), rtol=2**-8, atol=1e-6)
