"""Several processes (`torchrun`, `accelerate launch`): evaluation and prediction split across them, exactly.

Training is split by the step plan (`data.batching.shard_batches`); evaluation is split here. Each process
computes its share of the examples (positions rank, rank + N, rank + 2N, ...) and the shares are gathered
back into input order, so every example is counted exactly once at any split, even or not (no padding of
the last batch with repeated examples, which is what a sampler-based split would do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

Item = TypeVar("Item")
Output = TypeVar("Output")

DATA_PARALLEL = {"MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_SDAA", "MULTI_MUSA"}
"""accelerate's distributed types where every process holds the whole model (DDP). With FSDP or DeepSpeed
each forward pass is a collective operation, so every process runs the same batches and nothing is split."""


def data_parallel_rank() -> tuple[int, int]:
    """(this process's rank, the number of processes) when evaluation can be split; (0, 1) otherwise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0, 1
    from accelerate.state import PartialState

    if PartialState().distributed_type.value not in DATA_PARALLEL:
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def configure_deepspeed(
    accelerator: Any, batch_size: int, accumulation: int, max_grad_norm: float | None
) -> None:
    """Under DeepSpeed, its config's batch, accumulation and clipping follow sftlab's train config (sftlab
    passes no dataloader to `prepare`, from which accelerate would take the batch size). DeepSpeed uses the
    batch sizes for its own bookkeeping only: sftlab's plan makes the batches and sets each step's boundary."""
    if getattr(accelerator.distributed_type, "value", "") != "DEEPSPEED":
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config.update(
        train_micro_batch_size_per_gpu=batch_size,
        gradient_accumulation_steps=accumulation,
        train_batch_size=batch_size * accumulation * accelerator.num_processes,
        gradient_clipping=max_grad_norm or 0.0,
    )
    config.setdefault("zero_allow_untested_optimizer", True)  # torch's AdamW, which ZeRO handles like its own


def local_model(model: Any) -> Any:
    """The model inside a DistributedDataParallel wrapper: a process's own forward passes (evaluation of its
    share) must not take part in the wrapper's collective buffer and gradient bookkeeping."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.module
    return model


def map_sharded(compute: Callable[[list[Item]], Sequence[Output]], items: list[Item]) -> list[Output]:
    """`compute(items)` (one output per item, in order), each process computing its share; every process
    gets all outputs back in input order. One process: a plain call."""
    rank, world = data_parallel_rank()
    if world == 1:
        return list(compute(items))
    positions = list(range(rank, len(items), world))
    mine = list(compute([items[i] for i in positions])) if positions else []
    shares: list[Any] = [None] * world
    torch.distributed.all_gather_object(shares, (positions, mine))
    out: list[Any] = [None] * len(items)
    for share_positions, share_outputs in shares:
        for position, output in zip(share_positions, share_outputs, strict=True):
            out[position] = output
    return out


__all__ = ["configure_deepspeed", "data_parallel_rank", "local_model", "map_sharded"]
