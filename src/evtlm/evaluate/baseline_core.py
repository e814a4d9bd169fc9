"""The baseline contract and its plumbing: `Baseline` (input checks, the label order / catalog,
the history slices, fitting and predicting from shards), `Ranking` (a next_item answer) and
`as_index`. Owns no baseline of its own and must not import any module that holds one
(`evtlm.evaluate.baselines` and its siblings, `evtlm.evaluate.sasrec`): they all import this one.

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

**Shards** (`evtlm.data.history_shards.ShardedEvents`, users split into disjoint shards, one read at a
time): the purchase and next_action baselines read only each example's own user's events plus
statistics that add up over users, so they fit and predict from shards with the same results as
from the whole log. Their fit is split in two: ``_part(train, index)`` (what one shard's
examples give: per-example features, or counts in ``additive``) and ``_fit_part(train, part)``
(the parts of every shard put together). The next-item baselines (popularity rankings,
transitions, repeat's tuning sample, SASRec) learn from the whole log at once and say so.

`evtlm.evaluate.baselines` shows a sharded fit giving the whole log's predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from evtlm.errors import DataError, TaskError
from evtlm.ingest.events import EventLog
from evtlm.data.history_shards import ShardedEvents, put_back
from evtlm.data.history import (HistoryIndex, action_order, binary_labels, check_examples, check_labels_in,
                           default_catalog, drop_excluded)
from evtlm.recipe import EvalConfig

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
        from evtlm.tasks import answer_of

        self.task, self.k, self.cfg, self.progress = task, int(k), cfg or EvalConfig(), progress
        self.kind = answer_of(task)  # the answer's shape (`evtlm.tasks.Task.answer`): what fit and predict handle
        # purchase: durations are measured from the label time (a shared cutoff) at user level,
        # from the newest history event at session level (see `evtlm.data.history.rfm_features`)
        self.clock = "last_event" if level == "session" else "label_time"
        self.labels: list[str] | None = None
        self.sampled_fit: tuple[int, int] | None = None  # (examples fitted on, training examples) when sampled
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
        self.sampled_fit = None
        train = self._fit_sample(train)
        if self.kind == "classes":
            self.labels = action_order(labels)
            check_labels_in(train, self.labels, "the action order")
        elif self.kind == "ranking":
            self.labels = list(labels) if labels is not None else default_catalog(index, train)
            if not self.labels:
                raise DataError("the item catalog is empty", where="next_item baselines",
                                fix="the training events need item ids (or pass labels=the catalog)")
        elif self.kind == "binary":
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
        if exclude is None or self.kind != "ranking":
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

    def _fit_sample(self, train: pd.DataFrame) -> pd.DataFrame:
        """The training examples the baseline learns from (all; the trees cap them)."""
        return train

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
