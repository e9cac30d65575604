"""The Optuna study: its storage, sampler and pruner, and what `--resume` does to a killed search.

Storage. Trials report from their own processes, so the storage must take writes from several processes
at once. By default the study is an Optuna journal file in the output directory (`study.journal`,
`JournalStorage(JournalFileBackend)`: an append-only log under a file lock, the storage Optuna documents
for several processes on one machine); SQLite, under the same load, fails with "database is locked"
(measured in docs/search.md). `--storage URL` takes any database SQLAlchemy reaches (PostgreSQL, MySQL:
how several machines share one study) or a path ending in `.journal`.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

from sftlab.errors import SftlabError

JOURNAL = "study.journal"


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_storage(location: str) -> Any:
    """An Optuna storage for a journal file path or a database URL; one clear error if it cannot be opened."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    quiet_optuna()
    if "://" not in location:
        path = Path(location)
        if not path.parent.is_dir():
            raise SftlabError(f"--storage {location}: folder {path.parent} does not exist")
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as error:
            raise SftlabError(f"--storage {location}: cannot open: {error.strerror or error}") from None
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(location, engine_kwargs={"pool_pre_ping": True})
        except Exception as error:  # SQLAlchemy and the drivers raise many kinds; all mean the same here
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            # Two machines starting at once both create Optuna's tables; the loser's CREATE fails: open again.
            if attempt < 2 and ("duplicate key" in first or "already exists" in first):
                time.sleep(1.0 + attempt)
                continue
            raise SftlabError(f"--storage {describe_url(location)}: cannot open: {first[:300]}") from None
    raise AssertionError("unreachable")


def make_sampler(name: str, seed: int, grid: dict[str, list[Any]] | None = None) -> Any:
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler(grid or {}, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    # constant_liar: parallel workers treat running trials as bad, so they do not all propose the same point.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(name: str, startup_trials: int, warmup: int) -> Any:
    """Trials report at step 1, 2, ... (their evaluation count), so `warmup` evaluations run unpruned."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup + 1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def owner() -> str:
    """Which machine and search process ran a trial: `--resume` touches only its own output's trials."""
    return socket.gethostname()


def stale_trials(study: Any, output_dir: Path) -> list[Any]:
    """Trials this output directory's search left RUNNING when it was killed."""
    from optuna.trial import TrialState

    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.user_attrs.get("host") == owner() and trial.user_attrs.get("output_dir") == str(output_dir)
    ]
