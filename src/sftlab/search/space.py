"""The search space: `search.space` read into typed dimensions, checked against the config schema, and
turned into Optuna suggestions and config overrides.

A dimension is a config key (`train.learning_rate`) with a float range `{low, high, log}`, an integer
range `{low, high, step}` (also `log`) or a list of choices. Every problem is reported at once, each
naming its key; the values at both ends of a range and every choice are validated as configs before any
trial runs, so a value the config rejects fails the search at start, not at trial 7.
"""

from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sftlab.config import NUMBER, Config, _section_model, apply_overrides, validate_config
from sftlab.errors import ConfigError

RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Dimension:
    key: str
    """The config key, e.g. train.learning_rate."""
    kind: str
    """float, int or choice."""
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Optuna picks this dimension's value for `trial` (the parameter is named after the key)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        """Every value a grid visits (choices, or an integer range); floats have no grid."""
        if self.kind == "choice":
            return list(self.choices)
        step = int(self.step or 1)
        return list(range(int(self.low), int(self.high) + 1, step))

    def edge_values(self) -> list[Any]:
        """The values checked against the config before the search starts."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every leaf config key (`train.learning_rate`, `adapter.r`, ...), sections flattened."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        if prefix == "" and name == "search":
            continue
        section = _section_model(field.annotation)
        if section is not None:
            keys.extend(config_keys(section, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _number(value: Any) -> float | int | None:
    """An int or float from YAML (which reads `1e-5` without a dot as text); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def flatten_space(space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{train: {batch_size: [16, 32]}}` as `{train.batch_size: [16, 32]}`. The nested form is what a
    command-line override (`search.space.train.batch_size=[16,32]`) makes, so it wins over the dotted one."""
    flat: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for key, spec in space.items():
        if isinstance(spec, dict) and spec and not set(spec) & set(RANGE_KEYS):
            nested.update(flatten_space(spec, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = spec
    return {**flat, **nested}


def parse_space(space: dict[str, Any], sampler: str, source: str = "config") -> list[Dimension]:
    """Typed dimensions for `search.space`; a ConfigError listing every problem otherwise."""
    problems: list[str] = []
    dimensions: list[Dimension] = []
    known = config_keys()
    space = flatten_space(space)
    if not space:
        problems.append(
            "search.space: is empty; give at least one key, e.g. train.learning_rate: {low: 1e-5, high: 1e-4, log: true}"
        )
    for key, spec in space.items():
        where = f"search.space.{key}"
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            problems.append(
                f"{where}: unknown config key" + (f" (did you mean '{near[0]}'?)" if near else "")
            )
            continue
        if key in ("output_dir", "task", "data.dataset", "data.train", "data.validation", "data.test"):
            problems.append(
                f"{where}: cannot be searched (trials must share the task, the data and the output)"
            )
            continue
        if isinstance(spec, list):
            if not spec:
                problems.append(f"{where}: empty list of choices")
                continue
            if any(isinstance(choice, dict | list) for choice in spec):
                problems.append(f"{where}: choices must be plain values (numbers, text, true/false, null)")
                continue
            if len({repr(choice) for choice in spec}) != len(spec):
                problems.append(f"{where}: the same choice is listed twice ({spec})")
                continue
            # YAML 1.1 reads `1e-5` (no dot) as text; in a list of learning rates it is clearly a number.
            choices = tuple(float(c) if isinstance(c, str) and NUMBER.fullmatch(c) else c for c in spec)
            dimensions.append(Dimension(key, "choice", choices=choices))
            continue
        if not isinstance(spec, dict):
            problems.append(
                f"{where}: expected {{low, high}} (optionally log or step) or a list of choices (got {spec!r})"
            )
            continue
        unknown = [name for name in spec if name not in RANGE_KEYS]
        if unknown:
            problems.append(f"{where}: unknown range key '{unknown[0]}' (allowed: {', '.join(RANGE_KEYS)})")
            continue
        if "low" not in spec or "high" not in spec:
            problems.append(f"{where}: a range needs both low and high (got {spec})")
            continue
        low, high, step = _number(spec["low"]), _number(spec["high"]), _number(spec.get("step"))
        log = spec.get("log", False)
        if low is None or high is None or (spec.get("step") is not None and step is None):
            problems.append(f"{where}: low, high and step must be numbers (got {spec})")
            continue
        if not isinstance(log, bool):
            problems.append(f"{where}: log must be true or false (got {log!r})")
            continue
        if not math.isfinite(low) or not math.isfinite(high) or low >= high:
            problems.append(f"{where}: low ({low}) must be below high ({high})")
            continue
        if log and low <= 0:
            problems.append(f"{where}: a log range must stay above 0 (low is {low})")
            continue
        if step is not None and (step <= 0 or log):
            problems.append(f"{where}: step must be above 0 and cannot be combined with log")
            continue
        integer = all(isinstance(v, int) and not isinstance(v, bool) for v in (spec["low"], spec["high"]))
        integer = integer and (step is None or isinstance(spec.get("step"), int))
        kind = "int" if integer else "float"
        if kind == "float" and sampler == "grid":
            problems.append(
                f"{where}: the grid sampler needs a list of choices or an integer range, not a continuous range ({low}..{high})"
            )
            continue
        dimensions.append(
            Dimension(key, kind, float(low), float(high), log, float(step) if step is not None else None)
        )
    if problems:
        raise ConfigError(source, problems)
    return dimensions


def overrides_for(params: dict[str, Any]) -> list[str]:
    """`key=value` overrides for a trial's parameters (values written as YAML, so text stays text)."""
    import json

    return [f"{key}={json.dumps(value)}" for key, value in params.items()]


def trial_config(base: dict[str, Any], params: dict[str, Any], source: str = "trial") -> Config:
    """The base config with a trial's values set, validated like any config."""
    return validate_config(apply_overrides(base, overrides_for(params)), source)


def check_edges(base: dict[str, Any], dimensions: list[Dimension], source: str = "config") -> None:
    """Each end of every range and every choice, set alone on the base config, must be a valid config."""
    problems: list[str] = []
    for dimension in dimensions:
        for value in dimension.edge_values():
            if dimension.kind == "int":
                value = int(value)
            try:
                trial_config(base, {dimension.key: value})
            except ConfigError as error:
                reason = "; ".join(error.problems)
                problems.append(
                    f"search.space.{dimension.key}: the value {value!r} is rejected by the config: {reason}"
                )
                break
    if problems:
        raise ConfigError(source, problems)


def grid(dimensions: list[Dimension]) -> dict[str, list[Any]]:
    """Optuna's GridSampler search space: each key's values."""
    return {dimension.key: dimension.grid_values() for dimension in dimensions}


def grid_size(dimensions: list[Dimension]) -> int:
    return math.prod(len(values) for values in grid(dimensions).values())


def grid_points(dimensions: list[Dimension]) -> list[dict[str, Any]]:
    """The cartesian product, as parameter dicts (for tests and docs)."""
    space = grid(dimensions)
    return [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
