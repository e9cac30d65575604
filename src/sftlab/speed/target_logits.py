"""The output layer of an encoder-decoder computes the logits of real target tokens only.

A seq2seq batch pads every target to the longest one, and teacher forcing runs the decoder over the whole
batch x length grid; the padding positions' labels are -100, so their logits are computed and then
ignored. Yet the output layer is the largest product of the decoder: on BERT2BERT from MiniLM it maps 384
hidden units to 30,522 words, ~5.7x the products of one decoder block per position. On 32 Bible verses
(targets padded to 62 tokens, 943 real of 1,984 positions) half of it, and half of the fp32 logits tensor
(240 MB), was padding.

Here the output layer is handed the real positions' hidden states only (row-major, as `labels[mask]`),
so the logits come back `real targets x vocabulary`. Exact: each real position's logits are the plain
model's (tested, gradients included); the decoder blocks below still run the padded grid (their causal
self-attention and cross-attention read it). Generation never enters this context.

Applies to the encoder-decoder classes listed in `TARGET_LOGITS_MODELS`, whose output layer is a plain
`nn.Linear` applied to the decoder's last hidden states with nothing but elementwise work after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

TARGET_LOGITS_MODELS = {
    "EncoderDecoderModel",
    "BartForConditionalGeneration",
    "MBartForConditionalGeneration",
    "MarianMTModel",
    "T5ForConditionalGeneration",
    "MT5ForConditionalGeneration",
}

CHUNKED_SEQ2SEQ = {"EncoderDecoderModel", "T5ForConditionalGeneration", "MT5ForConditionalGeneration"}
"""Those whose logits are the output layer's, nothing added after it (BART and Marian add a
`final_logits_bias`): the chunked loss can take the output layer's input rows instead (`hidden_only`)."""


def supports_target_logits(model: nn.Module) -> bool:
    if type(model).__name__ not in TARGET_LOGITS_MODELS or not hasattr(model, "get_output_embeddings"):
        return False
    return (
        type(model.get_output_embeddings()) is nn.Linear
        and _owner(model, model.get_output_embeddings()) is not None
    )


def with_spare_rows(targets: torch.Tensor) -> torch.Tensor:
    """`targets` (batch x target length, bool) with padding positions added, in row-major order, until the
    count is one of `unpadded.padded_rows`' sizes (8 per doubling, at most 12.5% spare) or no padding is
    left. Their labels are -100, so the loss ignores their logits: only the shapes change. Without this the
    output layer's product, its logits and their gradients took a new size at every step, and the CPU
    matrix library's kernels and malloc's freed blocks piled up at all of them."""
    from sftlab.speed.unpadded import padded_rows

    count = int(targets.sum())
    spare = min(padded_rows(count) - count, targets.numel() - count)
    if spare <= 0:
        return targets
    padding = (~targets).reshape(-1).nonzero().squeeze(1)[:spare]
    rows = targets.clone().reshape(-1)
    rows[padding] = True
    return rows.view_as(targets)


def _owner(model: nn.Module, layer: nn.Module) -> tuple[nn.Module, str] | None:
    for module in model.modules():
        for name, child in module._modules.items():
            if child is layer:
                return module, name
    return None


class _AtPositions(nn.Module):
    """The output layer applied to the rows of its input where `positions` is true."""

    def __init__(self, layer: nn.Linear, positions: torch.Tensor, hidden_only: bool = False) -> None:
        super().__init__()
        self.layer = [layer]  # a list: not registered again under a new name
        self.positions = positions
        self.hidden_only = hidden_only

    @property
    def weight(self) -> torch.Tensor:  # models that read the output layer's weight (e.g. its dtype)
        return self.layer[0].weight

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        rows = hidden_states[self.positions]
        return rows if self.hidden_only else self.layer[0](rows)


@contextlib.contextmanager
def target_logits_only(model: nn.Module, positions: torch.Tensor, hidden_only: bool = False) -> Iterator[nn.Linear]:  # fmt: skip
    """Inside, `model(...).logits` holds only the rows where `positions` (batch x target length, bool)
    is true, in row-major order: `positions.sum() x vocabulary`. Use where `supports_target_logits`.
    `hidden_only` (models in `CHUNKED_SEQ2SEQ`): the rows are the output layer's input, `positions.sum() x
    hidden`, for the chunked loss with the output layer yielded here."""
    layer = model.get_output_embeddings()
    owner = _owner(model, layer)
    assert owner is not None
    parent, name = owner
    parent._modules[name] = _AtPositions(layer, positions, hidden_only)
    try:
        yield layer
    finally:
        parent._modules[name] = layer
