"""Frozen-prefix caching: when the embeddings and the bottom k blocks of an encoder are frozen, their
output for each training example never changes, so it is computed once and training runs only the top.

Semantics: the cached blocks run in eval mode (no dropout), i.e. the frozen bottom is a fixed feature
extractor. Without the cache, frozen blocks would still apply dropout in training; with it they do not.
Evaluation and prediction always run the whole, unmodified model, so a saved model is an ordinary one.

Applies to encoders whose base model has `embeddings` and `encoder.layer` (BERT, RoBERTa, ELECTRA,
MiniLM, ...) in a single process; anything else falls back to the plain forward pass (`depth == 0`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from sftlab.data.batching import inference_batches


def frozen_prefix_depth(model: nn.Module) -> int:
    """How many bottom blocks can be cached: the embeddings and blocks 0..k-1 must all be frozen.

    0 means no cache (embeddings trainable, an unknown layout, or a decoder).
    """
    base = getattr(model, "base_model", None)
    embeddings = getattr(base, "embeddings", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if (
        embeddings is None
        or not isinstance(layers, nn.ModuleList)
        or not hasattr(base, "_create_attention_masks")
    ):
        return 0
    if getattr(base.config, "is_decoder", False) or any(p.requires_grad for p in embeddings.parameters()):
        return 0
    depth = 0
    for layer in layers:
        if any(p.requires_grad for p in layer.parameters()):
            break
        depth += 1
    return depth


def _mask(base: nn.Module, attention_mask: torch.Tensor, hidden: torch.Tensor) -> Any:
    # The model's own mask builder, so the cached and the plain pass see the same mask format (eager/SDPA).
    mask, _ = base._create_attention_masks(
        attention_mask=attention_mask, encoder_attention_mask=None, embedding_output=hidden,
        encoder_hidden_states=None, cache=None,
    )  # fmt: skip
    return mask


@torch.inference_mode()
def compute_prefix(
    model: nn.Module,
    examples: list[dict[str, Any]],
    depth: int,
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], Any],
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Each example's hidden states after block `depth - 1` (length x hidden, on the CPU), kept in `dtype`:
    a bf16 run keeps them in bf16 (half the memory; the blocks that made them computed in bf16 already)."""
    base = model.base_model
    was_training = model.training
    model.eval()
    lengths = [len(example["input_ids"]) for example in examples]
    cached: list[torch.Tensor] = [torch.empty(0)] * len(examples)
    for indices in inference_batches(lengths, batch_size):
        batch = collate([{k: v for k, v in examples[i].items() if k != "labels"} for i in indices])
        batch = {key: value.to(device) for key, value in batch.items()}
        with autocast():
            hidden = base.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
            mask = _mask(base, batch["attention_mask"], hidden)
            for layer in base.encoder.layer[:depth]:
                hidden = layer(hidden, mask)
        hidden = hidden.to("cpu", dtype)
        for row, index in enumerate(indices):
            cached[index] = hidden[row, : lengths[index]].clone()
    model.train(was_training)
    return cached


def pad_prefix(cached: list[torch.Tensor], indices: list[int], length: int | None = None) -> torch.Tensor:
    """The cached hidden states of a batch as fp32, zero-padded to `length` (the batch's padded length; by
    default its longest example), masked out anyway."""
    longest = length or max(cached[i].shape[0] for i in indices)
    out = torch.zeros((len(indices), longest, cached[indices[0]].shape[1]), dtype=torch.float32)
    for row, index in enumerate(indices):
        out[row, : cached[index].shape[0]] = cached[index]
    return out


class _PrefixInjector(nn.Module):
    """Stands in for the embeddings: returns the cached hidden states of the current batch."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        assert self.hidden is not None, "set the batch's cached prefix before the forward pass"
        return self.hidden


@contextlib.contextmanager
def run_from_prefix(model: nn.Module, depth: int, hidden: torch.Tensor) -> Iterator[None]:
    """Inside, the model's forward starts from `hidden` at block `depth`; its mask building, top blocks,
    pooler and head are the model's own code. Outside, the model is untouched."""
    base = model.base_model
    embeddings, layers = base.embeddings, base.encoder.layer
    injector = _PrefixInjector()
    injector.hidden = hidden
    base.embeddings = injector
    base.encoder.layer = nn.ModuleList(list(layers)[depth:])
    try:
        yield
    finally:
        base.embeddings = embeddings
        base.encoder.layer = layers
