"""Where and in what precision a run computes: the accelerator, the precision choice, seeding."""

from __future__ import annotations

import functools
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sftlab.errors import SftlabError


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether bf16 matrix products are fast enough on this CPU for bf16 autocast to pay.

    CPU flags decide first: AMX tiles (Sapphire Rapids and later) always are fast, no AVX512-BF16 never
    is. CPUs with AVX512-BF16 but no AMX differ a lot: one Xeon here ran bf16 products only ~1.5x faster
    than fp32 (autocast's casts then made training slower, 62 vs 86 samples/s), an AMD Zen 5 ran them 4.4x
    faster (268 vs 154 samples/s). There the answer is measured (`matmul_speed_ratio`, robust to a loaded
    machine) once per machine and kept in sftlab's cache (`machine.json`, keyed by CPU model and torch
    version), so every later run on the machine decides the same way, however busy it is then; and a resumed
    run keeps the precision its checkpoint recorded.
    """
    if torch.cpu._is_amx_tile_supported():
        return True
    if not torch.cpu._is_avx512_bf16_supported():
        return False
    return measured_bf16_ratio() >= FAST_BF16_RATIO


FAST_BF16_RATIO = 2.0
"""bf16 must multiply at least this many times faster than fp32 to be chosen by `precision: auto`."""


def machine_key() -> str:
    """This machine's CPU model and torch version: what the bf16 measurement depends on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), ""
            )
    except OSError:
        pass
    import platform

    return f"{model or platform.processor() or platform.machine()} | torch {torch.__version__}"


