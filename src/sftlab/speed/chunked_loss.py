"""Memory-lean loss for causal LMs: the output layer and the cross-entropy in chunks of tokens.

A causal LM's last step, logits = hidden @ W.T over a 49,152-token vocabulary (SmolLM2), is the memory
peak of training: a batch of 8 x 512 trained tokens holds 0.8 GB of fp32 logits, then as much again for
their softmax and gradient. Here the decoder stops at its hidden states (the output layer is skipped for
the forward pass) and `LinearCrossEntropy` takes hidden states, the output weight and the targets: for
each chunk of `chunk_tokens` tokens it computes the logits, their log-sum-exp and loss, and at once (as
Liger kernels' fused linear + cross-entropy does) the chunk's gradient of the summed loss with respect to
the logits, softmax - one-hot, which it turns into the chunk's gradients of the hidden states and the
weight before the next chunk. Only one chunk of logits exists at a time; backward only scales the stored
gradients. Ignored targets (-100) are dropped before any logit is computed.

Exact: the same sum of the same per-token losses, with the same matmul precision (bf16 under bf16
autocast, as the plain path's autocast linear); it differs from the plain computation only in float
summation order, and in bf16 by the weight gradient being accumulated in fp32 over chunks instead of rounded
once to bf16 (tests: fp32 relative 1e-5, bf16 relative 1e-2, for loss and both gradients).

`chunked(chunk_tokens)` turns it on for the training forward passes of a run (the `chunked loss` lever);
`causal_lm_loss` is what the causal LM task calls, chunked or plain.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVE: contextvars.ContextVar[int] = contextvars.ContextVar("chunked_loss_tokens", default=0)


@contextlib.contextmanager
def chunked(chunk_tokens: int) -> Iterator[None]:
    """Within: `causal_lm_loss` computes the loss `chunk_tokens` tokens at a time (0: plainly)."""
    token = _ACTIVE.set(chunk_tokens)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_chunk_tokens() -> int:
    return _ACTIVE.get()


def _unwrapped(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT


def output_layer(model: nn.Module) -> nn.Linear | None:
    """The vocabulary projection of a `...ForCausalLM` model when it is a plain, bias-free nn.Linear (a LoRA
    layer on it, or a bias, keeps the plain path); else None."""
    base = _unwrapped(model)
    if not type(base).__name__.endswith("ForCausalLM") or not hasattr(base, "get_output_embeddings"):
        return None
    head = base.get_output_embeddings()
    return head if type(head) is nn.Linear and head.bias is None else None


def supports_chunked_loss(model: nn.Module) -> bool:
    """A causal LM with a plain output layer, or an encoder-decoder whose output layer's logits are the
    model's (`CHUNKED_SEQ2SEQ`: the seq2seq task then chunks its real target rows, see `target_logits`)."""
    from sftlab.speed.target_logits import CHUNKED_SEQ2SEQ, supports_target_logits

    base = _unwrapped(model)
    return output_layer(model) is not None or (
        type(base).__name__ in CHUNKED_SEQ2SEQ and supports_target_logits(base)
    )


@contextlib.contextmanager
def hidden_states_out(model: nn.Module) -> Iterator[nn.Linear]:
    """Within: the model's output layer is the identity, so `model(...).logits` are the final hidden states
    (at the `logits_to_keep` positions). Yields the output layer, whose weight the chunked loss uses."""
    head = output_layer(model)
    if head is None:
        raise ValueError("the model has no plain nn.Linear output layer")
    head.forward = _identity  # type: ignore[method-assign]
    try:
        yield head
    finally:
        del head.forward


