"""Built-in baselines, scored on exactly the examples the model is scored on.

Every baseline has a ``name``, ``fit(train_examples, events, labels=...)`` and
``predict(examples, events)``. Examples are the text-example frames of `evtlm.data.prepare`
(``user_id, label_time, label, ...``); ``events`` is the canonical table, an
:class:`~evtlm.ingest.events.EventLog` or a prebuilt :class:`~evtlm.data.history.HistoryIndex` (build one
and pass it to every baseline to sort the events once). The leakage rule is the model's: an
example sees only its user's events **strictly before** its ``label_time``; fitting sees, per
user, the events up to their last training example's label time (its target included).

``predict`` returns, per task:

- ``purchase``: P(yes), float array [n]. Build with ``get_baselines(..., level=task.level)``: at
  session level the label time depends on the label, so no duration is measured from it.
- ``next_action``: probabilities [n, A] over ``labels`` (the task's action order, canonical
  verbs such as ``"view"``; default :data:`evtlm.recipe.ACTIONS`).
- ``next_item``: a :class:`Ranking` of the top ``k`` items over the full catalog ``labels``
  (default: every item of the training events); every answer is a catalog item.

>>> ev = pd.DataFrame({"user_id": ["u"] * 4 + ["v"] * 2, "item_id": ["a", "b", "a", "b", "a", "b"],
...     "action": ["view", "cart", "view", "cart", "view", "cart"],
...     "timestamp": pd.to_datetime([1, 2, 3, 4, 1, 2], unit="h", utc=True)})
>>> train = pd.DataFrame({"user_id": ["u", "u", "u"], "label": ["cart", "view", "cart"],
...     "label_time": pd.to_datetime([2, 3, 4], unit="h", utc=True)})
>>> test = pd.DataFrame({"user_id": ["v"], "label_time": pd.to_datetime([2], unit="h", utc=True)})
>>> [b.name for b in get_baselines("next_action")]
['prior', 'markov', 'same_as_last', 'gbt']
>>> m = get_baselines("next_action", names=["markov"])[0].fit(train, ev, labels=["view", "cart"])
>>> m.predict(test, ev).round(2).tolist()                # v: last action view; P(cart|view) = (2 + 5 * 0.6) / (2 + 5)
[[0.29, 0.71]]
>>> t = get_baselines("next_item", names=["transitions"], k=2)[0].fit(train.assign(label=["b", "a", "b"]), ev)
>>> t.predict(test, ev).items.tolist()                  # after a comes b
[['b', 'a']]

**Shards** (`evtlm.data.history_shards.ShardedEvents`, users split into disjoint shards, one read at a
time): the purchase and next_action baselines read only each example's own user's events plus
statistics that add up over users, so they fit and predict from shards with the same results as
from the whole log. Their fit is split in two: ``_part(train, index)`` (what one shard's
examples give: per-example features, or counts in ``additive``) and ``_fit_part(train, part)``
(the parts of every shard put together). The next-item baselines (popularity rankings,
transitions, repeat's tuning sample, SASRec) learn from the whole log at once and say so.

>>> from evtlm.data.history_shards import ShardedEvents
>>> shards = ShardedEvents(2, lambda k: ev[ev["user_id"] == ("u", "v")[k]])
>>> m2 = get_baselines("next_action", names=["markov"])[0].fit(train.assign(shard=0), shards, labels=["view", "cart"])
>>> bool(np.allclose(m2.predict(test.assign(shard=1), shards), m.predict(test, ev)))
True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evtlm.errors import DataError, TaskError, did_you_mean
from evtlm.ingest.events import EventLog
from evtlm.data.history_shards import ShardedEvents, put_back
from evtlm.data.history import (HistoryIndex, action_order, binary_labels, check_examples, check_labels_in,
                           default_catalog, drop_excluded, item_popularity, next_action_features, positions_in, rfm_features,
                           strictly_earlier, top_per_row, with_fallback)
from evtlm.recipe import ACTIONS, EvalConfig, GbtConfig

EventsLike = pd.DataFrame | EventLog | HistoryIndex


@dataclass
class Ranking:
    """Top-k items per example, best first. ``scores`` are non-increasing along each row
    (popularity fill-ins score below every item the baseline ranked itself)."""

    items: np.ndarray  # [n, k] item ids (object)
    scores: np.ndarray  # [n, k] float
    catalog_index: np.ndarray  # [n, k] positions in the catalog the baseline was fitted with


class Baseline:
    """Common plumbing: input checks, the label order / catalog, the history slices."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    shardable: ClassVar[tuple[str, ...]] = ()  # tasks it fits from shards (`_part` + `_fit_part`; module doc)
    additive: ClassVar[frozenset[str]] = frozenset()  # keys of `_part` summed over shards; the rest are per example
    reads_events: ClassVar[bool] = True  # False: fits and predicts from the examples alone (no shard is read)

    def __init__(self, task: str, k: int = 20, cfg: EvalConfig | None = None, progress: bool = False,
                 level: str = "user") -> None:
        self.task, self.k, self.cfg, self.progress = task, int(k), cfg or EvalConfig(), progress
        # purchase: durations are measured from the label time (a shared cutoff) at user level,
        # from the newest history event at session level (see `evtlm.data.history.rfm_features`)
        self.clock = "last_event" if level == "session" else "label_time"
        self.labels: list[str] | None = None
        self._fitted = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, name={self.name!r})"

    def fit(self, train_examples: pd.DataFrame, events: EventsLike, *, labels: Sequence[str] | None = None) -> Baseline:
        """Learn from the training examples and the events they may see; returns ``self``.
        ``events`` may be a `ShardedEvents` (task in ``shardable``; the examples carry ``shard``)."""
        sharded = isinstance(events, ShardedEvents)
        if sharded:
            self._require_shardable()
        index = None if sharded else as_index(events)
        train = check_examples(train_examples, "train_examples", with_label=True)
        # one canonical order: samples, early stopping's hold-out and SASRec's batches then depend
        # on the examples, not on how they were laid out (a whole log and its shards fit the same)
        train = train.sort_values(["user_id", "label_time"], kind="stable", ignore_index=True)
        if self.task == "next_action":
            self.labels = action_order(labels)
            check_labels_in(train, self.labels, "the action order")
        elif self.task == "next_item":
            self.labels = list(labels) if labels is not None else default_catalog(index, train)
            if not self.labels:
                raise DataError("the item catalog is empty", where="next_item baselines",
                                fix="the training events need item ids (or pass labels=the catalog)")
        elif self.task == "purchase":
            train = train.assign(label=binary_labels(train["label"]))
        if not sharded:
            self._fit(train, index)
        else:  # a setting a part depends on may change once every part is in (gbt's clock): then once more
            while self._fit_part(train, self._sharded_part(train, events)):
                pass
        self._fitted = True
        return self

    def _require_shardable(self) -> None:
        if self.task not in self.shardable:
            raise TaskError(f"baseline {self.name!r} ({self.task}) learns from the whole log at once, not shard by shard",
                            where="evtlm.evaluate.baselines", fix="pass the whole log's events (or leave it out of eval.baselines)")

    def _sharded_part(self, train: pd.DataFrame, events: ShardedEvents) -> dict:
        """Every shard's `_part` of its own training examples, put together: per-example entries
        in the order of ``train``, the ``additive`` ones summed."""
        if not self.reads_events:
            return self._part(train, None)
        mine = [(pos, self._part(train.iloc[pos].reset_index(drop=True), events.index(k))) for k, pos in events.groups(train)]
        pieces = [piece for part in events.gather(mine) for piece in part]  # every process's shards
        if not pieces:
            raise TaskError(f"baseline {self.name!r} has no training examples", where="evtlm.evaluate.baselines")
        return {key: (sum(p[key] for _, p in pieces) if key in self.additive
                      else put_back([(pos, p[key]) for pos, p in pieces], len(train))) for key in pieces[0][1]}

    def _sharded(self, frame: pd.DataFrame, events: ShardedEvents, fn: Callable[[pd.DataFrame, HistoryIndex], object]):
        """``fn(rows, index)`` on each shard's rows of ``frame``, the pieces put back in order."""
        self._require_shardable()
        if not self.reads_events:
            none = np.zeros(len(frame), np.int64)
            return self._predict(frame, None, none, none)
        if not len(frame):
            return fn(frame, events.any_index())
        mine = [(pos, fn(frame.iloc[pos].reset_index(drop=True), events.index(k))) for k, pos in events.groups(frame)]
        return put_back([piece for part in events.gather(mine) for piece in part], len(frame))

    def predict(self, examples: pd.DataFrame, events: EventsLike, *,
                exclude: Sequence[Sequence[int]] | None = None) -> np.ndarray | Ranking:
        """Predictions for ``examples`` from their users' events strictly before label_time.

        ``exclude[i]`` (next_item): catalog positions never ranked for example i, the mask the
        model gets under ``decode.exclude_history_items``; the ranking goes deeper by the most
        any row loses, so every row still holds k items where the catalog has them.
        """
        if not self._fitted:
            raise TaskError(f"baseline {self.name!r} is not fitted", fix="call fit(train_examples, events) first")
        frame = check_examples(examples, "examples", with_label=False)
        if isinstance(events, ShardedEvents):  # shardable tasks never rank items: no exclusions
            return self._sharded(frame, events, lambda rows, index: self.predict(rows, index))
        index = as_index(events)
        start, end = index.bounds(frame["user_id"], frame["label_time"])
        if exclude is None or self.task != "next_item":
            return self._predict(frame, index, start, end)
        k = self.k
        self.k = k + max((len(e) for e in exclude), default=0)  # every _predict ranks self.k items
        try:
            out = self._predict(frame, index, start, end)
        finally:
            self.k = k
        codes, col = drop_excluded(out.catalog_index, exclude, k)
        at = np.maximum(col, 0)
        return Ranking(np.where(col >= 0, np.take_along_axis(out.items, at, axis=1), None),
                       np.where(col >= 0, np.take_along_axis(out.scores, at, axis=1), -np.inf), codes)

    def _fit(self, train: pd.DataFrame, index: HistoryIndex) -> None:
        """The whole log: one part (baselines that fit from parts), or a fit of its own."""
        while self._fit_part(train, self._part(train, index)):  # as over shards: once more if a setting changed
            pass

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        raise NotImplementedError

    def _fit_part(self, train: pd.DataFrame, part: dict) -> bool | None:
        """Fit from the put-together parts; True: a setting the parts depend on changed, compute them again."""
        raise NotImplementedError

    def _predict(self, examples: pd.DataFrame, index: HistoryIndex, start: np.ndarray, end: np.ndarray):
        raise NotImplementedError

    # ---- next_item helpers
    def _catalog_codes(self, index: HistoryIndex) -> np.ndarray:
        """Per sorted event, its position in the fitted catalog (-1 outside it)."""
        return index.codes_in(self.labels)

    def _ranking(self, codes: np.ndarray, scores: np.ndarray) -> Ranking:
        return Ranking(np.asarray(self.labels, dtype=object)[codes], scores, codes)