def measured_bf16_ratio() -> float:
    """bf16 over fp32 matrix-product speed on this machine: from the per-machine cache, else measured
    (`matmul_speed_ratio`) and kept there (a cache that cannot be written only costs a measurement per process)."""
    import json

    from sftlab.catalog.fetch import cache_dir

    path, key = cache_dir() / "machine.json", machine_key()
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        facts = {}
    if not isinstance(facts, dict):
        facts = {}
    entry = facts.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("bf16_speed_ratio"), int | float):
        return float(entry["bf16_speed_ratio"])
    ratio = matmul_speed_ratio()
    facts[key] = {"bf16_speed_ratio": round(ratio, 3)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass
    return ratio


def matmul_gflops(dtype: torch.dtype, rows: int = 4096, repeats: int = 20) -> float:
    """Throughput of a BERT-layer-shaped product, (rows x 384) @ (384 x 1536), in GFLOP/s: the best of three
    timings after three warm-up products."""
    import time

    a, b = torch.randn(rows, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * rows * 384 * 1536 * repeats / best / 1e9


def matmul_speed_ratio(rows: int = 256, repeats: int = 2, rounds: int = 9) -> float:
    """How many times faster bf16 multiplies than fp32 on this machine, robust to a loaded machine.

    Timed on one thread in that thread's CPU time (`time.thread_time`), so time spent descheduled while other
    processes run does not count; each round times both precisions back to back and the median of the rounds'
    ratios is taken. Wall-clock timings of both threads flipped the decision on a busy machine here (a Zen 5
    measured 2.1 at load average 31, 4.3 idle); this probe measured 3.8-4.1 at that load. About 50 ms idle."""
    import statistics
    import time

    def seconds(dtype: torch.dtype) -> float:
        a, b = torch.randn(rows, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
        a @ b
        start = time.thread_time()
        for _ in range(repeats):
            a @ b
        return time.thread_time() - start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ratios = []
        for _ in range(rounds):
            bf16 = seconds(torch.bfloat16)
            ratios.append(seconds(torch.float32) / max(bf16, 1e-9))
    finally:
        torch.set_num_threads(threads)
    return statistics.median(ratios)


def resolve_precision(choice: str, use_cuda: bool) -> str:
    """`auto` -> bf16 where the hardware computes it fast (Ampere+ GPUs; CPUs with AMX, or with AVX512-BF16
    measured fast, see `cpu_has_fast_bf16`), else fp16 on older GPUs and fp32 on other CPUs. An explicit choice the hardware cannot do is an error."""
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


def _glibc(function: str) -> Any:
    """glibc's `function` through ctypes, or None (not Linux, or musl or another libc)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return getattr(ctypes.CDLL("libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the OS at once.

    Without this, every CPU training step gets a brand-new 47 MB gradient for MiniLM's 30,522 x 384
    word-embedding table from fresh pages (large blocks are mmap-ed and unmapped on free), and the page
    faults cost more than the step's matrix products in bf16: 275 -> 310-316 samples/s here. Freed memory
    then stays with the process (it is reused, so peak memory does not grow). Linux/glibc only; set
    SFTLAB_SYSTEM_MALLOC=1 to leave malloc as it is. Returns whether the setting took.
    """
    mallopt = None if os.environ.get("SFTLAB_SYSTEM_MALLOC") else _glibc("mallopt")
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


KERNEL_CACHE = 64
"""How many compiled matrix-product kernels ideep (PyTorch's CPU bf16/oneDNN path) keeps; its default is 1,024."""


def limit_kernel_cache() -> None:
    """Cap ideep's cache of compiled matrix-product kernels at `KERNEL_CACHE` (env LRU_CACHE_CAPACITY; a
    value the user set wins). The cache keeps a kernel, with its scratch memory, for every matrix shape it
    meets; unpadded training (sftlab.speed.unpadded) meets a few dozen row counts, and with the default the
    frozen case of the benchmark peaked at 808 MB against 720 MB capped, at the same speed (MiniLM full
    fine-tuning: 916 against 859-866 MB, 388 against 387-391 samples/s). Takes effect only before the
    process's first such product, so it is called before the bf16 probe."""
    os.environ.setdefault("LRU_CACHE_CAPACITY", str(KERNEL_CACHE))


def release_freed_memory() -> None:
    """Hand the memory that malloc keeps for reuse (see `keep_freed_memory`) back to the OS: called once
    training is over, so the final evaluations start from what is really in use."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)


def make_accelerator(
    device: str, precision: str, log_with: list[str] | None = None, logging_dir: Path | None = None
) -> tuple[Any, str]:
    """An accelerate.Accelerator (one process, or the processes `accelerate launch` started) and the
    precision it runs in. `log_with`: accelerate trackers (see sftlab.tracking), local ones under
    `logging_dir`; `tracking.Tracking` opens them at the first log record, once the output directory exists."""
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs

    use_cuda = wants_cuda(device)
    if not use_cuda:
        limit_kernel_cache()
        keep_freed_memory()
    resolved = resolve_precision(precision, use_cuda)
    mixed = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[resolved]
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state; a second run in the same Python process (the API, a notebook,
    # a hyperparameter search) may want another precision. The process group (PartialState) is kept.
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed:
        AcceleratorState._reset_state()
    trackers = {"log_with": log_with, "project_dir": logging_dir} if log_with else {}
    # DDP re-broadcasts rank 0's buffers before every forward pass; a transformer's buffers are constants
    # (position and token-type ids), and with frozen embeddings (their module holds them) torch 2.13's
    # broadcast fails an internal assert ("!tensors.empty()"), so they are not broadcast.
    handlers: list[Any] = [DistributedDataParallelKwargs(broadcast_buffers=False)]
    cpu = not use_cuda
    if cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        # `accelerate launch --use_deepspeed` on CPUs: accelerate 1.15 ignores DeepSpeed when asked for the
        # CPU (cpu=True makes it MULTI_CPU), and without a GPU it finds no backend of its own; DeepSpeed's CPU
        # accelerator runs over gloo (no oneCCL here), so the backend is named and the CPU is left implicit.
        cpu = False
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    return Accelerator(mixed_precision=mixed, cpu=cpu, kwargs_handlers=handlers, **trackers), resolved


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
