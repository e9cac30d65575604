"""Transferability estimators: how well frozen features fit the labels, without training the model.

- LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning"): the
  log marginal likelihood (evidence) per example of a Bayesian linear model from features to each one-hot
  label column, maximised over the prior precision alpha and the noise precision beta by MacKay's fixed
  point, averaged over the columns. Higher is better; the value is comparable between models on the same
  task only (it depends on the number of classes and examples).
- H-score (Bao et al. 2019): tr(cov(f)^-1 cov(E[f|y])), the between-class share of the feature variance.
  `shrinkage=True` is the regularized H-score of Ibrahim et al. 2022 ("Newer is not always better"): the
  Ledoit-Wolf shrunk covariance, whose inverse stays stable when features outnumber examples.
- The cross-validated accuracy of a logistic-regression probe: slower, but in units a user can read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Evidence:
    """LogME's result for one label column: the evidence per example at the optimum alpha and beta."""

    evidence: float
    alpha: float
    beta: float
    iterations: int


def logme_column(
    features: np.ndarray, target: np.ndarray, max_iterations: int = 11, tolerance: float = 0.01
) -> Evidence:
    """LogME for one real-valued target column: MacKay's fixed-point updates of alpha and beta.

    Uses the eigendecomposition of F^T F (D x D), so its cost does not grow with the examples beyond one
    product. `max_iterations` and `tolerance` (relative change of alpha / beta) are the reference's defaults.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    n, d = f.shape
    sigma, v = np.linalg.eigh(f.T @ f)
    sigma = np.clip(sigma, 0.0, None)
    projected = v.T @ (f.T @ y)  # V^T F^T y
    alpha, beta = 1.0, 1.0
    ratio = alpha / beta
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported)
        gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
        mean = v @ (beta * projected / (alpha + beta * sigma))  # posterior mean of the weights
        weight_norm = float(mean @ mean)
        residual = float(((y - f @ mean) ** 2).sum())
        alpha = gamma / (weight_norm + 1e-5)
        beta = (n - gamma) / (residual + 1e-5)
        new_ratio = alpha / beta
        converged = abs(new_ratio - ratio) / ratio < tolerance
        ratio = new_ratio
        if converged:
            break
    mean = v @ (beta * projected / (alpha + beta * sigma))
    weight_norm = float(mean @ mean)
    residual = float(((y - f @ mean) ** 2).sum())
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * np.log(alpha + beta * sigma).sum()
        - beta / 2 * residual
        - alpha / 2 * weight_norm
        - n / 2 * np.log(2 * np.pi)
    )
    return Evidence(float(evidence / n), float(alpha), float(beta), iterations)


def logme(
    features: np.ndarray, labels: np.ndarray, max_iterations: int = 11, tolerance: float = 0.01
) -> float:
    """LogME of features for labels: integer class ids (one-hot columns) or a 0/1 matrix (multi-label)."""
    targets = label_columns(labels)
    return float(
        np.mean([logme_column(features, column, max_iterations, tolerance).evidence for column in targets.T])
    )


def label_columns(labels: np.ndarray) -> np.ndarray:
    """(n, classes) 0/1 targets: one-hot for class ids, unchanged for a multi-label indicator matrix."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.astype(np.float64)
    classes = np.unique(labels)
    return (labels[:, None] == classes[None, :]).astype(np.float64)


def hscore(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """H-score of features for class ids (multi-label: the mean over the 0/1 columns, each a binary task).

    tr(cov(f)^-1 cov(g)), g(x) = E[f | y = y(x)]: the class-conditional means, one row per example.
    With `shrinkage`, cov(f) is Ledoit-Wolf's (1 - a) S + a mu I and cov(g) is scaled by (1 - a), as in
    Ibrahim et al. 2022; without it, the plain covariance and a pseudo-inverse (the original definition).
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return float(np.mean([hscore(features, column, shrinkage) for column in labels.T.astype(int)]))
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0)
    class_means = np.zeros_like(f)
    for label in np.unique(labels):
        rows = labels == label
        class_means[rows] = f[rows].mean(axis=0)
    cov_g = np.cov(class_means, rowvar=False, bias=True).reshape(f.shape[1], f.shape[1])
    if shrinkage:
        from sklearn.covariance import ledoit_wolf

        cov_f, amount = ledoit_wolf(f, assume_centered=True)
        return float(np.trace(np.linalg.solve(cov_f, (1.0 - amount) * cov_g)))
    cov_f = np.cov(f, rowvar=False, bias=True).reshape(f.shape[1], f.shape[1])
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15, hermitian=True) @ cov_g))


@dataclass(frozen=True)
class ProbeScore:
    accuracy: float
    """Cross-validated accuracy (multi-label: the mean over labels of each label's accuracy)."""
    f1_macro: float
    """Cross-validated macro F1 over the classes (token classification: the metric shown, since 'O' dominates
    accuracy)."""


def linear_probe(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> ProbeScore:
    """Cross-validated logistic regression on standardized features (scikit-learn), `folds` stratified folds.

    Fewer folds when the smallest class is smaller than `folds` (at least 2).
    """
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Rare tags (one word in the sample) and lbfgs stopping at max_iter are expected here, not news.
        warnings.filterwarnings("ignore", message="The least populated class")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return _linear_probe(features, labels, folds, seed)


def _linear_probe(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> ProbeScore:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    classifier = LogisticRegression(max_iter=300, C=1.0)
    if labels.ndim == 2:
        model = make_pipeline(StandardScaler(), OneVsRestClassifier(classifier))
        splitter = KFold(n_splits=max(2, min(folds, len(labels))), shuffle=True, random_state=seed)
        predicted = cross_val_predict(model, features, labels, cv=splitter)
        return ProbeScore(
            float((predicted == labels).mean()), float(f1_score(labels, predicted, average="macro"))
        )
    smallest = int(np.unique(labels, return_counts=True)[1].min())
    splitter = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), classifier)
    predicted = cross_val_predict(model, features, labels, cv=splitter)
    return ProbeScore(
        float(accuracy_score(labels, predicted)), float(f1_score(labels, predicted, average="macro"))
    )
