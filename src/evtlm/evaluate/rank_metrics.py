"""Ranking metrics: the rank of the true item (`ranks`), HR@k, NDCG@k and MRR@k, and all of them
in one dict (`ranking_metrics`, the next_item task). Scores rankings it is given and never builds
one; must not import `evtlm.evaluate.metrics`, which re-exports these names.

Ranking (``ranked [n, K]`` candidate indices best first; ``true [n]`` the right index, -1 for an
answer outside the catalog, which always counts as a miss and is never dropped):

>>> ranked = np.array([[3, 1, 2], [0, 2, 1], [1, 2, 0], [2, 0, 1]])
>>> true = np.array([1, 0, 7, -1])          # rank 2, rank 1, not in the top 3, cold item
>>> hr_at_k(ranked, true, 1), hr_at_k(ranked, true, 3), mrr_at_k(ranked, true, 3)
(0.25, 0.5, 0.375)
>>> round(ndcg_at_k(ranked, true, 3), 4)     # (1/log2(3) + 1/log2(2)) / 4
0.4077
"""

from __future__ import annotations

import numpy as np

from evtlm.errors import TaskError
from evtlm.evaluate.metric_inputs import _labels


def ranks(ranked, true) -> np.ndarray:
    """1-based rank of the true index in each row of ``ranked [n, K]``; 0 when absent or cold (-1).

    >>> ranks(np.array([[3, 1], [0, 2], [-1, -1]]), np.array([1, 5, -1])).tolist()
    [2, 0, 0]
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise TaskError(f"ranked must be [n, K], got shape {ranked.shape}", where="evtlm.evaluate.metrics",
                        fix="pass the top-K candidate indices per example")
    true = _labels(true, len(ranked), "true")
    # true = -1 (cold item) never matches, not even the -1 padding of a short ranking
    hit = (ranked == true[:, None]) & (true[:, None] >= 0)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


def _check_k(ranked, k: int) -> None:
    if not 1 <= k <= np.asarray(ranked).shape[1]:
        raise TaskError(f"k={k} but the rankings hold {np.asarray(ranked).shape[1]} candidates", where="evtlm.evaluate.metrics",
                        fix="decode at least k candidates (decode.top_k >= max(eval.k))")


def hr_at_k(ranked, true, k: int) -> float:
    """Hit rate: share of examples whose true item is in the top k (cold items are misses)."""
    _check_k(ranked, k)
    r = ranks(ranked, true)
    return float(np.mean((r >= 1) & (r <= k))) if len(r) else float("nan")


def ndcg_at_k(ranked, true, k: int) -> float:
    """NDCG with one relevant item: mean of 1/log2(rank + 1) over hits within k, 0 otherwise."""
    _check_k(ranked, k)
    r = ranks(ranked, true)
    gain = np.where((r >= 1) & (r <= k), 1.0 / np.log2(np.maximum(r, 1) + 1), 0.0)
    return float(np.mean(gain)) if len(r) else float("nan")


def mrr_at_k(ranked, true, k: int) -> float:
    """Mean reciprocal rank, counting 0 for items outside the top k."""
    _check_k(ranked, k)
    r = ranks(ranked, true)
    rr = np.where((r >= 1) & (r <= k), 1.0 / np.maximum(r, 1), 0.0)
    return float(np.mean(rr)) if len(r) else float("nan")


def ranking_metrics(ranked, true, ks=(1, 5, 10, 20)) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k for every k in ``ks`` that the rankings are deep enough for.

    >>> ranking_metrics(np.array([[3, 1], [0, 2]]), np.array([1, 0]), ks=(1, 2, 5))
    {'hr@1': 0.5, 'ndcg@1': 0.5, 'mrr@1': 0.5, 'hr@2': 1.0, 'ndcg@2': 0.8154648767857288, 'mrr@2': 0.75}
    """
    depth = np.asarray(ranked).shape[1]
    out: dict[str, float] = {}
    for k in ks:
        if k <= depth:
            out[f"hr@{k}"] = hr_at_k(ranked, true, k)
            out[f"ndcg@{k}"] = ndcg_at_k(ranked, true, k)
            out[f"mrr@{k}"] = mrr_at_k(ranked, true, k)
    return out
