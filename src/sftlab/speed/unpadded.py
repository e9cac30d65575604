"""Training without padding inside the encoder: every block's matrix products run over the batch's real
tokens only, laid end to end, instead of over a batch x longest-length grid.

A batch of 32 TREC questions holds ~13 real tokens per question, but sftlab's length-grouped batches
padded to a multiple of 8 tokens hold ~19 positions per question, so a third of each product was spent on
padding. Here the embeddings' output is gathered into a `tokens x hidden` matrix of real tokens; each
block's query/key/value projections, attention output, feed-forward and normalizations run on that matrix,
and only the attention itself (whose cost is small at these lengths) sees the padded `batch x heads x
length` layout, with the model's own mask. The token count is rounded up with spare rows (their results
are dropped) to one of a few dozen sizes (`padded_rows`), so the matrix library sees few shapes.

Exact: a real token's computation is the plain model's (tested up to float rounding, gradients
included). For heads that read position 0 only (sequence classification), the top block computes that
position only (as `first_token`); for token classification and extractive QA the padded positions come
back as zeros, which the loss ignores (token labels there are -100; the QA loss leaves padded positions
out of its start/end softmax). Evaluation, prediction and the saved model always use the
whole, unmodified model.

Applies to single-process training of BERT-style encoders (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA,
MiniLM) with eager or SDPA attention, in batches whose position 0 is real (right padding); anything else
runs the plain forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from sftlab.speed.fast_dropout import FastDropout
from sftlab.speed.first_token import FIRST_TOKEN_HEADS, first_query_mask, model_attention

ROW_MULTIPLE = 16
"""The smallest step the real-token count is rounded up by (see `padded_rows`)."""


def padded_rows(count: int) -> int:
    """`count` rounded up to one of 8 sizes per doubling, each a multiple of `ROW_MULTIPLE`: at most 12.5%
    spare rows (~4% on TREC batches). The CPU matrix library keeps compiled kernels for every shape it
    meets, and a MiniLM run's memory grew with them: rounding to multiples of 16 (~65 shapes over an
    epoch of TREC) peaked at 1,044 MB against 929 MB for these ~25 shapes, at the same speed."""
    step = max(ROW_MULTIPLE, 1 << max(0, count.bit_length() - 4))
    return -(-count // step) * step


TOKEN_HEADS = {
    "BertForTokenClassification",
    "RobertaForTokenClassification",
    "XLMRobertaForTokenClassification",
    "CamembertForTokenClassification",
    "ElectraForTokenClassification",
}


SPAN_HEADS = {
    "BertForQuestionAnswering",
    "RobertaForQuestionAnswering",
    "XLMRobertaForQuestionAnswering",
    "CamembertForQuestionAnswering",
    "ElectraForQuestionAnswering",
}
"""Extractive QA heads: start/end logits per position. Padding comes back as zeros here, so its logits
are the head's bias; sftlab's QA loss masks padded positions out of the softmax, which makes them unread."""


def supports_unpadded(model: nn.Module) -> bool:
    """Whether `unpadded_encoder` knows this model's layout."""
    if type(model).__name__ not in FIRST_TOKEN_HEADS | TOKEN_HEADS | SPAN_HEADS:
        return False
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers) or not hasattr(base, "embeddings"):
        return False
    if getattr(model.config, "_attn_implementation", None) not in ("eager", "sdpa"):
        return False
    if getattr(model.config, "is_decoder", False) or getattr(model.config, "add_cross_attention", False):
        return False
    if getattr(model.config, "chunk_size_feed_forward", 0):
        return False
    for layer in layers:
        attention = getattr(layer, "attention", None)
        self_attention = getattr(attention, "self", None)
        if not (
            all(hasattr(self_attention, name) for name in ("query", "key", "value", "scaling", "dropout"))
            and hasattr(attention, "output")
            and hasattr(layer, "intermediate")
            and hasattr(layer, "output")
        ):
            return False
    return True


class _Layout:
    """Where each real token of a right-padded batch sits: `rows` (its position in the batch x length
    grid, then spare rows), `grid` (for each grid position, its row; padding points at row 0, which the
    mask hides) and `firsts` (the row of each sequence's position 0). With `labelled` (batch x length,
    bool): `kept`, the grid positions the top block computes (the labelled ones, then spare copies of
    position 0), `kept_rows` their rows, `kept_count` how many are real."""

    def __init__(self, attention_mask: torch.Tensor, labelled: torch.Tensor | None = None) -> None:
        batch, length = attention_mask.shape
        real = attention_mask.reshape(-1).nonzero().squeeze(1)
        count = real.numel()
        spare = padded_rows(count) - count
        self.batch, self.length, self.count = batch, length, count
        self.rows = torch.cat([real, real.new_zeros(spare)]) if spare else real
        grid = torch.zeros(batch * length, dtype=torch.long, device=attention_mask.device)
        grid[real] = torch.arange(count, device=attention_mask.device)
        self.grid = grid
        self.firsts = grid.view(batch, length)[:, 0]
        self.real = real
        self.kept: torch.Tensor | None = None
        if labelled is not None:
            kept = (labelled.reshape(-1) & attention_mask.reshape(-1).bool()).nonzero().squeeze(1)
            self.kept_count = kept.numel()
            spare = padded_rows(self.kept_count) - self.kept_count
            self.kept = torch.cat([kept, real[:1].expand(spare)]) if spare else kept
            self.kept_rows = grid[self.kept]


