import math

import pytest

from sftlab.optim.schedules import constant, cosine, linear, warmup_steps_for


def test_linear_with_warmup_exact_values():
    factor = linear(total_steps=10, warmup_steps=4)
    assert [factor(s) for s in range(4)] == [1 / 5, 2 / 5, 3 / 5, 4 / 5]
    assert factor(4) == 1.0
    assert factor(7) == pytest.approx(0.5)
    assert factor(10) == 0.0
    assert factor(12) == 0.0


def test_linear_without_warmup_starts_at_peak():
    factor = linear(total_steps=4)
    assert [factor(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_cosine_exact_values():
    factor = cosine(total_steps=10, warmup_steps=2)
    assert factor(0) == pytest.approx(1 / 3)
    assert factor(2) == pytest.approx(1.0)
    assert factor(6) == pytest.approx(0.5)
    assert factor(2 + 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert factor(10) == pytest.approx(0.0)


def test_constant_after_warmup():
    factor = constant(total_steps=10, warmup_steps=1)
    assert [factor(s) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def test_warmup_steps_from_ratio_or_count():
    assert warmup_steps_for(100, 0.06, None) == 6
    assert warmup_steps_for(10, 0.06, None) == 1
    assert warmup_steps_for(100, 0.06, 30) == 30
    assert warmup_steps_for(10, 0.0, 50) == 10
