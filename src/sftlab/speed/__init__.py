"""The speed levers, decided in one place.

Each lever makes training cheaper without changing what it computes (each is tested for that):

- `prefix_cache`: the frozen embeddings and bottom blocks run once per training example, not every step;
- `unpadded`: a BERT-style encoder's blocks run their matrix products over the real tokens only
  (sequence and token classification, extractive QA);
- `first_token`: a [CLS] head's top block computes one position;
- `embedding_rows`: Adam/AdamW hold only the word-embedding rows the training data uses;
- `fast_dropout`: CPU dropout masks from a quarter of the random draws;
- `chunked_loss`: a causal LM's output layer and cross-entropy a chunk of tokens at a time, so the full
  tokens x vocabulary logits never exist.

(`target_logits`, seq2seq's output layer over the real target tokens only, is entered by the seq2seq
task's loss itself: `train.target_logits_only`.)

`choose_levers` says which apply to a run and why (the start-up line and `sftlab plan` print the same
decisions); the loop then enters one context per micro-batch (`Levers.micro_batch`) and calls a few named
moments (`sync` before anything reads the model, `stepped` after an optimizer step, `end_training`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from sftlab.distributed import data_parallel_rank
from sftlab.errors import SftlabError
from sftlab.speed.chunked_loss import chunked, supports_chunked_loss
from sftlab.speed.embedding_rows import UsedRows, used_rows_or_reason
from sftlab.speed.fast_dropout import use_fast_dropout
from sftlab.speed.first_token import first_token_top, supports_first_token_top
from sftlab.speed.prefix_cache import compute_prefix, frozen_prefix_depth, pad_prefix, run_from_prefix
from sftlab.speed.unpadded import TOKEN_HEADS, supports_unpadded, unpadded_encoder

LEVERS = (
    "prefix cache",
    "unpadded blocks",
    "first-token top",
    "used embedding rows",
    "fast dropout",
    "chunked loss",
)


@dataclass
class Decision:
    lever: str
    on: bool
    why: str

    def __str__(self) -> str:
        return f"{self.lever}: {'on' if self.on else 'off'} ({self.why})"


@dataclass
class Levers:
    """What the loop needs from the levers that apply to this run."""

    decisions: list[Decision]
    prefix_depth: int = 0
    rows: UsedRows | None = None
    prefix: list[torch.Tensor] | None = None
    restore_dropout: Callable[[], None] | None = None
    loss_chunk_tokens: int = 0
    """Tokens per chunk of the chunked loss; 0 when that lever is off."""
    labelled_top: bool = False
    """Unpadded token-classification blocks: the top block computes the labelled tokens only."""
    model: Any = field(default=None, repr=False)
    """The unwrapped model the levers act on."""

    def on(self, lever: str) -> bool:
        return next(d.on for d in self.decisions if d.lever == lever)

    def describe(self) -> str:
        return "speed levers: " + "; ".join(str(decision) for decision in self.decisions)

    def start(self, train_set: list[dict[str, Any]], collate: Callable[..., Any], batch_size: int,
              device: torch.device, autocast: Callable[[], Any], precision: str) -> None:  # fmt: skip
        """After the model is on its device: compute the frozen prefix, swap in fast dropout."""
        if self.prefix_depth:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            self.prefix = compute_prefix(self.model, train_set, self.prefix_depth, collate, batch_size,
                                         device, autocast, dtype)  # fmt: skip
        if self.on("fast dropout"):
            _, self.restore_dropout = use_fast_dropout(self.model)

    @contextlib.contextmanager
    def micro_batch(self, indices: list[int], batch: dict[str, torch.Tensor]) -> Iterator[None]:
        """The one context a training forward pass runs in."""
        with contextlib.ExitStack() as stack:
            if self.prefix is not None:
                hidden = pad_prefix(self.prefix, indices, batch["input_ids"].shape[1])
                stack.enter_context(
                    run_from_prefix(self.model, self.prefix_depth, hidden.to(batch["input_ids"].device))
                )
            # Unpadded blocks need right padding (position 0 real in every row); else the first-token top.
            if self.on("unpadded blocks") and bool(batch["attention_mask"][:, 0].all()):
                labels = batch.get("labels")
                labelled = labels != -100 if self.labelled_top and labels is not None else None
                stack.enter_context(unpadded_encoder(self.model, batch["attention_mask"], labelled))
            elif self.on("first-token top"):
                stack.enter_context(first_token_top(self.model))
            if self.rows is not None:
                stack.enter_context(self.rows.training())
            if self.loss_chunk_tokens:
                stack.enter_context(chunked(self.loss_chunk_tokens))
            yield

    def sync(self) -> None:
        """The full embedding table gets the trained rows: before anything reads the model."""
        if self.rows is not None:
            self.rows.sync()

    def stepped(self, optimizer: Any) -> None:
        if self.rows is not None:
            self.rows.stepped(optimizer)

    def restored(self) -> None:
        """After a checkpoint's weights were loaded: the compact rows from the restored table."""
        if self.rows is not None:
            self.rows.reload()

    def end_training(self) -> None:
        """Training is over: the cache's memory goes back, the model gets its own dropout again, and the
        embedding table is trainable again (a later `fit` of the same model decides afresh)."""
        self.prefix = None
        if self.rows is not None:  # the loop synced the table just before
            self.rows.weight.requires_grad_(True)
        if self.restore_dropout is not None:
            self.restore_dropout()
            self.restore_dropout = None