# ------------------------------------------------------------------------------------ helpers
def as_index(events: EventsLike) -> HistoryIndex:
    return events if isinstance(events, HistoryIndex) else HistoryIndex(events)


# ---------------------------------------------------------------------------------- baselines
class Prior(Baseline):
    """The training label distribution: P(yes), action frequencies, most frequent target items."""

    name = "prior"
    description = "class prior / majority (next_item: most frequent training targets)"
    shardable = ("purchase", "next_action")

    @property  # type: ignore[override]
    def reads_events(self) -> bool:  # next_item's prior ranks by the events' popularity
        return self.task == "next_item"

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        return {}  # the labels alone

    def _fit_part(self, train: pd.DataFrame, part: dict) -> None:
        if self.task == "purchase":
            self.p = float(train["label"].mean())
        else:
            counts = train["label"].astype("string").value_counts().reindex(self.labels, fill_value=0)
            self.p = (counts.to_numpy(float) + 1.0) / (counts.sum() + len(self.labels))  # Laplace: no zero

    def _fit(self, train: pd.DataFrame, index: HistoryIndex) -> None:
        if self.task in self.shardable:
            super()._fit(train, index)
        else:
            cat = self._catalog_codes(index)
            pop, _ = item_popularity(index, cat, index.visible_mask(train["user_id"], train["label_time"]), self.labels)
            target = positions_in(self.labels, train["label"])
            counts = np.bincount(target[target >= 0], minlength=len(self.labels)).astype(float)
            tie = np.full(len(self.labels), len(self.labels), np.int64)
            tie[pop] = np.arange(len(pop))  # ties between equal target counts: by popularity
            self.order = np.lexsort((tie, -counts))[: len(pop)]  # null entries (tie = n) last, cut
            self.shares = counts[self.order] / max(counts.sum(), 1.0)

    def _predict(self, examples, index, start, end):
        n = len(examples)
        if self.task == "purchase":
            return np.full(n, self.p)
        if self.task == "next_action":
            return np.tile(self.p, (n, 1))
        k = min(self.k, len(self.order))
        return self._ranking(np.tile(self.order[:k], (n, 1)), np.tile(self.shares[:k], (n, 1)))


