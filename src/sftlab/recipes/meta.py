"""Meta-learning an initialisation with Reptile or first-order MAML (`sftlab meta CONFIG`).

setup (labels split into meta-training and held-out sets) -> `meta.meta_steps` times: draw
`meta.meta_batch` N-way K-shot episodes of meta-training labels; for each, a fresh head on the current
encoder trains `meta.inner_steps` steps on the episode's support set (one `sftlab.engine.fit` call);
Reptile then moves the encoder towards the mean adapted encoder, θ <- θ + ε (mean θ' - θ) with ε
annealed; first-order MAML instead takes the query loss's gradient at each θ' (a second `fit` call: one
plain SGD step on the query set, read back as the gradient) and gives the mean to Adam ->
compare, on episodes of the held-out labels at each of `meta.eval_shots`, the query accuracy after the
same adaptation from the meta-learned and from the pretrained encoder -> save the encoder as a plain
model folder (output_dir/model), usable as `model:` in any config.
"""

from __future__ import annotations

import functools
import json
import random
import statistics
from dataclasses import dataclass
from typing import Any

from sftlab.config import Config, save_config
from sftlab.data.episodes import Episode, draw_episode, indices_by_label, split_label_sets
from sftlab.data.loading import load_tables
from sftlab.data.readers import require_columns
from sftlab.engine import fit
from sftlab.errors import SftlabError
from sftlab.models import load_sequence_classifier, load_tokenizer, locate_model, quiet_transformers
from sftlab.optim.reptile import (
    annealed_epsilon,
    apply_meta_gradient,
    first_order_maml_gradient,
    reptile_update,
    snapshot,
)
from sftlab.outputs import check_output_dir, release_lock, staged_output, take_lock
from sftlab.recipes.few_shot import set_trainable_all
from sftlab.runtime import make_accelerator, set_seed
from sftlab.tasks.classification import ClassificationTask


def inner_config(config: Config, steps: int) -> Config:
    """The engine config of one adaptation: `steps` full-batch steps on the support set, constant rate."""
    inner = config.model_copy(deep=True)
    inner.train = inner.train.model_copy(
        update={"epochs": steps, "batch_size": "full", "learning_rate": config.meta.inner_learning_rate,
                "eval_every": 10**9, "patience": None, "metric_for_best": "accuracy", "keep_last": 0}
    )  # fmt: skip
    inner.schedule = inner.schedule.model_copy(
        update={"name": "constant", "warmup_ratio": 0.0, "warmup_steps": 0}
    )
    return inner


QUERY_STEP = 1.0
"""Size of the plain SGD step on the query set whose displacement first-order MAML reads as the gradient."""


def query_step_config(config: Config) -> Config:
    """The engine config of first-order MAML's gradient probe: one full-batch SGD step, nothing else
    (no momentum, weight decay, clipping, warmup or per-layer rates), so θ'' = θ' - QUERY_STEP * gradient."""
    probe = inner_config(config, 1)
    probe.train = probe.train.model_copy(update={"learning_rate": QUERY_STEP, "max_grad_norm": None})
    probe.optim = probe.optim.model_copy(
        update={"name": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
                "head_learning_rate": None, "layer_lr_decay": 1.0}
    )  # fmt: skip
    return probe


def episode_examples(encoded: list[dict[str, Any]], pairs: list[tuple[int, int]]) -> list[dict[str, Any]]:
    return [{**encoded[index], "labels": label_id} for index, label_id in pairs]