def _identity(hidden: torch.Tensor) -> torch.Tensor:
    return hidden


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """bf16/fp16 where autocast would run the output layer's matmul in it, else the hidden states' dtype."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype


class LinearCrossEntropy(torch.autograd.Function):
    """sum over tokens of cross_entropy(hidden @ weight.T + bias, targets), computed `chunk` tokens at a
    time.

    hidden: tokens x H (every target real, no -100); weight: V x H; bias: V or None (BERT's output layer
    has one). Gradients are computed in forward (only those asked for: the weight's is skipped when it is
    frozen, as under LoRA)."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                dtype: torch.dtype, hidden_grad: bool, weight_grad: bool, bias: torch.Tensor | None = None,
                bias_grad: bool = False) -> torch.Tensor:  # fmt: skip
        with torch.autocast(hidden.device.type, enabled=False):
            matrix = weight.to(dtype)
            offset = bias.to(dtype) if bias is not None else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_hidden = torch.empty_like(hidden) if hidden_grad else None
            grad_weight = (
                torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if weight_grad else None
            )
            grad_bias = (
                torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if bias_grad else None
            )
            for start in range(0, hidden.shape[0], chunk):
                rows = hidden[start : start + chunk].to(dtype)
                target = targets[start : start + chunk]
                # as F.linear computes it (bias added in the product's precision), then fp32
                logits = (rows @ matrix.T if offset is None else torch.addmm(offset, rows, matrix.T)).float()
                log_norm = torch.logsumexp(logits, dim=-1)
                loss += (log_norm - logits.gather(1, target[:, None]).squeeze(1)).sum()
                if grad_hidden is None and grad_weight is None and grad_bias is None:
                    continue
                # d(sum of losses)/d(logits) = softmax - one-hot, computed in place over the logits.
                grad = logits.sub_(log_norm[:, None]).exp_()
                grad[torch.arange(grad.shape[0], device=grad.device), target] -= 1.0
                if grad_bias is not None:
                    grad_bias += grad.sum(0)
                grad = grad.to(dtype)
                if grad_hidden is not None:
                    grad_hidden[start : start + chunk] = grad @ matrix
                if grad_weight is not None and dtype == torch.float32:
                    grad_weight.addmm_(grad.T, rows)
                elif grad_weight is not None:  # bf16 products, summed over chunks in fp32
                    grad_weight += (grad.T @ rows).float()
        ctx.save_for_backward(
            grad_hidden if grad_hidden is not None else torch.empty(0),
            grad_weight.to(weight.dtype) if grad_weight is not None else torch.empty(0),
            grad_bias.to(bias.dtype) if grad_bias is not None and bias is not None else torch.empty(0),
        )
        ctx.grads = (grad_hidden is not None, grad_weight is not None, grad_bias is not None)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        has_hidden, has_weight, has_bias = ctx.grads
        # Scaled in place: a second vocabulary x hidden buffer (113 MB fp32 for SmolLM2) would be the peak.
        return (
            grad_hidden.mul_(grad_output.to(grad_hidden.dtype)) if has_hidden else None,
            grad_weight.mul_(grad_output.to(grad_weight.dtype)) if has_weight else None,
            None, None, None, None, None,
            grad_bias.mul_(grad_output.to(grad_bias.dtype)) if has_bias else None, None,
        )  # fmt: skip


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_tokens: int, bias: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Summed cross-entropy of `hidden @ weight.T (+ bias)` against `targets` (-100: ignored), any leading
    shape, never holding more than `chunk_tokens` rows of logits."""
    hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    trained = targets != -100
    if not bool(trained.all()):
        hidden, targets = hidden[trained], targets[trained]
    dtype = _compute_dtype(hidden)
    grads = torch.is_grad_enabled()
    hidden_grad, weight_grad = grads and hidden.requires_grad, grads and weight.requires_grad
    bias_grad = bias is not None and grads and bias.requires_grad
    return LinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens, dtype, hidden_grad, weight_grad,
                                    bias, bias_grad)  # fmt: skip


def causal_lm_loss(model: nn.Module, inputs: dict[str, Any], targets: torch.Tensor,
                   chunk_tokens: int | None = None) -> torch.Tensor:  # fmt: skip
    """Summed cross-entropy of the model's next-token predictions at `inputs["logits_to_keep"]` against
    `targets` (batch x kept positions, -100 ignored): chunked when `chunk_tokens` (default: what `chunked`
    set) is positive and the model has a plain output layer, else from the full logits."""
    chunk = active_chunk_tokens() if chunk_tokens is None else chunk_tokens
    if chunk > 0 and supports_chunked_loss(model):
        with hidden_states_out(model) as head:
            hidden = model(**inputs).logits
        return linear_cross_entropy(hidden, head.weight, targets, chunk)
    logits = model(**inputs).logits
    return F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
    )


__all__ = [
    "LinearCrossEntropy",
    "active_chunk_tokens",
    "causal_lm_loss",
    "chunked",
    "hidden_states_out",
    "linear_cross_entropy",
    "output_layer",
    "supports_chunked_loss",
]
