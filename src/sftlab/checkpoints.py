"""Checkpoints a killed run resumes from exactly: `OUTPUT_DIR/checkpoints/step-N/`.

A checkpoint holds everything the loop needs to continue as if it had never stopped:

- `model.safetensors`: the model's weights; `best.safetensors`: the best model so far (when it is not
  this step's model), so early stopping and the final best-model report survive a resume;
- `optimizer.pt`: the optimizer's state dict (plain tensors and numbers, loaded back only with
  `torch.load(weights_only=True)`, which refuses any pickled object that could run code);
- `rng-rank{R}.safetensors` + the Python/NumPy generator states in `state.json`, one set per process;
- `state.json`: plain JSON with the step, epoch and position in the epoch, the loss and throughput
  counters, the evaluation history, the best-model and early-stopping state, the grad scaler's state,
  the resolved config (to refuse a resume that changes what matters) and a SHA-256 of every file.

Each checkpoint is written into a hidden temporary folder, every file and the folder are fsynced, and
the folder is renamed into place; `state.json` is written last. A kill at any moment therefore leaves
either the new complete checkpoint or none, and the previous checkpoint is deleted only afterwards.
Only the main process writes, apart from each process's own RNG file.

Sharded parameters (FSDP2: every parameter a DTensor holding this process's shard) are never gathered
for a checkpoint: every process writes its own shards of the weights, the optimizer state and the best
model with `torch.distributed.checkpoint` into `sharded/` (one `.distcp` file per process plus a
`.metadata` index), and a resume reads them back into the freshly sharded model, so no process ever holds
the whole model. The folder must be on a file system every process sees (one machine, or a shared disk).
Under DeepSpeed (ZeRO stages 1-3) the engine holds the weights and optimizer in its own layout: every
process calls DeepSpeed's `save_checkpoint` into `deepspeed/` (`state/mp_rank_00_model_states.pt` or, at
stage 3, one `zero_pp_rank_R_mp_rank_00_model_states.pt` per process, plus one
`zero_pp_rank_R_mp_rank_00_optim_states.pt` per process) and `load_checkpoint` on resume; the best model so
far is each process's own part of the weights (`best-rank{R}.safetensors`: whole weights at stages 1-2,
the process's ZeRO-3 partition at stage 3).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sftlab.errors import SftlabError
from sftlab.outputs import describe_write_error, write_errors

FORMAT = 2
"""2: the run state as one object (sftlab.engine.TrainState) and the start-up decisions."""
STATE = "state.json"
MODEL = "model.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.pt"
PREFIX = "step-"
SHARDED = "sharded"
"""The folder of a sharded checkpoint's torch.distributed.checkpoint files."""
DEEPSPEED = "deepspeed"
"""The folder of a DeepSpeed checkpoint (its `save_checkpoint` layout, tag `state`)."""
DEEPSPEED_TAG = "state"


def is_sharded(model: Any) -> bool:
    """True when the model's parameters are sharded across processes (FSDP2's DTensor parameters)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(parameter, DTensor) for parameter in model.parameters())


class ShardedState:
    """A model and its optimizer whose state each process saves and loads as its own shards."""

    def __init__(self, model: Any, optimizer: Any) -> None:
        self.model, self.optimizer = model, optimizer

    def payload(self) -> dict[str, Any]:
        """The state dicts in torch.distributed.checkpoint's form (DTensor shards, optimizer by names)."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        weights, moments = get_state_dict(self.model, self.optimizer)
        return {"model": weights, "optimizer": moments}

    def load(self, folder: Path, best_template: dict[str, Any] | None) -> dict[str, Any] | None:
        """Read this process's shards into the model and optimizer (and the best model, when saved)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        payload = self.payload()
        if best_template is not None:
            payload["best"] = best_template
        dcp.load(payload, checkpoint_id=str(folder))
        set_state_dict(self.model, self.optimizer, model_state_dict=payload["model"],
                       optim_state_dict=payload["optimizer"])  # fmt: skip
        return payload.get("best")


def is_deepspeed(model: Any) -> bool:
    """True for a model prepared by accelerate under DeepSpeed (a DeepSpeedEngine)."""
    return hasattr(model, "save_checkpoint") and hasattr(model, "zero_optimization_stage")


class DeepSpeedState:
    """A DeepSpeed engine, whose weights and optimizer (ZeRO-partitioned) DeepSpeed itself saves and loads:
    every process writes and reads its own partition files."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag=DEEPSPEED_TAG, save_latest=False)

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag=DEEPSPEED_TAG, load_optimizer_states=True,
                                              load_lr_scheduler_states=False)  # fmt: skip
        if path is None:
            raise SftlabError(f"{folder}: DeepSpeed found no checkpoint to load")


