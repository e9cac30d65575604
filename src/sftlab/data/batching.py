"""Which examples go into which batch and which batches into which optimizer step: pure functions of
(lengths, sizes, seed, epoch).

A step plan is a plain list (steps) of lists (micro-batches) of example indices, so it is reproducible,
testable, and a resumed run can skip to any step in O(1) without reading the data it skips.
"""

from __future__ import annotations

import random

PAD_MULTIPLE = 8
"""Batches are padded to a multiple of this many tokens. With 33 distinct lengths (TREC) the CPU matmul
library compiles and keeps a kernel for every shape, and its cache grew a MiniLM run's memory by ~90 MB
(1,143 -> 1,050 MB peak); multiples of 8 leave ~5 shapes, cost ~5% speed there, and suit GPU tensor cores."""


def padded_length(length: int) -> int:
    """`length` rounded up to a multiple of `PAD_MULTIPLE`: the length a batch is padded to."""
    return -(-length // PAD_MULTIPLE) * PAD_MULTIPLE


def epoch_rng(seed: int, epoch: int) -> random.Random:
    # One stream per (seed, epoch): epoch k's order never depends on how many random numbers epoch k-1 drew.
    return random.Random(seed * 1_000_003 + epoch)


def random_batches(num_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled indices cut into batches of `batch_size` (the last one may be smaller)."""
    order = list(range(num_examples))
    epoch_rng(seed, epoch).shuffle(order)
    return [order[start : start + batch_size] for start in range(0, num_examples, batch_size)]


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int, chunk_batches: int = 8
) -> list[list[int]]:
    """Batches of similar-length examples, still random: shuffle, cut into chunks of `chunk_batches`
    batches, sort each chunk by length, cut it into batches, then shuffle the batch order.

    Sorting only within a random chunk keeps each batch's content random (so accuracy does not suffer)
    while padding drops to a few tokens per batch.
    """
    rng = epoch_rng(seed, epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda index: lengths[index], reverse=True)
        batches.extend(part[offset : offset + batch_size] for offset in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return _longest_first(batches, lengths)


def _longest_first(batches: list[list[int]], lengths: list[int]) -> list[list[int]]:
    # The batch holding the longest example goes first (as in transformers' LengthGroupedSampler): the
    # largest activations are allocated at the start, later batches reuse that memory, and an
    # out-of-memory shows at step 1 rather than hours in.
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]), default=0)
    batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def token_budget_batches(
    lengths: list[int], max_tokens: int, seed: int, epoch: int, chunk_batches: int = 8
) -> list[list[int]]:
    """Batches of at most `max_tokens` padded tokens (the longest length, as `padded_length`, times the
    number of examples), so short examples make large batches and long ones small: fewer, larger matrix
    products and little padding. Randomness as in `length_grouped_batches`: shuffle, sort within chunks of
    about `chunk_batches` batches' worth of tokens, fill batches greedily, shuffle the batches. An example
    longer than the budget gets a batch of its own. Every example is in exactly one batch.
    """
    rng = epoch_rng(seed, epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    chunk: list[int] = []
    chunk_tokens = 0
    for position, index in enumerate(order):
        chunk.append(index)
        chunk_tokens += padded_length(lengths[index])
        if chunk_tokens < chunk_batches * max_tokens and position < len(order) - 1:
            continue
        current: list[int] = []
        for example in sorted(chunk, key=lambda i: lengths[i], reverse=True):
            # Sorted longest first, so the batch's padded length is that of its first example.
            padded = padded_length(lengths[current[0] if current else example])
            if current and padded * (len(current) + 1) > max_tokens:
                batches.append(current)
                current = []
            current.append(example)
        if current:
            batches.append(current)
        chunk, chunk_tokens = [], 0
    rng.shuffle(batches)
    return _longest_first(batches, lengths)


def inference_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Length-sorted batches for evaluation and prediction (order does not matter, padding does)."""
    order = sorted(range(len(lengths)), key=lambda index: lengths[index], reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def shard_batches(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This process's share of the batches; every process gets the same number, so they step together."""
    if world_size == 1:
        return batches
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


def plan_steps(
    lengths: list[int],
    batch_size: int | str,
    accumulation: int,
    micro_batch_size: int,
    group_by_length: bool,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    batch_tokens: int | None = None,
    chunk_batches: int = 8,
) -> list[list[list[int]]]:
    """One epoch as optimizer steps, each a list of micro-batches.

    batch_size N: micro-batches of N, `accumulation` of them per step (the last step may hold fewer; the
    loop normalizes by the real count, so a short step is still an exact mean). batch_size "full": every
    micro-batch of `micro_batch_size` in one step, i.e. batch gradient descent, one update per epoch.
    batch_tokens N: micro-batches by token budget instead of by count (`token_budget_batches`).
    """
    size = micro_batch_size if batch_size == "full" else int(batch_size)
    if batch_tokens is not None:
        batches = token_budget_batches(lengths, batch_tokens, seed, epoch, chunk_batches=chunk_batches)
    elif group_by_length and size > 1:
        batches = length_grouped_batches(lengths, size, seed, epoch, chunk_batches)
    else:
        batches = random_batches(len(lengths), size, seed, epoch)
    batches = shard_batches(batches, rank, world_size)
    if batch_size == "full":
        return [batches]
    return [batches[start : start + accumulation] for start in range(0, len(batches), accumulation)]