class Popularity(Baseline):
    """next_item: the most interacted-with training items. purchase: a count-based buying score,
    the training purchase rate of examples with the same (past purchases, open carts) counts."""

    name = "popularity"
    description = "next_item: global training popularity; purchase: buy rate by past buys x open carts"
    smoothing = 10.0  # pseudo-examples pulling a sparse cell to the overall rate
    shardable = ("purchase",)

    def _cells(self, index, start, end, times) -> np.ndarray:
        f = rfm_features(index, start, end, times)
        return (np.minimum(f["n_purchase"], 3) * 3 + np.minimum(f["carts_since_purchase"], 2)).to_numpy(int)  # 12 cells

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        return {"cells": self._cells(index, *index.bounds(train["user_id"], train["label_time"]), train["label_time"])}

    def _fit_part(self, train: pd.DataFrame, part: dict) -> None:
        y = train["label"].to_numpy(float)
        self.base = y.mean()
        pos, cnt = np.bincount(part["cells"], y, minlength=12), np.bincount(part["cells"], minlength=12)
        self.rate = (pos + self.smoothing * self.base) / (cnt + self.smoothing)

    def _fit(self, train: pd.DataFrame, index: HistoryIndex) -> None:
        if self.task in self.shardable:
            super()._fit(train, index)
        else:
            cat = self._catalog_codes(index)
            mask = index.visible_mask(train["user_id"], train["label_time"])
            self.order, self.shares = item_popularity(index, cat, mask, self.labels)

    def _predict(self, examples, index, start, end):
        if self.task == "purchase":
            return self.rate[self._cells(index, start, end, examples["label_time"])]
        k = min(self.k, len(self.order))
        n = len(examples)
        return self._ranking(np.tile(self.order[:k], (n, 1)), np.tile(self.shares[:k], (n, 1)))


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


