"""Built-in baselines, scored on exactly the examples the model is scored on.

Owns the registry (`BASELINES`, `get_baselines`) and the baselines shared by tasks (`Prior`,
`Popularity`); the others live in siblings that must not import this module: the next_item
sequence rankers in `evtlm.evaluate.item_baselines`, the next_action ones in
`evtlm.evaluate.action_baselines`, the gradient-boosted trees in `evtlm.evaluate.tree_baselines`
and SASRec in `evtlm.evaluate.sasrec` (torch: imported only when asked for). What every baseline
keeps (``fit`` / ``predict``, the leakage rule, what ``predict`` returns per task, fitting from
shards) is `evtlm.evaluate.baseline_core`'s; every name is importable from here.

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

Fitted from shards (see `evtlm.evaluate.baseline_core`), markov predicts as from the whole log:

>>> from evtlm.data.history_shards import ShardedEvents
>>> shards = ShardedEvents(2, lambda k: ev[ev["user_id"] == ("u", "v")[k]])
>>> m2 = get_baselines("next_action", names=["markov"])[0].fit(train.assign(shard=0), shards, labels=["view", "cart"])
>>> bool(np.allclose(m2.predict(test.assign(shard=1), shards), m.predict(test, ev)))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from evtlm.errors import TaskError, did_you_mean
from evtlm.data.history import HistoryIndex, item_popularity, positions_in, rfm_features
from evtlm.evaluate.action_baselines import Markov, SameAsLast
from evtlm.evaluate.baseline_core import Baseline, EventsLike, Ranking, as_index  # noqa: F401  (re-exported)
from evtlm.evaluate.item_baselines import Repeat, Transitions
from evtlm.evaluate.tree_baselines import ActionGradientBoosting, GradientBoosting
from evtlm.recipe import EvalConfig


# ---------------------------------------------------------------------------------- baselines
class Prior(Baseline):
    """The training label distribution: P(yes), action frequencies, most frequent target items."""

    name = "prior"
    description = "class prior / majority (next_item: most frequent training targets)"
    shardable = ("purchase", "next_action")

    @property  # type: ignore[override]
    def reads_events(self) -> bool:  # next_item's prior ranks by the events' popularity
        return self.kind == "ranking"

    def _part(self, train: pd.DataFrame, index: HistoryIndex) -> dict:
        return {}  # the labels alone

    def _fit_part(self, train: pd.DataFrame, part: dict) -> None:
        if self.kind == "binary":
            self.p = float(train["label"].mean())
        else:
            counts = train["label"].astype("string").value_counts().reindex(self.labels, fill_value=0)
            self.p = (counts.to_numpy(float) + 1.0) / (counts.sum() + len(self.labels))  # Laplace: no zero

    def _fit(self, train: pd.DataFrame, index: HistoryIndex) -> None:
        if self.kind != "ranking":
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
        if self.kind == "binary":
            return np.full(n, self.p)
        if self.kind == "classes":
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
# a registered task without its own entry above gets the baselines that need nothing but its
# answer's shape (`evtlm.tasks.Task.answer`): the training prior, and popularity for rankings
GENERIC_BASELINES: dict[str, dict[str, Factory]] = {
    "binary": {"prior": Prior}, "classes": {"prior": Prior}, "ranking": {"prior": Prior, "popularity": Popularity},
    "text": {},
}


def baselines_for(task_name: str) -> dict[str, Factory]:
    """The baselines that apply to a task: its own registry entry, else those of its answer's shape.

    >>> sorted(baselines_for("purchase")), sorted(baselines_for("next_action"))[:2]
    (['gbt', 'popularity', 'prior'], ['gbt', 'markov'])
    """
    if task_name in BASELINES:
        return BASELINES[task_name]
    from evtlm.tasks import answer_of

    return GENERIC_BASELINES[answer_of(task_name)]


def get_baselines(task_name: str, cfg: EvalConfig | None = None, *, names: Sequence[str] | None = None,
                  k: int | None = None, level: str = "user", progress: bool = False) -> list[Baseline]:
    """Unfitted baselines for a task: ``names``, else ``cfg.baselines``, else all that fit it.

    ``k`` (default ``max(cfg.k)``) is the length of next_item rankings; ``level`` is
    ``TaskConfig.level`` (purchase: at ``session`` level no feature is measured from the label
    time, which there depends on the label).
    """
    from evtlm.tasks import TASKS

    if task_name not in BASELINES and task_name not in TASKS:
        raise TaskError(f"unknown task {task_name!r}", where="get_baselines", fix=did_you_mean(task_name, TASKS))
    cfg = cfg or EvalConfig()
    available = baselines_for(task_name)
    chosen = list(names if names is not None else (cfg.baselines if cfg.baselines is not None else available))
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise TaskError(f"no baseline {unknown[0]!r} for task {task_name!r}", where="eval.baselines",
                        fix=f"{did_you_mean(unknown[0], available)} (valid for {task_name}: {sorted(available)})")
    k = int(k if k is not None else max(cfg.k))
    if level not in ("user", "session"):
        raise TaskError(f"unknown level {level!r}", where="get_baselines", fix="use 'user' or 'session' (task.level)")
    return [available[n](task_name, k, cfg, progress, level) for n in chosen]
