"""Model selection: estimate every candidate on frozen features, confirm the best few by fine-tuning, report.

    estimate -> rank -> confirm (successive halving, through `finetune`) -> selection.json, PNG, best.yaml

Estimates cover classification (single, multi-label, pairs) and token classification; for other tasks
only the confirm stage applies. A candidate that fails (it does not load, runs out of memory) is reported
as failed and the others go on.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sftlab.config import Config
from sftlab.errors import SftlabError

ESTIMATED_TASKS = ("classification", "token_classification")
RESULT_FILES = ("selection.json", "selection.png", "best.yaml")


@dataclass
class Candidate:
    model: str
    status: str = "pending"
    """estimated | failed, or loadable (tasks without estimates); confirm results are in `confirm`."""
    error: str | None = None
    parameters: int | None = None
    hidden_size: int | None = None
    feature_rows: int | None = None
    """Rows the estimators saw: examples, or words for token classification."""
    logme: float | None = None
    hscore: float | None = None
    probe_accuracy: float | None = None
    probe_f1_macro: float | None = None
    seconds: float | None = None
    """Load + embed + all three estimators."""
    embed_seconds: float | None = None
    tokens_per_s: float | None = None
    peak_memory_mb: float | None = None
    rank: int | None = None
    confirm: dict[str, Any] | None = None
    """{status: finished | stopped | failed, metric, value, evaluations, seconds, output_dir[, error]}."""


@dataclass
class SelectionResult:
    output_dir: Path
    task: str
    candidates: list[Candidate]
    pick: str
    picked_by: str
    """'confirm' (the best measured fine-tune) or the estimate's name when nothing was confirmed."""
    table: str = ""
    best_config: Path | None = None
    seconds: float = 0.0


def default_candidates(task: str) -> list[str]:
    """Every built-in model of the kind the task fine-tunes: decoders for causal_lm, encoders otherwise."""
    from sftlab.catalog.models import BUILTIN_MODELS

    # The catalog describes each model as "<name>: <architecture> encoder|decoder, ..."
    def kind(description: str) -> str:
        return "decoder" if "decoder" in description.split(",")[0] else "encoder"

    wanted = "decoder" if task == "causal_lm" else "encoder"
    return [name for name, spec in BUILTIN_MODELS.items() if kind(spec.description) == wanted]