class GradientBoosting(Baseline):
    """purchase: sklearn HistGradientBoostingClassifier on RFM / session features
    (:func:`evtlm.data.history.rfm_features`), each computed only from events before label_time."""

    name = "gbt"
    description = "gradient-boosted trees on recency/frequency/monetary/session features"

    shardable = ("purchase",)

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        return {"x": rfm_features(index, *index.bounds(train["user_id"], train["label_time"]), train["label_time"], self.clock)}

    def _fit_part(self, train: pd.DataFrame, part: dict) -> bool:
        x, y = part["x"], train["label"].to_numpy()
        if self.clock == "label_time" and _separates(x["hours_since_last"].to_numpy(), y):
            warnings.warn("the gap between the last event and label_time alone separates the purchase labels "
                          "(label times that depend on the label, as at session level): measuring durations "
                          "from the last event instead; pass level='session' to get_baselines", stacklevel=4)
            self.clock = "last_event"
            return True  # the features again, under the new clock
        # a column without two distinct values (e.g. never a favorite: all NaN) carries nothing,
        # and sklearn's binning fails on an all-NaN column
        self.columns = [c for c in x.columns if x[c].nunique(dropna=False) > 1]
        x = x[self.columns]
        # one class, or no feature that varies: nothing to learn, predict the training rate
        self.constant = float(y.mean()) if len(np.unique(y)) < 2 or not self.columns else None
        if self.constant is None:
            self.model = _fit_trees(self.cfg.gbt, x, y)
        return False

    def features(self, examples: pd.DataFrame, events: EventsLike) -> pd.DataFrame:
        """The fitted trees' input columns for ``examples`` (events strictly before each label_time):
        what the ``model+gbt`` stack reads beside the model (`evtlm.evaluate.calibration`)."""
        if not self._fitted:
            raise TaskError(f"baseline {self.name!r} is not fitted", fix="call fit(train_examples, events) first")
        frame = check_examples(examples, "examples", with_label=False)
        if isinstance(events, ShardedEvents):
            return self._sharded(frame, events, lambda rows, index: self.features(rows, index))
        index = as_index(events)
        start, end = index.bounds(frame["user_id"], frame["label_time"])
        return self._features(index, start, end, frame["label_time"])

    def _features(self, index, start, end, times) -> pd.DataFrame:
        return rfm_features(index, start, end, times, self.clock)[self.columns]

    def _predict(self, examples, index, start, end):
        return self.from_features(self._features(index, start, end, examples["label_time"]))

    def from_features(self, x: pd.DataFrame) -> np.ndarray:
        """P(yes) from `features` already computed (the stack reads both: one pass over the events)."""
        if self.constant is not None:
            return np.full(len(x), self.constant)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(self.cfg.gbt.threads):
            return self.model.predict_proba(x)[:, 1]


