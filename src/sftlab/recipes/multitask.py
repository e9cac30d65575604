"""Multi-task fine-tuning (`task: multitask`): the `tasks:` list shares one encoder, one head each.

setup (each task's data, its task object and its head on the shared encoder) -> one `sftlab.engine.fit`
call whose batch plan draws a task per step from the named sampler and whose task object dispatches each
batch to its task's head -> at every evaluation, each task keeps the weights of its own best evaluation
(its main metric on its validation split) -> each task's best model is evaluated on its report split and
saved as its own run folder, output_dir/NAME/ (model/, config.yaml, metrics.json), which `sftlab predict`
and `transformers.pipeline` load like any single-task run.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from sftlab.adapters import save_model
from sftlab.config import Config, TaskSection, save_config
from sftlab.data.batching import plan_steps
from sftlab.data.loading import load_tables
from sftlab.data.task_sampling import task_plan
from sftlab.engine import fit
from sftlab.errors import SftlabError
from sftlab.models import load_tokenizer, locate_model, quiet_transformers
from sftlab.outputs import check_output_dir, release_lock, staged_output, take_lock
from sftlab.recipes.finetune import FinetuneResult
from sftlab.runtime import make_accelerator, set_seed
from sftlab.tasks import task_class
from sftlab.tasks.multitask import MultiTask, SharedEncoderModels, SubTask


def task_config(config: Config, section: TaskSection) -> Config:
    """The single-task config of one task of a multi-task run (saved with its model for predict/eval)."""
    values = config.to_yaml_dict()
    values.update(task=section.task, tasks=[], data=section.data.model_dump(mode="json"),
                  loss=section.loss.model_dump(mode="json"), output_dir=str(config.output_dir / section.name))  # fmt: skip
    return Config.model_validate(values)


def setup_tasks(config: Config) -> tuple[MultiTask, list[dict[str, Any]], list[Config]]:
    """The multi-task object, each task's tables and each task's single-task config."""
    subtasks, tables, configs = [], [], []
    for section in config.tasks:
        single = task_config(config, section)
        try:
            own = load_tables(single.data)
            task = task_class(section.task).from_config(single, own)
        except SftlabError as error:
            raise SftlabError(f"tasks[{section.name}]: {error}") from None
        subtasks.append(SubTask(section.name, task, section.weight, section.metric_for_best or ""))
        tables.append(own)
        configs.append(single)
    return MultiTask(subtasks), tables, configs


def task_steps(multi: MultiTask, encoded: list[dict[str, list[dict[str, Any]]]], config: Config) -> Any:
    """The batch plan: (epoch) -> optimizer steps over the concatenated training examples, one task each."""
    train = config.train
    offsets = [0]
    for own in encoded[:-1]:
        offsets.append(offsets[-1] + len(own["train"]))
    sizes = [len(own["train"]) for own in encoded]

    def plan(epoch: int, **_: Any) -> list[list[list[int]]]:
        batches = []
        for task_index, own in enumerate(encoded):
            lengths = [len(example["input_ids"]) for example in own["train"]]
            steps = plan_steps(lengths, train.batch_size, 1, train.micro_batch_size, train.group_by_length,
                               train.seed + task_index, epoch)  # fmt: skip
            batches.append([[offsets[task_index] + i for i in step[0]] for step in steps])
        drawn = task_plan(batches, sizes, config.multitask.sampler, config.multitask.temperature,
                          train.seed, epoch, train.epochs)  # fmt: skip
        return [[indices] for _, indices in drawn]

    return plan


def train_multitask(config: Config, overwrite: bool = False, echo: bool = True) -> FinetuneResult:
    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)
    check_output_dir(config.output_dir, overwrite)
    multi, tables, configs = setup_tasks(config)
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    encoded = [{split: sub.task.encode(tokenizer, table) for split, table in own.items()}
               for sub, own in zip(multi.tasks, tables, strict=True)]  # fmt: skip
    for sub, own in zip(multi.tasks, encoded, strict=True):
        if not own["validation"]:
            raise SftlabError(
                f"tasks[{sub.name}]: too few rows to hold out a validation split; set data.validation"
            )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    accelerator, precision = make_accelerator(config.train.device, config.train.precision)
    set_seed(config.train.seed)
    models = {sub.name: sub.task.load_model(location, single)
              for sub, single in zip(multi.tasks, configs, strict=True)}  # fmt: skip
    shared = SharedEncoderModels(models)
    # One list of examples, each tagged with its task; validation likewise (evaluated per task).
    merged = {
        split: [{**example, "task": index} for index, own in enumerate(encoded) for example in own[split]]
        for split in ("train", "validation")
    }
    sizes = ", ".join(
        f"{sub.name} ({len(own['train'])})" for sub, own in zip(multi.tasks, encoded, strict=True)
    )
    log(
        f"sftlab multitask: {sizes} training examples | sampler {config.multitask.sampler}"
        + (f" T={config.multitask.temperature:g}" if config.multitask.sampler == "temperature" else "")
    )

    # Each task's best weights: the shared encoder and its head at the evaluation where its main metric peaked.
    best: dict[str, dict[str, Any]] = {
        sub.name: {"value": None, "state": None, "step": 0} for sub in multi.tasks
    }

    def keep_best(state: Any, metrics: dict[str, Any]) -> None:
        for sub in multi.tasks:
            value = float(metrics[f"{sub.name}/{sub.metric}"])
            lower_is_better = sub.metric == "loss"
            if best[sub.name]["value"] is None or (
                value < best[sub.name]["value"] if lower_is_better else value > best[sub.name]["value"]
            ):
                weights = shared.tasks[sub.name].state_dict()
                best[sub.name] = {"value": value, "step": state.step,
                                  "state": {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}}  # fmt: skip

    fitted = fit(multi, merged, shared, config, accelerator, precision, pad_id, echo=echo,
                 plan=task_steps(multi, encoded, config), on_evaluation=keep_best)  # fmt: skip

    # --- each task: its best model, evaluated on its report split and saved as its own run
    summary: dict[str, Any] = {"history": fitted.state.history}
    reports = []
    for sub, own in zip(multi.tasks, encoded, strict=True):
        model = shared.tasks[sub.name]
        model.load_state_dict(best[sub.name]["state"])
        split = "test" if "test" in own else "validation"
        metrics = sub.task.evaluate(model, own[split], pad_id, config.train.eval_batch_size, accelerator.device,
                                    accelerator.autocast)  # fmt: skip
        metrics.update(split=split, best_step=best[sub.name]["step"], train_examples=len(own["train"]),
                       precision=precision)  # fmt: skip
        summary[sub.name] = metrics
        reports.append(sub.task.report(metrics, f"{sub.name}: {split} split ({metrics['num_examples']} examples), "
                                                f"model from step {best[sub.name]['step']}"))  # fmt: skip
    take_lock(config.output_dir, overwrite)
    try:
        with staged_output(config.output_dir, tuple(sub.name for sub in multi.tasks)) as staging:
            for sub, single in zip(multi.tasks, configs, strict=True):
                model = shared.tasks[sub.name]
                model.load_state_dict(best[sub.name]["state"])
                _save_run(staging / sub.name, model, tokenizer, single, summary[sub.name])
            save_config(config, staging / "config.yaml")
            (staging / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finally:
        release_lock(config.output_dir)
    report = "\n\n".join(reports)
    log(report)
    log(
        f"\nsaved to {config.output_dir}/ ({', '.join(f'{s.name}/' for s in multi.tasks)} config.yaml, metrics.json)"
    )
    return FinetuneResult(config.output_dir, summary, fitted.state.history, report, fitted.state.log_history,
                          fitted.state)  # fmt: skip


def _save_run(folder: Path, model: Any, tokenizer: Any, config: Config, metrics: dict[str, Any]) -> None:
    folder.mkdir(parents=True)
    save_model(model, folder / "model")
    tokenizer.save_pretrained(folder / "model")
    save_config(config, folder / "config.yaml")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
