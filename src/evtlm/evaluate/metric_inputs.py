"""The argument checks every metric shares: `_labels` (one label per example) and `_binary_probs`
(0/1 labels beside P(class 1)), each raising a `TaskError` that says what to pass. Computes no
metric, and must not import the metric modules (`evtlm.evaluate.metrics` and its siblings import
this one).
"""

from __future__ import annotations

import numpy as np

from evtlm.errors import TaskError


def _labels(y_true, n: int | None = None, what: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise TaskError(f"{what} must be 1-D, got shape {y.shape}", where="evtlm.evaluate.metrics",
                        fix="pass one label per example")
    if n is not None and len(y) != n:
        raise TaskError(f"{what} has {len(y)} entries for {n} predictions", where="evtlm.evaluate.metrics",
                        fix="score the same examples for labels and predictions")
    return y


def _binary_probs(y_true, p) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:  # a [n, 2] distribution: P(class 1) is column 1
        p = p[:, 1]
    if p.ndim != 1:
        raise TaskError(f"binary probabilities must be [n] or [n, 2], got shape {p.shape}", where="evtlm.evaluate.metrics",
                        fix="pass P(class 1) per example")
    y = _labels(y_true, len(p)).astype(np.int64)
    if not np.isin(y, (0, 1)).all():
        raise TaskError(f"binary labels must be 0/1, got {np.unique(y)[:5].tolist()}", where="evtlm.evaluate.metrics",
                        fix="encode the positive class as 1")
    if len(p) and (np.nanmin(p) < 0 or np.nanmax(p) > 1 or np.isnan(p).any()):
        raise TaskError("probabilities must lie in [0, 1] (no NaN)", where="evtlm.evaluate.metrics",
                        fix="pass probabilities, not logits or scores")
    return y, p
