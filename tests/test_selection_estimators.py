"""LogME, H-score, the linear probe, the stratified sample and successive halving, on small fixed inputs
whose values are known by hand or by the reference formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sftlab.recipes.select import SuccessiveHalving
from sftlab.selection.estimators import hscore, label_columns, linear_probe, logme, logme_column
from sftlab.selection.features import stratified_sample


def direct_log_evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) of the Bayesian linear model y = F w + noise, w ~ N(0, I / alpha), noise
    ~ N(0, I / beta): y ~ N(0, I / beta + F F^T / alpha), computed on the N x N covariance directly."""
    n = len(y)
    covariance = np.eye(n) / beta + features @ features.T / alpha
    _, logdet = np.linalg.slogdet(covariance)
    return float(-0.5 * (n * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(covariance, y)))


@pytest.fixture
def fixed() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6))
    labels = (features[:, 0] + 0.5 * features[:, 1] + 0.3 * rng.normal(size=40) > 0).astype(int)
    return features, labels


def test_logme_is_the_marginal_likelihood_at_its_alpha_and_beta(fixed):
    features, labels = fixed
    for column in label_columns(labels).T:
        result = logme_column(features, column)
        direct = direct_log_evidence(features, column, result.alpha, result.beta) / len(column)
        assert result.evidence == pytest.approx(direct, abs=1e-6)


def test_logme_fixed_point_maximises_the_evidence(fixed):
    """At convergence (tight tolerance), moving alpha or beta either way lowers the evidence: MacKay's
    updates reach the maximum of log p(y | alpha, beta)."""
    features, labels = fixed
    y = label_columns(labels)[:, 1]
    result = logme_column(features, y, max_iterations=500, tolerance=1e-10)
    best = direct_log_evidence(features, y, result.alpha, result.beta)
    for alpha_factor, beta_factor in ((1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)):
        moved = direct_log_evidence(features, y, result.alpha * alpha_factor, result.beta * beta_factor)
        assert moved < best
    # the reference's 11 iterations at 1% tolerance land within 1e-4 of that maximum per example
    assert logme_column(features, y).evidence == pytest.approx(best / len(y), abs=1e-4)


def test_logme_averages_the_one_hot_columns_and_prefers_informative_features(fixed):
    features, labels = fixed
    columns = label_columns(labels)
    assert columns.tolist()[:3] == [[float(label == 0), float(label == 1)] for label in labels[:3]]
    expected = np.mean([logme_column(features, column).evidence for column in columns.T])
    assert logme(features, labels) == pytest.approx(expected, abs=1e-12)
    noise = np.random.default_rng(1).normal(size=features.shape)
    assert logme(features, labels) > logme(noise, labels)


def test_hscore_by_hand_one_feature():
    # f = 1..6, classes {1,2,3} and {4,5,6}: var(f) = 17.5/6, class means 2 and 5, var(E[f|y]) = 2.25
    features = np.arange(1.0, 7.0)[:, None]
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert hscore(features, labels, shrinkage=False) == pytest.approx(2.25 / (17.5 / 6), abs=1e-12)
    # one feature: Ledoit-Wolf's target is the variance itself, so the shrinkage is 0 and nothing changes
    assert hscore(features, labels, shrinkage=True) == pytest.approx(2.25 / (17.5 / 6), abs=1e-12)


def test_hscore_by_hand_two_uncorrelated_features():
    # Column 0 separates the classes (as above), column 1 = (1, -1, 0, 0, -1, 1) carries no class signal
    # and is uncorrelated with column 0: H = 2.25 / (17.5/6) + 0 / (4/6).
    features = np.array([[1, 1], [2, -1], [3, 0], [4, 0], [5, -1], [6, 1]], dtype=float)
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert np.cov(features, rowvar=False)[0, 1] == pytest.approx(0.0)
    assert hscore(features, labels, shrinkage=False) == pytest.approx(2.25 / (17.5 / 6), abs=1e-12)


def test_shrinkage_hscore_matches_the_ledoit_wolf_formula(fixed):
    from sklearn.covariance import ledoit_wolf

    features, labels = fixed
    # unequal variances, as real features have (isotropic ones shrink all the way: amount 1, score 0)
    features = features * np.array([3.0, 2.0, 1.0, 1.0, 0.5, 0.2])
    centered = features - features.mean(0)
    shrunk, amount = ledoit_wolf(centered, assume_centered=True)
    means = np.stack([centered[labels == label].mean(0) for label in labels])
    between = means.T @ means / len(labels)
    expected = np.trace(np.linalg.inv(shrunk) @ ((1 - amount) * between))
    assert 0 < amount < 1
    assert hscore(features, labels, shrinkage=True) == pytest.approx(expected, rel=1e-10)
    # multi-label: the mean of each 0/1 column's H-score
    indicator = np.stack([labels, 1 - labels, (features[:, 2] > 0).astype(int)], axis=1)
    per_column = [hscore(features, indicator[:, k], shrinkage=True) for k in range(3)]
    assert hscore(features, indicator) == pytest.approx(np.mean(per_column), rel=1e-12)


def test_linear_probe_separable_and_random():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 20)
    separable = rng.normal(size=(60, 4)) * 0.1 + np.eye(3, 4)[labels] * 3
    score = linear_probe(separable, labels, folds=5)
    assert score.accuracy == 1.0 and score.f1_macro == 1.0
    noise = rng.normal(size=(60, 4))
    assert linear_probe(noise, labels, folds=5).accuracy < 0.6


def test_stratified_sample_keeps_each_share():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 9 + ["d"]
    chosen = stratified_sample(labels, 20, seed=3)
    counts = {label: sum(labels[i] == label for i in chosen) for label in "abcd"}
    # shares 12, 6, 1.8 and 0.2: every label keeps at least one row, which uses up the 20
    assert counts == {"a": 12, "b": 6, "c": 1, "d": 1}
    assert chosen == sorted(set(chosen))
    assert {
        label: sum(labels[i] == label for i in stratified_sample(labels, 50, seed=3)) for label in "abcd"
    } == {"a": 30, "b": 15, "c": 4, "d": 1}
    assert stratified_sample(labels, 20, seed=3) == chosen
    assert stratified_sample(labels, 500, seed=3) == list(range(100))


def test_successive_halving_rungs_and_decisions():
    halving = SuccessiveHalving(rate=2)
    assert [e for e in range(1, 10) if halving.is_rung(e)] == [1, 2, 4, 8]
    # run 1 always goes on
    assert all(halving.keep_going(e, v) for e, v in ((1, 0.80), (2, 0.85), (3, 0.86), (4, 0.90)))
    # run 2: worse than run 1 at evaluation 1 -> top ceil(2/2) = 1 of 2: stopped
    assert not halving.keep_going(1, 0.70)
    # run 3: better at 1 and 2 (top 2 of 3, then top 1 of 2), worse at 4 -> stopped there
    assert halving.keep_going(1, 0.82) and halving.keep_going(2, 0.88) and halving.keep_going(3, 0.0)
    assert not halving.keep_going(4, 0.89)
    lower = SuccessiveHalving(rate=3, lower_is_better=True)
    assert lower.keep_going(1, 0.5) and lower.keep_going(1, 0.4) and lower.keep_going(1, 0.6) is False
