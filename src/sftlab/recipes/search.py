"""Hyperparameter search: check -> open the study -> run trials (each a real run, in its own process) -> report.

    sftlab search examples/trec6_search.yaml [overrides] [--workers N] [--storage URL] [--resume]

OUTPUT_DIR holds the study (`study.journal` unless --storage names a database), one folder per trial
(`trials/NNN/`: trial.json, log.txt, result.json, seed_S/ = that seed's ordinary run output), and at the
end search.json, trials.csv, best.yaml and plots/. See docs/search.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftlab.config import Config
from sftlab.errors import SftlabError
from sftlab.outputs import lock_holder, release_lock, take_lock
from sftlab.search.results import table as trial_table
from sftlab.search.results import trial_rows, write_best_config, write_csv, write_plots, write_summary
from sftlab.search.space import check_edges, flatten_space, grid, grid_size, parse_space, trial_config
from sftlab.search.study import (
    JOURNAL,
    describe_url,
    make_pruner,
    make_sampler,
    open_storage,
    owner,
    quiet_optuna,
    stale_trials,
)  # fmt: skip
from sftlab.search.trial import RESULT, SPEC

FINISHED = ("COMPLETE", "PRUNED")
MAX_FAILURES_IN_A_ROW = 3


@dataclass
class SearchResult:
    output_dir: Path
    best: dict[str, Any] | None
    """number, value, std, params, directory, config (best.yaml's), report (its test-split metrics)."""
    trials: list[dict[str, Any]] = field(default_factory=list)
    """One row per trial, as in trials.csv."""
    summary: dict[str, Any] = field(default_factory=dict)
    """search.json."""


def resolve_metric(config: Config) -> str:
    """The validation metric the search optimizes: search.metric, train.metric_for_best, or the task's."""
    if config.search is not None and config.search.metric:
        return config.search.metric
    if config.train.metric_for_best:
        return config.train.metric_for_best
    from sftlab.tasks import task_class

    task = task_class(config.task)
    if config.task != "classification":
        return task.main_metric
    from sftlab.data.loading import load_tables  # multi-label data changes classification's main metric

    return task.from_config(config, load_tables(config.data)).main_metric


def search(
    config: Config,
    source: str = "config",
    workers: int = 1,
    storage: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    echo: bool = True,
) -> SearchResult:
    """Run the search `config.search` describes; `source` names the config in error messages."""
    log = (lambda *args: print(*args, flush=True)) if echo else (lambda *args: None)
    # --- check: every input problem fails here, before the output directory is touched
    spec = config.search
    if spec is None:
        raise SftlabError(
            f"{source}: has no search: section (e.g. search: {{space: {{train.learning_rate: {{low: 1e-5, high: 1e-4, log: true}}}}}})"
        )
    if workers < 1:
        raise SftlabError(f"--workers: must be at least 1 (got {workers})")
    if resume and overwrite:
        raise SftlabError(
            "--resume continues the search in output_dir and --overwrite replaces it: choose one"
        )
    dimensions = parse_space(spec.space, spec.sampler, source)
    keys = [dimension.key for dimension in dimensions]
    # Trials need no checkpoints: a killed trial reruns from the start (and finished ones never do).
    base = config.to_yaml_dict()
    base["train"].update(keep_last=0, save_every=None)
    check_edges(base, dimensions, source)
    wanted = min(spec.trials, grid_size(dimensions)) if spec.sampler == "grid" else spec.trials
    output_dir = config.output_dir.resolve()
    study_name = spec.study_name or output_dir.name
    if output_dir.exists() and not output_dir.is_dir():
        raise SftlabError(f"output_dir {output_dir}: exists and is not a directory")
    holder = lock_holder(output_dir) if output_dir.is_dir() else None
    if holder is not None:
        raise SftlabError(
            f"output_dir {output_dir}: another sftlab process (pid {holder}) is writing into it"
        )
    has_files = output_dir.is_dir() and any(p.name != ".sftlab.lock" for p in output_dir.iterdir())
    if has_files and not (resume or overwrite):
        raise SftlabError(
            f"output_dir {output_dir}: already holds a search; pass --resume to continue it or --overwrite to start over"
        )
    if resume and storage is None and not (output_dir / JOURNAL).is_file():
        raise SftlabError(f"output_dir {output_dir}: holds no search ({JOURNAL}) to resume")
    shown_storage = describe_url(storage) if storage else str(output_dir / JOURNAL)
    remote = open_storage(storage) if storage else None  # a URL that cannot be opened fails here
    metric = resolve_metric(config)
    minimize = metric == "loss"  # the engine keeps the lowest loss and the highest of every other metric
    if spec.direction != "auto" and (spec.direction == "minimize") != minimize:
        raise SftlabError(
            f"{source}: search.direction: {spec.direction} contradicts search.metric {metric}: each run keeps "
            f"the checkpoint with the {'lowest' if minimize else 'highest'} {metric}; use direction auto"
        )
    base["train"]["metric_for_best"] = metric
    study_record = {
        "space": flatten_space(spec.space),
        "sampler": spec.sampler,
        "metric": metric,
        "seeds": spec.seeds,
    }
    if remote is not None or resume:
        existing = _existing_study(remote or open_storage(str(output_dir / JOURNAL)), study_name)
        if existing is not None and not overwrite:
            if {k: existing.user_attrs.get(k) for k in study_record} != json.loads(json.dumps(study_record)):
                raise SftlabError(
                    f"study '{study_name}' in {shown_storage}: was started with another search "
                    "(space, sampler, metric or seeds); set search.study_name or a new output_dir"
                )
        elif resume and existing is None:
            raise SftlabError(f"study '{study_name}' in {shown_storage}: does not exist; nothing to resume")

    # --- open: the output directory and the study
    import optuna
    from optuna.trial import TrialState

    quiet_optuna()
    take_lock(output_dir, overwrite)
    try:
        store = remote if remote is not None else open_storage(str(output_dir / JOURNAL))
        location = storage or str(output_dir / JOURNAL)
        if overwrite and remote is not None and _existing_study(remote, study_name) is not None:
            optuna.delete_study(study_name=study_name, storage=remote)
        pruner_args = [spec.pruner, spec.pruner_startup_trials, spec.pruner_warmup]
        study = optuna.create_study(
            storage=store, study_name=study_name, load_if_exists=True,
            sampler=make_sampler(spec.sampler, spec.seed, grid(dimensions) if spec.sampler == "grid" else None),
            pruner=make_pruner(*pruner_args), direction="minimize" if minimize else "maximize",
        )  # fmt: skip
        for key, value in study_record.items():
            if key not in study.user_attrs:
                study.set_user_attr(key, value)
        trials_dir = output_dir / "trials"
        trials_dir.mkdir(exist_ok=True)
        if resume:
            _recover(study, output_dir, trials_dir, log)

        # --- run: each worker thread asks the study for a trial, runs it in a subprocess, tells the result
        from tqdm.auto import tqdm

        lock = threading.Lock()
        started = time.monotonic()
        failures = {"in_a_row": 0, "last_error": ""}
        done_before = len(study.get_trials(deepcopy=False, states=tuple(TrialState[s] for s in FINISHED)))
        progress = tqdm(total=wanted, initial=min(done_before, wanted), desc="trials", unit="trial",
                        disable=not echo, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
        log(
            f"sftlab search: {spec.sampler} sampler, {spec.pruner} pruner | {wanted} trials of {', '.join(keys)} | "
            f"{'minimize' if minimize else 'maximize'} validation {metric} | {workers} worker(s) | study {study_name} in {shown_storage}"
        )
        threads = max(1, (os.cpu_count() or 1) // workers)
        gpus = _gpu_count() if workers > 1 else 0

        def next_trial() -> tuple[Any, dict[str, Any]] | None:
            with lock:
                if spec.timeout is not None and time.monotonic() - started > spec.timeout:
                    return None
                if failures["in_a_row"] >= MAX_FAILURES_IN_A_ROW:
                    return None
                counts = study.get_trials(
                    deepcopy=False, states=(*(TrialState[s] for s in FINISHED), TrialState.RUNNING)
                )
                if len(counts) >= wanted:
                    return None
                trial = study.ask()
                if spec.sampler == "grid" and "retry_of" in trial.user_attrs:
                    _same_grid_point(study, trial, trial.user_attrs["retry_of"])
                trial.set_user_attr("host", owner())
                trial.set_user_attr("output_dir", str(output_dir))
                return trial, {dimension.key: dimension.suggest(trial) for dimension in dimensions}

        def worker(slot: int) -> None:
            env = dict(os.environ)
            if workers > 1:  # threads split between the workers on a CPU; one GPU each on a multi-GPU machine
                env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                if gpus > 1:
                    env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            while (picked := next_trial()) is not None:
                trial, params = picked
                outcome = _run_trial(
                    study,
                    trial,
                    params,
                    base,
                    spec,
                    metric,
                    location,
                    study_name,
                    pruner_args,
                    trials_dir,
                    env,
                )
                with lock:
                    failed = outcome["state"] == "fail"
                    failures["in_a_row"] = failures["in_a_row"] + 1 if failed else 0
                    failures["last_error"] = outcome.get("error") or failures["last_error"]
                    if spec.keep_models == "best":
                        _keep_best_model(study, trials_dir)
                    if not failed:
                        progress.update(1)
                    best = _best(study)
                    if best is not None:
                        progress.set_postfix_str(
                            f"best {metric} {best.value:.4f} (trial {best.number})", refresh=False
                        )
                    shown = ", ".join(f"{key}={_short(value)}" for key, value in params.items())
                    value = f"{metric} {outcome['value']:.4f}" if outcome.get("value") is not None else ""
                    detail = (
                        outcome.get("error")
                        or f"{outcome.get('steps')} steps, {outcome.get('wall_s', 0):.0f} s"
                    )
                    if echo:
                        progress.write(
                            f"trial {trial.number} {outcome['state']}: {value} | {shown} | {detail}",
                            file=sys.stdout,
                        )

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(worker, slot) for slot in range(workers)]:
                future.result()
        progress.close()
        if failures["in_a_row"] >= MAX_FAILURES_IN_A_ROW and _best(study) is None:
            raise SftlabError(
                f"the first {MAX_FAILURES_IN_A_ROW} trials all failed; the last: {failures['last_error']}"
            )

        # --- report: the table, search.json, trials.csv, best.yaml and the plots
        if spec.keep_models == "best":
            _keep_best_model(study, trials_dir)
        return _report(study, config, spec, base, keys, metric, minimize, wanted, shown_storage, study_name,
                       output_dir, trials_dir, started, log)  # fmt: skip
    finally:
        release_lock(output_dir)


def _existing_study(store: Any, name: str) -> Any:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        return None


def _recover(study: Any, output_dir: Path, trials_dir: Path, log: Any) -> None:
    """Trials a killed search left RUNNING: a finished one (its result.json is there) is told its result;
    any other is marked failed and its parameters queued to run again."""

    for trial in stale_trials(study, output_dir):
        folder = trials_dir / f"{trial.number:03d}"
        result = _read_result(folder)
        if result is not None and result["state"] in ("complete", "pruned"):
            _tell(study, trial.number, result)
            log(f"resume: trial {trial.number} had finished; its result is recorded")
            continue
        _tell(
            study,
            trial.number,
            {"state": "fail", "error": "cut off: the search was killed during this trial"},
        )
        # Queued with its values fixed: the grid sampler counts a failed point as visited and would skip it.
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        shutil.rmtree(folder, ignore_errors=True)
        log(f"resume: trial {trial.number} was cut off; marked failed, its parameters run again")


def _same_grid_point(study: Any, trial: Any, retried: int) -> None:
    """A queued rerun of a cut-off grid trial is that grid point: the grid sampler then counts it as
    visited (and its after_trial, which expects a grid id on every trial, works)."""
    storage = study._storage
    old = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, retried))
    for key in ("grid_id", "search_space"):
        if key in old.system_attrs:
            storage.set_trial_system_attr(trial._trial_id, key, old.system_attrs[key])


