"""Calibration metrics: the reliability curve (`ReliabilityCurve`, `reliability_curve`) and the
expected calibration error (`ece`) of binary probabilities or of a distribution's top class.
Measures calibration only and fits no calibrator (that is `evtlm.evaluate.calibration`'s); must
not import `evtlm.evaluate.metrics`, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evtlm.errors import TaskError
from evtlm.evaluate.metric_inputs import _binary_probs, _labels


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per equal-width bin: ``edges [B+1]``, mean predicted ``confidence [B]``, observed
    ``frequency [B]`` (NaN for an empty bin) and ``count [B]``. Plot frequency vs confidence."""

    edges: np.ndarray
    confidence: np.ndarray
    frequency: np.ndarray
    count: np.ndarray


def reliability_curve(y_true, p, n_bins: int = 10) -> ReliabilityCurve:
    """Equal-width bins of the predicted probability, with the observed rate in each.

    Binary [n]: bins of P(class 1), frequency = rate of class 1. A distribution [n, C]: bins of
    the top class's probability (confidence), frequency = accuracy of the top class.

    >>> c = reliability_curve([0, 1, 1, 1], [0.1, 0.3, 0.8, 0.9], n_bins=2)
    >>> c.confidence.round(6).tolist(), c.frequency.tolist(), c.count.tolist()
    ([0.2, 0.85], [0.5, 1.0], [2, 2])
    """
    if n_bins < 1:
        raise TaskError(f"n_bins must be >= 1, got {n_bins}", where="evtlm.evaluate.metrics", fix="set eval.ece_bins >= 2")
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] > 2:
        y = _labels(y_true, len(p)).astype(np.int64)
        conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    else:
        y, conf = _binary_probs(y_true, p)
        hit = y.astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds (edges[i], edges[i+1]]; p = 0 goes to the first bin
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=conf, minlength=n_bins) / count
        frequency = np.bincount(which, weights=hit, minlength=n_bins) / count
    return ReliabilityCurve(edges, confidence, frequency, count)


def ece(y_true, p, n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (bin share) * |observed rate - mean probability|.

    >>> round(ece([0, 1, 1, 1], [0.1, 0.3, 0.8, 0.9], n_bins=2), 4)   # 0.5*|0.5-0.2| + 0.5*|1-0.85|
    0.225
    """
    curve = reliability_curve(y_true, p, n_bins)
    total = curve.count.sum()
    if total == 0:
        return float("nan")
    full = curve.count > 0
    return float(np.sum(curve.count[full] / total * np.abs(curve.frequency[full] - curve.confidence[full])))