@dataclass
class Adaptation:
    """What every adaptation shares: the engine's accelerator, precision and padding, and the config."""

    config: Config
    accelerator: Any
    precision: str
    pad_id: int
    encoded: list[dict[str, Any]]

    def __call__(self, model: Any, episode: Episode, seed: int, steps: int) -> dict[str, Any]:
        """Train a fresh N-way head (and the encoder) on the episode's support set; query metrics after."""
        task = ClassificationTask(
            [str(i) for i in range(len(episode.labels))], max_length=self.config.data.max_length
        )
        reset_head(model, seed)
        set_trainable_all(model)
        examples = {
            "train": episode_examples(self.encoded, episode.support),
            "validation": episode_examples(self.encoded, episode.query),
        }
        fitted = fit(task, examples, model, inner_config(self.config, steps), self.accelerator, self.precision,
                     self.pad_id, echo=False)  # fmt: skip
        self.accelerator.free_memory()
        # The engine's one evaluation, at the last step, is on the query set: the adapted model's metrics.
        return fitted.state.history[-1]

    def query_step(self, model: Any, episode: Episode) -> None:
        """First-order MAML's probe: one plain SGD step on the episode's query set, from the adapted weights."""
        task = ClassificationTask(
            [str(i) for i in range(len(episode.labels))], max_length=self.config.data.max_length
        )
        set_trainable_all(model)
        query = episode_examples(self.encoded, episode.query)
        fit(task, {"train": query, "validation": query}, model, query_step_config(self.config), self.accelerator,
            self.precision, self.pad_id, echo=False)  # fmt: skip
        self.accelerator.free_memory()