def select(
    config: Config, models: list[str] | None = None, confirm: int | None = None, overwrite: bool = False,
    echo: bool = True,
) -> SelectionResult:  # fmt: skip
    """Rank `models` (default: config.select.models, else every built-in encoder) for the config's task and
    data; write selection.json, selection.png and best.yaml into config.output_dir."""
    from sftlab.data.loading import load_tables
    from sftlab.models import quiet_transformers
    from sftlab.outputs import check_output_dir, release_lock, take_lock
    from sftlab.tasks import task_class

    quiet_transformers()
    log = functools.partial(print, flush=True) if echo else (lambda *args, **kwargs: None)
    started = time.perf_counter()
    settings = config.select
    names = list(models or settings.models or default_candidates(config.task))
    if not names:
        raise SftlabError(f"select: no candidate models for task {config.task}; pass --models a,b,c")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SftlabError(f"--models: names a candidate twice: {', '.join(repeated)}")
    if any(not name.strip() for name in names):
        raise SftlabError("--models: each candidate must name a model (e.g. --models minilm,mpnet_base)")
    confirm = settings.confirm if confirm is None else confirm
    if confirm < 0:
        raise SftlabError(f"--confirm: must be 0 (no fine-tunes) or more (got {confirm})")
    check_output_dir(config.output_dir, overwrite)
    tables = load_tables(config.data)
    task = task_class(config.task).from_config(config, tables)
    candidates = [Candidate(name) for name in names]

    # --- estimate: frozen features of one stratified sample, the same rows for every candidate
    estimated = config.task in ESTIMATED_TASKS
    if estimated:
        sample = sample_table(task, tables["train"], settings.samples, config.train.seed)
        log(f"select: {config.task} | {len(names)} candidates | {len(sample)} of {len(tables['train'])} "
            f"training {'sentences' if config.task == 'token_classification' else 'examples'} (stratified) | "
            f"ranked by {settings.rank_by}")  # fmt: skip
        for candidate in candidates:
            estimate_candidate(candidate, config, task, sample)
            log(f"  {candidate.model}: " + (summary_line(candidate) if candidate.status == "estimated"
                                             else f"failed: {candidate.error}"))  # fmt: skip
        usable = [c for c in candidates if c.status == "estimated"]
        if not usable:
            raise SftlabError(
                "select: every candidate failed: " + "; ".join(f"{c.model}: {c.error}" for c in candidates)
            )
        key = {"logme": "logme", "hscore": "hscore", "probe": probe_key(config.task)}[settings.rank_by]
        order = sorted(usable, key=lambda c: -getattr(c, key))
        for rank, candidate in enumerate(order, 1):
            candidate.rank = rank
    else:
        log(f"select: estimates cover classification and token classification; for {config.task} only the "
            f"confirm stage applies: each of the {len(names)} candidates is fine-tuned (successive halving)")  # fmt: skip
        # Candidates that cannot even be found fail here, before anything is written.
        for candidate in candidates:
            check_loadable(candidate, config)
        order = [c for c in candidates if c.status != "failed"]
        if not order:
            raise SftlabError(
                "select: every candidate failed: " + "; ".join(f"{c.model}: {c.error}" for c in candidates)
            )
        confirm = len(order)

    # --- the output dir exists only now that all input checked out and something was estimated
    take_lock(config.output_dir, overwrite)
    try:
        metric = config.train.metric_for_best or task.main_metric
        if confirm:
            confirm_candidates(order[:confirm], config, metric, settings.halving_rate, log)
        confirmed = [c for c in order if c.confirm and c.confirm["status"] == "finished"]
        if confirmed:
            lower = metric == "loss"
            best = sorted(confirmed, key=lambda c: c.confirm["value"] if lower else -c.confirm["value"])[0]  # type: ignore[index]
            pick, picked_by = best.model, "confirm"
        elif estimated:
            pick, picked_by = order[0].model, settings.rank_by
        else:
            raise SftlabError(
                "select: every confirm run failed: "
                + "; ".join(f"{c.model}: {(c.confirm or {}).get('error')}" for c in order)
            )
        result = SelectionResult(config.output_dir, config.task, candidates, pick, picked_by)
        result.table = format_table(result, metric, estimated)
        result.seconds = time.perf_counter() - started
        write_results(result, config, metric, estimated)
    finally:
        release_lock(config.output_dir)
    log(result.table)
    log(
        f"\npick: {pick} (by {picked_by}); saved to {config.output_dir}/ (selection.json, selection.png, best.yaml)"
    )
    log(f"train it: sftlab train {config.output_dir / 'best.yaml'}")
    return result


def probe_key(task: str) -> str:
    # Token classification: most words are 'O', so accuracy says little; macro F1 over the tags does.
    return "probe_f1_macro" if task == "token_classification" else "probe_accuracy"


def sample_table(task: Any, train: Any, count: int, seed: int) -> Any:
    """A stratified sample of the training table: by label, by multi-label row's first label, or (token
    classification) by each sentence's first entity type."""
    from sftlab.selection.features import stratified_sample

    if task.name == "token_classification":
        _, tags = task.sentences(train)
        labels: list[Any] = [next((t[2:] for t in sentence if t != "O"), "O") for sentence in tags]
    else:
        labels = task.label_ids(train)
    return train.subset(stratified_sample(labels, count, seed))


