"""One trial, in its own process: `python -m sftlab.search.trial TRIAL_DIR/trial.json`.

The trial is an ordinary sftlab run (one per seed) driven by the engine. At every validation evaluation
it reports the metric to the study (step = the evaluation's number, 1, 2, ...) and stops the run when the
pruner says so. Its objective is the run's *best* validation value (the checkpoint the run keeps), never
its last and never the test split. The result goes to `TRIAL_DIR/result.json`, written last and atomically:
a trial directory with result.json is a finished trial, which `--resume` never runs again.

Running each trial in a fresh process returns all its memory (CPU and GPU) to the system when it ends:
nothing accumulates from trial to trial.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULT = "result.json"
SPEC = "trial.json"


def metric_in(metrics: dict[str, Any], name: str) -> float:
    """The evaluation's value of `name` (the engine may prefix validation metrics with `validation/`)."""
    for key in (name, f"validation/{name}"):
        if key in metrics and not isinstance(metrics[key], dict):
            return float(metrics[key])
    from sftlab.errors import SftlabError

    raise SftlabError(
        f"search.metric: no validation metric '{name}' (available: {', '.join(sorted(metrics))})"
    )


def run_trial(spec: dict[str, Any], trial_dir: Path, trial: Any) -> dict[str, Any]:
    """Train the trial's config once per seed; report to `trial` (an optuna Trial, or None) on the first."""
    from sftlab.config import apply_overrides, validate_config
    from sftlab.recipes.finetune import finetune

    started = time.perf_counter()
    values: list[float] = []
    steps, evaluations, pruned_at = 0, 0, None
    first_run: dict[str, Any] = {}
    for index, seed in enumerate(spec["seeds"]):
        config = validate_config(
            apply_overrides(
                spec["config"], [f"train.seed={seed}", f"output_dir={trial_dir / f'seed_{seed}'}"]
            ),
            f"trial {spec['number']}",
        )

        def on_evaluation(state: Any, metrics: dict[str, Any], first: bool = index == 0) -> bool:
            # Only the first seed's curve goes to the pruner: a step is reported once per trial.
            nonlocal evaluations, pruned_at
            if not first or trial is None:
                return False
            evaluations += 1
            trial.report(metric_in(metrics, spec["metric"]), evaluations)
            # The last evaluation of a run that trained to its end is no place to prune: the run is over,
            # and pruning it would keep a fully trained trial out of the study's best.
            if state.step < state.total_steps and trial.should_prune():
                pruned_at = evaluations
                print(f"pruned at evaluation {evaluations} (step {state.step})", flush=True)
                return True
            return False

        result = finetune(config, on_evaluation=on_evaluation)
        values.append(float(result.metrics["best_metric"]))
        steps += int(result.metrics["steps"])
        if index == 0:
            first_run = {
                key: value for key, value in result.metrics.items() if isinstance(value, int | float | str)
            }
        if pruned_at is not None:
            break
    return {
        "state": "pruned" if pruned_at is not None else "complete",
        "value": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
        "seeds": spec["seeds"][: len(values)],
        "steps": steps,
        "evaluations": evaluations,
        "pruned_at": pruned_at,
        "wall_s": round(time.perf_counter() - started, 3),
        "report": first_run,
    }


def write_result(trial_dir: Path, result: dict[str, Any]) -> None:
    partial = trial_dir / f".{RESULT}.partial"
    partial.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, trial_dir / RESULT)


def die_with_parent(parent: int) -> None:
    """Linux: this trial is killed when the search that started it dies (SIGKILL included), so a killed
    search leaves no trial training on behind it."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the search died before the line above
        os._exit(1)


def main(argv: list[str]) -> int:
    import optuna

    from sftlab.errors import SftlabError
    from sftlab.search.study import make_pruner, open_storage

    spec_path = Path(argv[0])
    trial_dir = spec_path.parent
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    die_with_parent(spec["parent"])
    study = optuna.load_study(
        study_name=spec["study_name"],
        storage=open_storage(spec["storage"]),
        pruner=make_pruner(*spec["pruner"]),
    )
    trial = optuna.trial.Trial(study, spec["trial_id"])
    try:
        result = run_trial(spec, trial_dir, trial)
    except SftlabError as error:  # the user's to fix (e.g. a learning rate whose loss turns NaN): one line
        print(f"sftlab: error: {error}", file=sys.stderr, flush=True)
        write_result(trial_dir, {"state": "fail", "error": str(error)})
        return 2
    write_result(trial_dir, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