def reset_head(model: Any, seed: int) -> None:
    """A fresh classification head, as a user's fine-tuning would start with (seeded)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for module in _head_modules(model):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
            module.bias.zero_()


def _head_modules(model: Any) -> list[Any]:
    import torch

    head = getattr(model, "classifier", None)
    if head is None:
        raise SftlabError(
            "meta: the model has no `classifier` head (a BERT-style sequence classifier is needed)"
        )
    return [
        m
        for m in ([head] if isinstance(head, torch.nn.Linear) else head.modules())
        if isinstance(m, torch.nn.Linear)
    ]


def meta_learn(config: Config, overwrite: bool = False, echo: bool = True) -> dict[str, Any]:
    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)
    meta = config.meta
    if config.task != "classification" or config.few_shot is not None or config.adapter is not None:
        raise SftlabError("meta: needs task: classification, without few_shot or adapter")
    check_output_dir(config.output_dir, overwrite)
    table = load_tables(config.data)["train"]
    require_columns(table, [config.data.label_column])
    labels = [str(row[config.data.label_column]) for row in table.rows]
    need = meta.k_shot + meta.query
    largest = max([meta.k_shot, *meta.eval_shots]) + meta.query
    train_labels, held_out = split_label_sets(labels, meta.held_out_labels, largest, config.train.seed)
    if len(train_labels) < meta.n_way or (meta.eval_episodes and len(held_out) < meta.n_way):
        raise SftlabError(
            f"meta.n_way={meta.n_way}: {len(train_labels)} meta-training and {len(held_out)} held-out labels have "
            f"at least {largest} examples (the largest k_shot + query); lower n_way or held_out_labels"
        )
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    probe = ClassificationTask(
        ["0", "1"], config.data.text_column, config.data.label_column, config.data.max_length
    )
    encoded = probe.encode(tokenizer, table, with_labels=False)
    accelerator, precision = make_accelerator(config.train.device, config.train.precision)
    adapt = Adaptation(config, accelerator, precision, tokenizer.pad_token_id or 0, encoded)
    set_seed(config.train.seed)
    names = [str(i) for i in range(meta.n_way)]
    model = load_sequence_classifier(location, config.model, names, config.trust_remote_code)
    encoder = model.base_model
    by_label = indices_by_label(labels)
    rng = random.Random(config.train.seed)
    log(
        f"sftlab meta: {'Reptile' if meta.algorithm == 'reptile' else 'first-order MAML'}, {meta.meta_steps} meta-steps x {meta.meta_batch} episodes of {meta.n_way}-way "
        f"{meta.k_shot}-shot ({need} examples per label) | {len(train_labels)} meta-training labels, "
        f"{len(held_out)} held out: {', '.join(held_out)}"
    )
    take_lock(config.output_dir, overwrite)
    try:
        history = []
        parameters = dict(encoder.named_parameters())
        outer = None
        if meta.algorithm == "fomaml":
            import torch

            outer = torch.optim.Adam(parameters.values(), lr=meta.outer_learning_rate)
        for step in range(meta.meta_steps):
            initial = snapshot(parameters)
            adapted, stepped, accuracies = [], [], []
            for _ in range(meta.meta_batch):
                episode = draw_episode(by_label, train_labels, meta.n_way, meta.k_shot, meta.query, rng)
                metrics = adapt(model, episode, rng.randrange(2**31), meta.inner_steps)
                accuracies.append(metrics["accuracy"])
                adapted.append(snapshot(parameters))
                if outer is not None:
                    adapt.query_step(model, episode)
                    stepped.append(snapshot(parameters))
                _restore(parameters, initial)
            record: dict[str, Any] = {"meta_step": step + 1}
            if outer is None:
                record["epsilon"] = annealed_epsilon(step, meta.meta_steps, meta.epsilon, meta.final_epsilon)
                reptile_update(parameters, initial, adapted, record["epsilon"])
            else:
                gradient = first_order_maml_gradient(adapted, stepped, QUERY_STEP)
                record["meta_gradient_norm"] = float(
                    sum(g.double().pow(2).sum() for g in gradient.values()) ** 0.5
                )
                apply_meta_gradient(parameters, gradient, outer)
            record["query_accuracy"] = statistics.mean(accuracies)
            history.append(record)
            detail = (f"epsilon {record['epsilon']:.3f}" if outer is None
                      else f"meta-gradient norm {record['meta_gradient_norm']:.3g}")  # fmt: skip
            log(f"meta-step {step + 1}/{meta.meta_steps} ({meta.algorithm}): {detail}, "
                f"query accuracy after adaptation {record['query_accuracy']:.4f}")  # fmt: skip

        # --- the comparison on held-out labels: the same adaptation from both starting points
        comparison = compare_initialisations(adapt, model, config, location, by_label, held_out, log)
        results = {"history": history, "held_out_labels": held_out, "meta_training_labels": train_labels,
                   "comparison": comparison}  # fmt: skip
        with staged_output(config.output_dir) as staging:
            encoder.save_pretrained(staging / "model", safe_serialization=True)
            tokenizer.save_pretrained(staging / "model")
            save_config(config, staging / "config.yaml")
            (staging / "metrics.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    finally:
        release_lock(config.output_dir)
    log(
        f"\nsaved the meta-learned encoder to {config.output_dir}/model (use it as `model: {config.output_dir}/model`)"
    )
    return results


def compare_initialisations(adapt: Adaptation, model: Any, config: Config, location: str,
                            by_label: dict[str, list[int]], held_out: list[str], log: Any) -> dict[str, Any]:  # fmt: skip
    """Query accuracy (mean, std over episodes) after adapting to held-out episodes at each K."""
    meta = config.meta
    if not meta.eval_episodes:
        return {}
    pretrained = load_sequence_classifier(location, config.model, [str(i) for i in range(meta.n_way)])
    learned = snapshot(dict(model.base_model.named_parameters()))
    results: dict[str, Any] = {}
    for shots in meta.eval_shots:
        rng = random.Random(config.train.seed + 1000 + shots)
        episodes = [
            draw_episode(by_label, held_out, meta.n_way, shots, meta.query, rng)
            for _ in range(meta.eval_episodes)
        ]
        row = {}
        for name, start in (
            ("meta_learned", learned),
            ("pretrained", dict(pretrained.base_model.named_parameters())),
        ):
            accuracies = []
            for number, episode in enumerate(episodes):
                _restore(dict(model.base_model.named_parameters()), start)
                accuracies.append(adapt(model, episode, number, meta.inner_steps)["accuracy"])
            row[name] = {"mean": statistics.mean(accuracies),
                         "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0}  # fmt: skip
        results[f"{shots}_shot"] = row
        log(f"held-out {meta.n_way}-way {shots}-shot, {meta.eval_episodes} episodes: meta-learned "
            f"{row['meta_learned']['mean']:.4f} ± {row['meta_learned']['std']:.4f} | pretrained "
            f"{row['pretrained']['mean']:.4f} ± {row['pretrained']['std']:.4f}")  # fmt: skip
    _restore(dict(model.base_model.named_parameters()), learned)
    return results


def _restore(parameters: dict[str, Any], values: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, tensor in parameters.items():
            tensor.copy_(values[name])