def estimate_candidate(candidate: Candidate, config: Config, task: Any, sample: Any) -> None:
    """Fill `candidate` with its estimates, or mark it failed with the reason; never raises for the model."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from sftlab.runtime import make_accelerator, release_freed_memory, set_seed
    from sftlab.selection.estimators import hscore, linear_probe, logme
    from sftlab.selection.features import PeakMemory, embed

    started = time.perf_counter()
    accelerator, _ = make_accelerator(config.train.device, config.train.precision)
    model = None
    try:
        with PeakMemory(accelerator.device) as memory:
            model, tokenizer = load_encoder(candidate.model, config)
            model.to(accelerator.device)
            candidate.parameters = sum(p.numel() for p in model.parameters())
            candidate.hidden_size = int(getattr(model.config, "hidden_size", 0)) or None
            examples = task.encode(tokenizer, sample)
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            features = embed(model, examples, pad_id, config.train.eval_batch_size, accelerator.device,
                             accelerator.autocast, per_word=task.name == "token_classification")  # fmt: skip
        del model
        model = None
        if not np.isfinite(features.matrix).all():
            raise ValueError("the model's features hold NaN or inf")
        set_seed(config.train.seed)
        candidate.feature_rows = len(features.matrix)
        # The matrices are small (hidden size squared): one BLAS thread is as fast, and does not spin
        # against other processes on a busy machine (measured: LogME 2.3 s on one thread, 43 s on two).
        with threadpool_limits(limits=1):
            candidate.logme = logme(features.matrix, features.labels)
            candidate.hscore = hscore(features.matrix, features.labels, shrinkage=True)
            probe = linear_probe(
                features.matrix, features.labels, config.select.probe_folds, config.train.seed
            )
        candidate.probe_accuracy, candidate.probe_f1_macro = probe.accuracy, probe.f1_macro
        candidate.embed_seconds = round(features.seconds, 3)
        candidate.tokens_per_s = round(features.tokens / features.seconds, 1) if features.seconds else None
        candidate.peak_memory_mb = round(memory.megabytes, 1)
        candidate.status = "estimated"
    except (SftlabError, OSError, ValueError, RuntimeError, MemoryError, ImportError, KeyError) as error:
        # torch.OutOfMemoryError is a RuntimeError; a model that cannot load raises OSError or ValueError.
        candidate.status, candidate.error = "failed", one_line(error)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        release_freed_memory()
        candidate.seconds = round(time.perf_counter() - started, 3)


def check_loadable(candidate: Candidate, config: Config) -> None:
    """Mark a candidate failed when its name leads nowhere or its tokenizer does not load."""
    from sftlab.models import load_tokenizer, locate_model

    try:
        load_tokenizer(locate_model(candidate.model), candidate.model, config.trust_remote_code)
        candidate.status = "loadable"
    except (SftlabError, OSError, ValueError) as error:
        candidate.status, candidate.error = "failed", one_line(error)


def load_encoder(name: str, config: Config) -> tuple[Any, Any]:
    """The candidate's bare pretrained body (AutoModel) and tokenizer; a bad name raises SftlabError."""
    from transformers import AutoModel

    from sftlab.models import _hub_error, load_tokenizer, locate_model

    location = locate_model(name)
    tokenizer = load_tokenizer(location, name, config.trust_remote_code)
    try:
        model = AutoModel.from_pretrained(location, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as error:
        raise _hub_error(name, error) from None
    return model, tokenizer


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if not isinstance(error, SftlabError) else text[:300]


def summary_line(candidate: Candidate) -> str:
    return (
        f"LogME {candidate.logme:.4f}, H-score {candidate.hscore:.3f}, probe accuracy {candidate.probe_accuracy:.4f} "
        f"(macro F1 {candidate.probe_f1_macro:.4f}) | {candidate.seconds:.1f} s, {candidate.tokens_per_s:,.0f} tokens/s, "
        f"peak +{candidate.peak_memory_mb:,.0f} MB, {candidate.parameters / 1e6:.1f}M parameters"
    )


# --- confirm: short real fine-tunes through the training loop, successive halving at evaluations


class SuccessiveHalving:
    """Asynchronous successive halving over runs that go one after another (ASHA, Li et al. 2020).

    Rungs are the evaluations 1, rate, rate^2, ...; a run reaching a rung continues only when its value is
    in the top ceil(n / rate) of the n runs that reached that rung so far (itself included). The first run
    always goes on: it sets the bar for the others.
    """

    def __init__(self, rate: int, lower_is_better: bool = False) -> None:
        self.rate = rate
        self.lower_is_better = lower_is_better
        self.rungs: dict[int, list[float]] = {}

    def is_rung(self, evaluation: int) -> bool:
        return evaluation >= 1 and self.rate ** round(math.log(evaluation, self.rate)) == evaluation

    def keep_going(self, evaluation: int, value: float) -> bool:
        if not self.is_rung(evaluation):
            return True
        values = self.rungs.setdefault(evaluation, [])
        values.append(value)
        better = sum(1 for v in values if (v < value if self.lower_is_better else v > value))
        return better < math.ceil(len(values) / self.rate)


def confirm_candidates(chosen: list[Candidate], config: Config, metric: str, rate: int, log: Any) -> None:
    """Fine-tune each chosen candidate in order (best estimate first) into output_dir/confirm/<name>."""
    from sftlab.recipes.finetune import finetune

    halving = SuccessiveHalving(rate, lower_is_better=metric == "loss")
    for position, candidate in enumerate(chosen, 1):
        output = config.output_dir / "confirm" / slug(candidate.model)
        run_config = config.model_copy(deep=True, update={"model": candidate.model, "output_dir": output})
        # A confirm run is never resumed: no checkpoints (the best model is still kept in memory).
        if run_config.train.save_every is None:
            run_config.train.keep_last = 0
        log(f"confirm {position}/{len(chosen)}: fine-tuning {candidate.model} ({config.train.epochs} epochs, "
            f"validation {metric} at each evaluation)")  # fmt: skip
        values: list[float] = []
        stopped: list[bool] = []

        def on_evaluation(state: Any, metrics: dict[str, Any], model: str = candidate.model,
                          values: list[float] = values, stopped: list[bool] = stopped) -> bool:  # fmt: skip
            value = float(metrics.get(metric, metrics.get(f"validation/{metric}", math.nan)))
            values.append(value)
            going = halving.keep_going(len(values), value)
            # Behind at the run's last evaluation is no stop: it trained to its end.
            last = state.step >= state.total_steps
            note = (
                "" if going else " (behind; the run is over)" if last else " -> stopped (successive halving)"
            )
            log(f"  {model} evaluation {len(values)}: validation {metric} {value:.4f}{note}")
            if not going and not last:
                stopped.append(True)
            return not going

        started = time.perf_counter()
        try:
            result = finetune(run_config, overwrite=False, echo=False, on_evaluation=on_evaluation)
        except (SftlabError, OSError, ValueError, RuntimeError, MemoryError) as error:
            candidate.confirm = {"status": "failed", "error": one_line(error), "metric": metric,
                                 "output_dir": str(output)}  # fmt: skip
            log(f"  {candidate.model}: confirm failed: {one_line(error)}")
            continue
        stopped_early = bool(stopped)
        candidate.confirm = {
            "status": "stopped" if stopped_early else "finished", "metric": metric,
            "value": float(result.metrics["best_metric"]), "evaluations": len(result.history),
            "history": [float(entry[metric]) for entry in result.history if metric in entry],
            "report_split": result.metrics.get("split"), "report_value": result.metrics.get(metric),
            "seconds": round(time.perf_counter() - started, 3),
            "train_seconds": result.metrics.get("train_runtime_s"), "output_dir": str(output),
        }  # fmt: skip


def slug(name: str) -> str:
    """A folder name for a model name, path or Hub id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/")).strip("._") or "model"


# --- report


def format_table(result: SelectionResult, metric: str, estimated: bool) -> str:
    probe = "probe macro F1" if result.task == "token_classification" else "probe acc"
    header = ["rank", "model"]
    if estimated:
        header += ["LogME", "H-score", probe]
    header += [f"confirmed {metric}", "time s", "peak MB", "params M", "tokens/s", "status"]
    rows = []
    ordered = sorted(result.candidates, key=lambda c: (c.rank is None, c.rank or 0))
    for c in ordered:
        row = [str(c.rank or "-"), c.model + (" *" if c.model == result.pick else "")]
        if estimated:
            probe_value = c.probe_f1_macro if result.task == "token_classification" else c.probe_accuracy
            row += [_num(c.logme, 4), _num(c.hscore, 3), _num(probe_value, 4)]
        confirmed = "-"
        if c.confirm is not None:
            confirmed = (f"{c.confirm['value']:.4f}" + (" (stopped)" if c.confirm["status"] == "stopped" else "")
                         if c.confirm["status"] != "failed" else "failed")  # fmt: skip
        status = c.status if c.status != "failed" else f"failed: {c.error}"
        row += [confirmed, _num(c.seconds, 1), _num(c.peak_memory_mb, 0), _num(c.parameters and c.parameters / 1e6, 1),
                _num(c.tokens_per_s, 0), status]  # fmt: skip
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header[:-1])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header[:-1], widths, strict=True)) + "  " + header[-1]]
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if digits == 0 else f"{value:.{digits}f}"


def write_results(result: SelectionResult, config: Config, metric: str, estimated: bool) -> None:
    """selection.json, selection.png and best.yaml, each written to a temporary name and renamed."""
    import yaml

    output = config.output_dir
    best_values = config.to_yaml_dict()
    best_values.pop("select", None)
    best_values["model"] = result.pick
    best_values["output_dir"] = str(output / "best")
    best_path = output / "best.yaml"
    header = f"# sftlab train {best_path}\n# the pick of `sftlab select` ({result.picked_by}); see selection.json\n"
    result.best_config = best_path
    record = {
        "task": result.task, "pick": result.pick, "picked_by": result.picked_by, "metric": metric,
        "rank_by": config.select.rank_by if estimated else None, "estimated": estimated,
        "samples": config.select.samples, "seconds": round(result.seconds, 3),
        "candidates": [asdict(c) for c in result.candidates], "best_config": str(best_path),
    }  # fmt: skip
    _write(output / "selection.json", (json.dumps(record, indent=2) + "\n").encode())
    _write(output / "selection.png", bar_chart(result, metric, estimated))
    _write(best_path, (header + yaml.safe_dump(best_values, sort_keys=False)).encode())


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SftlabError(f"{path}: cannot write: {error.strerror or error}") from None


def bar_chart(result: SelectionResult, metric: str, estimated: bool) -> bytes:
    """One horizontal bar panel per score (estimates, then the confirmed metric), candidates in rank order."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = [c for c in sorted(result.candidates, key=lambda c: (c.rank is None, c.rank or 0))]
    panels: list[tuple[str, list[tuple[str, float]]]] = []
    if estimated:
        probe = "probe_f1_macro" if result.task == "token_classification" else "probe_accuracy"
        for title, key in (
            ("LogME", "logme"),
            ("H-score (shrinkage)", "hscore"),
            (probe.replace("_", " "), probe),
        ):
            panels.append(
                (title, [(c.model, getattr(c, key)) for c in ordered if getattr(c, key) is not None])
            )
    confirmed = [(c.model, c.confirm["value"]) for c in ordered if c.confirm and "value" in c.confirm]
    if confirmed:
        panels.append((f"fine-tuned validation {metric}", confirmed))
    figure, axes = plt.subplots(
        1, len(panels), figsize=(3.6 * len(panels), 0.5 * len(ordered) + 1.6), squeeze=False
    )
    for axis, (title, bars) in zip(axes[0], panels, strict=True):
        labels = [name + (" *" if name == result.pick else "") for name, _ in bars]
        values = [value for _, value in bars]
        axis.barh(
            labels[::-1],
            values[::-1],
            color=["#d62728" if n == result.pick else "#1f77b4" for n, _ in bars][::-1],
        )
        axis.set_title(title, fontsize=10)
        axis.tick_params(labelsize=8)
        low, high = min(values + [0.0]), max(values + [0.0])
        axis.set_xlim(low - 0.05 * (high - low or 1), high + 0.05 * (high - low or 1))
    figure.suptitle(f"sftlab select: {result.task}, pick {result.pick} (*)", fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
