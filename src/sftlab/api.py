"""The Python API: `sftlab.finetune(config)` and `sftlab.load(output_dir)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sftlab.config import Config, load_config
from sftlab.predictor import Predictor, load
from sftlab.recipes.finetune import FinetuneResult
from sftlab.recipes.finetune import finetune as run_finetune

__all__ = ["Predictor", "finetune", "load"]


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
    return run_finetune(
        resolved, overwrite=overwrite, echo=echo, resume=resume, on_evaluation=on_evaluation, on_log=on_log
    )
