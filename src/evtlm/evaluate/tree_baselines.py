"""The gradient-boosted trees baselines (sklearn HistGradientBoostingClassifier):
`GradientBoosting` for purchase (RFM / session features, also read by the ``model+gbt`` stack of
`evtlm.evaluate.calibration`) and `ActionGradientBoosting` for next_action, with the shared tree
fit and the leaked-label check. Both fit from shards. Built on `evtlm.evaluate.baseline_core`;
registered in `evtlm.evaluate.baselines`, which this module must not import.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from evtlm.errors import TaskError
from evtlm.data.history_shards import ShardedEvents
from evtlm.data.history import HistoryIndex, check_examples, next_action_features, positions_in, rfm_features
from evtlm.evaluate.baseline_core import Baseline, EventsLike, as_index
from evtlm.recipe import GbtConfig


class _Trees(Baseline):
    """What both tree baselines share: a cap on the training examples the trees fit on."""

    def _settings(self) -> GbtConfig:
        raise NotImplementedError

    def _fit_sample(self, train: pd.DataFrame) -> pd.DataFrame:
        """A seeded sample of ``max_train_examples`` training examples (in their canonical order)
        when there are more: features are then computed for the sample alone, shard by shard."""
        cap, n = self._settings().max_train_examples, len(train)
        if cap is None or n <= cap:
            return train
        keep = np.sort(np.random.default_rng(self._settings().seed).choice(n, cap, replace=False))
        self.sampled_fit = (cap, n)  # the report says so
        return train.iloc[keep].reset_index(drop=True)


class GradientBoosting(_Trees):
    """purchase: sklearn HistGradientBoostingClassifier on RFM / session features
    (:func:`evtlm.data.history.rfm_features`), each computed only from events before label_time."""

    name = "gbt"
    description = "gradient-boosted trees on recency/frequency/monetary/session features"

    shardable = ("purchase",)

    def _settings(self) -> GbtConfig:
        return self.cfg.gbt

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


class ActionGradientBoosting(_Trees):
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

    def _settings(self) -> GbtConfig:
        return self.cfg.gbt_action

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
