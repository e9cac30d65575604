"""`sftlab search`: real MiniLM trials on tiny TREC slices (64 questions, max_length 32, 1 epoch, fp32).

Each trial is a real subprocess run; the tests assert on the study (Optuna's storage), the trial folders and
the files the search writes, never on timings.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli

TINY = {
    "task": "classification",
    "model": "minilm",
    "data": {"dataset": "trec6", "max_train_samples": 64, "max_eval_samples": 32, "max_length": 32},
    "train": {
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 1.0e-4,
        "eval_every": 1,
        "precision": "fp32",
        "seed": 3,
    },
}


def write_config(tmp_path: Path, search: dict, name: str = "search.yaml", **top: object) -> Path:
    config = {**TINY, "output_dir": str(tmp_path / "out"), **top, "search": search}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def load_study(output_dir: Path, name: str | None = None):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(output_dir / "study.journal")))
    return optuna.load_study(study_name=name or output_dir.name, storage=storage)


def states(study) -> list[str]:
    return [trial.state.name for trial in study.get_trials()]


def history(output_dir: Path, number: int) -> list[dict]:
    """The validation evaluations of a trial's (single-seed) run."""
    (metrics,) = (output_dir / "trials" / f"{number:03d}").glob("seed_*/metrics.json")
    return json.loads(metrics.read_text())["history"]


# --- bad input: one line, exit code 2, nothing written


BAD = [
    ({"space": {"train.learnin_rate": {"low": 1e-5, "high": 1e-4}}}, "did you mean 'train.learning_rate'"),
    ({"space": {"train.learning_rate": {"low": 1e-3, "high": 1e-4}}}, "must be below high"),
    ({"space": {"train.batch_size": []}}, "empty list of choices"),
    (
        {"space": {"train.learning_rate": {"low": 0.0, "high": 1e-4, "log": True}}},
        "log range must stay above 0",
    ),
    ({"space": {"train.learning_rate": {"low": 0.0, "high": 1e-4}}}, "rejected by the config"),
    ({"space": {"train.batch_size": [16, 0]}}, "the value 0 is rejected by the config"),
    (
        {"sampler": "grid", "space": {"train.learning_rate": {"low": 1e-5, "high": 1e-4}}},
        "not a continuous range",
    ),
    ({"space": {}}, "search.space: is empty"),
    (
        {"space": {"train.learning_rate": [1e-4]}, "direction": "minimize"},
        "contradicts search.metric accuracy",
    ),
    ({"space": {"train.learning_rate": [1e-4]}, "trials": 0}, "search.trials"),
]


@pytest.mark.parametrize(("search", "expected"), BAD, ids=[expected for _, expected in BAD])
def test_bad_search_section_is_one_line_exit_2_nothing_written(
    tmp_path: Path, search: dict, expected: str
) -> None:
    config = write_config(tmp_path, search)
    result = run_cli("search", str(config))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sftlab: error: "), result.stderr
    assert expected in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("postgresql://nobody:secret@127.0.0.1:9/none", "cannot open"),
        ("/no/such/folder/x.journal", "does not exist"),
    ],
)
def test_storage_that_cannot_be_opened(tmp_path: Path, storage: str, expected: str) -> None:
    config = write_config(tmp_path, {"space": {"train.learning_rate": [1e-4, 2e-4]}})
    result = run_cli("search", str(config), "--storage", storage)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "secret" not in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_no_search_section(tmp_path: Path) -> None:
    result = run_cli("search", str(REPO / "examples" / "trec6.yaml"), f"output_dir={tmp_path / 'out'}")
    assert result.returncode == 2 and "has no search: section" in result.stderr
    assert not (tmp_path / "out").exists()


def test_space_keys_and_grid_product() -> None:
    from sftlab.search.space import grid_points, grid_size, parse_space

    dimensions = parse_space(
        {
            "train.batch_size": [16, 32],
            "adapter.r": {"low": 4, "high": 16, "step": 4},
            "train.learning_rate": ["1e-5", 3.0e-5],
        },
        "grid",
    )
    assert [(d.key, d.kind) for d in dimensions] == [
        ("train.batch_size", "choice"),
        ("adapter.r", "int"),
        ("train.learning_rate", "choice"),
    ]
    assert dimensions[2].choices == (1e-5, 3e-5)  # YAML's `1e-5` text read as the number it is
    assert grid_size(dimensions) == 2 * 4 * 2
    assert len({json.dumps(point, sort_keys=True) for point in grid_points(dimensions)}) == 16


def test_resumed_grid_reruns_the_cut_off_point_once() -> None:
    """--resume's bookkeeping on an in-memory study: the queued rerun takes the failed trial's grid point,
    and the grid then visits the last point, not a repeat."""
    import optuna

    from sftlab.recipes.search import _same_grid_point, _tell

    rates = [1e-4, 2e-4, 3e-4]
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"lr": rates}, seed=0))

    def ask() -> None:
        trial = study.ask()
        if "retry_of" in trial.user_attrs:
            _same_grid_point(study, trial, trial.user_attrs["retry_of"])
        trial.suggest_categorical("lr", rates)

    ask()
    _tell(study, 0, {"state": "complete", "value": 0.5})
    ask()  # cut off by a kill: what --resume does
    _tell(study, 1, {"state": "fail"})
    study.enqueue_trial(study.trials[1].params, user_attrs={"retry_of": 1})
    for number in (2, 3):
        ask()
        _tell(study, number, {"state": "complete", "value": 0.6})
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params
    assert sorted(t.params["lr"] for t in study.trials if t.state.name == "COMPLETE") == rates