def local_weights(engine: Any) -> dict[str, torch.Tensor]:
    """A CPU copy of this process's part of a DeepSpeed model's weights: the whole weights at ZeRO stages
    0-2, this process's partition at stage 3 (where each parameter holds only a placeholder)."""
    parameters = engine.module.named_parameters()
    if engine.zero_optimization_stage() == 3:
        return {name: p.ds_tensor.detach().to("cpu", copy=True) for name, p in parameters}
    return {name: p.detach().to("cpu", copy=True) for name, p in parameters}


def restore_local_weights(engine: Any, weights: dict[str, torch.Tensor]) -> None:
    """Put a `local_weights` copy back into the model (for evaluating and saving it; the optimizer's own
    fp32 copy is not touched: training is over)."""
    stage3 = engine.zero_optimization_stage() == 3
    with torch.no_grad():
        for name, p in engine.module.named_parameters():
            (p.ds_tensor if stage3 else p).copy_(weights[name])


def full_state_dict(model: Any, accelerator: Any) -> dict[str, torch.Tensor] | None:
    """For saving a sharded model: its whole weights, gathered shard by shard to the main process's CPU
    (None on the other processes). None for a model whose parameters are whole already: save it as it is.
    Every process must call this."""
    if is_deepspeed(model):
        if model.zero_optimization_stage() != 3:
            return None
        # ZeRO-3: gathered one layer at a time to the main process (in the parameters' dtype: fp32 here,
        # bf16/fp16 under DeepSpeed's mixed precision).
        weights = model._zero3_consolidated_16bit_state_dict()
        return dict(weights) if accelerator.is_main_process else None
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return weights if accelerator.is_main_process else None


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy that safetensors can write: tied weights (one storage, two names) are cloned."""
    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        tensor = value.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        out[key] = tensor
    return out


# --- random number generators: Python and NumPy as JSON, torch as tensors


def rng_json() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
    }


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{index}"] = state
    return tensors


def restore_rng(states: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda{i}"] for i in range(len(tensors)) if f"cuda{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


# --- writing


def save_checkpoint(
    accelerator: Any,
    output_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor] | ShardedState | DeepSpeedState,
    optimizer_state: dict[str, Any] | None,
    best_state: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write `checkpoints/step-{step}` atomically, then keep only the newest `keep_last` checkpoints.

    `state` is the loop's plain-JSON state; the RNG states and file checksums are added here. Every
    process must call this (each writes its own RNG file); only the main process writes the rest, except
    for a ShardedState (then optimizer_state is None), whose shards every process writes, and a
    DeepSpeedState, whose partitions and best weights (`best_state`: this process's part) every process writes.
    """
    root = checkpoints_dir(output_dir)
    final = root / f"{PREFIX}{step}"
    temporary = root / f".{PREFIX}{step}.partial"
    main = accelerator.is_main_process
    try:
        if main:
            root.mkdir(parents=True, exist_ok=True)
            for leftover in root.glob(f".{PREFIX}*.partial"):  # from a run killed while saving
                shutil.rmtree(leftover)
            temporary.mkdir()
        accelerator.wait_for_everyone()
        from safetensors.torch import save_file

        rank = accelerator.process_index
        save_file(rng_tensors(), str(temporary / f"rng-rank{rank}.safetensors"))
        rng_states = rng_json()
        (temporary / f"rng-rank{rank}.json").write_text(json.dumps(rng_states), encoding="utf-8")
        if isinstance(model_state, ShardedState):
            import torch.distributed.checkpoint as dcp

            payload = model_state.payload()
            if best_state is not None:
                payload["best"] = best_state
            dcp.save(payload, checkpoint_id=str(temporary / SHARDED))
        if isinstance(model_state, DeepSpeedState):
            model_state.save(temporary / DEEPSPEED)
            if best_state is not None:
                save_file(cpu_state_dict(best_state), str(temporary / f"best-rank{rank}.safetensors"))
        accelerator.wait_for_everyone()
        if main:
            if not isinstance(model_state, ShardedState | DeepSpeedState):
                save_file(cpu_state_dict(model_state), str(temporary / MODEL), metadata={"format": "pt"})
                torch.save(optimizer_state, temporary / OPTIMIZER)
                if best_state is not None:
                    save_file(cpu_state_dict(best_state), str(temporary / BEST), metadata={"format": "pt"})
            files = sorted(
                str(path.relative_to(temporary)) for path in temporary.rglob("*") if path.is_file()
            )
            for name in files:
                _fsync_file(temporary / name)
            record = {
                "format": FORMAT,
                "step": step,
                **state,
                "has_best_file": best_state is not None,
                "sha256": {name: _sha256(temporary / name) for name in files},
            }
            # state.json last: a folder without it is never a checkpoint.
            (temporary / STATE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            _fsync_file(temporary / STATE)
            _fsync_dir(temporary)
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
            _fsync_dir(root)
            for old in list_checkpoints(output_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    except write_errors() as error:
        shutil.rmtree(temporary, ignore_errors=True)
        kept = [path.name for path in list_checkpoints(output_dir)]
        previous = f"; the last good checkpoint {kept[-1]} is kept" if kept else ""
        raise SftlabError(
            f"{final}: cannot write checkpoint: {describe_write_error(error)}{previous}"
        ) from None
    accelerator.wait_for_everyone()
    return final


# --- reading


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoint folders (with state.json), oldest first, ordered by the step in state.json."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.name.startswith(PREFIX) and (path / STATE).is_file():
            try:
                step = int(json.loads((path / STATE).read_text(encoding="utf-8"))["step"])
            except (ValueError, KeyError, TypeError, OSError):
                continue
            found.append((step, path))
    return [path for _, path in sorted(found)]


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's state.json, after checking that every file it lists is present and intact."""
    state_path = checkpoint / STATE
    if not state_path.is_file():
        raise SftlabError(f"{checkpoint}: not a checkpoint (no {STATE})")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise SftlabError(f"{state_path}: not valid JSON: {error}") from None
    if not isinstance(state, dict) or not isinstance(state.get("format"), int):
        raise SftlabError(f"{state_path}: not an sftlab checkpoint of format {FORMAT}")
    if state["format"] != FORMAT:
        raise SftlabError(
            f"{state_path}: a checkpoint of format {state['format']}, written by another sftlab version; this "
            f"one reads format {FORMAT}: start the run again (or resume it with the sftlab that wrote it)"
        )
    for name, digest in state.get("sha256", {}).items():
        path = checkpoint / name
        if not path.is_file():
            raise SftlabError(f"{checkpoint}: {name} is missing")
        if _sha256(path) != digest:
            raise SftlabError(f"{path}: checksum mismatch, the file is damaged")
    return state


def latest_checkpoint(output_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that reads back intact; damaged newer ones are skipped."""
    problems = []
    for path in reversed(list_checkpoints(output_dir)):
        try:
            return path, read_state(path)
        except SftlabError as error:
            problems.append(str(error))
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise SftlabError(
        f"{output_dir}: no valid checkpoint to resume from in {checkpoints_dir(output_dir)}{detail}"
    )


def resolve_resume(resume: bool | Path | str, output_dir: Path) -> tuple[Path, dict[str, Any]]:
    """`--resume` (latest in output_dir) or `--resume PATH` (a checkpoint, or a run's output folder)."""
    if resume is True:
        return latest_checkpoint(output_dir)
    path = Path(resume)
    if not path.exists():
        raise SftlabError(f"--resume {path}: no such checkpoint")
    if (path / STATE).is_file():
        return path, read_state(path)
    return latest_checkpoint(path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error type for a malformed header
        raise SftlabError(f"{path}: not a readable safetensors file: {error}") from None


def load_optimizer_state(path: Path) -> dict[str, Any]:
    """The optimizer state dict, unpickled with `weights_only=True`: tensors, numbers, strings, lists and
    dicts only, so a checkpoint that smuggles in an object whose unpickling would run code is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError (or others) for anything but plain data
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SftlabError(
            f"{path}: refused to load: not plain tensors and numbers ({reason[:200]})"
        ) from None


def load_rng(checkpoint: Path, rank: int) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    states_path = checkpoint / f"rng-rank{rank}.json"
    tensors_path = checkpoint / f"rng-rank{rank}.safetensors"
    if not states_path.is_file() or not tensors_path.is_file():
        raise SftlabError(
            f"{checkpoint}: no random-number state for process {rank}; resume with as many processes"
        )
    return json.loads(states_path.read_text(encoding="utf-8")), load_tensors(tensors_path)


def remove_checkpoints(output_dir: Path) -> None:
    shutil.rmtree(checkpoints_dir(output_dir), ignore_errors=True)


# --- what a resume may change


# Keys a resume may change without changing the run's numbers: where and how often checkpoints are kept,
# the evaluation batch size (evaluation only; at most the last bits of validation metrics), how many bad
# batches may be skipped, and the device (then equality is only up to floating-point tolerance).
HARMLESS_KEYS = {
    "data.cache_tokenized",
    "output_dir",
    "train.eval_batch_size",
    "train.log_every",
    "train.save_every",
    "train.keep_last",
    "train.skip_nonfinite_batches",
    "train.device",
}


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        flat: dict[str, Any] = {}
        for key, value in values.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): values}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key: saved -> current` for every key that differs and matters."""
    old, new = _flatten(saved), _flatten(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        if key in HARMLESS_KEYS:
            continue
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return lines


def data_fingerprint(tables: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of every split's rows, so a resume notices that a data file changed under the same name."""
    return {
        split: hashlib.sha256(json.dumps(table.rows, sort_keys=True, default=str).encode()).hexdigest()
        for split, table in tables.items()
    }


def refuse_changed_run(
    checkpoint: Path, saved: dict[str, Any], config: dict[str, Any], data: dict[str, str]
) -> None:
    """A resume must continue the same run: any difference that changes the numbers is refused, all listed."""
    differences = config_differences(saved.get("config", {}), config)
    for split in sorted(set(saved.get("data", {})) | set(data)):
        if saved.get("data", {}).get(split) != data.get(split):
            differences.append(f"data ({split} split): its rows changed since the checkpoint")
    if differences:
        raise SftlabError(
            f"--resume {checkpoint}: the config differs from the checkpoint's in what changes the run: "
            f"{'; '.join(differences)} (a resume may change only {', '.join(sorted(HARMLESS_KEYS))})"
        )


def restore_checkpoint(
    checkpoint: Path, saved: dict[str, Any], accelerator: Any, model: Any, optimizer: Any
) -> dict[str, torch.Tensor] | None:
    """Load the weights, optimizer, grad scaler and RNG states into the freshly built run; returns the best
    model's weights. RNG states are restored last, after everything that building the run consumed."""
    unwrapped = accelerator.unwrap_model(model)
    sharded, deepspeed = is_sharded(unwrapped), is_deepspeed(model)
    whole = "whole-model (one process or DDP)"
    kinds = {SHARDED: "FSDP2", DEEPSPEED: "DeepSpeed"}
    saved_kind = next((kind for folder, kind in kinds.items() if (checkpoint / folder).is_dir()), whole)
    run_kind = "FSDP2" if sharded else "DeepSpeed" if deepspeed else whole
    if saved_kind != run_kind:
        raise SftlabError(
            f"{checkpoint}: written by a {saved_kind} run; resume it with the same kind of run (this one is "
            f"{run_kind})"
        )
    best_state = None
    if deepspeed:
        DeepSpeedState(model).load(checkpoint / DEEPSPEED)
        weights = local_weights(model)
        if saved.get("has_best_file"):
            best_state = load_tensors(checkpoint / f"best-rank{accelerator.process_index}.safetensors")
    elif sharded:
        template = None
        if saved.get("has_best_file"):
            template = {key: value.detach().clone() for key, value in unwrapped.state_dict().items()}
        best_state = ShardedState(model, optimizer).load(checkpoint / SHARDED, template)
        weights = unwrapped.state_dict()
    else:
        weights = load_tensors(checkpoint / MODEL)
        try:
            unwrapped.load_state_dict(weights)
        except RuntimeError as error:
            raise SftlabError(
                f"{checkpoint / MODEL}: does not fit the model: {str(error).splitlines()[0]}"
            ) from None
        optimizer.load_state_dict(load_optimizer_state(checkpoint / OPTIMIZER))
        if saved.get("has_best_file"):
            best_state = load_tensors(checkpoint / BEST)
    if accelerator.scaler is not None and saved.get("scaler"):
        accelerator.scaler.load_state_dict(saved["scaler"])
    if best_state is None and saved["best_step"] == saved["step"]:
        best_state = {key: value.detach().clone() for key, value in weights.items()}
    restore_rng(*load_rng(checkpoint, accelerator.process_index))
    return best_state
