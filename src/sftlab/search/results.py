"""What a search leaves behind: search.json, trials.csv, best.yaml, the printed table and the plots."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import yaml

STATES = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


def trial_rows(study: Any, keys: list[str]) -> list[dict[str, Any]]:
    """One row per trial: number, state, objective, its std over seeds, steps, wall time, parameters."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        rows.append(
            {
                "number": trial.number,
                "state": STATES.get(trial.state.name, trial.state.name.lower()),
                "value": trial.value if trial.state.name == "COMPLETE" else attrs.get("value"),
                "value_std": attrs.get("std"),
                "steps": attrs.get("steps"),
                "evaluations": attrs.get("evaluations"),
                "wall_s": attrs.get("wall_s"),
                **{key: trial.params.get(key) for key in keys},
                "host": attrs.get("host"),
                "error": attrs.get("error"),
            }
        )
    return rows


def write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def write_best_config(path: Path, config: dict[str, Any]) -> None:
    header = f"# sftlab train {path}\n# The best trial's config, written by sftlab search: it runs as-is.\n"
    write_atomic(path, header + yaml.safe_dump(config, sort_keys=False))


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict[str, Any]], keys: list[str], metric: str, best: int | None) -> str:
    """The printed trial table, best trial marked."""
    columns = ["number", "state", "value", "value_std", "steps", "wall_s", *keys]
    titles = {"number": "trial", "value": metric, "value_std": "std", "wall_s": "seconds"}
    cells = [[titles.get(column, column) for column in columns]]
    for row in rows:
        line = [format_value(row[column]) for column in columns]
        if row["number"] == best:
            line[0] += " *"
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells
    )


PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "slice": "plot_slice",
    "intermediate_values": "plot_intermediate_values",
}


def write_plots(study: Any, folder: Path) -> dict[str, str]:
    """Optuna's matplotlib plots as PNG files; {name: why skipped} for those that cannot be drawn yet."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as plots
    from optuna.importance import PedAnovaImportanceEvaluator

    folder.mkdir(exist_ok=True)
    skipped: dict[str, str] = {}
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "plot_* is experimental"
                kwargs = {"evaluator": PedAnovaImportanceEvaluator()} if name == "param_importances" else {}
                axes = getattr(plots, function)(study, **kwargs)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as error:
            # e.g. importances need two finished trials; the next --resume draws them.
            skipped[name] = str(error).splitlines()[0] if str(error) else type(error).__name__
            plt.close("all")
    return skipped


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(summary, indent=2, default=str) + "\n")