class ActionGradientBoosting(Baseline):
    """next_action: a multiclass HistGradientBoostingClassifier on the latest events
    (:func:`evtlm.data.history.next_action_features`: the last three actions, the last gap, action
    counts overall and recently, the last item's own history, the visit so far), each computed
    only from events strictly before label_time. Settings: ``eval.gbt_action``.

    Probabilities come in the label order. A label the training examples never show keeps its
    Laplace prior share (the rest scaled down), so no class gets probability 0 and the log loss
    stays finite; the decision rule (per-class offsets) is fitted on validation by `evtlm.evaluate.harness`
    as for every method.
    """

    name = "gbt"
    description = "gradient-boosted trees on the last actions, gaps, counts and the last item's history"

    shardable = ("next_action",)

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        return {"x": next_action_features(index, *index.bounds(train["user_id"], train["label_time"]))}

    def _fit_part(self, train: pd.DataFrame, part: dict) -> None:
        x = part["x"]
        y = positions_in(self.labels, train["label"])  # columns of the label order
        counts = np.bincount(y, minlength=len(self.labels)).astype(float)
        self.prior = (counts + 1.0) / (counts.sum() + len(self.labels))  # Laplace: no zero
        # a column without two distinct values carries nothing (and an all-NaN one fails binning)
        self.columns = [c for c in x.columns if x[c].nunique(dropna=False) > 1]
        one_class = np.count_nonzero(counts) < 2
        self.model = None if one_class or not self.columns else _fit_trees(self.cfg.gbt_action, x[self.columns], y)

    def _predict(self, examples, index, start, end):
        if self.model is None:  # one training class, or nothing that varies: the prior
            return np.tile(self.prior, (len(examples), 1))
        from threadpoolctl import threadpool_limits

        with threadpool_limits(self.cfg.gbt_action.threads):
            proba = self.model.predict_proba(next_action_features(index, start, end)[self.columns])
        seen = self.model.classes_  # label columns present in training, sorted
        unseen = np.setdiff1d(np.arange(len(self.labels)), seen)
        out = np.zeros((len(examples), len(self.labels)))
        out[:, seen] = proba * (1.0 - self.prior[unseen].sum())  # unseen labels: their prior share
        out[:, unseen] = self.prior[unseen]
        return out


