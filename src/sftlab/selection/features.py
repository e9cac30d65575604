"""Frozen features for transferability estimates: a stratified sample, embedded with layer-mean pooling.

Layer-mean pooling (TransformerRanker, Garbas et al. 2024): the hidden states of every transformer block
are averaged, then (sequence tasks) the real tokens of each text are averaged. For token classification
each word is one example: its first sub-token's layer-mean state, labelled with the word's tag.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sftlab.data.batching import inference_batches


def stratified_sample(labels: list[Any], count: int, seed: int) -> list[int]:
    """`count` row indices with each label's share kept (largest remainders) and at least one row per label
    (which can add a few rows when there are many rare labels); in input order. Multi-label rows are stratified by their first label."""
    if count >= len(labels):
        return list(range(len(labels)))
    groups: dict[Any, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[_stratum(label)].append(index)
    rng = random.Random(seed)
    exact = {key: count * len(rows) / len(labels) for key, rows in groups.items()}
    quota = {key: max(1, int(share)) for key, share in exact.items()}
    leftover = count - sum(quota.values())
    for key in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True)[: max(0, leftover)]:
        quota[key] += 1
    chosen: list[int] = []
    for key, rows in groups.items():
        chosen.extend(rng.sample(rows, min(len(rows), quota[key])))
    return sorted(chosen)


def _stratum(label: Any) -> Any:
    if isinstance(label, list):  # multi-label: an indicator row
        return label.index(1) if 1 in label else -1
    return label


class PeakMemory:
    """The process's peak resident memory above its level at start, sampled every 5 ms (CPU), or CUDA's
    own peak allocation counter. A context manager; `.megabytes` after it closes."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.megabytes = 0.0
        self._stop = threading.Event()
        self._peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = _resident_bytes()
        self._peak = self._base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _resident_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _resident_bytes())
        self.megabytes = max(0.0, (peak - self._base) / 2**20)


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Features:
    matrix: np.ndarray
    """(examples, hidden) float32 features."""
    labels: np.ndarray
    """Class ids (n,), or a 0/1 matrix (n, labels) for multi-label."""
    tokens: int
    """Real (non-padding) tokens the model read."""
    seconds: float


@torch.inference_mode()
def embed(model: Any, examples: list[dict[str, Any]], pad_token_id: int, batch_size: int,
          device: torch.device, autocast: Any, per_word: bool = False) -> Features:  # fmt: skip
    """Layer-mean features of `examples` (sftlab's encoded examples, with labels) from a frozen `model`
    (a bare encoder, AutoModel). per_word: one row per word with a first sub-token (token classification)."""
    from sftlab.tasks.classification import pad_batch

    model.eval()
    lengths = [len(example["input_ids"]) for example in examples]
    rows: list[np.ndarray | None] = [None] * len(examples)
    tokens = 0
    started = time.perf_counter()
    for batch_indices in inference_batches(lengths, batch_size):
        batch = pad_batch(
            [
                {k: v for k, v in examples[i].items() if k in ("input_ids", "token_type_ids")}
                for i in batch_indices
            ],
            pad_token_id,
        )
        batch = {key: value.to(device) for key, value in batch.items()}
        with autocast():
            hidden = model(**batch, output_hidden_states=True).hidden_states
        # hidden_states[0] is the embedding layer's output; the blocks' outputs follow.
        layer_mean = torch.stack([state.float() for state in hidden[1:]]).mean(0)
        mask = batch["attention_mask"]
        tokens += int(mask.sum())
        if per_word:
            for row, index in enumerate(batch_indices):
                starts = [s for s in examples[index]["word_starts"] if s >= 0]
                rows[index] = layer_mean[row, starts].cpu().numpy()
        else:
            weights = mask.unsqueeze(-1).to(layer_mean.dtype)
            pooled = (layer_mean * weights).sum(1) / weights.sum(1).clamp(min=1)
            for row, index in enumerate(batch_indices):
                rows[index] = pooled[row].cpu().numpy()
    seconds = time.perf_counter() - started
    if per_word:
        matrix = np.concatenate([r for r in rows if r is not None and len(r)]).astype(np.float32)
        labels = np.array(
            [tag for example in examples
             for tag, start in zip(example["word_tags"], example["word_starts"], strict=True) if start >= 0]
        )  # fmt: skip
    else:
        matrix = np.stack([r for r in rows if r is not None]).astype(np.float32)
        labels = np.array([example["labels"] for example in examples])
    return Features(matrix, labels, tokens, seconds)