def _attend(
    layer: nn.Module,
    queries: torch.Tensor,
    states: torch.Tensor,
    layout: _Layout,
    mask: Any,
    kept_only: bool = False,
) -> torch.Tensor:
    """The block's self-attention with output projection, residual and normalization, for the rows
    `queries` (all real tokens, or the first ones); keys and values come from all rows of `states`.
    `kept_only` (queries is states): the output projection onwards for `layout.kept` only."""
    attention = layer.attention
    self_attention = attention.self
    size = self_attention.attention_head_size
    batch, length = layout.batch, layout.length

    def grid(projected: torch.Tensor) -> torch.Tensor:  # rows -> batch x heads x length x head size
        return projected.index_select(0, layout.grid).view(batch, length, -1, size).transpose(1, 2)

    key, value = grid(self_attention.key(states)), grid(self_attention.value(states))
    if queries is states:
        query, query_mask = grid(self_attention.query(states)), mask
    else:  # the first position of each sequence only
        query = self_attention.query(queries).view(batch, 1, -1, size).transpose(1, 2)
        query_mask = first_query_mask(mask)
    if self_attention.training and isinstance(self_attention.dropout, FastDropout):
        context = _attention(self_attention.dropout, query, key, value, query_mask, self_attention.scaling)
    else:
        context = model_attention(self_attention, query, key, value, query_mask)
    # batch x positions x heads x head size -> rows, then the output projection, residual and norm
    context = context.reshape(-1, context.shape[-2] * size)  # (batch x positions) x hidden
    if kept_only:  # the labelled tokens' rows, and their residual
        assert layout.kept is not None
        context, queries = context.index_select(0, layout.kept), queries.index_select(0, layout.kept_rows)
    elif queries is states:  # back to rows: the real tokens, then spare rows
        context = context.index_select(0, layout.rows)
    return attention.output(context, queries)


def _attention(
    dropout: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, scaling: float
) -> torch.Tensor:
    """transformers' eager attention, but with the block's own dropout module on the probabilities: in CPU
    training that is FastDropout, where SDPA's built-in dropout draws a random number per probability
    with torch's slower Bernoulli sampler (~4 ms of an ~82 ms MiniLM step)."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if isinstance(mask, torch.Tensor):  # SDPA's masks are boolean (True: attend), eager's additive
        scores = (
            scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            if mask.dtype == torch.bool
            else scores + mask
        )
    probabilities = dropout(nn.functional.softmax(scores, dim=-1))
    return torch.matmul(probabilities, value).transpose(1, 2)  # batch x positions x heads x head size


class _UnpaddedEncoder(nn.Module):
    """Stands in for the base model's encoder: runs its blocks (read at call time, so it composes with the
    frozen-prefix cache) over the real tokens only."""

    def __init__(self, encoder: nn.Module, layout: _Layout, first_token: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.layout = layout
        self.first_token = first_token

    def forward(self, hidden_states: torch.Tensor, attention_mask: Any = None, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions as BaseModelOutput

        layout = self.layout
        layers = list(self.encoder.layer)
        states = hidden_states.reshape(-1, hidden_states.shape[-1]).index_select(0, layout.rows)
        for depth, layer in enumerate(layers):
            if self.first_token and depth == len(layers) - 1:
                first = _attend(layer, states.index_select(0, layout.firsts), states, layout, attention_mask)
                return BaseModelOutput(
                    last_hidden_state=layer.output(layer.intermediate(first), first).unsqueeze(1)
                )
            top = layout.kept is not None and depth == len(layers) - 1
            attended = _attend(layer, states, states, layout, attention_mask, kept_only=top)
            states = layer.output(layer.intermediate(attended), attended)
        # Every position back on the grid; padding (and, with `kept`, unlabelled tokens) as zeros: their
        # labels are -100, ignored by the loss.
        out = states.new_zeros(layout.batch * layout.length, states.shape[-1])
        if layout.kept is not None:
            count = layout.kept_count
            out = out.index_copy(0, layout.kept[:count], states[:count])
        else:
            out = out.index_copy(0, layout.real, states[: layout.count])
        return BaseModelOutput(last_hidden_state=out.view(layout.batch, layout.length, -1))


@contextlib.contextmanager
def unpadded_encoder(
    model: nn.Module, attention_mask: torch.Tensor, labelled: torch.Tensor | None = None
) -> Iterator[None]:
    """Inside, the model's encoder computes the real tokens of a batch with this `attention_mask` only;
    outside, the model is untouched. Use on models for which `supports_unpadded` holds.

    `labelled` (token heads; batch x length, bool: the positions whose label is not -100): the top block
    computes its output projection, feed-forward and normalizations for these positions only (its query,
    keys and values still for every real token), and the other positions come back as zeros. On WNUT-16
    tweets ~63% of the real sub-tokens carry a label (each word's first one). Exact for the loss, which
    reads labelled positions only (tested, gradients included)."""
    base = model.base_model
    encoder = base.encoder
    if not len(encoder.layer):  # every block came from the frozen-prefix cache
        yield
        return
    first_token = type(model).__name__ in FIRST_TOKEN_HEADS
    if labelled is not None and type(model).__name__ not in TOKEN_HEADS:
        labelled = None
    base.encoder = _UnpaddedEncoder(encoder, _Layout(attention_mask, labelled), first_token)
    try:
        yield
    finally:
        base.encoder = encoder