def _read_result(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tell(study: Any, number: int, result: dict[str, Any]) -> None:
    """Record a trial's outcome (its figures as user attributes, then its state) in the study."""
    import optuna
    from optuna.trial import TrialState

    running = optuna.trial.Trial(
        study, study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    )
    for key in ("std", "steps", "evaluations", "wall_s", "pruned_at", "error"):
        if result.get(key) is not None:
            running.set_user_attr(key, result[key])
    if result["state"] == "pruned":
        running.set_user_attr("value", result["value"])
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
        result["state"], TrialState.FAIL
    )
    try:
        study.tell(number, result["value"] if state == TrialState.COMPLETE else None, state=state)
    except RuntimeError as error:
        # The grid sampler calls study.stop() when its grid is used up, which only optimize() allows; the
        # trial is stored by then, and the trial budget ends the search.
        if "Study.stop" not in str(error):
            raise


def _run_trial(study: Any, trial: Any, params: dict[str, Any], base: dict[str, Any], spec: Any, metric: str,
               location: str, study_name: str, pruner_args: list[Any], trials_dir: Path,
               env: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """One trial in a subprocess; its outcome is told to the study and returned."""
    from sftlab.errors import ConfigError

    folder = trials_dir / f"{trial.number:03d}"
    try:
        config = trial_config(base, params, f"trial {trial.number}")
    except ConfigError as error:  # a combination the config rejects (each value alone was checked at start)
        outcome = {"state": "fail", "error": "; ".join(error.problems)}
        _tell(study, trial.number, outcome)
        return outcome
    folder.mkdir(parents=True, exist_ok=True)
    seeds = spec.seeds or [config.train.seed]
    record = {
        "number": trial.number, "trial_id": trial._trial_id, "study_name": study_name, "storage": location,
        "pruner": pruner_args, "metric": metric, "seeds": seeds, "params": params, "config": config.to_yaml_dict(),
        "parent": os.getpid(),
    }  # fmt: skip
    (folder / SPEC).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    with open(folder / "log.txt", "w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sftlab.search.trial", str(folder / SPEC)],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        code = process.wait()
    outcome = _read_result(folder)
    if outcome is None:
        outcome = {
            "state": "fail",
            "error": f"trial process exited with code {code}; see {folder / 'log.txt'}: {_last_line(folder / 'log.txt')}",
        }
    _tell(study, trial.number, outcome)
    return outcome


def _last_line(path: Path) -> str:
    try:
        lines = [
            line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def _best(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def _keep_best_model(study: Any, trials_dir: Path) -> None:
    """Disk: only the best trial (in the whole study) keeps its model/ folders."""
    best = _best(study)
    for folder in trials_dir.iterdir():
        if not folder.is_dir() or (best is not None and folder.name == f"{best.number:03d}"):
            continue
        result = _read_result(folder)
        if result is None:  # still running
            continue
        for model in folder.glob("seed_*/model"):
            shutil.rmtree(model, ignore_errors=True)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _report(study: Any, config: Config, spec: Any, base: dict[str, Any], keys: list[str], metric: str,
            minimize: bool, wanted: int, shown_storage: str, study_name: str, output_dir: Path, trials_dir: Path,
            started: float, log: Any) -> SearchResult:  # fmt: skip
    rows = trial_rows(study, keys)
    best_trial = _best(study)
    best: dict[str, Any] | None = None
    if best_trial is not None:
        seeds = spec.seeds or [config.train.seed]
        best_config = trial_config(base, {**best_trial.params, "train.seed": seeds[0]}).to_yaml_dict()
        # best.yaml is an ordinary run: the user's checkpointing back, its own output folder, no search.
        best_config["train"].update(keep_last=config.train.keep_last, save_every=config.train.save_every)
        best_config["output_dir"] = str(output_dir / "best")
        best_config["search"] = None
        folder = trials_dir / f"{best_trial.number:03d}"
        result = _read_result(folder) or {}
        best = {
            "number": best_trial.number, "value": best_trial.value, "std": best_trial.user_attrs.get("std"),
            "params": best_trial.params, "directory": str(folder) if folder.is_dir() else None,
            "report": result.get("report"), "config": best_config,
        }  # fmt: skip
        write_best_config(output_dir / "best.yaml", best_config)
    write_csv(output_dir / "trials.csv", rows)
    skipped = write_plots(study, output_dir / "plots")
    counts = {
        state: sum(row["state"] == state for row in rows)
        for state in ("complete", "pruned", "failed", "running")
    }
    summary = {
        "study_name": study_name, "storage": shown_storage, "sampler": spec.sampler, "pruner": spec.pruner,
        "metric": metric, "direction": "minimize" if minimize else "maximize", "space": flatten_space(spec.space),
        "seeds": spec.seeds, "trials_requested": wanted, "counts": counts,
        "total_steps": sum(row["steps"] or 0 for row in rows),
        "total_trial_seconds": round(sum(row["wall_s"] or 0 for row in rows), 3),
        "this_invocation_seconds": round(time.monotonic() - started, 3),
        "best": {k: v for k, v in best.items() if k != "config"} if best else None,
        "plots_skipped": skipped, "trials": rows,
    }  # fmt: skip
    write_summary(output_dir / "search.json", summary)
    log("")
    log(trial_table(rows, keys, metric, best_trial.number if best_trial else None))
    log(f"\n{counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed; "
        f"{summary['total_steps']} optimizer steps in all")  # fmt: skip
    if best is not None:
        log(f"best: trial {best['number']}, validation {metric} {best['value']:.4f}"
            + (f" ± {best['std']:.4f} over {len(spec.seeds)} seeds" if spec.seeds else ""))  # fmt: skip
        report = best["report"] or {}
        if report.get("split") == "test" and metric in report:
            log(f"its test {metric}: {report[metric]:.4f} (reported only: the test split chose nothing)")
        log(f"sftlab train {output_dir / 'best.yaml'}   # retrains it as an ordinary run")
    log(f"saved to {output_dir}/ (search.json, trials.csv, best.yaml, plots/, trials/)")
    return SearchResult(output_dir, best, rows, summary)
