"""Fine-tune a pretrained model for a task: setup -> fit -> evaluate -> save, top to bottom.

The whole training loop is in `finetune`; task specifics (head, collate, loss, metrics) come from the
task object, every other piece is a plain function from the library.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sftlab.adapters import save_model
from sftlab.config import Config, save_config
from sftlab.data.batching import plan_steps
from sftlab.data.loading import load_tables
from sftlab.errors import SftlabError
from sftlab.models import load_tokenizer, locate_model, quiet_transformers
from sftlab.optim.optimizers import build_optimizer
from sftlab.optim.schedules import build_schedule, warmup_steps_for
from sftlab.outputs import check_output_dir, staged_output
from sftlab.runtime import make_accelerator, set_seed
from sftlab.tasks import task_class


@dataclass
class FinetuneResult:
    output_dir: Path
    metrics: dict[str, Any]
    """Metrics on the report split (test when there is one, else validation), plus training figures."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Validation metrics at each evaluation."""
    report: str = ""


def finetune(config: Config, overwrite: bool = False, echo: bool = True) -> FinetuneResult:
    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)

    # --- setup: everything that can be wrong with the input fails here, before the output dir is touched
    check_output_dir(config.output_dir, overwrite)
    tables = load_tables(config.data)
    task = task_class(config.task).from_config(config, tables)
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    encoded = {split: task.encode(tokenizer, table) for split, table in tables.items()}
    if len(tables["validation"]) == 0:
        raise SftlabError(
            f"{tables['train'].path}: too few rows to hold out a validation split; set data.validation"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    train_cfg = config.train
    accelerator, precision = make_accelerator(train_cfg.device, train_cfg.precision)
    set_seed(train_cfg.seed)
    model = task.load_model(location, config)
    optimizer = build_optimizer(
        model, config.optim.name, train_cfg.learning_rate, config.optim.weight_decay,
        beta1=config.optim.beta1, beta2=config.optim.beta2, eps=config.optim.eps,
    )  # fmt: skip
    model, optimizer = accelerator.prepare(model, optimizer)

    train_set = encoded["train"]
    lengths = [len(example["input_ids"]) for example in train_set]
    counts = [task.target_count(example) for example in train_set]
    plan = functools.partial(
        plan_steps, lengths, train_cfg.batch_size, train_cfg.gradient_accumulation_steps, train_cfg.micro_batch_size,
        train_cfg.group_by_length, train_cfg.seed, rank=accelerator.process_index, world_size=accelerator.num_processes,
    )  # fmt: skip
    # Step counts come from the sharded plan, after prepare(): sharding changes how many steps each process takes.
    steps_per_epoch = len(plan(epoch=0))
    total_steps = steps_per_epoch * train_cfg.epochs
    warmup = warmup_steps_for(total_steps, config.schedule.warmup_ratio, config.schedule.warmup_steps)
    schedule = build_schedule(config.schedule.name, total_steps, warmup)
    metric_for_best = train_cfg.metric_for_best or task.main_metric
    lower_is_better = metric_for_best == "loss"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    splits = ", ".join(f"{split} {len(examples)}" for split, examples in encoded.items())
    log(
        f"sftlab: {config.task} | model {config.model} | {splits} | {trainable:,} of {total_params:,} parameters "
        f"trainable | {precision} on {accelerator.device} | {train_cfg.epochs} epochs x {steps_per_epoch} steps"
    )

    def evaluate(split: str) -> dict[str, Any]:
        return task.evaluate(
            model, encoded[split], pad_id, train_cfg.eval_batch_size, accelerator.device, accelerator.autocast
        )

    # --- fit
    from tqdm.auto import tqdm

    progress = tqdm(
        total=total_steps,
        disable=None if accelerator.is_main_process else True,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"value": None, "step": 0, "epoch": 0, "state": None}
    evaluations_since_best = 0
    step, train_seconds, examples_seen, tokens_seen = 0, 0.0, 0, 0
    loss_total, loss_terms = 0.0, 0
    stop = False
    for epoch in range(train_cfg.epochs):
        epoch_steps = plan(epoch=epoch)
        for position_in_epoch, micro_batches in enumerate(epoch_steps):
            started = time.perf_counter()
            model.train()
            for group in optimizer.param_groups:
                group["lr"] = group["peak_lr"] * schedule(step)
            # Normalize by the real number of loss terms in the whole step, across micro-batches and processes,
            # so K accumulated micro-batches give exactly the update of one batch K times larger. DDP averages
            # gradients over processes, hence the factor num_processes.
            step_terms = sum(counts[i] for indices in micro_batches for i in indices)
            step_terms = int(accelerator.reduce(torch.tensor(step_terms, device=accelerator.device), "sum"))
            scale = accelerator.num_processes / step_terms
            for index, indices in enumerate(micro_batches):
                batch = {
                    key: value.to(accelerator.device)
                    for key, value in task.collate([train_set[i] for i in indices], pad_id).items()
                }
                # Gradients are exchanged between processes only on a step's last micro-batch.
                last = index == len(micro_batches) - 1
                with contextlib.nullcontext() if last else accelerator.no_sync(model), accelerator.autocast():
                    loss_sum, terms = task.forward_loss(model, batch)
                accelerator.backward(loss_sum * scale)
                loss_total += loss_sum.item()
                loss_terms += terms
                examples_seen += len(indices)
                tokens_seen += int(batch["attention_mask"].sum())
            if train_cfg.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), train_cfg.max_grad_norm)
            optimizer.step()
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
                continue
            # --- evaluate, keep the best model, maybe stop early
            metrics = evaluate("validation")
            value = float(metrics[metric_for_best])
            improved = best["value"] is None or (
                value < best["value"] if lower_is_better else value > best["value"]
            )
            if improved:
                state = accelerator.unwrap_model(model).state_dict()
                best = {
                    "value": value,
                    "step": step,
                    "epoch": epoch + 1,
                    "state": {k: v.detach().to("cpu", copy=True) for k, v in state.items()},
                }
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
                break
        if stop:
            break
    progress.close()

    # --- final evaluation of the best model, then save
    if best["state"] is not None:
        accelerator.unwrap_model(model).load_state_dict(best["state"])
    report_split = "test" if "test" in encoded else "validation"
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
        trainable_parameters=trainable,
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
        with staged_output(config.output_dir, overwrite) as staging:
            save_model(accelerator.unwrap_model(model), staging / "model")  # a LoRA run: adapter + head
            tokenizer.save_pretrained(staging / "model")
            save_config(config, staging / "config.yaml")
            (staging / "metrics.json").write_text(
                json.dumps({**final, "history": history}, indent=2) + "\n", encoding="utf-8"
            )
        log(report)
        log(f"\nsaved to {config.output_dir}/ (model/, config.yaml, metrics.json)")
    accelerator.wait_for_everyone()
    return FinetuneResult(config.output_dir, final, history, report)
