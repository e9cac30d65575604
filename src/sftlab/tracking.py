"""Experiment tracking through accelerate's trackers (TensorBoard, MLflow, W&B, trackio, ...).

The engine hands every log record (`train.log_every` steps and each evaluation) to `log_record`; the
trackers get the resolved config as hyperparameters at the start and are closed at the end. Local
trackers write under `OUTPUT_DIR/logs`. metrics.json keeps the same records (`log_history`), so reports
never need a tracker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sftlab.errors import SftlabError

KNOWN_TRACKERS = (
    "tensorboard",
    "mlflow",
    "wandb",
    "trackio",
    "comet_ml",
    "aim",
    "clearml",
    "dvclive",
    "swanlab",
)
LOGS = "logs"
PROJECT = "sftlab"


def available_trackers() -> list[str]:
    """The trackers whose package is installed, as accelerate sees them."""
    from accelerate.tracking import get_available_trackers

    return [str(tracker) for tracker in get_available_trackers()]


def resolve_trackers(track: str | list[str]) -> list[str]:
    """`auto` -> ["tensorboard"] when TensorBoard is installed, else []; an explicit list must name
    installed trackers (an error says which are installed)."""
    installed = available_trackers()
    if track == "auto":
        return ["tensorboard"] if "tensorboard" in installed else []
    assert isinstance(track, list)
    missing = [name for name in track if name not in installed]
    if missing:
        raise SftlabError(
            f"track: {', '.join(missing)} not installed (installed: {', '.join(installed) or 'none'}); "
            f"pip install {' '.join(missing)}, or set track=[]"
        )
    return list(dict.fromkeys(track))


def logging_dir(output_dir: Path) -> Path:
    return output_dir / LOGS


def hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The resolved config flattened to `section.key` -> bool/int/float/str (what every tracker accepts);
    lists and nulls become their text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(hyperparameters(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class Tracking:
    """Feeds the engine's log records to the accelerator's trackers (`log_with` given to
    `make_accelerator`). The trackers open at the first record, when the output directory exists (the
    engine creates it only once every input checked out), with the resolved config as hyperparameters."""

    def __init__(self, accelerator: Any, config: dict[str, Any], then: Any = None) -> None:
        self.accelerator, self.config, self.then = accelerator, config, then
        self.started = False

    def on_log(self, state: Any, record: dict[str, Any]) -> None:
        """The engine's `on_log(state, record)`; calls the caller's own `on_log` after."""
        if self.accelerator.log_with:
            if not self.started:
                self.accelerator.init_trackers(PROJECT, config=hyperparameters(self.config))
                self.started = True
            values = {key: value for key, value in record.items() if key != "step" and _scalar(value)}
            self.accelerator.log(values, step=int(record["step"]))
        if self.then is not None:
            self.then(state, record)

    def end(self) -> None:
        """Flush and close every tracker (also after an error, so event files are complete)."""
        if self.started:
            # Not accelerator.end_training(): it also destroys the process group, which a multi-process run
            # still needs for its final evaluation and save.
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.started = False


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_tensorboard(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files under `folder`: tag -> [(step, value), ...], read with
    TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(
                (event.step, event.value) for event in accumulator.Scalars(tag)
            )
    return scalars
