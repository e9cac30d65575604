"""Fine-tune a pretrained model for a task: setup -> fit -> evaluate -> save, top to bottom.

The whole training loop is in `finetune`; task specifics (head, collate, loss, metrics) come from the
task object, every other piece is a plain function from the library.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sftlab.adapters import save_model
from sftlab.checkpoints import (
    data_fingerprint,
    list_checkpoints,
    refuse_changed_run,
    remove_checkpoints,
    resolve_resume,
    restore_checkpoint,
    save_checkpoint,
)  # fmt: skip
from sftlab.config import Config, save_config
from sftlab.data.batching import plan_steps
from sftlab.data.loading import load_tables
from sftlab.data.token_cache import encode_cached
from sftlab.embedding_rows import used_rows
from sftlab.errors import SftlabError
from sftlab.fast_dropout import use_fast_dropout
from sftlab.first_token import first_token_top, supports_first_token_top
from sftlab.freezing import count_parameters, set_trainable, unfreeze_stage
from sftlab.models import load_tokenizer, locate_model, quiet_transformers
from sftlab.optim.clipping import clear_folded_clip, clip_gradients
from sftlab.outputs import check_output_dir, release_lock, staged_output, take_lock
from sftlab.prefix_cache import compute_prefix, frozen_prefix_depth, pad_prefix, run_from_prefix
from sftlab.recipes.components import make_optimizer, make_schedule, metric_value, trainable_layers
from sftlab.runtime import make_accelerator, release_freed_memory, set_seed
from sftlab.tasks import task_class
from sftlab.unpadded import supports_unpadded, unpadded_encoder


@dataclass
class FinetuneResult:
    output_dir: Path
    metrics: dict[str, Any]
    """Metrics on the report split (test when there is one, else validation), plus training figures."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Validation metrics at each evaluation."""
    report: str = ""


