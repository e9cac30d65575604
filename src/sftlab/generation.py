"""Answer prompts with a causal language model: batched, left-padded, greedy or sampled, stopping at EOS."""

from __future__ import annotations

import copy
from typing import Any

import torch

from sftlab.data.batching import inference_batches


@torch.inference_mode()
def generate_answers(model: Any, tokenizer: Any, prompts: list[list[int]], device: torch.device, autocast: Any,
                     batch_size: int, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                     seed: int = 0) -> list[str]:  # fmt: skip
    """The decoded answer (special tokens dropped) for each tokenized prompt, in input order.

    Prompts are left-padded so every row's next token is at the end; the attention mask hides the padding,
    so pad == EOS is harmless here too. temperature 0 is greedy decoding.
    """
    model.eval()
    model, autocast = inference_model(model, device, autocast)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False}
    )
    if temperature > 0:
        torch.manual_seed(seed)
    answers: list[str] = [""] * len(prompts)
    for indices in inference_batches([len(p) for p in prompts], batch_size):
        longest = max(len(prompts[i]) for i in indices)
        input_ids = torch.full((len(indices), longest), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(indices), longest), dtype=torch.long)
        for row, index in enumerate(indices):
            ids = prompts[index]
            input_ids[row, longest - len(ids) :] = torch.tensor(ids)
            attention_mask[row, longest - len(ids) :] = 1
        with autocast():
            output = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, top_k=None, **sampling,
            )  # fmt: skip
        for row, index in enumerate(indices):
            answers[index] = tokenizer.decode(output[row, longest:], skip_special_tokens=True).strip()
    return answers


def inference_model(model: Any, device: torch.device, autocast: Any) -> tuple[Any, Any]:
    """The model generation runs, and the autocast to run it in: work that autocast and PEFT would redo for
    every new token is done once here, on a copy (the given model is left as it is).

    Under bf16/fp16 autocast every linear layer casts its fp32 weight again at each decoding step (the whole
    model's weights, once per new token). The copy's linear layers hold their weights cast once (an output
    layer tied to the embeddings gets its own cast copy; the embeddings stay fp32), and autocast's cast of
    an already-bf16 weight is free: the same numbers as before, bit for bit (tested). A LoRA model runs its
    adapters as extra products per token; the copy has them merged into the weights. Otherwise (fp32, no
    adapter) the model itself.
    """
    model = getattr(model, "module", model)  # DistributedDataParallel: generate on the model itself
    with autocast():
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    merge = hasattr(model, "merge_and_unload")
    if dtype is None and not merge:
        return model, autocast
    fast = copy.deepcopy(model)
    if merge:
        fast = fast.merge_and_unload()
    if dtype is not None:
        for module in fast.modules():
            if isinstance(module, torch.nn.Linear):
                for name in ("weight", "bias"):
                    value = getattr(module, name)
                    if value is not None:
                        setattr(
                            module, name, torch.nn.Parameter(value.detach().to(dtype), requires_grad=False)
                        )
    return fast.eval(), autocast