def choose_levers(
    settings: Any,
    model: torch.nn.Module,
    trainable: Any,
    processes: int,
    device: torch.device,
    train_ids: Iterable[list[int]],
    optimizer_name: str,
    weight_decay: float,
    recorded: dict[str, bool] | None = None,
) -> Levers:
    """Which levers apply to this run, and why; sets up the used rows (before the optimizer is built: its
    parameter list `trainable.layers` then holds the compact rows). `settings` is the train config section;
    `recorded`: the decisions a resumed run started with, kept (a lever off then stays off)."""
    unfreezing = "gradual unfreezing" if trainable.stages else ""
    # FSDP and DeepSpeed hold each parameter in shards, whose forward passes these levers were never tested on.
    sharded = (
        processes > 1 and data_parallel_rank()[1] == 1 and f"{processes} processes with sharded parameters"
    )
    # Under DDP each process runs the same model on its own batches, so the levers that only change how a
    # forward pass computes (prefix cache, unpadded blocks, first-token top, fast dropout) stay exact. The used
    # rows are a parameter outside the model, which DDP would not average across processes.
    rows_shared = unfreezing or (
        processes > 1
        and f"{processes} processes: the compact rows are outside the model, DDP would not average them"
    )
    depth = frozen_prefix_depth(model)
    labelled_top = settings.labelled_tokens_top and type(model).__name__ in TOKEN_HEADS
    # Each lever's first reason not to apply, in order; "" for none. Cheap checks only, the used rows last.
    reasons = {
        "prefix cache": [not settings.cache_frozen_prefix and "train.cache_frozen_prefix is false", unfreezing, sharded,
                         depth == 0 and "no frozen embeddings and bottom blocks"],
        "unpadded blocks": [not settings.unpad and "train.unpad is false", sharded,
                            not supports_unpadded(model) and "not a BERT-style encoder with a known head"],
        "first-token top": [not settings.first_token_top and "train.first_token_top is false", sharded,
                            not supports_first_token_top(model) and "not a [CLS] head of a BERT-style encoder"],
        "used embedding rows": [not settings.used_embedding_rows and "train.used_embedding_rows is false", rows_shared],
        "fast dropout": [not settings.fast_dropout and "train.fast_dropout is false",
                         device.type != "cpu" and f"{device.type}'s own dropout is fast"],
        "chunked loss": [not settings.chunked_loss and "train.chunked_loss is false", sharded,
                         not supports_chunked_loss(model) and "not a causal LM or encoder-decoder with a plain output layer"],
    }  # fmt: skip
    on_why = {
        "prefix cache": f"embeddings and blocks 0-{depth - 1}",
        "unpadded blocks": "exact, tested" + ("; top block at labelled tokens only" if labelled_top else ""),
        "first-token top": "exact, tested",
        "fast dropout": "CPU",
        "chunked loss": f"{settings.loss_chunk_tokens} tokens per chunk, exact, tested",
    }
    decisions, rows = [], None
    for lever in LEVERS:
        why_not = next((reason for reason in reasons[lever] if reason), "")
        if not why_not and recorded is not None and recorded.get(lever) is False:
            why_not = "off when the run started"
        if not why_not and lever == "used embedding rows":
            rows, why = used_rows_or_reason(model, train_ids, trainable.layers, optimizer_name, weight_decay)
            why_not = "" if rows is not None else why
            on_why[lever] = why
        decisions.append(Decision(lever, not why_not, why_not or on_why[lever]))
        if why_not and recorded is not None and recorded.get(lever):
            raise SftlabError(
                f"--resume: the {lever} lever was on when the run started and cannot be now ({why_not})"
            )
    chunk_tokens = settings.loss_chunk_tokens if decisions[LEVERS.index("chunked loss")].on else 0
    labelled_top = labelled_top and decisions[LEVERS.index("unpadded blocks")].on
    return Levers(decisions, prefix_depth=depth if decisions[0].on else 0, rows=rows, model=model,
                  loss_chunk_tokens=chunk_tokens, labelled_top=labelled_top)  # fmt: skip


def decisions_for_plan(settings: Any, model: torch.nn.Module, trainable: Any, device: str,
                       train_ids: Iterable[list[int]], optimizer_name: str, weight_decay: float) -> list[Decision]:  # fmt: skip
    """The decisions `finetune` will make for one process, without changing the model (for `sftlab plan`)."""
    import copy

    layers = copy.copy(trainable)
    layers.layers = [(name, list(parameters)) for name, parameters in trainable.layers]
    target = torch.device("cuda" if device == "cuda" else "cpu")
    levers = choose_levers(settings, model, layers, 1, target, train_ids, optimizer_name, weight_decay)
    if levers.rows is not None:  # the plan's model stays as it was
        levers.rows.weight.requires_grad_(True)
    return levers.decisions


__all__ = ["LEVERS", "Decision", "Levers", "choose_levers", "decisions_for_plan"]
