"""`sftlab plan`: what a config will do, without training. Loads the data and the model, applies the
same freezing, optimizer and schedule as `finetune` (sftlab.recipes.components) and describes them."""

from __future__ import annotations

from sftlab.checkpoints import data_fingerprint
from sftlab.config import Config
from sftlab.data.batching import plan_steps
from sftlab.data.loading import load_tables
from sftlab.data.token_cache import encode_cached
from sftlab.freezing import count_parameters
from sftlab.models import load_tokenizer, locate_model, quiet_transformers
from sftlab.optim.schedules import warmup_steps_for
from sftlab.recipes.components import make_optimizer, make_schedule, trainable_layers
from sftlab.runtime import resolve_precision, wants_cuda
from sftlab.speed import decisions_for_plan
from sftlab.tasks import task_class


def describe_plan(config: Config) -> str:
    quiet_transformers()
    if config.task == "multitask":
        return describe_multitask(config)
    if config.few_shot is not None:
        return describe_few_shot(config)
    tables = load_tables(config.data)
    task = task_class(config.task).from_config(config, tables)
    model = task.load_model(locate_model(config.model), config)
    trainable = trainable_layers(model, config)
    optimizer = make_optimizer(trainable, config)

    train = config.train
    # The training texts are tokenized (or read from the token cache): a token budget's step count and the
    # used-embedding-rows lever depend on them.
    tokenizer = load_tokenizer(locate_model(config.model), config.model, config.trust_remote_code)
    train_only = {"train": tables["train"]}
    encoded = encode_cached(task, tokenizer, train_only, config, data_fingerprint(train_only))["train"]
    lengths = [len(example["input_ids"]) for example in encoded] if train.batch_tokens else [1] * len(encoded)
    use_cuda = wants_cuda(train.device)
    precision = resolve_precision(train.precision, use_cuda)
    levers = decisions_for_plan(train, model, trainable, "cuda" if use_cuda else "cpu",
                                (example["input_ids"] for example in encoded), config.optim.name,
                                config.optim.weight_decay)  # fmt: skip
    steps_per_epoch = len(
        plan_steps(lengths, train.batch_size, train.gradient_accumulation_steps, train.micro_batch_size,
                   False, train.seed, epoch=0, batch_tokens=train.batch_tokens)
    )  # fmt: skip
    total_steps = steps_per_epoch * train.epochs
    schedule = make_schedule(config, total_steps, steps_per_epoch, train.metric_for_best or task.main_metric)
    warmup = warmup_steps_for(total_steps, config.schedule.warmup_ratio, config.schedule.warmup_steps)
    trainable_now, total = count_parameters(model)
    ever = {name for _, parameters in trainable.layers for name, _ in parameters}

    lines = [
        f"plan: {config.task} | model {config.model} | train {len(tables['train'])} examples | "
        f"{train.epochs} epochs x {steps_per_epoch} optimizer steps = {total_steps} steps "
        f"(batch {f'{train.batch_tokens} tokens' if train.batch_tokens else train.batch_size}, "
        f"accumulation {train.gradient_accumulation_steps})",
        f"optimizer {config.optim.name}, weight decay {config.optim.weight_decay} on matrices | "
        f"schedule {config.schedule.name}"
        + ("" if config.schedule.name == "slanted_triangular" else f", warmup {warmup} steps"),
        f"precision {precision}" + (" (auto)" if train.precision == "auto" else ""),
        "speed levers (one process): " + "; ".join(str(decision) for decision in levers),
        "",
        f"{'layer':<12}{'parameters':>12}  {'state':<22}{'peak lr':>10}",
    ]
    named = dict(model.named_parameters())
    for layer, names in _layers_in_order(model, trainable):
        size = sum(named[name].numel() for name in names)
        if not any(name in ever for name in names):
            state, rate = "frozen", "-"
        else:
            state = (
                "trainable" if all(named[n].requires_grad for n in names if n in ever) else "frozen at start"
            )
            if any(name not in ever for name in names):
                state += " (part frozen)"
            rate = f"{trainable.learning_rates[layer]:.2e}"
        lines.append(f"{layer:<12}{size:>12,}  {state:<22}{rate:>10}")
    lines.append(f"\ntrainable at start: {trainable_now:,} of {total:,} parameters; trained at some point: "
                 f"{sum(named[n].numel() for n in ever):,}")  # fmt: skip
    lines.append(
        f"optimizer parameter groups: {len(optimizer.param_groups)} (decayed and undecayed per layer)"
    )
    if trainable.stages:
        unit = config.freeze.unfreeze_unit
        every = config.freeze.unfreeze_every
        lines.append(
            f"gradual unfreezing: {len(trainable.stages)} stages, one more layer every {every} {unit}(s); "
            f"all trainable from {unit} {every * (len(trainable.stages) - 1)}"
        )
    if config.schedule.name == "slanted_triangular":
        warmup = int(total_steps * config.schedule.cut_frac)
    points = sorted({0, warmup, total_steps // 4, total_steps // 2, 3 * total_steps // 4, total_steps - 1})
    top = train.learning_rate
    lines.append(
        "learning rate (top block): "
        + " | ".join(f"step {step}: {top * schedule(step):.3e}" for step in points if 0 <= step < total_steps)
    )
    if config.schedule.name == "reduce_on_plateau":
        lines.append(
            "reduce_on_plateau adapts at each evaluation; the values above assume steady improvement"
        )
    return "\n".join(lines)


def _layers_in_order(model, trainable) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    """Every parameter by layer (frozen ones too), in the model's layer order."""
    from sftlab.errors import SftlabError
    from sftlab.freezing import layer_groups

    try:
        return [(group.name, [name for name, _ in group.parameters]) for group in layer_groups(model)]
    except SftlabError:
        return [("all", [name for name, _ in model.named_parameters()])]


def describe_few_shot(config: Config) -> str:
    """The contrastive stage's pairs and steps, then each later stage's ordinary plan."""
    from sftlab.data.pairs import pairs_per_epoch
    from sftlab.models import locate_model
    from sftlab.recipes.few_shot import stage_configs
    from sftlab.tasks.pooling import resolve_pooling

    few = config.few_shot
    assert few is not None
    tables = load_tables(config.data)
    num_train = len(tables["train"])
    pairs = pairs_per_epoch(num_train, few.pairs_per_example, few.max_pairs)
    steps = -(-pairs // few.pair_batch_size) * few.contrastive_epochs
    pooling = resolve_pooling(few.pooling, locate_model(config.model))
    lines = [
        f"plan: few-shot {few.method} | model {config.model}, {pooling} pooling | train {num_train} examples"
        + (
            f" ({config.data.samples_per_class} per label, sample_seed {config.data.sample_seed})"
            if config.data.samples_per_class
            else ""
        ),  # fmt: skip
        f"stage contrastive: {few.contrastive_epochs} epochs x {pairs} pairs (half same-label, drawn on the fly) = "
        f"{steps} steps of {few.pair_batch_size} pairs ({2 * few.pair_batch_size} texts) | encoder lr "
        f"{few.contrastive_learning_rate:.1e}, schedule {config.schedule.name} | loss (cos(u, v) - same)^2",
    ]
    labels = {str(row[config.data.label_column]) for row in tables["train"].rows}
    for name, stage_config in stage_configs(config, num_train, len(labels))[1:]:
        lines += ["", f"stage {name}:", describe_plan(stage_config)]
    return "\n".join(lines)


def describe_multitask(config: Config) -> str:
    """Each task's size and head, the sampler's probabilities per epoch, and the steps."""
    from sftlab.data.task_sampling import sampler_temperature, task_probabilities
    from sftlab.recipes.multitask import setup_tasks

    multi, tables, _ = setup_tasks(config)
    train = config.train
    sizes = [len(own["train"]) for own in tables]
    batches = [len(plan_steps([1] * size, train.batch_size, 1, train.micro_batch_size, False, train.seed, epoch=0))
               for size in sizes]  # fmt: skip
    steps = sum(batches)
    lines = [
        f"plan: multitask | model {config.model} (one shared encoder) | {len(multi.tasks)} tasks | "
        f"{train.epochs} epochs x {steps} steps = {steps * train.epochs} steps (batch {train.batch_size}, one task per step)",
        f"sampler {config.multitask.sampler}: p_i ∝ n_i^(1/T)"
        + (f", T = {config.multitask.temperature:g}" if config.multitask.sampler == "temperature" else ""),
        "",
        f"{'task':<16}{'kind':<22}{'train':>8}{'batches':>9}{'weight':>8}  head",
    ]
    for sub, size, count, section in zip(multi.tasks, sizes, batches, config.tasks, strict=True):
        labels = len(getattr(sub.task, "label_names", []))
        lines.append(
            f"{sub.name:<16}{section.task:<22}{size:>8}{count:>9}{section.weight:>8g}  {labels} labels"
        )
    lines.append("")
    for epoch in range(train.epochs):
        temperature = sampler_temperature(
            config.multitask.sampler, config.multitask.temperature, epoch, train.epochs
        )
        shares = task_probabilities(sizes, temperature)
        lines.append(
            f"epoch {epoch + 1}: T = {temperature:.3g} | "
            + " | ".join(
                f"{sub.name} p={p:.3f} (~{p * steps:.0f} steps)"
                for sub, p in zip(multi.tasks, shares, strict=True)
            )
        )
    lines.append("each task keeps its own best evaluation (its main metric on its validation split) and is "
                 "saved as output_dir/NAME/")  # fmt: skip
    return "\n".join(lines)


def describe_meta(config: Config) -> str:
    """`sftlab meta`: the label split, the episodes and how many adaptations the run makes."""
    from sftlab.data.episodes import indices_by_label, split_label_sets

    meta = config.meta
    table = load_tables(config.data)["train"]
    labels = [str(row[config.data.label_column]) for row in table.rows]
    largest = max([meta.k_shot, *meta.eval_shots]) + meta.query
    train_labels, held_out = split_label_sets(labels, meta.held_out_labels, largest, config.train.seed)
    counts = {label: len(members) for label, members in indices_by_label(labels).items()}
    adaptations = meta.meta_steps * meta.meta_batch
    evaluations = meta.eval_episodes * len(meta.eval_shots) * 2
    return "\n".join([
        f"plan: meta ({'Reptile' if meta.algorithm == 'reptile' else 'first-order MAML'}) | model {config.model} | {len(table)} training rows, {len(counts)} labels in "
        f"'{config.data.label_column}', {len(train_labels) + len(held_out)} with at least {largest} examples",
        f"meta-training labels ({len(train_labels)}): {', '.join(train_labels)}",
        f"held-out labels ({len(held_out)}): {', '.join(held_out)}",
        f"episodes: {meta.n_way}-way {meta.k_shot}-shot, {meta.query} query per label | {meta.meta_steps} meta-steps x "
        f"{meta.meta_batch} episodes = {adaptations} adaptations of {meta.inner_steps} steps (lr {meta.inner_learning_rate:.1e})",
        (f"epsilon {meta.epsilon:g} -> {meta.final_epsilon:g} (linear)" if meta.algorithm == "reptile" else
         f"meta-update: Adam at {meta.outer_learning_rate:.1e} on the query gradient (one SGD probe step per episode)")
        + " | final comparison: {meta.eval_episodes} held-out "
        f"episodes at {', '.join(str(k) for k in meta.eval_shots)} shots, from both initialisations "
        f"({evaluations} adaptations)",
    ])  # fmt: skip
