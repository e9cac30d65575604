"""The engine: the run state as one object, the hooks that report to the caller, start-up decisions kept.

Real MiniLM on a real TREC slice, in process (so the probe and the state type can be swapped in)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from sftlab.config import load_config
from sftlab.engine import TrainState
from sftlab.errors import SftlabError
from sftlab.recipes.finetune import finetune

TINY = [
    "data.dataset=trec6",
    "data.max_train_samples=96",
    "data.max_eval_samples=48",
    "data.max_length=32",
    "train.epochs=1",
    "train.batch_size=16",
    "train.eval_every=2",
    "train.log_every=2",
    "train.learning_rate=1e-4",
    "train.seed=3",
]


def tiny_config(output: Path, *more: str):  # type: ignore[no-untyped-def]
    return load_config(REPO / "examples" / "trec6.yaml", [*TINY, f"output_dir={output}", *more])


@dataclass
class CountingState(TrainState):
    """A test double: the run state with one more field, kept by the caller's hook."""

    evaluations_seen: int = 0


class Crash(Exception):
    pass


def test_state_round_trip_and_refusal() -> None:
    state = TrainState(step=7, history=[{"step": 7, "accuracy": 0.5}], best_value=0.5, best_step=7)
    assert TrainState.from_json(state.to_json(), "x") == state
    data = state.to_json()
    del data["best_step"]
    data["counter_from_the_future"] = 1
    with pytest.raises(SftlabError) as error:
        TrainState.from_json(data, "ckpt/state.json")
    assert str(error.value) == (
        "ckpt/state.json: the run state does not match this sftlab's "
        "(missing best_step; unknown counter_from_the_future)"
    )