def finetune(
    config: Config, overwrite: bool = False, echo: bool = True, resume: bool | Path | str = False
) -> FinetuneResult:
    """Train as `config` says. `resume`: True continues from the latest checkpoint in output_dir, a path
    from that checkpoint (or run folder); the resumed run ends exactly where an uninterrupted one would."""
    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)

    # --- setup: everything that can be wrong with the input fails here, before the output dir is touched
    check_output_dir(config.output_dir, overwrite, resume=bool(resume))
    checkpoint, saved = resolve_resume(resume, config.output_dir) if resume else (None, {})
    tables = load_tables(config.data)
    fingerprint = data_fingerprint(tables)
    if checkpoint is not None:
        refuse_changed_run(checkpoint, saved, config.to_yaml_dict(), fingerprint)
    task = task_class(config.task).from_config(config, tables)
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    encoded = encode_cached(task, tokenizer, tables, config, fingerprint)
    if len(tables["validation"]) == 0:
        raise SftlabError(
            f"{tables['train'].path}: too few rows to hold out a validation split; set data.validation"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    train_cfg = config.train
    accelerator, precision = make_accelerator(train_cfg.device, train_cfg.precision)
    set_seed(train_cfg.seed)
    model = task.load_model(location, config)
    # Frozen-for-good parameters stay out of the optimizer; gradually unfrozen ones are in it from the start
    # (requires_grad toggles them: the optimizer skips a parameter without a gradient).
    trainable = trainable_layers(model, config)
    trainable_at_start, total_params = count_parameters(model)
    trained_params = sum(p.numel() for _, parameters in trainable.layers for _, p in parameters)
    # The word-embedding rows the training data never uses would not move: the optimizer holds only the used.
    rows = None
    if train_cfg.used_embedding_rows and not trainable.stages and accelerator.num_processes == 1:
        rows = used_rows(model, (example["input_ids"] for example in encoded["train"]), trainable.layers,
                         config.optim.name, config.optim.weight_decay)  # fmt: skip
    optimizer = make_optimizer(trainable, config)
    unwrapped = model
    model, optimizer = accelerator.prepare(model, optimizer)

    train_set = encoded["train"]
    lengths = [len(example["input_ids"]) for example in train_set]
    counts = [task.target_count(example) for example in train_set]
    plan = functools.partial(
        plan_steps, lengths, train_cfg.batch_size, train_cfg.gradient_accumulation_steps, train_cfg.micro_batch_size,
        train_cfg.group_by_length, train_cfg.seed, rank=accelerator.process_index, world_size=accelerator.num_processes,
        batch_tokens=train_cfg.batch_tokens, chunk_batches=train_cfg.group_chunk_batches,
    )  # fmt: skip
    # Step counts come from the sharded plan, after prepare(): sharding changes how many steps each process takes.
    steps_per_epoch = len(plan(epoch=0))
    total_steps = steps_per_epoch * train_cfg.epochs
    metric_for_best = train_cfg.metric_for_best or task.main_metric
    lower_is_better = metric_for_best == "loss"
    schedule = make_schedule(config, total_steps, steps_per_epoch, metric_for_best)
    plateau_metric = config.schedule.plateau_metric or metric_for_best
    stage = 0
    splits = ", ".join(f"{split} {len(examples)}" for split, examples in encoded.items())
    if getattr(task, "setup_note", ""):
        log(f"sftlab: {task.setup_note}")
    log(
        f"sftlab: {config.task} | model {config.model} | {splits} | {trainable_at_start:,} of {total_params:,} parameters "
        f"trainable | {precision} on {accelerator.device} | {train_cfg.epochs} epochs x {steps_per_epoch} steps"
    )

    def up_to_date() -> None:
        # The full embedding table gets the trained rows before anything reads the model.
        if rows is not None:
            rows.sync()

    def evaluate(split: str) -> dict[str, Any]:
        up_to_date()
        return task.evaluate(
            model, encoded[split], pad_id, train_cfg.eval_batch_size, accelerator.device, accelerator.autocast
        )

    def checkpoint_now() -> None:
        # Everything the loop below needs to continue as if never stopped; the plan itself needs only `step`.
        if train_cfg.keep_last == 0:
            return
        up_to_date()
        state = {
            "step": step, "epoch": epoch, "stopped": stop, "loss_total": loss_total, "loss_terms": loss_terms,
            "examples_seen": examples_seen, "tokens_seen": tokens_seen, "train_seconds": train_seconds,
            "history": history, "best": {k: v for k, v in best.items() if k != "state"},
            "evaluations_since_best": evaluations_since_best, "nonfinite_skipped": nonfinite_skipped,
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "schedule": schedule.state_dict() if hasattr(schedule, "state_dict") else None,
            "config": config.to_yaml_dict(), "data": fingerprint,
        }  # fmt: skip
        save_checkpoint(
            accelerator, config.output_dir, step, accelerator.unwrap_model(model).state_dict(),
            optimizer.state_dict(), best["state"] if best["step"] != step else None, state, train_cfg.keep_last,
        )  # fmt: skip

    # Frozen-prefix cache: the frozen bottom's output for each training example, computed once (eval mode).
    prefix_depth = 0
    if train_cfg.cache_frozen_prefix and not trainable.stages and accelerator.num_processes == 1:
        prefix_depth = frozen_prefix_depth(unwrapped)
    prefix = None
    if prefix_depth:
        collate = functools.partial(task.collate, pad_token_id=pad_id)
        prefix = compute_prefix(unwrapped, train_set, prefix_depth, collate, train_cfg.eval_batch_size,
                                accelerator.device, accelerator.autocast,
                                torch.bfloat16 if precision == "bf16" else torch.float32)  # fmt: skip
        log(
            f"frozen-prefix cache: embeddings and blocks 0-{prefix_depth - 1} computed once for {len(prefix)} examples"
        )

    # A classification head that reads only the first token: the top block computes just that position.
    first_token = (
        train_cfg.first_token_top and accelerator.num_processes == 1 and supports_first_token_top(unwrapped)
    )
    # Encoders whose blocks can skip padding: matrix products over the real tokens only.
    unpad = train_cfg.unpad and accelerator.num_processes == 1 and supports_unpadded(unwrapped)
    # CPU dropout with a quarter of the random draws (CUDA's own dropout is already fast).
    restore_dropout = None
    if train_cfg.fast_dropout and accelerator.device.type == "cpu":
        _, restore_dropout = use_fast_dropout(unwrapped)

    def top_context(attention_mask: torch.Tensor) -> Any:
        if unpad and bool(attention_mask[:, 0].all()):  # right padding: position 0 is real in every row
            return unpadded_encoder(unwrapped, attention_mask)
        return first_token_top(unwrapped) if first_token else contextlib.nullcontext()

    # --- start, or continue from a checkpoint: weights, optimizer, RNGs, counters, best model
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"value": None, "step": 0, "epoch": 0, "state": None}
    evaluations_since_best, nonfinite_skipped = 0, 0
    step, train_seconds, examples_seen, tokens_seen = 0, 0.0, 0, 0
    loss_total, loss_terms = 0.0, 0
    stop = False
    if checkpoint is not None:
        best_state = restore_checkpoint(checkpoint, saved, accelerator, model, optimizer)
        if rows is not None:  # the compact rows from the restored table
            rows.reload()
        best = {**saved["best"], "state": best_state}
        history, stop = saved["history"], saved["stopped"]
        evaluations_since_best, nonfinite_skipped = (
            saved["evaluations_since_best"],
            saved["nonfinite_skipped"],
        )
        step, train_seconds = saved["step"], saved["train_seconds"]
        examples_seen, tokens_seen = saved["examples_seen"], saved["tokens_seen"]
        loss_total, loss_terms = saved["loss_total"], saved["loss_terms"]
        if saved.get("schedule") is not None:  # reduce_on_plateau's adapted level
            schedule.load_state_dict(saved["schedule"])
        log(f"resumed from {checkpoint} at step {step} of {total_steps}")

    # --- the output dir is created (and locked against a second run) only now that all input checked out
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        take_lock(config.output_dir, overwrite)

    # --- fit
    from tqdm.auto import tqdm

    progress = tqdm(
        total=total_steps,
        initial=step,
        disable=None if accelerator.is_main_process else True,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    start_epoch = step // steps_per_epoch
    for epoch in range(start_epoch, train_cfg.epochs):
        if stop:
            break
        epoch_steps = plan(epoch=epoch)
        # A resumed run starts mid-epoch: the plan is a pure function of (seed, epoch), so skipping is O(1).
        first = step - epoch * steps_per_epoch if epoch == start_epoch else 0
        for position_in_epoch in range(first, len(epoch_steps)):
            micro_batches = epoch_steps[position_in_epoch]
            started = time.perf_counter()
            model.train()
            if trainable.stages:
                wanted = min(unfreeze_stage(step, epoch, config.freeze.unfreeze_every, config.freeze.unfreeze_unit),
                             len(trainable.stages) - 1)  # fmt: skip
                if wanted != stage:
                    stage = wanted
                    set_trainable(unwrapped, trainable.stages[stage])
                    if echo and accelerator.is_main_process:
                        progress.write(f"step {step}: gradual unfreezing stage {stage}, "
                                       f"{count_parameters(unwrapped)[0]:,} parameters trainable", file=sys.stdout)  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = group["peak_lr"] * schedule(step)
            # Normalize by the real number of loss terms in the whole step, across micro-batches and processes,
            # so K accumulated micro-batches give exactly the update of one batch K times larger. DDP averages
            # gradients over processes, hence the factor num_processes.
            step_terms = sum(counts[i] for indices in micro_batches for i in indices)
            step_terms = int(accelerator.reduce(torch.tensor(step_terms, device=accelerator.device), "sum"))
            scale = accelerator.num_processes / step_terms
            step_loss, step_loss_terms, step_examples, step_tokens = 0.0, 0, 0, 0
            for index, indices in enumerate(micro_batches):
                batch = {
                    key: value.to(accelerator.device)
                    for key, value in task.collate([train_set[i] for i in indices], pad_id).items()
                }
                # Gradients are exchanged between processes only on a step's last micro-batch.
                last = index == len(micro_batches) - 1
                from_prefix = (
                    run_from_prefix(
                        unwrapped,
                        prefix_depth,
                        pad_prefix(prefix, indices, batch["input_ids"].shape[1]).to(accelerator.device),
                    )
                    if prefix is not None
                    else contextlib.nullcontext()
                )
                with (
                    contextlib.nullcontext() if last else accelerator.no_sync(model),
                    accelerator.autocast(),
                    from_prefix,
                    top_context(batch["attention_mask"]),
                    rows.training() if rows is not None else contextlib.nullcontext(),
                ):
                    loss_sum, terms = task.forward_loss(model, batch)
                accelerator.backward(loss_sum * scale)
                step_loss += loss_sum.item()
                step_loss_terms += terms
                step_examples += len(indices)
                step_tokens += int(batch["attention_mask"].sum())
            grad_norm = None
            if train_cfg.max_grad_norm is not None:
                grad_norm = clip_gradients(model, optimizer, accelerator, train_cfg.max_grad_norm)
            # A NaN/inf loss or gradient is caught at the step it happens (fp16's scaler skips inf gradients
            # itself); all processes agree, so they skip or stop together.
            fault = nonfinite_fault(step_loss, grad_norm, accelerator)
            if fault is None:
                # A best model without a copy is the current weights, which are about to change: copy them.
                if best["value"] is not None and best["state"] is None:
                    up_to_date()
                    state = accelerator.unwrap_model(model).state_dict()
                    best["state"] = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
                optimizer.step()
                if rows is not None:
                    rows.stepped(optimizer)
                loss_total += step_loss
                loss_terms += step_loss_terms
                examples_seen += step_examples
                tokens_seen += step_tokens
            elif nonfinite_skipped < train_cfg.skip_nonfinite_batches:
                nonfinite_skipped += 1
                log(
                    f"step {step + 1}: {fault}; skipped the batch "
                    f"({nonfinite_skipped} of train.skip_nonfinite_batches={train_cfg.skip_nonfinite_batches})"
                )
            else:
                release_lock(config.output_dir)
                raise SftlabError(
                    nonfinite_message(fault, step + 1, epoch + 1, precision, train_cfg.learning_rate,
                                      [tables["train"].where(i) for m in micro_batches for i in m],
                                      list_checkpoints(config.output_dir))
                )  # fmt: skip
            clear_folded_clip(optimizer)
            optimizer.zero_grad(set_to_none=True)
            step += 1
            train_seconds += time.perf_counter() - started
            progress.update(1)
            progress.set_postfix(
                loss=f"{loss_total / max(1, loss_terms):.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                samples_s=f"{examples_seen / train_seconds:.1f}", refresh=False,
            )  # fmt: skip

            end_of_epoch = position_in_epoch == len(epoch_steps) - 1
            due = end_of_epoch if train_cfg.eval_every == "epoch" else step % int(train_cfg.eval_every) == 0
            if not (due or step == total_steps):
                if train_cfg.save_every is not None and step % train_cfg.save_every == 0:
                    checkpoint_now()
                continue
            # --- evaluate, keep the best model, maybe stop early
            if step == total_steps:  # training is over: its scratch memory and the cache's go back
                prefix = None
                release_freed_memory()
            metrics = evaluate("validation")
            value = metric_value(metrics, metric_for_best, "train.metric_for_best")
            if hasattr(schedule, "observe"):  # reduce_on_plateau adapts at evaluations
                schedule.observe(metric_value(metrics, plateau_metric, "schedule.plateau_metric"))
            improved = best["value"] is None or (
                value < best["value"] if lower_is_better else value > best["value"]
            )
            if improved:
                # The best model is the current one: copied only if another update follows (see above), so
                # a run whose last evaluation is its best never holds a second copy of the weights.
                best = {"value": value, "step": step, "epoch": epoch + 1, "state": None}
                evaluations_since_best = 0
            else:
                evaluations_since_best += 1
            summary = {key: v for key, v in metrics.items() if not isinstance(v, dict)}
            history.append(
                {"epoch": epoch + 1, "step": step, "train_loss": loss_total / max(1, loss_terms), **summary}
            )
            if echo and accelerator.is_main_process:
                progress.write(
                    f"epoch {epoch + 1}/{train_cfg.epochs} step {step}: train loss {loss_total / max(1, loss_terms):.4f} | "
                    f"validation loss {metrics['loss']:.4f}, {task.epoch_summary(metrics)}"
                    f"{' (best)' if improved else ''} | {examples_seen / train_seconds:.1f} samples/s",
                    file=sys.stdout,
                )
            loss_total, loss_terms = 0.0, 0
            if train_cfg.patience is not None and evaluations_since_best >= train_cfg.patience:
                log(f"early stop: {metric_for_best} did not improve for {train_cfg.patience} evaluations")
                stop = True
            checkpoint_now()
            if stop:
                break
    progress.close()
    up_to_date()
    if restore_dropout is not None:
        restore_dropout()
    # Training is over: the optimizer's moments and the gradients are not needed for evaluating and saving.
    optimizer.zero_grad(set_to_none=True)
    optimizer.state.clear()

    # --- final evaluation of the best model, then save
    if best["state"] is not None:
        accelerator.unwrap_model(model).load_state_dict(best["state"])
    report_split = "test" if "test" in encoded else "validation"
    if hasattr(task, "tune_on_validation"):  # e.g. QA's null threshold, fixed on validation before the test
        up_to_date()
        note = task.tune_on_validation(accelerator.unwrap_model(model), encoded["validation"], pad_id,
                                       train_cfg.eval_batch_size, accelerator.device, accelerator.autocast)  # fmt: skip
        if note:
            log(f"sftlab: {note}")
    final = evaluate(report_split)
    final.update(
        split=report_split,
        train_runtime_s=round(train_seconds, 3),
        train_samples_per_s=round(examples_seen / train_seconds, 3) if train_seconds else 0.0,
        train_tokens_per_s=round(tokens_seen / train_seconds, 3) if train_seconds else 0.0,
        train_examples=len(train_set),
        epochs=train_cfg.epochs,
        steps=step,
        precision=precision,
        trainable_parameters=trained_params,
        trainable_parameters_at_start=trainable_at_start,
        frozen_parameters=total_params - trained_params,
        total_parameters=total_params,
        metric_for_best=metric_for_best,
        best_metric=best["value"],
        best_step=best["step"],
        best_epoch=best["epoch"],
    )
    report = task.report(
        final,
        f"Evaluation on the {report_split} split ({final['num_examples']} examples), model from step {best['step']}",
    )
    if accelerator.is_main_process:
        with staged_output(config.output_dir) as staging:
            save_model(accelerator.unwrap_model(model), staging / "model")  # a LoRA run: adapter + head
            tokenizer.save_pretrained(staging / "model")
            save_config(config, staging / "config.yaml")
            (staging / "metrics.json").write_text(
                json.dumps({**final, "history": history}, indent=2) + "\n", encoding="utf-8"
            )
        remove_checkpoints(config.output_dir)
        release_lock(config.output_dir)
        log(report)
        log(f"\nsaved to {config.output_dir}/ (model/, config.yaml, metrics.json)")
    accelerator.wait_for_everyone()
    return FinetuneResult(config.output_dir, final, history, report)


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
