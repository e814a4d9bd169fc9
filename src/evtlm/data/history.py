"""As-of views of users' histories, for many ``(user, cutoff)`` pairs at once.

Baselines must obey the same leakage rule as the model: an example with label time ``t`` may
only see its user's events strictly before ``t``. :class:`HistoryIndex` sorts the events once by
``(user, time)``; then every example's history is a contiguous slice ``[start, end)`` of that
order, found for all examples together with one ``searchsorted``. Counts over a history are
differences of prefix sums, "the last cart" is a running maximum of positions, so features for
a million examples cost a few array passes, never a Python loop over rows. Also here: the input
checks the baselines share, and ranking helpers that turn per-example item scores into top-k
lists over a catalog, the same way.

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

from evtlm.errors import DataError
from evtlm.ingest.events import EventLog, session_starts
from evtlm.ingest.money import event_money
from evtlm.recipe import ACTIONS, SESSION_GAP_MINUTES
from evtlm.timeunits import NS_PER_DAY, NS_PER_HOUR


def to_ns(values: pd.Series | Sequence | pd.DatetimeIndex, what: str) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (UTC); NaT is an error naming ``what``."""
    ts = pd.Series(pd.to_datetime(pd.Series(values).reset_index(drop=True), utc=True))
    bad = np.flatnonzero(ts.isna().to_numpy())
    if bad.size:
        raise DataError(
            f"{bad.size} missing timestamps in {what}", where=f"positions {bad[:5].tolist()}",
            fix="every event and example needs a time (examples: label_time)",
        )
    return ts.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view("int64")


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """A :class:`DataError` listing every missing column at once."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} lack the columns {missing}", where=f"{what} columns: {list(frame.columns)}",
            fix=f"pass {what} with {list(columns)} (see docs/internals.md)",
        )


def check_examples(frame: pd.DataFrame, what: str, with_label: bool) -> pd.DataFrame:
    """The examples with a clean index; missing columns or an empty frame are errors."""
    require_columns(frame, ("user_id", "label_time", "label") if with_label else ("user_id", "label_time"), what)
    if with_label and len(frame) == 0:
        raise DataError(f"{what} is empty", fix="a baseline needs training examples to fit on")
    return frame.reset_index(drop=True)


def binary_labels(labels: pd.Series) -> np.ndarray:
    """purchase labels as 0/1 ints; anything else names its rows."""
    raw = pd.Series(labels).astype("object").to_numpy()
    # bools as ints, element by element (pandas 2's replace warns about downcasting); 1 == True, so 1/0 stay
    ints = np.where(raw == True, 1, np.where(raw == False, 0, raw))  # noqa: E712
    values = pd.to_numeric(pd.Series(ints), errors="coerce")
    bad = np.flatnonzero(~values.isin([0, 1]).to_numpy())
    if bad.size:
        shown = pd.Series(labels).iloc[bad[:5]].tolist()
        raise DataError(f"purchase labels must be 0/1, got {shown}", where=f"train_examples rows {bad[:5].tolist()} ({bad.size} rows)",
                        fix="label 1 = buys within the horizon, 0 = does not")
    return values.to_numpy().astype(np.int64)


def action_order(labels: Sequence[str] | None) -> list[str]:
    """The next_action output columns: canonical verbs, each once."""
    order = list(ACTIONS if labels is None else labels)
    unknown = [a for a in order if a not in ACTIONS]
    if unknown or len(set(order)) != len(order) or not order:
        raise DataError(f"bad action order {order}", where=f"unknown: {unknown}" if unknown else "duplicates or empty",
                        fix=f"pass canonical verbs, each once, from {list(ACTIONS)}")
    return order


def check_labels_in(train: pd.DataFrame, allowed: Sequence[str], what: str) -> None:
    bad = np.flatnonzero(~train["label"].astype("string").isin(list(allowed)).fillna(False).to_numpy())
    if bad.size:
        raise DataError(f"{bad.size} training labels are not in {what}: {train['label'].iloc[bad[:5]].tolist()}",
                        where=f"train_examples rows {bad[:5].tolist()}", fix=f"labels must be one of {list(allowed)}")


def default_catalog(index: HistoryIndex, train: pd.DataFrame) -> list[str]:
    """Items of the events training may see, sorted by id (the next_item label space)."""
    seen = index.visible_mask(train["user_id"], train["label_time"]) & (index.item >= 0)
    return sorted(index.item_ids[np.unique(index.item[seen])].tolist())


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
        # composite key (user, time rank) so one searchsorted finds every example's slice; the
        # rank keeps the key far inside int64 (users * distinct times, not users * 1e18 ns)
        self.times = np.unique(self.ts)
        self._width = len(self.times) + 1
        self.keys = self.user * self._width + np.searchsorted(self.times, self.ts)
        self.user_start = np.searchsorted(self.user, np.arange(len(self.user_ids)))
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
        side = "right" if inclusive else "left"
        rank = np.searchsorted(self.times, q, side=side)  # events with rank < this are before
        known = users >= 0
        u = np.where(known, users, 0)
        end = np.searchsorted(self.keys, u * self._width + rank, side="left")
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


def rfm_features(index: HistoryIndex, start: np.ndarray, end: np.ndarray, times, clock: str = "label_time") -> pd.DataFrame:
    """Recency / frequency / monetary / session features of each slice, as of ``times``.

    Only events in ``[start, end)`` (strictly before each time) are read. Columns: event counts
    per action overall and in the last 1/3/7 days, hours since the last event / cart / purchase /
    favorite and since the first event, carts and removals since the last purchase, sessions,
    the current session's size and carts, purchases per session, spend when prices exist. NaN
    means "never" (gradient-boosted trees treat it as its own branch).

    ``clock`` is the "now" that durations are measured from: ``label_time`` (a cutoff shared by
    all users, the user-level purchase task) or ``last_event`` (the slice's newest event; then
    ``hours_since_last`` is dropped). Use ``last_event`` whenever the label time itself depends
    on the label: session-level purchase puts it at the first purchase of a buying session but
    1 ns after the last event of the others, so "time since the last event" would give the
    answer away.

    >>> ev = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "a", "b"],
    ...     "action": ["cart", "purchase", "cart"],
    ...     "timestamp": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-06"], utc=True)})
    >>> idx = HistoryIndex(ev)
    >>> t = pd.to_datetime(["2024-01-07"], utc=True)
    >>> f = rfm_features(idx, *idx.bounds(["u"], t), t)
    >>> f.loc[0, ["n_events", "n_cart", "n_cart_1d", "carts_since_purchase", "hours_since_purchase"]].tolist()
    [3.0, 2.0, 1.0, 1.0, 48.0]
    """
    q = to_ns(times, "label_time")
    if clock == "last_event" and index.n:
        q = np.where(end > start, index.ts[np.clip(end - 1, 0, index.n - 1)], q)
    elif clock not in ("label_time", "last_event"):
        raise ValueError(f"clock must be 'label_time' or 'last_event', got {clock!r}")
    cum = action_prefix(index)
    out: dict[str, np.ndarray] = {"n_events": (end - start).astype(float)}
    for a, name in enumerate(ACTIONS):
        out[f"n_{name}"] = (cum[end, a] - cum[start, a]).astype(float)
    for days in (1, 3, 7):
        # events strictly before t - days; the window is [that, end)
        lo = np.clip(np.searchsorted(index.keys, _key(index, start, q - days * NS_PER_DAY), "left"), start, end)
        for a, name in enumerate(ACTIONS):
            out[f"n_{name}_{days}d"] = (cum[end, a] - cum[lo, a]).astype(float)
    last = np.clip(end - 1, 0, max(index.n - 1, 0))
    has = end > start
    ts = index.ts if index.n else np.zeros(1, np.int64)
    if clock == "label_time":
        out["hours_since_last"] = np.where(has, (q - ts[last]) / NS_PER_HOUR, np.nan)
    out["hours_since_first"] = np.where(has, (q - ts[np.clip(start, 0, len(ts) - 1)]) / NS_PER_HOUR, np.nan)
    for name in ("cart", "purchase", "favorite"):
        pos = index.last_position(index.action == ACTIONS.index(name), start, end)
        out[f"hours_since_{name}"] = np.where(pos >= 0, (q - ts[np.maximum(pos, 0)]) / NS_PER_HOUR, np.nan)
    bought = index.last_position(index.action == ACTIONS.index("purchase"), start, end)
    after = np.where(bought >= 0, bought + 1, start)
    for name, col in (("cart", "carts_since_purchase"), ("remove_from_cart", "removals_since_purchase")):
        a = ACTIONS.index(name)
        out[col] = (cum[end, a] - cum[after, a]).astype(float)  # carts not (yet) followed by a buy
    sess = np.r_[0, np.cumsum(index.session_start)]
    out["n_sessions"] = (sess[end] - sess[start]).astype(float)
    cur = index.last_position(index.session_start, start, end)
    cur = np.where(cur >= 0, cur, end)
    out["session_events"] = (end - cur).astype(float)
    out["session_carts"] = (cum[end, ACTIONS.index("cart")] - cum[cur, ACTIONS.index("cart")]).astype(float)
    out["purchases_per_session"] = out["n_purchase"] / np.maximum(out["n_sessions"], 1)
    if index.amount is not None:  # what was paid: price x quantity of each purchase (evtlm.ingest.money)
        paid = np.nan_to_num(index.amount) * (index.action == ACTIONS.index("purchase"))
        # running totals that restart at each user: a user's spend adds up their own events only,
        # in one order, so it does not depend on who else is in the log (shards agree exactly)
        within = pd.Series(paid).groupby(index.user).cumsum().to_numpy() if index.n else np.zeros(1)
        first = index.user_start[index.user[np.clip(start, 0, max(index.n - 1, 0))]] if index.n else start
        upto_end = within[np.clip(end - 1, 0, None)]
        upto_start = np.where(start > first, within[np.clip(start - 1, 0, None)], 0.0)
        out["spend"] = np.where(end > start, upto_end - upto_start, 0.0)
    return pd.DataFrame(out)


def action_prefix(index: HistoryIndex) -> np.ndarray:
    """[events + 1, len(ACTIONS)] running counts per action: a slice's counts are
    ``cum[end] - cum[start]`` (row i counts the events before position i)."""
    onehot = (index.action[:, None] == np.arange(len(ACTIONS))[None, :]).astype(np.int64)  # [events, A]
    return np.vstack([np.zeros((1, len(ACTIONS)), np.int64), np.cumsum(onehot, axis=0)])


def next_action_features(index: HistoryIndex, start: np.ndarray, end: np.ndarray, recent: int = 10) -> pd.DataFrame:
    """What the next_action trees read: each slice's latest events, as of its newest one.

    Only events in ``[start, end)`` are read, and no duration is measured from the label time:
    for next_action the label time *is* the target event's time, so "time since the last event"
    would be the target's own gap, unknown when predicting. Columns:

    - ``action_1..3``: the last three actions (codes into ACTIONS, most recent first; -1: none);
      ``gap_1_s`` / ``gap_2_s``: seconds between the last two events / the two before the last;
      ``hour``: UTC hour of the last event;
    - ``n_events``; per action ``n_<a>``, ``share_<a>`` (of all events), ``last<recent>_<a>``;
    - the last event's item: ``item_seen`` (its events in the slice, the last one included) and
      ``item_cart`` / ``item_favorite`` / ``item_purchase`` (how many of those were that action);
      its category: ``category_seen``, ``category_cart``;
    - ``same_item`` / ``same_category``: do the last two events share the item / the category;
    - the current visit (`HistoryIndex.session_start`): ``session_events`` so far (the last one
      included), ``session_cart`` / ``session_favorite`` / ``session_purchase``.

    NaN means "not defined" (too few events, no item, no category); the trees branch on it.

    >>> ev = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "a", "a"],
    ...     "action": ["view", "view", "cart", "view"],
    ...     "timestamp": pd.to_datetime([0, 60, 120, 9000], unit="s", utc=True)})
    >>> idx = HistoryIndex(ev)
    >>> f = next_action_features(idx, *idx.bounds(["u"], pd.to_datetime([9000], unit="s", utc=True)))
    >>> f.loc[0, ["action_1", "action_2", "action_3", "gap_1_s", "n_view", "item_seen", "item_cart"]].tolist()
    [1.0, 0.0, 0.0, 60.0, 2.0, 2.0, 1.0]
    >>> f.loc[0, ["same_item", "session_events", "session_cart", "last10_cart"]].tolist()   # 9000 s: the target
    [0.0, 3.0, 1.0, 1.0]
    """
    cum = action_prefix(index)
    parts = (_latest_events(index, start, end), _action_counts(cum, start, end, recent),
             _last_item_history(index, start, end), _current_visit(index, cum, start, end))
    return pd.DataFrame({k: v for part in parts for k, v in part.items()})


def _at(index: HistoryIndex, values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]`` where ``pos`` is a position of the index, -1 where it is not (``pos < 0``)."""
    if not index.n:
        return np.full(len(pos), -1, values.dtype)
    return np.where(pos >= 0, values[np.clip(pos, 0, index.n - 1)], -1)


