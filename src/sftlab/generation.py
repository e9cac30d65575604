"""Answer prompts with a causal language model: batched, left-padded, greedy or sampled, stopping at EOS."""

from __future__ import annotations

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