# --- real searches


def test_grid_visits_the_product_once_objective_is_best_and_best_yaml_reproduces(tmp_path: Path) -> None:
    # batch 8, 8 steps, an evaluation after each: at 2e-3 the run peaks at step 5 and ends lower
    rates, smoothing = [1.0e-4, 2.0e-3], [0.0, 0.1]
    search = {
        "sampler": "grid",
        "trials": 10,
        "space": {"train.learning_rate": rates, "loss.label_smoothing": smoothing},
    }
    config = write_config(tmp_path, search, train={**TINY["train"], "batch_size": 8})
    result = run_cli("search", str(config), "--quiet")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    study = load_study(out)
    # the grid caps the trials at its size and visits each combination exactly once
    assert states(study) == ["COMPLETE"] * 4
    visited = sorted(
        (t.params["train.learning_rate"], t.params["loss.label_smoothing"]) for t in study.trials
    )
    assert visited == sorted(itertools.product(rates, smoothing))
    # the objective is each run's best validation accuracy, not its last (one run peaks before its end)
    peaked_early = False
    for trial in study.trials:
        evaluations = history(out, trial.number)
        best = max(evaluation["accuracy"] for evaluation in evaluations)
        assert trial.value == best
        assert list(trial.intermediate_values.values()) == [e["accuracy"] for e in evaluations]
        peaked_early |= evaluations[-1]["accuracy"] < best
    assert peaked_early
    # results: the table files, the plots, and only the best trial's model on disk
    summary = json.loads((out / "search.json").read_text())
    assert summary["counts"] == {"complete": 4, "pruned": 0, "failed": 0, "running": 0}
    assert (
        summary["best"]["number"] == study.best_trial.number and summary["best"]["value"] == study.best_value
    )
    assert summary["best"]["report"]["split"] == "test"
    with open(out / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["value"]) for row in rows] == [t.value for t in study.trials]
    assert {"train.learning_rate", "loss.label_smoothing", "steps", "wall_s", "value_std"} <= set(rows[0])
    assert {p.name for p in (out / "plots").glob("*.png")} >= {
        "optimization_history.png",
        "slice.png",
        "parallel_coordinate.png",
    }
    models = sorted(p.parent.parent.name for p in (out / "trials").glob("*/seed_*/model"))
    assert models == [f"{study.best_trial.number:03d}"]
    # best.yaml is an ordinary config: retrained, it reproduces the best trial's validation metric exactly
    result = run_cli("train", str(out / "best.yaml"), "--quiet")
    assert result.returncode == 0, result.stderr
    retrained = json.loads((out / "best" / "metrics.json").read_text())
    assert retrained["best_metric"] == study.best_value
    assert yaml.safe_load((out / "best.yaml").read_text())["search"] is None


def test_seeded_random_search_is_reproducible(tmp_path: Path) -> None:
    space = {
        "train.learning_rate": {"low": 5.0e-5, "high": 5.0e-4, "log": True},
        "train.batch_size": [16, 32],
    }
    config = write_config(
        tmp_path,
        {"sampler": "random", "seed": 11, "trials": 2, "space": space},
        train={**TINY["train"], "eval_every": "epoch"},
    )
    found = []
    for name in ("a", "b"):
        result = run_cli("search", str(config), f"output_dir={tmp_path / name}", "--quiet")
        assert result.returncode == 0, result.stderr
        found.append([(t.params, t.value) for t in load_study(tmp_path / name).trials])
    assert found[0] == found[1]
    assert found[0][0][0] != found[0][1][0]  # two different draws, the same in both searches


def test_pruned_trial_stops_at_the_evaluation_it_was_pruned(tmp_path: Path) -> None:
    # grid order (sampler seed 1): the good rate first, then one too small to learn: the median pruner
    # (1 startup trial, no warmup) stops the second at its first validation loss above the first's.
    search = {"sampler": "grid", "seed": 1, "metric": "loss", "pruner": "median", "pruner_startup_trials": 1,
              "pruner_warmup": 0, "space": {"train.learning_rate": [4.0e-4, 1.0e-7]}}  # fmt: skip
    config = write_config(tmp_path, search, schedule={"warmup_ratio": 0.0})
    result = run_cli("search", str(config), "--quiet")
    assert result.returncode == 0, result.stderr
    study = load_study(tmp_path / "out")
    assert states(study) == ["COMPLETE", "PRUNED"]
    pruned = study.trials[1]
    evaluations = history(tmp_path / "out", pruned.number)
    stopped_at = pruned.user_attrs["pruned_at"]
    assert len(evaluations) == stopped_at == len(pruned.intermediate_values) < 4
    assert evaluations[-1]["step"] == stopped_at  # eval_every 1: the run stopped at that step
    assert pruned.user_attrs["steps"] == stopped_at < study.trials[0].user_attrs["steps"] == 4


