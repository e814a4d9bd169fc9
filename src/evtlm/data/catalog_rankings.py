"""Ranking helpers that turn per-example item scores into top-k lists over a catalog, the same way
for every baseline (and, for history exclusion, the model): the catalog training may see
(`default_catalog`), popularity, fill-in from a fallback ranking, history exclusion
(`drop_excluded`) and the best k per row. They work on catalog codes and `HistoryIndex` arrays;
they must not compute features or decide what a history may see (`evtlm.data.history_index`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from evtlm.data.history_index import HistoryIndex
from evtlm.errors import DataError


def default_catalog(index: HistoryIndex, train: pd.DataFrame) -> list[str]:
    """Items of the events training may see, sorted by id (the next_item label space)."""
    seen = index.visible_mask(train["user_id"], train["label_time"]) & (index.item >= 0)
    return sorted(index.item_ids[np.unique(index.item[seen])].tolist())


def item_popularity(index: HistoryIndex, cat: np.ndarray, mask: np.ndarray, catalog: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Catalog codes by interaction count over ``mask`` (desc, ties by catalog order) and their
    shares; null catalog entries are never ranked."""
    n_items = len(catalog)
    counts = np.bincount(cat[mask & (cat >= 0)], minlength=n_items).astype(float)
    order = np.lexsort((np.arange(n_items), -counts))
    order = order[pd.notna(pd.Series(list(catalog), dtype=object)).to_numpy()[order]]
    return order, counts[order] / max(counts.sum(), 1.0)


def with_fallback(primary: np.ndarray, pscores: np.ndarray, fallback: np.ndarray, fscores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's own items (``primary`` [n, P], -1 padded, best first), then the ``fallback``
    items ([C] catalog codes, best first) it does not already hold, cut to ``k`` columns.

    Fill-in scores are ``fscores - 1`` (< 0), so they rank below the row's own items (> 0).

    >>> with_fallback(np.array([[2, -1], [-1, -1]]), np.array([[.5, 0], [0, 0]]), np.array([0, 2, 1]),
    ...               np.array([.5, .3, .2]), 2)[0].tolist()
    [[2, 0], [0, 2]]
    """
    k = min(k, len(fallback))
    primary, pscores = primary[:, :k], pscores[:, :k]
    fb, fs = fallback[: k + primary.shape[1]], fscores[: k + primary.shape[1]] - 1.0
    n = len(primary)
    out_codes, out_scores = np.empty((n, k), np.int64), np.empty((n, k))
    # duplicates found by (row, item) keys, not an [rows, F, P] comparison: long lists (deep
    # rankings for history exclusion, k in the hundreds) stay linear in rows x (F + P)
    width = int(max(fb.max(initial=-1), primary.max(initial=-1))) + 1
    step = max(1, 4_000_000 // max(1, fb.size + primary.shape[1]))  # rows per chunk: ~4M candidates
    for lo in range(0, n, step):
        p, ps = primary[lo : lo + step], pscores[lo : lo + step]
        row = np.arange(len(p), dtype=np.int64)[:, None] * width
        dup = np.isin(row + fb[None, :], (row + p)[p >= 0])
        cand = np.concatenate([p, np.broadcast_to(fb, (len(p), len(fb)))], axis=1)
        score = np.concatenate([ps, np.broadcast_to(fs, (len(p), len(fb)))], axis=1)
        valid = np.concatenate([p >= 0, ~dup], axis=1)
        order = np.argsort(~valid, axis=1, kind="stable")[:, :k]  # valid first, order kept
        out_codes[lo : lo + step] = np.take_along_axis(cand, order, axis=1)
        out_scores[lo : lo + step] = np.take_along_axis(score, order, axis=1)
    return out_codes, out_scores


def drop_excluded(codes: np.ndarray, exclude: Sequence[Sequence[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rankings ``codes`` [n, K] (-1 padded, best first) without each row's ``exclude[i]`` codes,
    cut to ``k``: ``(codes [n, k], source column of each kept entry [n, k])``, -1 padded.

    `evtlm.evaluate.harness` masks every method with the same lists (``decode.exclude_history_items``):
    a ranking ``K = k + max(len(e))`` deep keeps k entries in every row.

    >>> c, col = drop_excluded(np.array([[5, 2, 7, -1], [1, 2, 3, 4]]), [[2], [9]], 3)
    >>> c.tolist(), col.tolist()
    ([[5, 7, -1], [1, 2, 3]], [[0, 2, -1], [0, 1, 2]])
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, depth = codes.shape
    lengths = np.fromiter((len(e) for e in exclude), np.int64, count=len(exclude))
    if len(lengths) != n:
        raise DataError(f"exclude has {len(lengths)} rows for {n} rankings", where="drop_excluded",
                        fix="pass one list of excluded catalog positions per ranked example")
    width = int(max(codes.max(initial=-1), max((max(e, default=-1) for e in exclude), default=-1))) + 1
    banned = np.repeat(np.arange(n, dtype=np.int64), lengths) * width
    if lengths.sum():
        banned = banned + np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude if len(e)])
    row = np.arange(n, dtype=np.int64)[:, None] * width
    keep = (codes >= 0) & ~np.isin(row + codes, banned)
    col = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept entries first, their order unchanged
    kept = np.take_along_axis(keep, col, axis=1)
    col = np.where(kept, col, -1)
    return np.where(kept, np.take_along_axis(codes, np.maximum(col, 0), axis=1), -1), col


def top_per_row(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, tiebreak: np.ndarray, n: int, k: int):
    """Long ``(row, item, score)`` triples -> the best ``k`` per row as [n, k] (-1 / 0 padded)."""
    order = np.lexsort((tiebreak, -scores, rows))
    rows, items, scores = rows[order], items[order], scores[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")  # rank within row
    keep = rank < k
    codes, vals = np.full((n, k), -1, np.int64), np.zeros((n, k))
    codes[rows[keep], rank[keep]] = items[keep]
    vals[rows[keep], rank[keep]] = scores[keep]
    return codes, vals