def test_new_state_field_and_precision_survive_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A field added to the run state is checkpointed and restored with no other change, and a resumed run
    keeps the precision it started in even when the bf16 probe now answers differently."""
    import sftlab.runtime as runtime

    output = tmp_path / "run"
    config = tiny_config(output, "train.precision=auto", "train.device=cpu")
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)

    def count_then_crash(state: CountingState, metrics: dict) -> None:
        state.evaluations_seen += 1
        if state.evaluations_seen == 2:  # after the checkpoint of the first evaluation (step 2)
            raise Crash

    with pytest.raises(Crash):
        finetune(config, echo=False, on_evaluation=count_then_crash, state=CountingState())
    saved = json.loads((output / "checkpoints" / "step-2" / "state.json").read_text())
    assert saved["evaluations_seen"] == 1 and "evaluations_seen" in saved["run_fields"]
    assert saved["precision"] == "bf16"

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)  # a loaded machine's probe
    seen_at_resume: list[int] = []

    def record(state: CountingState, metrics: dict) -> None:
        seen_at_resume.append(state.evaluations_seen)
        state.evaluations_seen += 1

    result = finetune(config, echo=False, resume=True, on_evaluation=record, state=CountingState())
    assert seen_at_resume == [1, 2]  # the evaluations at steps 4 and 6 continue the count
    assert result.metrics["precision"] == "bf16"
    assert result.state is not None and result.state.evaluations_seen == 3


def test_hooks_report_and_the_caller_stops(tmp_path: Path) -> None:
    """on_log gets a record every train.log_every steps and at each evaluation (also in metrics.json);
    on_evaluation returning True stops training at that evaluation, and the run still saves."""
    config = tiny_config(tmp_path / "run", "train.precision=fp32", "train.epochs=3")
    records: list[dict] = []
    stops: list[int] = []

    def stop_at_second(state: TrainState, metrics: dict) -> bool:
        stops.append(state.step)
        assert metrics["accuracy"] == state.history[-1]["accuracy"]
        return len(stops) == 2

    result = finetune(config, echo=False, on_log=lambda state, record: records.append(record),
                      on_evaluation=stop_at_second)  # fmt: skip
    assert stops == [2, 4]
    assert result.metrics["steps"] == 4 and len(result.history) == 2
    train_records = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train_records] == [2, 4]
    assert set(train_records[0]) == {"step", "epoch", "train/loss", "train/learning_rate", "train/grad_norm",
                                     "train/samples_per_s", "train/tokens_per_s"}  # fmt: skip
    assert train_records[0]["epoch"] == round(2 / 6, 4)
    evaluations = [r for r in records if "validation/accuracy" in r]
    assert [r["validation/accuracy"] for r in evaluations] == [h["accuracy"] for h in result.history]
    # The first record's loss is the mean over its 2 steps, which is what the evaluation record's train loss
    # (over the same 2 steps) says too.
    assert train_records[0]["train/loss"] == pytest.approx(result.history[0]["train_loss"], rel=1e-9)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    timing = {"train/samples_per_s", "train/tokens_per_s"}  # in the hook's records, not in the run's history
    assert saved["log_history"] == json.loads(json.dumps([{k: v for k, v in r.items() if k not in timing}
                                                          for r in records]))  # fmt: skip
    assert saved["speed_levers"]["unpadded blocks"] is True


def test_lever_decisions_in_log_and_plan(tmp_path: Path) -> None:
    """One function decides; the start-up line and `sftlab plan` name every lever with the same words."""
    overrides = [*TINY, f"output_dir={tmp_path / 'run'}", "freeze.bottom_layers=2", "train.device=cpu"]
    trained = run_cli("train", str(REPO / "examples" / "trec6.yaml"), *overrides)
    assert trained.returncode == 0, trained.stderr
    line = next(line for line in trained.stdout.splitlines() if line.startswith("speed levers: "))
    assert line == (
        "speed levers: prefix cache: on (embeddings and blocks 0-1); unpadded blocks: on (exact, tested); "
        "first-token top: on (exact, tested); used embedding rows: off (the word embeddings are frozen); "
        "fast dropout: on (CPU); chunked loss: off (not a causal LM or encoder-decoder with a plain output layer)"
    )
    plan = run_cli("plan", str(REPO / "examples" / "trec6.yaml"), *overrides)
    assert plan.returncode == 0, plan.stderr
    assert "speed levers (one process): " + line.removeprefix("speed levers: ") in plan.stdout

    gradual = run_cli("plan", str(REPO / "examples" / "trec6_gradual_unfreeze.yaml"), *TINY)
    assert "prefix cache: off (gradual unfreezing)" in gradual.stdout
    assert "used embedding rows: off (gradual unfreezing)" in gradual.stdout


def test_bf16_decision_is_kept_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe runs once per machine; a later, slower measurement cannot flip the decision."""
    import sftlab.runtime as runtime

    monkeypatch.setenv("SFTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(runtime, "matmul_speed_ratio", lambda: 4.0)
    assert runtime.measured_bf16_ratio() == 4.0
    monkeypatch.setattr(runtime, "matmul_speed_ratio", lambda: 1.1)  # the same machine, now under load
    assert runtime.measured_bf16_ratio() == 4.0
    facts = json.loads((tmp_path / "machine.json").read_text())
    assert facts == {runtime.machine_key(): {"bf16_speed_ratio": 4.0}}


def test_probe_is_stable_and_in_range() -> None:
    """The probe's rounds agree with each other on this machine (it takes the median of 9 back-to-back pairs)."""
    from sftlab.runtime import matmul_speed_ratio

    ratios = [matmul_speed_ratio() for _ in range(3)]
    assert all(0.1 < ratio < 100 for ratio in ratios)
    assert max(ratios) / min(ratios) < 1.5


def test_old_checkpoint_format_is_refused(tmp_path: Path) -> None:
    from sftlab.checkpoints import read_state

    checkpoint = tmp_path / "step-3"
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text(json.dumps({"format": 1, "step": 3}))
    with pytest.raises(SftlabError) as error:
        read_state(checkpoint)
    assert str(error.value) == (
        f"{checkpoint / 'state.json'}: a checkpoint of format 1, written by another sftlab version; this one "
        "reads format 2: start the run again (or resume it with the sftlab that wrote it)"
    )


def test_a_second_fit_of_the_same_model_sees_it_as_it_was(tmp_path: Path) -> None:
    """After `fit`, the levers leave no trace on the model: the embedding table the used-rows lever trained
    is trainable again, so a second `fit` (meta-learning, few-shot stages) decides the levers afresh."""
    from sftlab.data.loading import load_tables
    from sftlab.engine import fit
    from sftlab.models import load_tokenizer, locate_model
    from sftlab.runtime import make_accelerator
    from sftlab.tasks import task_class

    config = tiny_config(tmp_path / "run", "train.precision=fp32", "train.device=cpu")
    tables = load_tables(config.data)
    task = task_class(config.task).from_config(config, tables)
    location = locate_model(config.model)
    tokenizer = load_tokenizer(location, config.model, config.trust_remote_code)
    encoded = {split: task.encode(tokenizer, table) for split, table in tables.items()}
    model = task.load_model(location, config)
    accelerator, precision = make_accelerator("cpu", "fp32")
    first = fit(task, encoded, model, config, accelerator, precision, tokenizer.pad_token_id, echo=False)
    assert first.levers.on("used embedding rows")
    assert model.get_input_embeddings().weight.requires_grad
    second = fit(task, encoded, model, config, accelerator, precision, tokenizer.pad_token_id, echo=False)
    assert [str(d) for d in second.levers.decisions] == [str(d) for d in first.levers.decisions]
