"""Where and in what precision a run computes: the accelerator, the precision choice, seeding."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from sftlab.errors import SftlabError


def cpu_has_fast_bf16() -> bool:
    """AMX tiles: bf16 matrix products ~7x fp32. With AVX512-BF16 alone bf16 matmuls are only ~1.5x faster
    and autocast's casts made training slower than fp32 (62 vs 86 samples/s on MiniLM), so that is fp32."""
    return bool(torch.cpu._is_amx_tile_supported())


def resolve_precision(choice: str, use_cuda: bool) -> str:
    """`auto` -> bf16 where the hardware computes it fast (Ampere+ GPUs, AMX/AVX512-BF16 CPUs), else fp16
    on older GPUs and fp32 on other CPUs. An explicit choice the hardware cannot do is an error."""
    if use_cuda:
        bf16_ok = torch.cuda.is_bf16_supported()
        if choice == "auto":
            return "bf16" if bf16_ok else "fp16"
        if choice == "bf16" and not bf16_ok:
            raise SftlabError("train.precision: bf16 needs an Ampere or newer GPU; use fp16 or auto")
        return choice
    if choice == "auto":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if choice == "fp16":
        raise SftlabError("train.precision: fp16 is for CUDA GPUs; on a CPU use bf16, fp32 or auto")
    return choice


def wants_cuda(device: str) -> bool:
    if device == "cuda" and not torch.cuda.is_available():
        raise SftlabError("train.device: cuda was asked for but no CUDA GPU is visible")
    return device != "cpu" and torch.cuda.is_available()


def make_accelerator(device: str, precision: str) -> tuple[Any, str]:
    """An accelerate.Accelerator (one process, or the processes `accelerate launch` started) and the
    precision it runs in."""
    from accelerate import Accelerator

    use_cuda = wants_cuda(device)
    resolved = resolve_precision(precision, use_cuda)
    mixed = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[resolved]
    return Accelerator(mixed_precision=mixed, cpu=not use_cuda), resolved


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
