"""Few-shot classification (`few_shot: {method: contrastive}`): SetFit's recipe on sftlab's engine.

setup -> contrastive stage (the encoder learns from same-label / different-label pairs drawn on the fly)
-> head stage (the encoder frozen: its output is computed once by the frozen-prefix cache, only the
classification head trains) -> optionally an end-to-end stage -> evaluate on the report split -> save
one ordinary `AutoModelForSequenceClassification` folder (no pickled head, no sftlab needed to load it).
Every stage is one call of `sftlab.engine.fit`; this file holds no training loop.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

from torch import nn

from sftlab.adapters import save_model
from sftlab.checkpoints import data_fingerprint
from sftlab.config import Config, save_config
from sftlab.data.loading import load_tables
from sftlab.data.pairs import PairSampler, pairs_per_epoch
from sftlab.data.token_cache import encode_cached
from sftlab.engine import fit
from sftlab.errors import SftlabError
from sftlab.models import load_tokenizer, locate_model, quiet_transformers
from sftlab.outputs import check_output_dir, release_lock, staged_output, take_lock
from sftlab.recipes.finetune import FinetuneResult
from sftlab.runtime import make_accelerator, set_seed
from sftlab.tasks.classification import ClassificationTask
from sftlab.tasks.contrastive import ContrastivePairTask, PairExamples
from sftlab.tasks.pooling import add_mean_pooling_layer, resolve_pooling

VALIDATION_PAIRS = 256
"""Held-out pairs (from the validation split) the contrastive stage reports its pair loss on."""


def stage_configs(
    config: Config, num_train: int, num_labels: int, fixed: list[str] | None = None
) -> list[tuple[str, Config]]:
    """The engine config of each stage: (name, config), in order; `sftlab plan` shows the same. Each stage
    is evaluated on validation once, at its end, and keeps its last weights: with a handful of examples per
    label, picking epochs on a large validation split would no longer be few-shot. `num_train`,
    `num_labels`: the training set's size and label count (the logistic head's L2 weight). `fixed`: regular
    expressions naming parameters no stage trains (the mean-pooling layer, `sftlab.tasks.pooling`)."""
    fixed = list(fixed or [])
    few = config.few_shot
    assert few is not None
    base = config.model_copy(deep=True)
    base.few_shot = None
    once = {"eval_every": 10**9, "patience": None, "keep_last": 0, "save_every": None}
    contrastive = base.model_copy(deep=True)
    contrastive.train = contrastive.train.model_copy(
        update={"epochs": few.contrastive_epochs, "learning_rate": few.contrastive_learning_rate,
                "batch_size": few.pair_batch_size, "gradient_accumulation_steps": 1, "metric_for_best": "loss",
                "batch_tokens": None, **once}
    )  # fmt: skip
    contrastive.freeze = type(contrastive.freeze)(patterns=fixed)
    stages = [("contrastive", contrastive)]
    head = base.model_copy(deep=True)
    # The head only: everything but the classifier layer is frozen, so the frozen-prefix cache runs the
    # encoder once per example and each epoch costs a few small matrix products.
    head.freeze = type(head.freeze)(patterns=[r"^(?!classifier\.)"])
    head.optim = head.optim.model_copy(update={"head_learning_rate": None, "layer_lr_decay": 1.0})
    head.train = head.train.model_copy(
        update={
            "epochs": few.head_epochs,
            "learning_rate": few.head_learning_rate,
            "metric_for_best": None,
            **once,
        }
    )
    if few.head_l2_c is not None:
        # sklearn's LogisticRegression(C) minimises C * sum(log loss) + |W|^2 / 2, i.e. mean log loss +
        # |W|^2 / (2 n C): Adam's coupled L2 (weight decay on matrices only, so the bias is not penalised,
        # as in sklearn), one full-batch step per epoch. With two labels sklearn fits one vector w = W1 - W2,
        # and the softmax pair's penalty at its optimum (W1 = -W2) is a quarter of |w|^2: twice the weight.
        penalty = (2.0 if num_labels == 2 else 1.0) / (num_train * few.head_l2_c)
        head.optim = head.optim.model_copy(update={"name": "adam", "weight_decay": penalty})
        head.train = head.train.model_copy(
            update={"batch_size": "full", "gradient_accumulation_steps": 1, "batch_tokens": None}
        )
    stages.append(("head", head))
    if few.end_to_end_epochs:
        end_to_end = base.model_copy(deep=True)
        end_to_end.freeze = end_to_end.freeze.model_copy(
            update={"patterns": [*end_to_end.freeze.patterns, *fixed]}
        )
        end_to_end.train = end_to_end.train.model_copy(
            update={"epochs": few.end_to_end_epochs, "learning_rate": few.end_to_end_learning_rate,
                    "metric_for_best": None, **once}
        )  # fmt: skip
        stages.append(("end_to_end", end_to_end))
    return stages


def train_few_shot(config: Config, overwrite: bool = False, echo: bool = True) -> FinetuneResult:
    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)
    few = config.few_shot
    assert few is not None

    # --- setup: every input checked before the output dir is touched
    check_output_dir(config.output_dir, overwrite)
    tables = load_tables(config.data)
    task = ClassificationTask.from_config(config, tables)
    if task.multi_label:
        raise SftlabError("few_shot: contrastive pairs need one label per row; this data is multi-label")
    if task.class_weights is not None or task.focal_gamma is not None:
        raise SftlabError("few_shot: loss.class_weights and focal do not apply (pairs are balanced by label)")
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    encoded = encode_cached(task, tokenizer, tables, config, data_fingerprint(tables))
    if not encoded["validation"]:
        raise SftlabError(
            f"{tables['train'].path}: too few rows to hold out a validation split; set data.validation"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    accelerator, precision = make_accelerator(config.train.device, config.train.precision)
    set_seed(config.train.seed)
    model = task.load_model(location, config)
    pooling = resolve_pooling(few.pooling, location)
    fixed = add_mean_pooling_layer(model) if pooling == "mean" else []
    stages = stage_configs(config, len(encoded["train"]), len(task.label_names), fixed)
    pairs = pairs_per_epoch(len(encoded["train"]), few.pairs_per_example, few.max_pairs)
    log(
        f"sftlab few-shot: {len(encoded['train'])} training examples, {len(task.label_names)} labels, "
        f"{pooling} pooling | "
        f"contrastive {few.contrastive_epochs} x {pairs} pairs, then the head {few.head_epochs} epochs"
        + (f" (logistic, C={few.head_l2_c:g})" if few.head_l2_c is not None else "")
        + (f", then end to end {few.end_to_end_epochs} epochs" if few.end_to_end_epochs else "")
    )

    # --- contrastive stage: pairs of training examples, each a pure function of (seed, pair index)
    sampler = PairSampler([example["labels"] for example in encoded["train"]], config.train.seed)
    held_out = PairSampler([example["labels"] for example in encoded["validation"]], config.train.seed + 1)
    pair_sets = {
        "train": PairExamples(encoded["train"], sampler, 0, pairs * few.contrastive_epochs),
        "validation": PairExamples(encoded["validation"], held_out, 0, VALIDATION_PAIRS),
    }

    def pair_plan(epoch: int, **_: Any) -> list[list[list[int]]]:
        # Consecutive pair indices: every batch is half same-label, half different-label pairs.
        return [[batch] for batch in sampler.batches(epoch * pairs, pairs, few.pair_batch_size)]

    pair_task = ContrastivePairTask()
    before = pair_task.evaluate(model, pair_sets["validation"], pad_id, config.train.eval_batch_size,
                                accelerator.device, accelerator.autocast)  # fmt: skip
    seconds = {}
    set_trainable_all(model)
    fitted = fit(pair_task, pair_sets, model, stages[0][1], accelerator, precision, pad_id,  # type: ignore[arg-type]
                 echo=echo, plan=pair_plan)  # fmt: skip
    seconds["contrastive"] = fitted.state.train_seconds
    pair_metrics = {"before": before, "after": fitted.state.history[-1]}
    accelerator.free_memory()

    # --- the head (encoder frozen), then optionally end to end: the ordinary classification task
    for name, stage_config in stages[1:]:
        set_trainable_all(model)
        # The logistic head reads fixed features: the classifier's input dropout is off in its stage too.
        with without_dropout(model, name == "head" and few.head_l2_c is not None):
            fitted = fit(task, encoded, model, stage_config, accelerator, precision, pad_id, echo=echo,
                         where=tables["train"].where)  # fmt: skip
        seconds[name] = fitted.state.train_seconds
        accelerator.free_memory()
    set_trainable_all(model)

    # --- evaluate the final model on the report split, then save one ordinary model folder
    report_split = "test" if "test" in encoded else "validation"
    final = task.evaluate(model, encoded[report_split], pad_id, config.train.eval_batch_size, accelerator.device,
                          accelerator.autocast)  # fmt: skip
    final.update(
        split=report_split, train_examples=len(encoded["train"]), contrastive_pairs=pairs * few.contrastive_epochs,
        precision=precision, pooling=pooling, train_runtime_s=round(sum(seconds.values()), 3),
        stage_seconds={name: round(value, 3) for name, value in seconds.items()},
        head_history=fitted.state.history,
        validation_pairs={when: {"loss": m["loss"], "pair_accuracy": m["pair_accuracy"]} for when, m in pair_metrics.items()},
    )  # fmt: skip
    report = task.report(final, f"Evaluation on the {report_split} split ({final['num_examples']} examples)")
    take_lock(config.output_dir, overwrite)
    try:
        with staged_output(config.output_dir) as staging:
            save_model(model, staging / "model")
            tokenizer.save_pretrained(staging / "model")
            save_config(config, staging / "config.yaml")
            (staging / "metrics.json").write_text(json.dumps(final, indent=2) + "\n", encoding="utf-8")
    finally:
        release_lock(config.output_dir)
    log(report)
    log(f"\nsaved to {config.output_dir}/ (model/, config.yaml, metrics.json)")
    return FinetuneResult(config.output_dir, final, fitted.state.history, report, fitted.state.log_history,
                          fitted.state)  # fmt: skip


def set_trainable_all(model: Any) -> None:
    """Every parameter trainable again before the next stage (whose config says what it freezes): the engine
    treats a parameter that arrives frozen as frozen for good, and a stage leaves some frozen (the head
    stage's encoder; the used-embedding-rows lever leaves the full table's requires_grad off)."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)


@contextlib.contextmanager
def without_dropout(model: nn.Module, active: bool = True) -> Iterator[None]:
    """Inside (when `active`), every nn.Dropout of the model drops nothing; their rates are restored after."""
    rates = (
        {module: module.p for module in model.modules() if isinstance(module, nn.Dropout)} if active else {}
    )
    for module in rates:
        module.p = 0.0
    try:
        yield
    finally:
        for module, rate in rates.items():
            module.p = rate
