"""As-of views of users' histories, for many ``(user, cutoff)`` pairs at once.

Baselines must obey the same leakage rule as the model: an example with label time ``t`` may
only see its user's events strictly before ``t``. :class:`HistoryIndex` sorts the events once by
``(user, time)``; then every example's history is a contiguous slice ``[start, end)`` of that
order, found for all examples together with one ``searchsorted``. Also here: `strictly_earlier`
(the context a target may see) and `positions_in` (values -> catalog positions). This module only
sorts and slices the events: features over the slices are `evtlm.data.history`'s and rankings
`evtlm.data.catalog_rankings`'s; it must not compute either.

>>> ev = pd.DataFrame({"user_id": ["u", "u", "u", "v"], "item_id": ["a", "b", "c", "a"],
...     "action": ["view", "cart", "purchase", "view"],
...     "timestamp": pd.to_datetime([1, 2, 3, 1], unit="D", utc=True)})
>>> idx = HistoryIndex(ev)
>>> start, end = idx.bounds(["u", "u", "v", "w"], pd.to_datetime([3, 9, 1, 5], unit="D", utc=True))
>>> (end - start).tolist()          # u before day 3: a, b; u before day 9: all 3; v: none; w: unknown
[2, 3, 0, 0]
>>> idx.item_ids[idx.recent(idx.item, start, end, 2)[1]].tolist()   # most recent first
['c', 'b']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from evtlm.data.history_checks import require_columns, to_ns
from evtlm.errors import DataError
from evtlm.ingest.events import EventLog, session_starts
from evtlm.ingest.money import event_money
from evtlm.recipe import ACTIONS, SESSION_GAP_MINUTES
from evtlm.tasks.splits import EventIndex


class HistoryIndex:
    """The canonical events sorted by ``(user, time)``, as arrays.

    Attributes (one entry per event, in the sorted order): ``user`` (code into ``user_ids``),
    ``ts`` (int64 ns), ``item`` (code into ``item_ids``, -1 when null), ``action`` (index into
    :data:`evtlm.recipe.ACTIONS`, -1 when null), ``session_start`` (first event of a visit),
    ``price`` and ``amount`` (price x quantity; float, NaN when unknown; None when neither the
    events nor the catalog have a price: `evtlm.ingest.money`),
    ``category`` (code of the item's category, from the events' ``category`` column or else the
    catalog; -1 when unknown).
    """

    def __init__(self, events: pd.DataFrame | EventLog, session_gap_minutes: float = SESSION_GAP_MINUTES,
                 catalog: pd.DataFrame | None = None) -> None:
        if isinstance(events, EventLog):
            events, catalog = events.events, events.catalog
        require_columns(events, ("user_id", "timestamp", "action", "item_id"), "events")
        ts = to_ns(events["timestamp"], "events.timestamp")
        ucode, self.user_ids = pd.factorize(events["user_id"].astype("string"), sort=True)
        if (ucode < 0).any():
            rows = np.flatnonzero(ucode < 0)
            raise DataError(f"{rows.size} events without a user_id", where=f"event rows {rows[:5].tolist()}",
                            fix="drop them or map the user column (data.columns.user)")
        order = np.lexsort((ts, ucode))  # stable: equal (user, time) keep the input order
        self.user = ucode[order].astype(np.int64)
        self.ts = ts[order]
        self.n = len(order)
        icode, self.item_ids = pd.factorize(events["item_id"].astype("string"))
        self.item_ids = np.asarray(self.item_ids, dtype=object)
        self.item = icode[order].astype(np.int64)
        action = pd.Categorical(events["action"].astype("string"), categories=list(ACTIONS))
        self.action = np.asarray(action.codes, dtype=np.int64)[order]
        # where each user's events are and what lies before a time: the one event index
        self.by_user = EventIndex.from_sorted(self.user, self.ts, np.asarray(self.user_ids, dtype=object))
        self.user_start = self.by_user.user_start
        self.session_start = self._sessions(events, order, session_gap_minutes)
        money = event_money(events, catalog)
        self.price = None if money is None else money.price[order]
        self.amount = None if money is None else money.amount[order]
        self.category = self._categories(events, order, catalog)

    def _sessions(self, events: pd.DataFrame, order: np.ndarray, gap_minutes: float) -> np.ndarray:
        """True on the first event of each visit (`evtlm.ingest.events.session_starts`, the one rule)."""
        sess = pd.factorize(events["session_id"].astype("string"))[0][order] if "session_id" in events else None
        return session_starts(self.user, self.ts, gap_minutes, sess)

    def _categories(self, events: pd.DataFrame, order: np.ndarray, catalog: pd.DataFrame | None) -> np.ndarray:
        """Per sorted event, a category code (-1: unknown), as `evtlm.data.stream.event_attributes` reads it."""
        if "category" in events:
            cat = events["category"]
        elif catalog is not None and "category" in catalog and "item_id" in catalog:
            cat = events["item_id"].map(catalog.drop_duplicates("item_id").set_index("item_id")["category"])
        else:
            return np.full(self.n, -1, np.int64)
        return pd.factorize(pd.Series(cat).astype("string"))[0].astype(np.int64)[order]

    # ------------------------------------------------------------------------------ slices
    def bounds(self, user_ids, times, inclusive: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the slice ``[start, end)`` of the user's events before ``times``.

        Strictly before by default (the leakage rule); ``inclusive=True`` also takes events at
        exactly that time (a training example's own target). Unknown users get an empty slice.
        """
        users = pd.Index(self.user_ids).get_indexer(pd.Series(user_ids).astype("string"))
        q = to_ns(times, "label_time")
        known = users >= 0
        u = np.where(known, users, 0)
        end = self.by_user.before(u, q, inclusive)
        start = self.user_start[u] if len(self.user_start) else np.zeros_like(u)
        return np.where(known, start, 0), np.where(known, end, 0)

    def recent(self, values: np.ndarray, start: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
        """``values`` of each slice's last ``length`` events, most recent first, -1 padded.

        ``values`` is a per-event int array (e.g. ``self.item``); result shape [n, length].
        """
        pos = end[:, None] - 1 - np.arange(length)[None, :]  # [n, length]
        ok = pos >= start[:, None]
        return np.where(ok, values[np.clip(pos, 0, max(self.n - 1, 0))] if self.n else -1, -1)

    def last_position(self, flags: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Position of the last flagged event in each slice, -1 when there is none."""
        running = np.maximum.accumulate(np.where(flags, np.arange(self.n), -1)) if self.n else flags
        pos = running[np.clip(end - 1, 0, max(self.n - 1, 0))] if self.n else np.full(len(end), -1)
        return np.where((end > start) & (pos >= start), pos, -1)

    def visible_mask(self, user_ids, times, inclusive: bool = True) -> np.ndarray:
        """Boolean mask over the sorted events: each user's events up to their latest ``times``.

        This is the training sequence a fitted baseline may learn from: per user, everything up
        to the label time of their last training example (the target included).
        """
        frame = pd.DataFrame({"u": pd.Series(user_ids).astype("string").to_numpy(), "t": to_ns(times, "label_time")})
        last = frame.groupby("u", sort=False)["t"].max()
        start, end = self.bounds(last.index, pd.to_datetime(last.to_numpy(), utc=True), inclusive=inclusive)
        marks = np.zeros(self.n + 1, np.int64)  # +1 at each slice start, -1 at its end
        np.add.at(marks, start, 1)
        np.add.at(marks, end, -1)
        return np.cumsum(marks)[: self.n] > 0

    def codes_in(self, catalog: Sequence[str | None]) -> np.ndarray:
        """Per event, the position of its item in ``catalog`` (-1: not in it, or no item)."""
        lookup = np.append(positions_in(catalog, self.item_ids), -1)  # item code -1 (null): last slot
        return lookup[self.item]


def strictly_earlier(users: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """For a sequence sorted by ``(user, time)``: per element, the position of its user's last
    element with a strictly earlier time (-1: none).

    This is the context the leakage rule allows when an element is a target: events at the same
    time (the lines of one invoice) are not "before" one another. With distinct times it is
    simply the previous position of the same user.

    >>> strictly_earlier(np.array([0, 0, 0, 0, 1, 1]), np.array([1, 2, 2, 3, 1, 1])).tolist()
    [-1, 0, 0, 2, -1, -1]
    """
    n = len(users)
    if n == 0:
        return np.zeros(0, np.int64)
    new_user = np.r_[True, users[1:] != users[:-1]]
    new_run = new_user | np.r_[True, ts[1:] != ts[:-1]]  # a run: one user, one time
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    return np.where(run_start > user_start, run_start - 1, -1)


def positions_in(catalog: Sequence[str | None], values) -> np.ndarray:
    """Position of each value in ``catalog``, -1 when absent or null.

    Null catalog entries (a label-space answer with no known item id) match nothing; an id
    listed twice is an error.

    >>> positions_in(["a", None, "c"], ["c", "b", None, "a"]).tolist()
    [2, -1, -1, 0]
    """
    cat = pd.Series(list(catalog), dtype="string")
    known = np.flatnonzero(cat.notna().to_numpy())
    ids = cat.iloc[known]
    if ids.duplicated().any():
        raise DataError(f"the item catalog lists ids twice: {ids[ids.duplicated()].unique()[:5].tolist()}",
                        where="next_item labels", fix="pass each item id once, in label-space order")
    pos = pd.Index(ids.to_numpy(dtype=object)).get_indexer(pd.Series(list(values), dtype="string").to_numpy(dtype=object))
    return np.where(pos >= 0, known[np.maximum(pos, 0)] if len(known) else -1, -1)
