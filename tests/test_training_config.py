"""Config checks for the training controls: each bad value names its key and what is allowed."""

import pytest

from sftlab.config import load_config
from sftlab.errors import ConfigError


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.nesterov=true", "optim: optim.nesterov needs optim.name sgd and optim.momentum > 0"),
        (
            "optim.name=lamb",
            "optim.name: must be one of 'sgd', 'adam', 'adamw', 'adagrad', 'rmsprop' or 'adafactor'",
        ),
        ("optim.layer_lr_decay=1.5", "optim.layer_lr_decay: Input should be less than or equal to 1"),
        ("freeze.patterns=['(']", "freeze.patterns: '(' is not a regular expression"),
        ("freeze.bottom_layers=-1", "freeze.bottom_layers: Input should be greater than or equal to 0"),
        ("freeze.unfreeze_unit=batch", "freeze.unfreeze_unit: must be one of 'epoch' or 'step'"),
        (
            "loss.class_weights=[1, -2]",
            "loss.class_weights: must be 'auto' or a non-empty list of weights >= 0",
        ),
        ("loss.class_weights=balanced", "loss.class_weights: must be one of 'auto'"),
        ("loss.label_smoothing=0.1", "loss: loss.label_smoothing applies to cross_entropy, not to focal"),
        ("schedule.name=one_cycle", "schedule.name: must be one of 'constant'"),
        ("schedule.cut_frac=1.0", "schedule.cut_frac: Input should be less than 1"),
    ],
)
def test_bad_training_controls_name_the_key(override, message):
    extra = ["loss.name=focal"] if override.startswith("loss.label_smoothing") else []
    with pytest.raises(ConfigError) as error:
        load_config({}, [override, *extra])
    assert any(line.startswith(f"config: {message}") for line in error.value.lines()), error.value.lines()


def test_training_controls_defaults_change_nothing():
    config = load_config({})
    assert (config.freeze.embeddings, config.freeze.bottom_layers, config.freeze.patterns) == (False, 0, [])
    assert not config.freeze.gradual_unfreeze
    assert (config.optim.name, config.optim.layer_lr_decay, config.optim.head_learning_rate) == (
        "adamw",
        1.0,
        None,
    )
    assert (config.loss.name, config.loss.class_weights, config.loss.label_smoothing) == (
        "cross_entropy",
        None,
        0.0,
    )
