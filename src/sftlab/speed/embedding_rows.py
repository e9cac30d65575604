"""Training only the word-embedding rows that the training data uses.

MiniLM's word-embedding table is half its parameters (30,522 x 384), yet the 4,360 TREC training
questions use 7,547 distinct tokens. The rows they never use get no gradient, and with Adam or AdamW
their update is exactly zero: their moments stay zero, so the step is 0 / (0 + eps) = 0. AdamW's decoupled
weight decay still shrinks them by (1 - lr x weight_decay) each step, a plain factor. Yet a dense
embedding gradient, and an optimizer holding the whole table, read and write all 30,522 rows each step.

Here the optimizer holds a compact table of the used rows instead. In training the embedding looks up
that table (a token's row there is `slots[token]`), so its gradient, Adam's moments and update are
`used x hidden`; the full table is brought up to date from it (and the unused rows shrunk by the product
of the decay factors) before anything else reads the model: an evaluation, a checkpoint, the copy of the
best model, the end of training. Same updates as training the whole table (tested).

Applies to single-process training with Adam (no weight decay on the table) or AdamW, of a model whose
input embedding is a plain `nn.Embedding` not shared with an output layer, and not an encoder-decoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

WORTH_IT = 0.9
"""Used only when the training data uses under this fraction of the table's rows."""


def embedding_table(model: nn.Module) -> nn.Embedding | None:
    """The input embedding, if its rows can be trained this way."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if type(embedding) is not nn.Embedding or not embedding.weight.requires_grad:
        return None
    if embedding.max_norm is not None or embedding.scale_grad_by_freq or embedding.sparse:
        return None
    if getattr(model.config, "is_encoder_decoder", False):
        return None
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is embedding.weight:  # tied to the output layer
        return None
    return embedding


class _UsedRowsLookup(nn.Module):
    def __init__(self, rows: UsedRows) -> None:
        super().__init__()
        self.owner = [rows]  # a list: not registered as a submodule

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        owner = self.owner[0]
        return nn.functional.embedding(owner.slots[input_ids], owner.rows, owner.padding_slot)


class UsedRows:
    """The compact table (`rows`, an `nn.Parameter` for the optimizer) of the rows `used` of `embedding`."""

    def __init__(self, model: nn.Module, embedding: nn.Embedding, used: torch.Tensor) -> None:
        self.model, self.embedding, self.weight = model, embedding, embedding.weight
        self.used = used
        self.rows = nn.Parameter(self.weight.detach().index_select(0, used).clone())
        self.slots = torch.zeros(self.weight.shape[0], dtype=torch.long, device=used.device)
        self.slots[used] = torch.arange(len(used), device=used.device)
        padding = embedding.padding_idx
        self.padding_slot = (
            int(self.slots[padding]) if padding is not None and bool((used == padding).any()) else None
        )
        self.decay = 1.0  # product of AdamW's (1 - lr x weight_decay) since the last sync
        self.lookup = _UsedRowsLookup(self)
        self.weight.requires_grad_(False)  # the compact rows train in its place

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Inside, the model looks tokens up in the compact rows (and so trains them)."""
        self.model.set_input_embeddings(self.lookup)
        try:
            yield
        finally:
            self.model.set_input_embeddings(self.embedding)

    def stepped(self, optimizer: Any) -> None:
        """After `optimizer.step()`: note AdamW's decay of the rows it did not hold (unless fp16's scaler
        skipped the step)."""
        if getattr(optimizer, "step_was_skipped", False):
            return
        for group in getattr(optimizer, "optimizer", optimizer).param_groups:
            if any(p is self.rows for p in group["params"]):
                self.decay *= 1.0 - group["lr"] * group["weight_decay"]

    @torch.no_grad()
    def sync(self) -> None:
        """Bring the full table up to date: the trained rows copied in (a copy of used x hidden), the others
        decayed."""
        if self.decay != 1.0:
            self.weight.mul_(self.decay)  # every row; the used ones are overwritten next
        self.weight.index_copy_(0, self.used, self.rows.detach())
        self.decay = 1.0

    @torch.no_grad()
    def reload(self) -> None:
        """Take the rows from the full table again (after a checkpoint's weights were loaded into it)."""
        self.rows.copy_(self.weight.index_select(0, self.used))
        self.decay = 1.0


def used_rows(
    model: nn.Module,
    token_ids: Iterable[list[int]],
    layers: list[tuple[str, list[tuple[str, nn.Parameter]]]],
    optimizer_name: str,
    weight_decay: float,
) -> UsedRows | None:
    """`used_rows_or_reason` without the reason."""
    return used_rows_or_reason(model, token_ids, layers, optimizer_name, weight_decay)[0]


def used_rows_or_reason(
    model: nn.Module,
    token_ids: Iterable[list[int]],
    layers: list[tuple[str, list[tuple[str, nn.Parameter]]]],
    optimizer_name: str,
    weight_decay: float,
) -> tuple[UsedRows | None, str]:
    """Set up training of the used rows only, if it applies and pays; `layers` (the optimizer's parameter
    list) gets the compact rows in place of the table. Returns the rows (None: nothing changed) and why."""
    embedding = embedding_table(model)
    current = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embedding is None and getattr(getattr(current, "weight", None), "requires_grad", True) is False:
        return None, "the word embeddings are frozen"
    if embedding is None:
        return None, "no plain word-embedding table apart from the output layer"
    if optimizer_name not in ("adam", "adamw"):
        return None, f"optim.name {optimizer_name}: only Adam and AdamW leave unused rows exactly still"
    if optimizer_name == "adam" and weight_decay:  # Adam's decay is a gradient: every row would move
        return None, "Adam with weight decay moves every row"
    if not any(parameter is embedding.weight for _, parameters in layers for _, parameter in parameters):
        return None, "the embedding table does not train"
    seen = torch.zeros(embedding.weight.shape[0], dtype=torch.bool)
    for ids in token_ids:
        seen[torch.as_tensor(ids, dtype=torch.long)] = True
    used = seen.nonzero().squeeze(1).to(embedding.weight.device)
    share = f"{len(used):,} of {embedding.weight.shape[0]:,} rows"
    if len(used) >= WORTH_IT * embedding.weight.shape[0]:
        return None, f"the data uses {share}"
    rows = UsedRows(model, embedding, used)
    for _, parameters in layers:
        for index, (name, parameter) in enumerate(parameters):
            if parameter is embedding.weight:
                parameters[index] = (name, rows.rows)
    return rows, share
