"""Which Optuna storage survives concurrent writers from several processes on one machine?

    python benchmarks/search_storage.py --processes 8 --trials 10 --reports 20

Each process does what an sftlab search worker and its trials do: ask for a trial, report an intermediate
value `--reports` times (asking the pruner each time), tell the result. Printed per storage: trials
finished, errors (by message), and wall time relative to the journal file, all in the same invocation.
No training runs: this is the storage alone.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import tempfile
import time
from pathlib import Path


def open_storage(kind: str, folder: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if kind == "journal":
        return JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    return optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}")


def worker(kind: str, folder: str, trials: int, reports: int, queue) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    errors: collections.Counter[str] = collections.Counter()
    finished = 0
    try:
        study = optuna.load_study(
            study_name="stress",
            storage=open_storage(kind, Path(folder)),
            pruner=optuna.pruners.MedianPruner(),
        )
    except Exception as error:
        queue.put((0, {f"{type(error).__name__}: {str(error).splitlines()[0][:80]}": 1}))
        return
    for _ in range(trials):
        try:
            trial = study.ask()
            x = trial.suggest_float("x", -1, 1)
            for step in range(reports):
                trial.report(x * step, step)
                trial.should_prune()
            study.tell(trial, x)
            finished += 1
        except Exception as error:  # what a worker would see: counted by message
            errors[f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"] += 1
    queue.put((finished, dict(errors)))


def run(kind: str, processes: int, trials: int, reports: int) -> tuple[int, dict[str, int], float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        optuna.create_study(study_name="stress", storage=open_storage(kind, Path(folder)))
        queue = multiprocessing.get_context("spawn").Queue()
        started = time.perf_counter()
        jobs = [
            multiprocessing.get_context("spawn").Process(
                target=worker, args=(kind, folder, trials, reports, queue)
            )
            for _ in range(processes)
        ]
        for job in jobs:
            job.start()
        results = [queue.get() for _ in jobs]
        for job in jobs:
            job.join()
        seconds = time.perf_counter() - started
    errors: collections.Counter[str] = collections.Counter()
    for _, found in results:
        errors.update(found)
    return sum(finished for finished, _ in results), dict(errors), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--trials", type=int, default=10, help="trials per process")
    parser.add_argument("--reports", type=int, default=20, help="intermediate values per trial")
    args = parser.parse_args()
    wanted = args.processes * args.trials
    timings = {}
    for kind in ("journal", "sqlite"):
        finished, errors, seconds = run(kind, args.processes, args.trials, args.reports)
        timings[kind] = seconds
        print(f"{kind:8} {finished}/{wanted} trials finished, {sum(errors.values())} errors, {seconds:.1f} s")
        for message, count in sorted(errors.items(), key=lambda item: -item[1]):
            print(f"         {count} x {message}")
    print(f"sqlite / journal wall time: {timings['sqlite'] / timings['journal']:.2f}")


if __name__ == "__main__":
    main()