def _latest_events(index: HistoryIndex, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """The last three actions, the gaps between the last three events, the last event's hour."""
    out: dict[str, np.ndarray] = {}
    acts = index.recent(index.action, start, end, 3)  # [rows, 3], most recent first, -1 padded
    for k in range(3):
        out[f"action_{k + 1}"] = acts[:, k].astype(float)
    ts = index.ts if index.n else np.zeros(1, np.int64)
    t = [ts[np.clip(end - k, 0, len(ts) - 1)] for k in (1, 2, 3)]  # the last three events' times
    has = [end - k >= start for k in (1, 2, 3)]
    out["gap_1_s"] = np.where(has[1], (t[0] - t[1]) / 1e9, np.nan)
    out["gap_2_s"] = np.where(has[2], (t[1] - t[2]) / 1e9, np.nan)
    out["hour"] = np.where(has[0], (t[0] // NS_PER_HOUR) % 24, np.nan).astype(float)
    return out


def _action_counts(cum: np.ndarray, start: np.ndarray, end: np.ndarray, recent: int) -> dict[str, np.ndarray]:
    """Events per action, overall (count and share) and among the last ``recent``."""
    n = end - start
    out: dict[str, np.ndarray] = {"n_events": n.astype(float)}
    lo = np.maximum(start, end - recent)  # the window of the last `recent` events
    for a, name in enumerate(ACTIONS):
        count = (cum[end, a] - cum[start, a]).astype(float)
        out[f"n_{name}"], out[f"share_{name}"] = count, count / np.maximum(n, 1)
        out[f"last{recent}_{name}"] = (cum[end, a] - cum[lo, a]).astype(float)
    return out


def _last_item_history(index: HistoryIndex, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """What the slice did before with its last event's item and category, and whether the last
    two events share them."""
    last = np.where(end > start, end - 1, -1)
    prev = np.where(end - 1 > start, end - 2, -1)
    item, cat = _at(index, index.item, last), _at(index, index.category, last)  # -1: none
    every = np.ones(index.n, bool)
    out = {"item_seen": _code_counts(index.item, every, item, start, end)}
    for name in ("cart", "favorite", "purchase"):
        out[f"item_{name}"] = _code_counts(index.item, index.action == ACTIONS.index(name), item, start, end)
    out["category_seen"] = _code_counts(index.category, every, cat, start, end)
    out["category_cart"] = _code_counts(index.category, index.action == ACTIONS.index("cart"), cat, start, end)
    for col, codes, here in (("same_item", index.item, item), ("same_category", index.category, cat)):
        before = _at(index, codes, prev)
        out[col] = np.where((here >= 0) & (before >= 0), (here == before).astype(float), np.nan)
    return out


def _current_visit(index: HistoryIndex, cum: np.ndarray, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """The visit the last event belongs to: its events so far and its carts / favorites / buys.
    Whether the target opens a new visit is unknown (its gap is the target's own)."""
    cur = index.last_position(index.session_start, start, end)  # the visit's first event
    cur = np.where(cur >= 0, cur, start)
    out = {"session_events": (end - cur).astype(float)}
    for name in ("cart", "favorite", "purchase"):
        a = ACTIONS.index(name)
        out[f"session_{name}"] = (cum[end, a] - cum[cur, a]).astype(float)
    return out


def _code_counts(codes: np.ndarray, flags: np.ndarray, query: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per slice, its flagged events in ``[start, end)`` whose code (item, category) is
    ``query[i]``; NaN where ``query[i] < 0`` (no item / category).

    Flagged events sorted by ``(code, position)`` make each code's positions one sorted run, so a
    slice's count is the difference of two searchsorted calls: no per-row loop, no groupby.

    >>> _code_counts(np.array([0, 1, 0, 0]), np.array([1, 1, 0, 1], bool), np.array([0, 1, -1]),
    ...              np.array([0, 0, 0]), np.array([4, 1, 4])).tolist()
    [2.0, 0.0, nan]
    """
    pos = np.flatnonzero(flags & (codes >= 0))
    width = len(codes) + 1  # keys code * width + position stay far inside int64 (codes x events)
    keys = np.sort(codes[pos] * width + pos)
    base = np.maximum(query, 0) * width
    count = np.searchsorted(keys, base + end, "left") - np.searchsorted(keys, base + start, "left")
    return np.where(query >= 0, count.astype(float), np.nan)


def _key(index: HistoryIndex, start: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Composite search keys ``(user, rank of q)`` for slices that already know their user."""
    u = index.user[np.clip(start, 0, max(index.n - 1, 0))] if index.n else np.zeros_like(start)
    return u * index._width + np.searchsorted(index.times, q, side="left")


# ----------------------------------------------------------------- rankings over a catalog
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
