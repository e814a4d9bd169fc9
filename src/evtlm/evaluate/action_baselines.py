"""The next_action baselines read off the last action: `Markov` (P(next | last) from training
transitions) and `SameAsLast` (the previous action again, smoothed toward the prior). Both fit
from shards. Built on `evtlm.evaluate.baseline_core`; registered in `evtlm.evaluate.baselines`,
which this module must not import.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evtlm.data.history import HistoryIndex, positions_in
from evtlm.evaluate.baseline_core import Baseline
from evtlm.recipe import ACTIONS


class Markov(Baseline):
    """next_action: P(next action | last action) from consecutive training events,
    Dirichlet-smoothed towards the overall next-action distribution (``smoothing`` pseudo-counts)."""

    name = "markov"
    description = "last-action Markov chain from training transitions (smoothed)"
    smoothing = 5.0
    shardable = ("next_action",)
    additive = frozenset({"counts"})

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        mask = index.visible_mask(train["user_id"], train["label_time"])
        seq = np.flatnonzero(mask & (index.action >= 0))
        a, b = seq[:-1], seq[1:]
        same = index.user[a] == index.user[b]  # pairs within a user: users never straddle shards
        counts = np.zeros((len(ACTIONS), len(ACTIONS)))
        np.add.at(counts, (index.action[a[same]], index.action[b[same]]), 1.0)
        return {"counts": counts}

    def _fit_part(self, train: pd.DataFrame, part: dict) -> None:
        cols = np.array([ACTIONS.index(a) for a in self.labels])
        counts = part["counts"][:, cols]  # [6 last actions, A next actions in label order]
        marginal = (counts.sum(axis=0) + 1.0) / (counts.sum() + len(cols))
        self.table = (counts + self.smoothing * marginal) / (counts.sum(axis=1, keepdims=True) + self.smoothing)
        self.marginal = marginal

    def _predict(self, examples, index, start, end):
        last = np.where(end > start, index.action[np.clip(end - 1, 0, max(index.n - 1, 0))] if index.n else -1, -1)
        return np.where((last >= 0)[:, None], self.table[np.maximum(last, 0)], self.marginal[None, :])


class SameAsLast(Baseline):
    """next_action: the user's previous action again (decision = the last action before label_time).

    Probabilities mix a one-hot on that action with the training class prior,
    ``w * onehot(last) + (1 - w) * prior``, so no class gets probability 0 and the log loss stays
    finite. ``w`` is the maximum-likelihood mixing weight on the training examples (EM, each seeing
    only its events strictly before its label time), raised where needed so that the previous
    action always stays the argmax: ``w / (1 - w) > max(prior) - min(prior)``. Without a usable
    last action (no history, or an action outside the label order) it predicts the prior.
    """

    name = "same_as_last"
    description = "the previous action again (smoothed toward the class prior)"

    def _last(self, index: HistoryIndex, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Column of each slice's last action in the label order, -1: none or outside it."""
        col = np.full(len(ACTIONS) + 1, -1, np.int64)  # action code -1 (unknown): last slot
        col[[ACTIONS.index(a) for a in self.labels]] = np.arange(len(self.labels))
        last = index.action[np.clip(end - 1, 0, max(index.n - 1, 0))] if index.n else np.full(len(end), -1)
        return np.where(end > start, col[last], -1)

    shardable = ("next_action",)

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        return {"last": self._last(index, *index.bounds(train["user_id"], train["label_time"]))}

    def _fit_part(self, train: pd.DataFrame, part: dict) -> None:
        counts = train["label"].astype("string").value_counts().reindex(self.labels, fill_value=0)
        self.prior = (counts.to_numpy(float) + 1.0) / (counts.sum() + len(self.labels))  # Laplace: no zero
        last = part["last"]
        y = positions_in(self.labels, train["label"])
        has = last >= 0
        stay, p_y = (y == last)[has], self.prior[y[has]]  # the one-hot's support, the prior's share
        w = 0.5
        for _ in range(200):  # EM for the mixing weight of a two-component mixture (concave, 1-d)
            resp = np.where(stay, w / (w + (1 - w) * p_y), 0.0)
            new = float(resp.mean()) if len(resp) else 0.0
            if abs(new - w) < 1e-9:
                break
            w = new
        gap = float(self.prior.max() - self.prior.min())
        floor = gap / (1.0 + gap) + 1e-6  # the previous action stays the decision
        self.weight = float(np.clip(w, floor, 1.0 - 1e-4))  # < 1: finite log loss on a change

    def _predict(self, examples, index, start, end):
        last = self._last(index, start, end)
        onehot = (last[:, None] == np.arange(len(self.labels))[None, :]).astype(float)
        mixed = self.weight * onehot + (1.0 - self.weight) * self.prior[None, :]
        return np.where((last >= 0)[:, None], mixed, self.prior[None, :])
