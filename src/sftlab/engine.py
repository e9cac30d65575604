"""The training engine: the one loop that every recipe drives (fine-tuning, search trials, model selection,
data checks, few-shot, multi-task and meta-learning all call `fit`).

`fit` takes a task, its encoded examples, the model and the run's config, and trains: forward, loss,
backward, step, schedule, evaluation, best model, checkpoints. It reports to its caller at every evaluation
(`on_evaluation(state, metrics)`, which may ask it to stop: early stopping is one such caller, search
pruning another) and every `train.log_every` steps (`on_log(state, record)`); the caller decides. The run
state is one object, `TrainState`: checkpoints write it and a resume reads it back whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sftlab.checkpoints import (
    DeepSpeedState,
    ShardedState,
    is_deepspeed,
    is_sharded,
    list_checkpoints,
    local_weights,
    restore_checkpoint,
    restore_local_weights,
    save_checkpoint,
)
from sftlab.config import Config
from sftlab.data.batching import plan_steps
from sftlab.distributed import configure_deepspeed
from sftlab.errors import SftlabError
from sftlab.freezing import count_parameters, set_trainable, unfreeze_stage
from sftlab.optim.clipping import clear_folded_clip, clip_gradients
from sftlab.outputs import release_lock, take_lock
from sftlab.recipes.components import make_optimizer, make_schedule, metric_value, trainable_layers
from sftlab.runtime import release_freed_memory
from sftlab.speed import Levers, choose_levers


@dataclass
class TrainState:
    """Everything the loop keeps between steps. A checkpoint holds it whole (`to_json`), a resume reads
    it back whole (`from_json`): a field added here is saved and restored with no other change."""

    step: int = 0
    epoch: int = 0
    stopped: bool = False
    loss_total: float = 0.0
    """Summed training loss since the last evaluation (and its number of terms)."""
    loss_terms: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per evaluation: epoch, step, train loss, the validation metrics."""
    log_history: list[dict[str, Any]] = field(default_factory=list)
    """One record every train.log_every steps and one per evaluation (what trackers receive)."""
    best_value: float | None = None
    best_step: int = 0
    best_epoch: int = 0
    evaluations_since_best: int = 0
    nonfinite_skipped: int = 0
    schedule: dict[str, Any] | None = None
    """An adaptive schedule's own state (reduce_on_plateau's level)."""
    interval: dict[str, float] = field(default_factory=lambda: dict.fromkeys(INTERVAL, 0.0))
    """Sums since the last log record: loss, loss terms, examples, tokens, seconds."""
    total_steps: int = 0
    """The run's planned optimizer steps (epochs x steps per epoch), so callbacks can tell the last
    evaluation; `fit` sets it from the plan at every start, so checkpoints do not hold it."""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("total_steps")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path | str) -> TrainState:
        names = {f.name for f in dataclasses.fields(cls)} - {"total_steps"}
        missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise SftlabError(
                f"{where}: the run state does not match this sftlab's "
                f"(missing {', '.join(missing) or 'nothing'}; unknown {', '.join(unknown) or 'nothing'})"
            )
        return cls(**data)


INTERVAL = ("loss", "terms", "examples", "tokens", "seconds")

OnEvaluation = Callable[[TrainState, dict[str, Any]], bool | None]
OnLog = Callable[[TrainState, dict[str, Any]], None]


@dataclass
class Fitted:
    state: TrainState
    model: Any
    """The model as prepared by the accelerator (wrapped for DDP/FSDP), holding the best weights."""
    levers: Levers
    parameters: dict[str, int]
    """trainable (ever), trainable at start, total."""