def _fit_trees(g: GbtConfig, x: pd.DataFrame, y: np.ndarray):
    """A HistGradientBoostingClassifier with the section's settings, fitted under a thread cap."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    # early stopping holds out a stratified 10%: every class needs two examples to be split
    stop = len(y) >= 2000 and np.unique(y, return_counts=True)[1].min() >= 2
    model = HistGradientBoostingClassifier(
        max_iter=g.max_iter, learning_rate=g.learning_rate, max_leaf_nodes=g.max_leaf_nodes,
        l2_regularization=g.l2_regularization, random_state=g.seed,
        early_stopping=stop, validation_fraction=0.1, n_iter_no_change=20,
    )
    # on a busy machine OpenMP workers spinning against other processes cost far more than they
    # bring on small data (9 s vs 0.1 s measured on 300 rows): threads is a knob
    with threadpool_limits(g.threads):
        return model.fit(x, y)


def _separates(gap: np.ndarray, y: np.ndarray) -> bool:
    """True when one threshold on ``gap`` splits the labels perfectly (a leaked label)."""
    ok = ~np.isnan(gap)
    g, y = gap[ok], y[ok]
    if len(g) < 20 or len(np.unique(y)) < 2:
        return False
    lo, hi = g[y == 0], g[y == 1]
    return bool(lo.max() < hi.min() or hi.max() < lo.min())


def _sasrec(task: str, k: int, cfg: EvalConfig, progress: bool, level: str = "user") -> Baseline:
    from evtlm.evaluate.sasrec import SASRec  # torch: imported only when asked for

    return SASRec(task, k=k, cfg=cfg, progress=progress)


Factory = Callable[..., Baseline]
BASELINES: dict[str, dict[str, Factory]] = {
    "purchase": {"prior": Prior, "popularity": Popularity, "gbt": GradientBoosting},
    "next_action": {"prior": Prior, "markov": Markov, "same_as_last": SameAsLast, "gbt": ActionGradientBoosting},
    "next_item": {"prior": Prior, "popularity": Popularity, "transitions": Transitions, "repeat": Repeat, "sasrec": _sasrec},
    "pretrain": {},
}


def get_baselines(task_name: str, cfg: EvalConfig | None = None, *, names: Sequence[str] | None = None,
                  k: int | None = None, level: str = "user", progress: bool = False) -> list[Baseline]:
    """Unfitted baselines for a task: ``names``, else ``cfg.baselines``, else all that fit it.

    ``k`` (default ``max(cfg.k)``) is the length of next_item rankings; ``level`` is
    ``TaskConfig.level`` (purchase: at ``session`` level no feature is measured from the label
    time, which there depends on the label).
    """
    if task_name not in BASELINES:
        raise TaskError(f"unknown task {task_name!r}", where="get_baselines", fix=did_you_mean(task_name, BASELINES))
    cfg = cfg or EvalConfig()
    available = BASELINES[task_name]
    chosen = list(names if names is not None else (cfg.baselines if cfg.baselines is not None else available))
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise TaskError(f"no baseline {unknown[0]!r} for task {task_name!r}", where="eval.baselines",
                        fix=f"{did_you_mean(unknown[0], available)} (valid for {task_name}: {sorted(available)})")
    k = int(k if k is not None else max(cfg.k))
    if level not in ("user", "session"):
        raise TaskError(f"unknown level {level!r}", where="get_baselines", fix="use 'user' or 'session' (task.level)")
    return [available[n](task_name, k, cfg, progress, level) for n in chosen]
