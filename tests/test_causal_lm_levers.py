"""The causal LM speed levers on the real SmolLM2-135M-Instruct: the chunked (memory-lean) loss equals the
plain logits + cross-entropy; generation's hoisted weight casts give the same logits bit for bit.

Real CommonsenseQA rows (built-in), completion-only labels (most targets -100), chunks of 7 tokens so every
batch spans several chunks and a partial last one. Tolerances: fp32 relative 1e-4 on the loss and on
the gradients of the hidden states and output weight, 1e-3 on every parameter's gradient through the
30 blocks (max abs difference over max abs value); bf16 autocast relative 1e-2 (the plain path rounds
the weight gradient to bf16 once, the chunked one sums it over chunks in fp32).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import smollm2_commonsense
from sftlab.data.packing import packed_lm_batch, padded_lm_batch
from sftlab.speed import chunked_loss
from sftlab.speed.chunked_loss import hidden_states_out, linear_cross_entropy, supports_chunked_loss

CHUNK = 7


@pytest.fixture(scope="module")
def setup():
    task, _, model, _, examples = smollm2_commonsense(4)
    return task, model, examples


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def _hidden_and_targets(model, examples):
    batch = padded_lm_batch(examples, 2)
    with torch.no_grad(), hidden_states_out(model):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return hidden[:, :-1].detach(), batch["labels"][:, 1:]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_and_gradients_of_hidden_states_and_weight_equal_the_plain_computation(setup, precision):
    _, model, examples = setup
    hidden, targets = _hidden_and_targets(model, examples)
    assert (targets == -100).float().mean() > 0.5  # prompts and padding are ignored
    weight = model.lm_head.weight.detach()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def run(chunked: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        with autocast:
            if chunked:
                loss = linear_cross_entropy(h, w, targets, CHUNK)
            else:
                logits = F.linear(h, w)
                loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
        loss.backward()
        return loss.detach(), h.grad, w.grad

    plain, chunks = run(False), run(True)
    tolerance = (1e-4, 1e-4) if precision == "fp32" else (1e-2, 1e-2)
    assert abs(float(chunks[0]) - float(plain[0])) / float(plain[0]) < tolerance[0]
    assert chunks[1].dtype == plain[1].dtype and chunks[2].dtype == plain[2].dtype == torch.float32
    assert _relative(chunks[1], plain[1]) < tolerance[1]
    assert _relative(chunks[2], plain[2]) < tolerance[1]
    if precision == "bf16":  # the matmuls really ran in bf16: fp32 logits would give a different loss
        with torch.no_grad():
            fp32 = F.cross_entropy(F.linear(hidden, weight).flatten(0, 1), targets.flatten(), reduction="sum")
        assert abs(float(chunks[0]) - float(fp32)) > 1e-4 * float(fp32)


def _task_loss_and_grads(task, model, batch, chunk):
    model.zero_grad(set_to_none=True)
    with chunked_loss.chunked(chunk):
        loss, count = task.forward_loss(model, batch)
    (loss / count).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


@pytest.mark.parametrize("packed", [False, True])
def test_the_task_trains_the_same_with_the_lever(setup, packed):
    """The causal LM task's loss and every parameter's gradient (the tied embedding / output weight too)."""
    task, model, examples = setup
    assert supports_chunked_loss(model) and model.lm_head.weight is model.model.embed_tokens.weight
    batch = packed_lm_batch(examples, 2, 10_000) if packed else padded_lm_batch(examples, 2)
    plain_loss, plain = _task_loss_and_grads(task, model, batch, 0)
    loss, grads = _task_loss_and_grads(task, model, batch, CHUNK)
    assert abs(loss - plain_loss) / plain_loss < 1e-4
    assert grads.keys() == plain.keys()
    for name, grad in plain.items():  # 30 blocks below the loss amplify its fp32 rounding: 1e-3
        assert _relative(grads[name], grad) < 1e-3, name
    assert type(model.lm_head).forward is torch.nn.Linear.forward and "forward" not in vars(model.lm_head)


def test_lora_freezes_the_output_weight_and_still_matches(setup):
    from sftlab.adapters import apply_adapter
    from sftlab.config import AdapterConfig

    task, model, examples = setup
    import copy

    lora = apply_adapter(
        copy.deepcopy(model), AdapterConfig(type="lora", r=4, alpha=8, dropout=0.0), "CAUSAL_LM"
    )
    assert supports_chunked_loss(lora) and not lora.get_base_model().lm_head.weight.requires_grad
    torch.manual_seed(0)
    for name, parameter in lora.named_parameters():
        if "lora_B" in name:  # zero at initialization, which would leave lora_A without a gradient
            torch.nn.init.normal_(parameter, std=0.02)
    batch = padded_lm_batch(examples, 2)
    plain_loss, plain = _task_loss_and_grads(task, lora, batch, 0)
    loss, grads = _task_loss_and_grads(task, lora, batch, CHUNK)
    assert abs(loss - plain_loss) / plain_loss < 1e-4
    assert grads.keys() == plain.keys() and all("lora_" in name for name in grads)
    for name, grad in plain.items():
        assert _relative(grads[name], grad) < 1e-3, name


def test_generation_casts_the_weights_once_with_the_same_numbers(setup):
    """Under bf16 autocast, the generation copy (linear weights cast once, the tied output layer untied,
    embeddings fp32) gives autocast's logits and greedy tokens bit for bit; the trained model is untouched."""
    from sftlab.generation import inference_model

    task, model, examples = setup
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    fast, fast_autocast = inference_model(model, torch.device("cpu"), autocast)
    assert fast is not model and fast_autocast is autocast
    assert (
        model.lm_head.weight.dtype == torch.float32
        and model.lm_head.weight is model.model.embed_tokens.weight
    )
    assert (
        fast.lm_head.weight.dtype == torch.bfloat16 and fast.model.embed_tokens.weight.dtype == torch.float32
    )
    prompts = [e["prompt_ids"] for e in examples]
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[2] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad(), autocast():
        assert torch.equal(
            model(input_ids=ids, attention_mask=mask).logits, fast(input_ids=ids, attention_mask=mask).logits
        )
        settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 2, "top_k": None}
        plain = model.generate(input_ids=ids, attention_mask=mask, **settings)
        hoisted = fast.generate(input_ids=ids, attention_mask=mask, **settings)
    assert torch.equal(plain, hoisted)


def test_plan_names_the_chunked_loss_and_the_key_turns_it_off(tmp_path):
    from conftest import REPO, run_cli

    example = str(REPO / "examples" / "smollm2_commonsense_lora.yaml")
    tiny = ["data.max_train_samples=8", "data.max_eval_samples=4", f"output_dir={tmp_path / 'run'}"]
    on = run_cli("plan", example, *tiny)
    assert on.returncode == 0, on.stderr
    assert "chunked loss: on (256 tokens per chunk, exact, tested)" in on.stdout
    off = run_cli("plan", example, *tiny, "train.chunked_loss=false", "train.loss_chunk_tokens=64")
    assert "chunked loss: off (train.chunked_loss is false)" in off.stdout
    bad = run_cli("plan", example, *tiny, "train.loss_chunk_tokens=0")
    assert bad.returncode == 2 and "loss_chunk_tokens" in bad.stderr