def fit(
    task: Any,
    encoded: dict[str, list[dict[str, Any]]],
    model: Any,
    config: Config,
    accelerator: Any,
    precision: str,
    pad_id: int,
    *,
    output_dir: Path | None = None,
    overwrite: bool = False,
    resume: tuple[Path, dict[str, Any]] | None = None,
    state: TrainState | None = None,
    on_evaluation: OnEvaluation | None = None,
    on_log: OnLog | None = None,
    echo: bool = True,
    where: Callable[[int], str] = str,
    plan: Callable[..., list[list[list[int]]]] | None = None,
    fingerprint: dict[str, str] | None = None,
) -> Fitted:
    """Train `model` on `encoded["train"]`, evaluating on `encoded["validation"]`, as `config` says.

    `output_dir`: checkpoints go to its `checkpoints/` (locked against a second writer); None trains in
    memory with no checkpoints. `resume`: a checkpoint and its state.json to continue from exactly.
    `state`: the object the run state lives in (a TrainState, or a subclass with fields of its own).
    `where(i)`: names training example i in error messages ("train.csv line 12"). `plan(epoch=e)`: the
    step plan (a list of steps, each a list of micro-batches of example indices), by default
    length-grouped batches of train.batch_size. `fingerprint`: the data's digest, kept in checkpoints so a
    resume can refuse changed data. Returns the state and the (prepared) model with the best weights."""
    # Only the main process prints: N processes would print every line N times.
    echo = echo and accelerator.is_main_process
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)
    train_cfg, state = config.train, state or TrainState()
    train_set = encoded["train"]
    # Frozen-for-good parameters stay out of the optimizer; gradually unfrozen ones are in it from the start
    # (requires_grad toggles them: the optimizer skips a parameter without a gradient).
    trainable = trainable_layers(model, config)
    trainable_at_start, total_params = count_parameters(model)
    trained_params = sum(p.numel() for _, parameters in trainable.layers for _, p in parameters)
    recorded = resume[1].get("levers") if resume is not None else None
    levers = choose_levers(train_cfg, model, trainable, accelerator.num_processes, accelerator.device,
                           (example["input_ids"] for example in train_set), config.optim.name,
                           config.optim.weight_decay, recorded)  # fmt: skip
    optimizer = make_optimizer(trainable, config)
    unwrapped = model
    configure_deepspeed(accelerator, train_cfg.batch_size, train_cfg.gradient_accumulation_steps,
                        train_cfg.max_grad_norm)  # fmt: skip
    model, optimizer = accelerator.prepare(model, optimizer)
    # DeepSpeed: its engine applies the step (and clips) itself, at the boundary sftlab sets (see backward).
    deepspeed = is_deepspeed(model)

    counts = [task.target_count(example) for example in train_set]
    plan = plan or functools.partial(
        plan_steps, [len(example["input_ids"]) for example in train_set], train_cfg.batch_size,
        train_cfg.gradient_accumulation_steps, train_cfg.micro_batch_size, train_cfg.group_by_length,
        train_cfg.seed, rank=accelerator.process_index, world_size=accelerator.num_processes,
        batch_tokens=train_cfg.batch_tokens, chunk_batches=train_cfg.group_chunk_batches,
    )  # fmt: skip
    # Step counts come from the sharded plan, after prepare(): sharding changes how many steps each process takes.
    steps_per_epoch = len(plan(epoch=0))
    total_steps = steps_per_epoch * train_cfg.epochs
    metric_for_best = train_cfg.metric_for_best or task.main_metric
    lower_is_better = metric_for_best == "loss"
    schedule = make_schedule(config, total_steps, steps_per_epoch, metric_for_best)
    plateau_metric = config.schedule.plateau_metric or metric_for_best
    splits = ", ".join(f"{split} {len(examples)}" for split, examples in encoded.items())
    log(
        f"sftlab: {config.task} | model {config.model} | {splits} | {trainable_at_start:,} of {total_params:,} parameters "
        f"trainable | {precision} on {accelerator.device}, {processes_text(accelerator)} | "
        f"{train_cfg.epochs} epochs x {steps_per_epoch} steps"
    )
    log(levers.describe())
    levers.start(train_set, functools.partial(task.collate, pad_token_id=pad_id), train_cfg.eval_batch_size,
                 accelerator.device, accelerator.autocast, precision)  # fmt: skip

    def evaluate() -> dict[str, Any]:
        levers.sync()
        return task.evaluate(model, encoded["validation"], pad_id, train_cfg.eval_batch_size,
                             accelerator.device, accelerator.autocast)  # fmt: skip

    best_weights: dict[str, torch.Tensor] | None = None

    def checkpoint_now() -> None:
        # Everything the loop needs to continue as if never stopped; the plan itself needs only `step`.
        if output_dir is None or train_cfg.keep_last == 0:
            return
        levers.sync()
        state.schedule = schedule.state_dict() if hasattr(schedule, "state_dict") else None
        record = {
            **state.to_json(), "run_fields": sorted(state.to_json()),
            "levers": {d.lever: d.on for d in levers.decisions}, "precision": precision,
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "config": config.to_yaml_dict(), "data": fingerprint,
        }  # fmt: skip
        if is_sharded(model):  # FSDP2: every process writes its own shards
            weights, moments = ShardedState(model, optimizer), None
        elif deepspeed:  # DeepSpeed: every process writes its own ZeRO partitions
            weights, moments = DeepSpeedState(model), None
        else:
            weights, moments = accelerator.unwrap_model(model).state_dict(), optimizer.state_dict()
        best = best_weights if state.best_step != state.step else None
        save_checkpoint(
            accelerator, output_dir, state.step, weights, moments, best, record, train_cfg.keep_last
        )

    # --- start, or continue from a checkpoint: weights, optimizer, RNGs, the run state, best model
    if resume is not None:
        checkpoint, saved = resume
        best_weights = restore_checkpoint(checkpoint, saved, accelerator, model, optimizer)
        levers.restored()
        state = type(state).from_json({k: saved[k] for k in saved["run_fields"] if k in saved},
                                      checkpoint / "state.json")  # fmt: skip
        if state.schedule is not None:  # reduce_on_plateau's adapted level
            schedule.load_state_dict(state.schedule)
        log(f"resumed from {checkpoint} at step {state.step} of {total_steps}")
    state.total_steps = total_steps

    # --- the output dir is created (and locked against a second run) only now that all input checked out
    accelerator.wait_for_everyone()
    if output_dir is not None and accelerator.is_main_process:
        take_lock(output_dir, overwrite)

    def forward_backward(micro_batches: list[list[int]]) -> tuple[float, int, int, int]:
        """One optimizer step's forward and backward passes: summed loss, its terms, examples, tokens."""
        # Normalize by the real number of loss terms in the whole step, across micro-batches and processes,
        # so K accumulated micro-batches give exactly the update of one batch K times larger. DDP averages
        # gradients over processes, hence the factor num_processes.
        step_terms = sum(counts[i] for indices in micro_batches for i in indices)
        step_terms = int(accelerator.reduce(torch.tensor(step_terms, device=accelerator.device), "sum"))
        scale = accelerator.num_processes / step_terms
        sums = [0.0, 0, 0, 0]
        for index, indices in enumerate(micro_batches):
            batch = {
                key: value.to(accelerator.device)
                for key, value in task.collate([train_set[i] for i in indices], pad_id).items()
            }
            # Gradients are exchanged between processes only on a step's last micro-batch.
            last = index == len(micro_batches) - 1
            with (
                contextlib.nullcontext() if last else accelerator.no_sync(model),
                accelerator.autocast(),
                levers.micro_batch(indices, batch),
            ):
                loss_sum, terms = task.forward_loss(model, batch)
            if deepspeed:
                # The step's boundary is sftlab's (an uneven last step has fewer micro-batches), and the loss
                # is normalised already: DeepSpeed must not divide it by its gradient_accumulation_steps.
                model.set_gradient_accumulation_boundary(last)
                model.backward(loss_sum * scale, scale_wrt_gas=False)
            else:
                accelerator.backward(loss_sum * scale)
            for position, value in enumerate(
                (loss_sum.item(), terms, len(indices), int(batch["attention_mask"].sum()))
            ):
                sums[position] += value
        # The step's loss and counts (logged, checked for NaN) are the whole step's, over all processes.
        if accelerator.num_processes > 1:
            totals = torch.tensor(sums, dtype=torch.float64, device=accelerator.device)
            sums = accelerator.reduce(totals, "sum").tolist()
        return sums[0], int(sums[1]), int(sums[2]), int(sums[3])

    def keep_best(metrics: dict[str, Any]) -> bool:
        """Track the best evaluation; True when this one is it."""
        nonlocal best_weights
        value = metric_value(metrics, metric_for_best, "train.metric_for_best")
        if hasattr(schedule, "observe"):  # reduce_on_plateau adapts at evaluations
            schedule.observe(metric_value(metrics, plateau_metric, "schedule.plateau_metric"))
        if state.best_value is not None and not (
            value < state.best_value if lower_is_better else value > state.best_value
        ):
            state.evaluations_since_best += 1
            return False
        # The best model is the current one: copied only if another update follows (see the step), so a
        # run whose last evaluation is its best never holds a second copy of the weights.
        state.best_value, state.best_step, state.best_epoch = value, state.step, state.epoch + 1
        best_weights, state.evaluations_since_best = None, 0
        return True

    # --- fit
    from tqdm.auto import tqdm

    progress = tqdm(total=total_steps, initial=state.step, file=sys.stderr, dynamic_ncols=True,
                    disable=None if accelerator.is_main_process else True)  # fmt: skip
    quiet = not (echo and accelerator.is_main_process)
    say = (lambda text: None) if quiet else functools.partial(progress.write, file=sys.stdout)
    stage = 0

    def unfreeze_when_due() -> None:
        """Gradual unfreezing: make the stage this step belongs to trainable."""
        nonlocal stage
        wanted = min(unfreeze_stage(state.step, state.epoch, config.freeze.unfreeze_every,
                                    config.freeze.unfreeze_unit), len(trainable.stages) - 1)  # fmt: skip
        if wanted != stage:
            stage = wanted
            set_trainable(unwrapped, trainable.stages[stage])
            say(f"step {state.step}: gradual unfreezing stage {stage}, "
                f"{count_parameters(unwrapped)[0]:,} parameters trainable")  # fmt: skip

    def update(micro_batches: list[list[int]], sums: tuple[float, int, int, int], grad_norm: Any) -> bool:
        """Apply the step's gradients, or skip a non-finite batch (or stop the run); True when applied."""
        nonlocal best_weights
        # A NaN/inf loss or gradient is caught at the step it happens (fp16's scaler skips inf gradients
        # itself); all processes agree, so they skip or stop together.
        fault = nonfinite_fault(sums[0], grad_norm, accelerator)
        if fault is None:
            # A best model without a copy is the current weights, which are about to change: copy them.
            if state.best_value is not None and best_weights is None:
                levers.sync()
                if deepspeed:  # this process's part of the weights (its partition under ZeRO-3)
                    best_weights = local_weights(model)
                else:
                    weights = accelerator.unwrap_model(model).state_dict()
                    best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
            if deepspeed:
                model.step()
            else:
                optimizer.step()
            levers.stepped(optimizer)
            state.loss_total += sums[0]
            state.loss_terms += sums[1]
            state.examples_seen += sums[2]
            state.tokens_seen += sums[3]
        elif state.nonfinite_skipped < train_cfg.skip_nonfinite_batches and not deepspeed:
            # (DeepSpeed holds the step's reduced gradients in its partitions: no skipping there.)
            state.nonfinite_skipped += 1
            log(f"step {state.step + 1}: {fault}; skipped the batch ({state.nonfinite_skipped} of "
                f"train.skip_nonfinite_batches={train_cfg.skip_nonfinite_batches})")  # fmt: skip
        else:
            if output_dir is not None:
                release_lock(output_dir)
            raise SftlabError(nonfinite_message(
                fault, state.step + 1, state.epoch + 1, precision, train_cfg.learning_rate,
                [where(i) for m in micro_batches for i in m],
                list_checkpoints(output_dir) if output_dir is not None else [],
            ))  # fmt: skip
        clear_folded_clip(optimizer)
        optimizer.zero_grad(set_to_none=True)
        return fault is None

    def evaluation_point() -> None:
        """Evaluate, keep the best model, checkpoint, and let early stopping and the caller decide."""
        if state.step == total_steps:  # training is over: its scratch memory and the cache's go back
            levers.prefix = None
            release_freed_memory()
        metrics = evaluate()
        improved = keep_best(metrics)
        train_loss = state.loss_total / max(1, state.loss_terms)
        summary = {key: v for key, v in metrics.items() if not isinstance(v, dict)}
        state.history.append(
            {"epoch": state.epoch + 1, "step": state.step, "train_loss": train_loss, **summary}
        )
        record = {"step": state.step, "epoch": round(state.step / steps_per_epoch, 4)}
        record.update({f"validation/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
        state.log_history.append(record)
        say(
            f"epoch {state.epoch + 1}/{train_cfg.epochs} step {state.step}: train loss {train_loss:.4f} | "
            f"validation loss {metrics['loss']:.4f}, {task.epoch_summary(metrics)}"
            f"{' (best)' if improved else ''} | {state.examples_seen / state.train_seconds:.1f} samples/s"
        )
        state.loss_total, state.loss_terms = 0.0, 0
        if on_log is not None:
            on_log(state, record)
        if train_cfg.patience is not None and state.evaluations_since_best >= train_cfg.patience:
            log(f"early stop: {metric_for_best} did not improve for {train_cfg.patience} evaluations")
            state.stopped = True
        if on_evaluation is not None:
            state.stopped = agree(bool(on_evaluation(state, metrics)), accelerator) or state.stopped
        checkpoint_now()

    start_epoch, every = state.step // steps_per_epoch, train_cfg.eval_every
    for state.epoch in range(start_epoch, train_cfg.epochs):
        if state.stopped:
            break
        epoch_steps = plan(epoch=state.epoch)
        # A resumed run starts mid-epoch: the plan is a pure function of (seed, epoch), so skipping is O(1).
        first = state.step - state.epoch * steps_per_epoch if state.epoch == start_epoch else 0
        for position_in_epoch in range(first, len(epoch_steps)):
            started = time.perf_counter()
            model.train()
            if trainable.stages:
                unfreeze_when_due()
            for group in optimizer.param_groups:
                group["lr"] = group["peak_lr"] * schedule(state.step)
            sums = forward_backward(epoch_steps[position_in_epoch])
            grad_norm = None
            if train_cfg.max_grad_norm is not None and not deepspeed:
                grad_norm = clip_gradients(model, optimizer, accelerator, train_cfg.max_grad_norm)
            applied = update(epoch_steps[position_in_epoch], sums, grad_norm)
            if deepspeed:  # the norm DeepSpeed computed (and clipped by) in its step
                grad_norm = model.get_global_grad_norm()
            state.step += 1
            seconds = time.perf_counter() - started
            state.train_seconds += seconds
            if applied:
                interval_add(state, *sums, seconds)
            if state.step % train_cfg.log_every == 0:
                record = log_record(state, steps_per_epoch, train_cfg.learning_rate * schedule(state.step - 1),
                                    grad_norm)  # fmt: skip
                if on_log is not None:
                    on_log(state, record)
            progress.update(1)
            progress.set_postfix(
                loss=f"{state.loss_total / max(1, state.loss_terms):.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                samples_s=f"{state.examples_seen / state.train_seconds:.1f}", refresh=False,
            )  # fmt: skip
            end_of_epoch = position_in_epoch == len(epoch_steps) - 1
            due = end_of_epoch if every == "epoch" else state.step % int(every) == 0
            if due or state.step == total_steps:
                evaluation_point()
                if state.stopped:
                    break
            elif train_cfg.save_every is not None and state.step % train_cfg.save_every == 0:
                checkpoint_now()
    progress.close()
    levers.sync()
    levers.end_training()
    # Training is over: the optimizer's moments and the gradients are not needed for evaluating and saving.
    optimizer.zero_grad(set_to_none=True)
    optimizer.state.clear()
    if best_weights is not None and deepspeed:
        restore_local_weights(model, best_weights)
    elif best_weights is not None:
        accelerator.unwrap_model(model).load_state_dict(best_weights)
    parameters = {"trained": trained_params, "trainable_at_start": trainable_at_start, "total": total_params}
    return Fitted(state, model, levers, parameters)


def processes_text(accelerator: Any) -> str:
    """'1 process' or '2 processes (MULTI_CPU, gloo)'."""
    count = accelerator.num_processes
    if count == 1:
        return "1 process"
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "?"
    return f"{count} processes ({accelerator.distributed_type.value}, {backend})"


def interval_add(
    state: TrainState, loss: float, terms: int, examples: int, tokens: int, seconds: float
) -> None:
    for key, value in zip(INTERVAL, (loss, terms, examples, tokens, seconds), strict=True):
        state.interval[key] += value


def log_record(
    state: TrainState, steps_per_epoch: int, learning_rate: float, grad_norm: Any
) -> dict[str, Any]:
    """The per-interval training record (flat scalars, what trackers take). `log_history` keeps what defines
    the run (loss, learning rate, gradient norm), so a resumed run's is the uninterrupted run's; the record
    returned for `on_log` adds the interval's throughput."""
    sums = state.interval
    record = {
        "step": state.step,
        "epoch": round(state.step / steps_per_epoch, 4),
        "train/loss": sums["loss"] / sums["terms"] if sums["terms"] else float("nan"),
        "train/learning_rate": learning_rate,
        "train/grad_norm": float(grad_norm) if grad_norm is not None else None,
    }
    state.log_history.append(record)
    seconds = sums["seconds"] or float("nan")
    timing = {
        "train/samples_per_s": sums["examples"] / seconds,
        "train/tokens_per_s": sums["tokens"] / seconds,
    }
    state.interval = dict.fromkeys(INTERVAL, 0.0)
    return {**record, **timing}


def agree(flag: bool, accelerator: Any) -> bool:
    """True on every process when it is true on any (so all processes stop together)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor(int(flag), device=accelerator.device), "max"))


def nonfinite_fault(step_loss: float, grad_norm: Any, accelerator: Any) -> str | None:
    """'loss is nan', 'gradient norm is inf', ... or None; the same answer on every process."""
    fault = 0 if math.isfinite(step_loss) else 1
    if fault == 0 and grad_norm is not None and accelerator.scaler is None:
        fault = 0 if math.isfinite(float(grad_norm)) else 2
    fault = int(accelerator.reduce(torch.tensor(fault, device=accelerator.device), "max"))
    if fault == 1:
        return (
            f"training loss is {step_loss}" if not math.isfinite(step_loss) else "training loss is not finite"
        )
    if fault == 2:
        return "gradient norm is not finite"
    return None


def nonfinite_message(fault: str, step: int, epoch: int, precision: str, learning_rate: float,
                      examples: list[str], checkpoints: list[Path]) -> str:  # fmt: skip
    """One line: where it happened, the likely causes, and what is kept."""
    causes = [f"a learning rate too high (train.learning_rate={learning_rate:g})"]
    if precision == "fp16":
        causes.insert(0, "fp16 overflow (try train.precision=bf16 or fp32)")
    shown = ", ".join(examples[:3]) + (f" and {len(examples) - 3} more" if len(examples) > 3 else "")
    causes.append(f"a bad example or target in this batch ({shown})")
    kept = (
        f"the last good checkpoint {checkpoints[-1]} is kept"
        if checkpoints
        else "no checkpoint was written yet"
    )
    return (
        f"step {step} (epoch {epoch}): {fault}; likely {', or '.join(causes)}; {kept}; "
        "train.skip_nonfinite_batches=K skips up to K such batches"
    )
