"""Offline metrics: plain functions on numpy arrays (scikit-learn where it has them).

Owns the classification metrics (accuracy, macro-F1, ROC-AUC and its standard error, log loss,
Brier, the confusion matrix), the per-task summaries `binary_metrics` and `multiclass_metrics`,
and the per-class decision offsets (`fit_class_offsets`). The argument checks live in
`evtlm.evaluate.metric_inputs`, calibration error in `evtlm.evaluate.reliability` and the ranking
metrics in `evtlm.evaluate.rank_metrics`, all importable from here. Trains no model, reads no file.

The Hugging Face ``evaluate`` hub scripts need network; these do not. The model and every
baseline are judged by the same functions on the same examples.

Classification (labels are integer class indices; probabilities are P(class 1) [n] for binary
tasks such as purchase, or a distribution [n, C] for closed sets such as next_action):

>>> y = np.array([1, 0, 1, 1, 0])
>>> p = np.array([0.9, 0.2, 0.6, 0.4, 0.3])
>>> accuracy(y, p >= 0.5), roc_auc(y, p), round(log_loss(y, p), 4), round(brier(y, p), 3)
(0.8, 1.0, 0.4225, 0.132)

Ranking metrics (``hr_at_k``, ``ndcg_at_k``, ``mrr_at_k``): see `evtlm.evaluate.rank_metrics`.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm

from evtlm.errors import TaskError
from evtlm.evaluate.metric_inputs import _binary_probs, _labels
from evtlm.evaluate.rank_metrics import hr_at_k, mrr_at_k, ndcg_at_k, ranking_metrics, ranks
from evtlm.evaluate.reliability import ReliabilityCurve, ece, reliability_curve

__all__ = [
    "MetricWarning",
    "accuracy",
    "macro_f1",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
    "ReliabilityCurve",
    "reliability_curve",
    "confusion",
    "ranks",
    "hr_at_k",
    "ndcg_at_k",
    "mrr_at_k",
    "binary_metrics",
    "multiclass_metrics",
    "ranking_metrics",
]


class MetricWarning(UserWarning):
    """A metric that is undefined on these examples (returned as NaN, with the reason)."""


def accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches.

    >>> accuracy([0, 1, 2, 2], [0, 2, 2, 2])
    0.75
    """
    y_pred = np.asarray(y_pred)
    y = _labels(y_true, len(y_pred))
    return float(np.mean(y == y_pred)) if len(y) else float("nan")


def macro_f1(y_true, y_pred, labels=None) -> float:
    """F1 averaged over classes with equal weight (rare classes count as much as common ones).

    ``labels``: the full label space, so a class the model never predicts scores F1 = 0.

    >>> round(macro_f1([0, 0, 1, 1], [0, 1, 1, 1]), 4)       # F1(0) = 2/3, F1(1) = 4/5
    0.7333
    """
    y_pred = np.asarray(y_pred)
    y = _labels(y_true, len(y_pred))
    return float(skm.f1_score(y, y_pred, labels=labels, average="macro", zero_division=0))


def roc_auc(y_true, p) -> float:
    """Area under the ROC curve: binary P(class 1) [n], or one-vs-rest macro over a [n, C] distribution.

    NaN, with a :class:`MetricWarning` saying why, when only one class occurs (AUC is undefined).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     value = roc_auc([1, 1, 1], [0.2, 0.9, 0.5])
    >>> value, str(w[0].message)[:38]
    (nan, 'ROC-AUC undefined: only class 1 occurs')
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] > 2:
        y = _labels(y_true, len(p)).astype(np.int64)
        present = np.unique(y)
        if len(present) < 2:
            return _undefined(f"ROC-AUC undefined: only class {present.tolist()} occurs in {len(y)} examples")
        # one-vs-rest over the classes that occur (a class with no positives has no curve)
        scores = [skm.roc_auc_score(y == c, p[:, c]) for c in present]
        return float(np.mean(scores))
    y, p = _binary_probs(y_true, p)
    present = np.unique(y)
    if len(present) < 2:
        cls = present[0] if len(present) else "none"
        return _undefined(f"ROC-AUC undefined: only class {cls} occurs in these {len(y)} examples")
    return float(skm.roc_auc_score(y, p))


def _undefined(note: str) -> float:
    warnings.warn(note, MetricWarning, stacklevel=3)
    return float("nan")


def log_loss(y_true, p, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true class (natural log); probabilities clipped to [eps, 1-eps].

    >>> round(log_loss([1, 0], [0.8, 0.1]), 4)                  # -(ln 0.8 + ln 0.9) / 2
    0.1643
    >>> round(log_loss([2, 0], [[0.1, 0.1, 0.8], [0.5, 0.25, 0.25]]), 4)   # -(ln 0.8 + ln 0.5) / 2
    0.4581
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] > 2:
        y = _labels(y_true, len(p)).astype(np.int64)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))
    y, p = _binary_probs(y_true, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(y_true, p) -> float:
    """Brier score: mean squared error of the probabilities.

    Binary P(class 1) [n] (or a [n, 2] distribution): mean of (p - y)^2, in [0, 1]. A distribution
    [n, C > 2]: Brier's original score, the squared error summed over classes, in [0, 2].

    >>> round(brier([1, 0], [0.8, 0.1]), 6)                     # (0.04 + 0.01) / 2
    0.025
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] > 2:
        y = _labels(y_true, len(p)).astype(np.int64)
        onehot = np.eye(p.shape[1])[y]
        return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    y, p = _binary_probs(y_true, p)
    return float(np.mean((p - y) ** 2))


