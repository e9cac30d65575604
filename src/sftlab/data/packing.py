"""Batches for causal language models: padded rows, or packed rows with attention kept inside each example.

Packed rows carry `position_ids` that restart at 0 for every example and no attention mask; from that,
transformers (5.x, `masking_utils.find_packed_sequence_indices`) builds a block-diagonal causal mask for
SDPA and eager attention, and flash-attention kernels run varlen: no token attends across an example
boundary, so a packed batch gives the same loss and gradients as the same examples padded.
"""

from __future__ import annotations

from typing import Any

import torch


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Example indices grouped into rows of at most `capacity` tokens (first-fit decreasing)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        for row, free in enumerate(room):
            if lengths[index] <= free:
                rows[row].append(index)
                room[row] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(capacity - lengths[index])
    return rows


def padded_lm_batch(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One example per row, right-padded; padding has attention 0 and label -100 (whatever its token id)."""
    longest = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"])
        labels[row, :length] = torch.tensor(example["labels"])
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def packed_lm_batch(
    examples: list[dict[str, Any]], pad_token_id: int, capacity: int
) -> dict[str, torch.Tensor]:
    """Examples packed into rows of at most `capacity` tokens (padding-free when one row holds them all).

    `attention_mask` marks real tokens (for counting); the model gets `position_ids` instead, and the
    padding at a row's end gets its own restarting positions, so it is a separate block nobody attends to.
    """
    rows = pack_rows([len(example["input_ids"]) for example in examples], capacity)
    longest = max(sum(len(examples[i]["input_ids"]) for i in row) for row in rows)
    input_ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), longest), -100, dtype=torch.long)
    position_ids = torch.zeros((len(rows), longest), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for row, indices in enumerate(rows):
        start = 0
        for index in indices:
            example = examples[index]
            end = start + len(example["input_ids"])
            input_ids[row, start:end] = torch.tensor(example["input_ids"])
            labels[row, start:end] = torch.tensor(example["labels"])
            position_ids[row, start:end] = torch.arange(end - start)
            attention_mask[row, start:end] = 1
            start = end
        position_ids[row, start:] = torch.arange(longest - start)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "attention_mask": attention_mask,
    }
