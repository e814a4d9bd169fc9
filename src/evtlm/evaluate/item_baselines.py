"""The next_item baselines that learn from the item sequences: `Transitions` (first-order
item-to-item) and `Repeat` (the user's own items, recency x frequency), each falling back on
popularity. They learn from the whole log at once (no shards). Built on
`evtlm.evaluate.baseline_core`; registered in `evtlm.evaluate.baselines`, which this module must
not import.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evtlm.data.history import HistoryIndex, item_popularity, positions_in, strictly_earlier, top_per_row, with_fallback
from evtlm.evaluate.baseline_core import Baseline


class Transitions(Baseline):
    """next_item: P(next = B | last item = A) from consecutive training events, then popularity.
    A is the last item strictly before B: events at the same time (one invoice) are not pairs."""

    name = "transitions"
    description = "item-to-item first-order transitions from training sequences, then popularity"

    def _fit(self, train: pd.DataFrame, index: HistoryIndex) -> None:
        cat = self._catalog_codes(index)
        mask = index.visible_mask(train["user_id"], train["label_time"])
        self.pop, self.pop_shares = item_popularity(index, cat, mask, self.labels)
        seq = np.flatnonzero(mask & (cat >= 0))  # catalog events in time order, per user
        # B's predecessor A: the user's last item strictly before B (the leakage rule: the lines of
        # one invoice share a time, and a prediction never sees the lines of its own invoice)
        ctx = strictly_earlier(index.user[seq], index.ts[seq])
        a, b = seq[ctx[ctx >= 0]], seq[ctx >= 0]
        n = len(self.labels)
        counts = sp.coo_matrix((np.ones(len(b)), (cat[a], cat[b])), shape=(n, n)).tocsr()
        counts.sum_duplicates()
        rowsum = np.asarray(counts.sum(axis=1)).ravel()
        self.probs = sp.diags(1.0 / np.maximum(rowsum, 1.0)) @ counts  # row-normalised: P(B | A)
        self.rank = np.full(n, n, np.int64)
        self.rank[self.pop] = np.arange(len(self.pop))  # tie-break equal probabilities by popularity

    def _predict(self, examples, index, start, end):
        cat = self._catalog_codes(index)
        last = index.last_position(cat >= 0, start, end)  # most recent catalog item, -1: none
        has = np.flatnonzero(last >= 0)
        rows_m = self.probs[cat[last[has]]].tocoo()  # [len(has), n_items]
        primary, pscores = top_per_row(has[rows_m.row], rows_m.col, rows_m.data, self.rank[rows_m.col], len(examples), self.k)
        return self._ranking(*with_fallback(primary, pscores, self.pop, self.pop_shares, self.k))


class Repeat(Baseline):
    """next_item: the user's own past items scored by recency-weighted frequency
    (sum of gamma^steps_ago over their occurrences), then popularity.

    ``gamma`` is chosen on (a sample of) the training examples by MRR@k from
    :attr:`gammas`: small gamma = most recent first, gamma 1 = most frequent first.
    """

    name = "repeat"
    description = "re-recommend the user's own items (recency x frequency), then popularity"
    gammas: ClassVar[tuple[float, ...]] = (0.05, 0.3, 0.6, 0.8, 0.9, 0.97, 1.0)
    history = 200  # most recent events considered
    tune_examples = 5000

    def _scored(self, cat, index, start, end, gamma):
        hist = index.recent(cat, start, end, self.history)  # [n, L] catalog codes, -1 pad
        n, length = hist.shape
        rows, steps = np.divmod(np.flatnonzero(hist.ravel() >= 0), length)
        frame = pd.DataFrame({"r": rows, "i": hist[rows, steps], "w": gamma ** steps.astype(float), "s": steps})
        agg = frame.groupby(["r", "i"], sort=False).agg(w=("w", "sum"), s=("s", "min")).reset_index()
        primary, pscores = top_per_row(agg["r"].to_numpy(), agg["i"].to_numpy(), agg["w"].to_numpy(), agg["s"].to_numpy(), n, self.k)
        return with_fallback(primary, pscores, self.pop, self.pop_shares, self.k)

    def _fit(self, train: pd.DataFrame, index: HistoryIndex) -> None:
        cat = self._catalog_codes(index)
        mask = index.visible_mask(train["user_id"], train["label_time"])
        self.pop, self.pop_shares = item_popularity(index, cat, mask, self.labels)
        sample = train.sample(min(len(train), self.tune_examples), random_state=0) if len(train) else train
        start, end = index.bounds(sample["user_id"], sample["label_time"])
        target = positions_in(self.labels, sample["label"])
        self.tuning: dict[float, float] = {}
        for gamma in self.gammas:
            codes, _ = self._scored(cat, index, start, end, gamma)
            hit = codes == target[:, None]  # [n, k]
            self.tuning[gamma] = float((hit / np.arange(1, codes.shape[1] + 1)).sum(axis=1).mean())  # MRR@k
        self.gamma = max(self.gammas, key=lambda g: self.tuning[g])  # first best on ties

    def _predict(self, examples, index, start, end):
        return self._ranking(*self._scored(self._catalog_codes(index), index, start, end, self.gamma))