def confusion(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Confusion matrix [C, C]: row = true class, column = predicted class (label indices 0..C-1).

    >>> confusion([0, 1, 1, 2], [0, 1, 2, 2], n_classes=3).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    y_pred = np.asarray(y_pred, dtype=np.int64)
    y = _labels(y_true, len(y_pred)).astype(np.int64)
    if n_classes is None:
        n_classes = int(max(y.max(initial=-1), y_pred.max(initial=-1))) + 1
    return skm.confusion_matrix(y, y_pred, labels=np.arange(n_classes))


def roc_auc_se(y_true, p) -> float:
    """DeLong's standard error of the binary ROC-AUC (NaN with fewer than two of a class).

    Each positive's share of negatives scored below it (ties: half) and each negative's share of
    positives above it average to the AUC; the variances of those two sets of shares, over the
    positives and the negatives, make its variance (DeLong, DeLong & Clarke-Pearson 1988).

    >>> y, p = [0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    >>> round(roc_auc(y, p), 4), round(roc_auc_se(y, p), 4)
    (0.8889, 0.1571)
    """
    from scipy.stats import rankdata

    y, p = _binary_probs(y_true, p)
    pos, neg = p[y == 1], p[y == 0]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))  # midranks: ties count half
    below = (ranks[:m] - rankdata(pos)) / n  # per positive: the share of negatives under it
    above = 1.0 - (ranks[m:] - rankdata(neg)) / m  # per negative: the share of positives over it
    return float(np.sqrt(below.var(ddof=1) / m + above.var(ddof=1) / n))


def binary_metrics(y_true, p, threshold: float = 0.5, n_bins: int = 10) -> dict[str, float]:
    """Every binary metric in one dict (the purchase task), predictions = p >= threshold.

    >>> m = binary_metrics([1, 0, 1, 1, 0], [0.9, 0.2, 0.6, 0.4, 0.3])
    >>> sorted(m), m["accuracy"], m["positive_rate"]
    (['accuracy', 'brier', 'ece', 'log_loss', 'macro_f1', 'positive_rate', 'roc_auc', 'roc_auc_se'], 0.8, 0.6)
    """
    y, p = _binary_probs(y_true, p)
    pred = (p >= threshold).astype(np.int64)
    return {
        "accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred, labels=[0, 1]),
        "roc_auc": roc_auc(y, p), "roc_auc_se": roc_auc_se(y, p), "log_loss": log_loss(y, p), "brier": brier(y, p),
        "ece": ece(y, p, n_bins), "positive_rate": float(np.mean(y)) if len(y) else float("nan"),
    }


def multiclass_metrics(y_true, probs, n_bins: int = 10, decisions=None) -> dict[str, float]:
    """Every closed-set metric in one dict from a distribution [n, C] (next_action); argmax predicts.

    >>> m = multiclass_metrics([0, 2, 1], [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.3, 0.2]])
    >>> round(m["accuracy"], 4), round(m["log_loss"], 4)
    (0.6667, 0.6905)
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise TaskError(f"probs must be [n, C], got shape {probs.shape}", where="evtlm.evaluate.metrics",
                        fix="pass one distribution over the label space per example")
    y = _labels(y_true, len(probs)).astype(np.int64)
    pred = probs.argmax(axis=1) if decisions is None else np.asarray(decisions)  # accuracy and F1 judge the decisions
    # two classes: the binary definitions on P(class 1) (see brier); more: the [n, C] ones
    scored = probs if probs.shape[1] > 2 else probs[:, 1]
    return {"accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred, labels=np.arange(probs.shape[1])),
            "roc_auc": roc_auc(y, scored), "log_loss": log_loss(y, scored), "brier": brier(y, scored),
            "ece": ece(y, probs, n_bins)}


def fit_class_offsets(y_true, probs, rounds: int = 3, grid: int = 41) -> np.ndarray:
    """Per-class log offsets that maximise macro-F1 of ``argmax(log p + offset)`` on (validation)
    data: coordinate ascent over a grid, one class at a time. Rare classes get predicted when the
    evidence for them is relatively high, which an argmax over the probabilities never does
    when one class dominates. Fit on validation, apply to test (`apply_offsets`).

    >>> p = np.array([[0.7, 0.3]] * 6 + [[0.6, 0.4]] * 4)
    >>> y = np.array([0] * 6 + [1] * 4)
    >>> macro_f1(y, p.argmax(1)) < macro_f1(y, apply_offsets(p, fit_class_offsets(y, p)))
    True
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    keep = (y >= 0) & (y < probs.shape[1])
    logp, y = np.log(np.clip(probs[keep], 1e-12, None)), y[keep]
    offsets = np.zeros(probs.shape[1])
    labels = np.arange(probs.shape[1])
    if len(y) == 0:
        return offsets
    best = macro_f1(y, (logp + offsets).argmax(1), labels=labels)
    steps = np.linspace(-6, 6, grid)
    for _ in range(rounds):
        for c in range(1, probs.shape[1]):  # class 0 stays the reference
            for v in steps:
                trial = offsets.copy()
                trial[c] = v
                score = macro_f1(y, (logp + trial).argmax(1), labels=labels)
                if score > best + 1e-12:
                    best, offsets = score, trial
    return offsets


def apply_offsets(probs, offsets) -> np.ndarray:
    """The decisions (class indices) of `fit_class_offsets`'s rule."""
    return (np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) + np.asarray(offsets)).argmax(1)
