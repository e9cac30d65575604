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


def test_step_decay_staircase():
    from sftlab.optim.schedules import step_decay

    factor = step_decay(total_steps=20, warmup_steps=2, step_size=3, gamma=0.5)
    assert [factor(s) for s in range(2)] == [1 / 3, 2 / 3]
    assert [factor(s) for s in range(2, 11)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_exponential_is_smooth_step_decay():
    from sftlab.optim.schedules import exponential

    factor = exponential(total_steps=20, warmup_steps=0, step_size=4, gamma=0.25)
    assert factor(0) == 1.0
    assert factor(2) == pytest.approx(0.5)
    assert factor(4) == pytest.approx(0.25)
    assert factor(6) == pytest.approx(0.125)


def test_polynomial_power_and_end_factor():
    from sftlab.optim.schedules import polynomial

    factor = polynomial(total_steps=12, warmup_steps=2, power=2.0, end_factor=0.1)
    assert factor(2) == 1.0
    assert factor(7) == pytest.approx(0.1 + 0.9 * 0.25)
    assert factor(12) == pytest.approx(0.1)
    assert factor(20) == pytest.approx(0.1)


def test_inverse_sqrt_after_warmup():
    from sftlab.optim.schedules import inverse_sqrt

    factor = inverse_sqrt(total_steps=1000, warmup_steps=4)
    assert [factor(s) for s in range(4)] == [1 / 5, 2 / 5, 3 / 5, 4 / 5]
    assert factor(4) == 1.0
    assert factor(16) == pytest.approx(0.5)
    assert factor(400) == pytest.approx(0.1)


def test_slanted_triangular_matches_ulmfit_equation():
    from sftlab.optim.schedules import slanted_triangular

    # T = 100, cut_frac 0.1 -> cut 10; ratio 32: factor runs 1/32 -> 1 (step 10) -> 1/32 (step 100).
    factor = slanted_triangular(total_steps=100, cut_frac=0.1, ratio=32)
    assert factor(0) == pytest.approx(1 / 32)
    assert factor(5) == pytest.approx((1 + 0.5 * 31) / 32)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx((1 + 0.5 * 31) / 32)
    assert factor(100) == pytest.approx(1 / 32)
    assert factor(150) == pytest.approx(1 / 32)


def test_reduce_on_plateau_reacts_only_to_evaluations():
    from sftlab.optim.schedules import ReduceOnPlateau

    schedule = ReduceOnPlateau(total_steps=100, warmup_steps=1, gamma=0.5, patience=2, min_factor=0.2)
    assert schedule(0) == 0.5 and schedule(1) == 1.0
    for value, expected in [(0.5, 1.0), (0.6, 1.0), (0.6, 1.0), (0.55, 0.5), (0.7, 0.5), (0.1, 0.5),
                            (0.1, 0.25), (0.1, 0.25), (0.1, 0.2)]:  # fmt: skip
        schedule.observe(value)
        assert schedule(50) == expected
    lower = ReduceOnPlateau(total_steps=10, patience=1, lower_is_better=True)
    lower.observe(1.0)
    lower.observe(0.9)
    assert lower(5) == 1.0
    lower.observe(0.95)
    assert lower(5) == 0.5


def test_build_schedule_passes_only_its_own_options():
    from sftlab.optim.schedules import build_schedule

    factor = build_schedule("step", total_steps=10, warmup_steps=0, step_size=2, gamma=0.1, cut_frac=0.5)
    assert factor(2) == pytest.approx(0.1)


def test_reduce_on_plateau_state_round_trips_for_resume():
    from sftlab.optim.schedules import ReduceOnPlateau

    original = ReduceOnPlateau(total_steps=100, gamma=0.5, patience=1)
    for value in (0.5, 0.4, 0.4):  # improves once, then two evaluations without progress: level halves twice
        original.observe(value)
    resumed = ReduceOnPlateau(total_steps=100, gamma=0.5, patience=1)
    resumed.load_state_dict(original.state_dict())
    assert resumed(10) == original(10) == 0.25
    original.observe(0.45)
    resumed.observe(0.45)
    assert resumed(10) == original(10) == 0.125
