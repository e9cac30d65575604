"""Fine-tune a pretrained model for a task: setup -> fit -> evaluate -> save, top to bottom.

Setup reads and checks everything (data, task, tokenizer, model) before the output dir is touched; the
training itself is the engine's (`sftlab.engine.fit`, the one loop every recipe drives); then the best model
is evaluated on the report split and the outputs are renamed into place all at once.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftlab.adapters import save_model
from sftlab.checkpoints import (
    data_fingerprint,
    full_state_dict,
    refuse_changed_run,
    remove_checkpoints,
    resolve_resume,
)
from sftlab.config import Config, save_config
from sftlab.data.loading import load_tables
from sftlab.data.token_cache import encode_cached
from sftlab.engine import OnEvaluation, OnLog, TrainState, fit
from sftlab.errors import SftlabError
from sftlab.models import load_tokenizer, locate_model, quiet_transformers
from sftlab.outputs import check_output_dir, release_lock, staged_output
from sftlab.recipes.data_check import pre_training_checks
from sftlab.reporting.run_report import environment, write_run_report
from sftlab.runtime import make_accelerator, set_seed
from sftlab.tasks import task_class
from sftlab.tracking import Tracking, logging_dir, resolve_trackers


@dataclass
class FinetuneResult:
    output_dir: Path
    metrics: dict[str, Any]
    """Metrics on the report split (test when there is one, else validation), plus training figures."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Validation metrics at each evaluation."""
    report: str = ""
    log_history: list[dict[str, Any]] = field(default_factory=list)
    """Training records every train.log_every steps and validation records at each evaluation."""
    state: TrainState | None = None


def finetune(
    config: Config,
    overwrite: bool = False,
    echo: bool = True,
    resume: bool | Path | str = False,
    *,
    on_evaluation: OnEvaluation | None = None,
    on_log: OnLog | None = None,
    state: TrainState | None = None,
) -> FinetuneResult:
    """Train as `config` says. `resume`: True continues from the latest checkpoint in output_dir, a path
    from that checkpoint (or run folder); the resumed run ends exactly where an uninterrupted one would.
    `on_evaluation(state, metrics)` is called at every validation evaluation and may return True to stop;
    `on_log(state, record)` receives every log record (see `sftlab.engine`)."""
    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)

    # --- setup: everything that can be wrong with the input fails here, before the output dir is touched
    check_output_dir(config.output_dir, overwrite, resume=bool(resume))
    trackers = resolve_trackers(config.track)
    checkpoint, saved = resolve_resume(resume, config.output_dir) if resume else (None, {})
    tables = load_tables(config.data)
    fingerprint = data_fingerprint(tables)
    if checkpoint is not None:
        refuse_changed_run(checkpoint, saved, config.to_yaml_dict(), fingerprint)
    task = task_class(config.task).from_config(config, tables)
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    if not resume:  # the cheap data checks (sftlab.recipes.data_check); data.check=error stops on leakage
        pre_training_checks(config, tables, tokenizer, log)
    encoded = encode_cached(task, tokenizer, tables, config, fingerprint)
    if len(tables["validation"]) == 0:
        raise SftlabError(
            f"{tables['train'].path}: too few rows to hold out a validation split; set data.validation"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # A resumed run keeps the precision it started in, whatever `auto` would pick on today's machine.
    precision = (
        saved.get("precision", config.train.precision) if checkpoint is not None else config.train.precision
    )
    accelerator, precision = make_accelerator(
        config.train.device, precision, trackers, logging_dir(config.output_dir)
    )
    tracking = Tracking(accelerator, config.to_yaml_dict(), then=on_log)
    set_seed(config.train.seed)
    model = task.load_model(location, config)

    if getattr(task, "setup_note", ""):  # e.g. which tag scheme token classification detected
        log(f"sftlab: {task.setup_note}")

    # --- fit: the engine trains, reports at each evaluation, and hands back the best model
    try:
        fitted = fit(
            task, encoded, model, config, accelerator, precision, pad_id, output_dir=config.output_dir,
            overwrite=overwrite, resume=(checkpoint, saved) if checkpoint is not None else None, state=state,
            on_evaluation=on_evaluation, on_log=tracking.on_log, echo=echo, where=tables["train"].where,
            fingerprint=fingerprint,
        )  # fmt: skip
    finally:
        tracking.end()
    run, model = fitted.state, fitted.model

    # --- final evaluation of the best model, then save
    report_split = "test" if "test" in encoded else "validation"
    if hasattr(task, "tune_on_validation"):  # e.g. QA's null threshold, fixed on validation before the test
        note = task.tune_on_validation(accelerator.unwrap_model(model), encoded["validation"], pad_id,
                                       config.train.eval_batch_size, accelerator.device, accelerator.autocast)  # fmt: skip
        if note:
            log(f"sftlab: {note}")
    final = task.evaluate(model, encoded[report_split], pad_id, config.train.eval_batch_size,
                          accelerator.device, accelerator.autocast)  # fmt: skip
    seconds = run.train_seconds
    final.update(
        split=report_split,
        train_runtime_s=round(seconds, 3),
        train_samples_per_s=round(run.examples_seen / seconds, 3) if seconds else 0.0,
        train_tokens_per_s=round(run.tokens_seen / seconds, 3) if seconds else 0.0,
        train_examples=len(encoded["train"]),
        epochs=config.train.epochs,
        steps=run.step,
        precision=precision,
        speed_levers={decision.lever: decision.on for decision in fitted.levers.decisions},
        trainable_parameters=fitted.parameters["trained"],
        trainable_parameters_at_start=fitted.parameters["trainable_at_start"],
        frozen_parameters=fitted.parameters["total"] - fitted.parameters["trained"],
        total_parameters=fitted.parameters["total"],
        metric_for_best=config.train.metric_for_best or task.main_metric,
        best_metric=run.best_value,
        best_step=run.best_step,
        best_epoch=run.best_epoch,
        environment=environment(accelerator.device, precision, accelerator.num_processes),
    )
    report = task.report(
        final,
        f"Evaluation on the {report_split} split ({final['num_examples']} examples), model from step {run.best_step}",
    )
    weights = full_state_dict(model, accelerator)  # every process takes part; None unless sharded
    if accelerator.is_main_process:
        with staged_output(config.output_dir) as staging:
            save_model(accelerator.unwrap_model(model), staging / "model", weights)  # LoRA: adapter + head
            tokenizer.save_pretrained(staging / "model")
            save_config(config, staging / "config.yaml")
            record = {**final, "history": run.history, "log_history": run.log_history}
            (staging / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        remove_checkpoints(config.output_dir)
        release_lock(config.output_dir)
        log(report)
        if config.report:
            predict = functools.partial(task.predict, model, tokenizer, pad_token_id=pad_id,
                                        batch_size=config.train.eval_batch_size, device=accelerator.device,
                                        autocast=accelerator.autocast)  # fmt: skip
            try:
                write_run_report(config.output_dir, predict, tables)
            except Exception as error:  # the run is saved; a failed report must not make it look failed
                print(f"sftlab: warning: report.html not written: {error}", file=sys.stderr)
        log(
            f"\nsaved to {config.output_dir}/ (model/, config.yaml, metrics.json{', report.html' if config.report else ''})"
        )
    accelerator.wait_for_everyone()
    return FinetuneResult(config.output_dir, final, run.history, report, run.log_history, run)
