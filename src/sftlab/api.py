"""The Python API: `sftlab.finetune(config)` and `sftlab.load(output_dir)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sftlab.config import Config, load_config
from sftlab.predictor import Predictor, load
from sftlab.recipes.finetune import FinetuneResult
from sftlab.recipes.finetune import finetune as run_finetune

__all__ = ["Predictor", "data_check", "finetune", "load", "meta_learn", "search"]


def finetune(
    config: Config | dict[str, Any] | str | Path | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    echo: bool = True,
    resume: bool | Path | str = False,
    *,
    on_evaluation: Any = None,
    on_log: Any = None,
) -> FinetuneResult:
    """Fine-tune as `config` says (a YAML path, a dict, or a Config), with `a.b=value` overrides;
    `resume=True` continues from the latest checkpoint in output_dir, `resume=PATH` from that checkpoint.
    `on_evaluation(state, metrics)` runs at every validation evaluation (return True to stop training);
    `on_log(state, record)` receives the training and validation records (see `sftlab.engine`)."""
    resolved = load_config(config, overrides)
    if resolved.task == "multitask" or resolved.few_shot is not None:
        from sftlab.errors import SftlabError

        if resume:
            raise SftlabError("--resume: few-shot and multi-task runs train in memory and cannot be resumed")
        if resolved.task == "multitask":
            from sftlab.recipes.multitask import train_multitask

            return train_multitask(resolved, overwrite=overwrite, echo=echo)
        from sftlab.recipes.few_shot import train_few_shot

        return train_few_shot(resolved, overwrite=overwrite, echo=echo)
    return run_finetune(
        resolved, overwrite=overwrite, echo=echo, resume=resume, on_evaluation=on_evaluation, on_log=on_log
    )


def data_check(
    config: Config | dict[str, Any] | str | Path | None = None,
    overrides: list[str] | None = None,
    write_clean: Path | str | None = None,
    relabel: bool = False,
    echo: bool = True,
) -> Any:
    """`sftlab data check`: every data check for the config (see docs/data-quality.md); returns a
    DataReport (findings, summary, the JSON report) and writes data_report.json / .html."""
    from sftlab.recipes.data_check import data_check as run_data_check

    return run_data_check(load_config(config, overrides), write_clean, relabel=relabel, echo=echo)


def meta_learn(
    config: Config | dict[str, Any] | str | Path | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    echo: bool = True,
) -> dict[str, Any]:
    """Meta-learn an initialisation with Reptile as the config's `meta:` section says (`sftlab meta`);
    the encoder is saved to output_dir/model, usable as `model:`. Returns metrics.json's content."""
    from sftlab.recipes.meta import meta_learn as run_meta

    return run_meta(load_config(config, overrides), overwrite=overwrite, echo=echo)


def search(
    config: Config | dict[str, Any] | str | Path | None = None,
    overrides: list[str] | None = None,
    workers: int = 1,
    storage: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    echo: bool = True,
) -> Any:
    """Hyperparameter search over the config's `search:` section (see docs/search.md); returns a
    SearchResult (output_dir, best, trials, summary)."""
    from sftlab.recipes.search import search as run_search

    source = str(config) if isinstance(config, str | Path) else "config"
    return run_search(load_config(config, overrides), source=source, workers=workers, storage=storage,
                      resume=resume, overwrite=overwrite, echo=echo)  # fmt: skip