def test_a_trial_behind_only_at_its_last_evaluation_completes(tmp_path: Path) -> None:
    # The same two trials with one evaluation each, at the end of training: the second is worse there, but
    # it has trained to its end, so it completes (a pruned state would keep a full run out of the best).
    search = {"sampler": "grid", "seed": 1, "metric": "loss", "pruner": "median", "pruner_startup_trials": 1,
              "pruner_warmup": 0, "space": {"train.learning_rate": [4.0e-4, 1.0e-7]}}  # fmt: skip
    config = write_config(
        tmp_path, search, schedule={"warmup_ratio": 0.0}, train={**TINY["train"], "eval_every": "epoch"}
    )
    result = run_cli("search", str(config), "--quiet")
    assert result.returncode == 0, result.stderr
    study = load_study(tmp_path / "out")
    assert states(study) == ["COMPLETE", "COMPLETE"]
    first, second = study.trials
    assert second.intermediate_values[1] > first.intermediate_values[1]  # behind the median at evaluation 1
    assert second.user_attrs["steps"] == first.user_attrs["steps"] == 4


def test_sigkill_during_a_trial_then_resume_finishes_exactly_the_requested_trials(tmp_path: Path) -> None:
    rates = [1.0e-4, 2.0e-4, 3.0e-4]
    config = write_config(tmp_path, {"sampler": "grid", "space": {"train.learning_rate": rates}})
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "sftlab", "search", str(config), "--quiet"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        # kill the whole search (the search process and its trial) once trial 1 has reported an evaluation
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "study.journal").exists() and any(
                t.intermediate_values for t in load_study(out).get_trials()[1:]
            ):
                break
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = load_study(out)
    assert states(before) == ["COMPLETE", "RUNNING"]
    result = run_cli("search", str(config), "--resume", "--quiet")
    assert result.returncode == 0, result.stderr
    study = load_study(out)
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    finished = [t.params["train.learning_rate"] for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(finished) == rates  # exactly the requested number, none repeated
    assert study.trials[0].value == before.trials[0].value  # the finished trial was not run again
    assert not (out / "trials" / "001").exists()  # the cut-off trial's partial folder is gone
    assert json.loads((out / "search.json").read_text())["counts"]["complete"] == 3


def test_two_workers_share_the_journal_study(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {"sampler": "random", "trials": 2, "space": {"train.learning_rate": {"low": 1e-4, "high": 3e-4}}},
    )
    result = run_cli("search", str(config), "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    study = load_study(tmp_path / "out")
    assert states(study) == ["COMPLETE", "COMPLETE"]
    assert sorted(t.number for t in study.trials) == [0, 1]
    logs = "".join(p.read_text() for p in (tmp_path / "out" / "trials").glob("*/log.txt"))
    assert "locked" not in logs and "Traceback" not in logs
    # the two trials overlapped in time: they really ran at once
    first, second = study.trials
    assert first.datetime_start < second.datetime_complete and second.datetime_start < first.datetime_complete


# --- PostgreSQL: what several machines share; a throwaway server started and stopped by the test


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres():
    pytest.importorskip("psycopg", reason="psycopg is in the test extra: pip install -e '.[test]'")
    binaries = {}
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name) or next(
            iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
        )
        if found is None:
            pytest.skip(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
        binaries[name] = str(found)
    # its own folder under /tmp: the server may run as `nobody`, who cannot enter pytest's private tmp
    folder = Path(tempfile.mkdtemp(prefix="sftlab-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(folder, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = folder / "data", free_port()
    try:
        subprocess.run([*as_user, binaries["initdb"], "-D", str(data), "-U", "sftlab", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run([*as_user, binaries["pg_ctl"], "-D", str(data), "-o", f"-p {port} -k {folder} -h 127.0.0.1",
                        "-l", str(folder / "log"), "-w", "start"], check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://sftlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, binaries["pg_ctl"], "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_two_machines_share_a_postgresql_study(tmp_path: Path, postgres: str) -> None:
    import optuna

    search = {
        "sampler": "random",
        "trials": 2,
        "study_name": "shared",
        "space": {"train.learning_rate": {"low": 1e-4, "high": 3e-4}},
    }
    config = write_config(tmp_path, search)
    # two `sftlab search` processes, as on two machines: each its own output_dir, one study in the database
    processes = [
        subprocess.Popen([sys.executable, "-m", "sftlab", "search", str(config), f"output_dir={tmp_path / name}",
                          "--storage", postgres, "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("machine_a", "machine_b")
    ]  # fmt: skip
    for process in processes:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=postgres)
    assert states(study) == ["COMPLETE", "COMPLETE"]
    assert sorted(t.number for t in study.trials) == [0, 1]
    ran = sorted(
        p.parent.name
        for name in ("machine_a", "machine_b")
        for p in (tmp_path / name).glob("trials/*/result.json")
    )
    assert ran == ["000", "001"]  # each trial ran on one machine only
