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
