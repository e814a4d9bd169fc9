"""History features, for many ``(user, cutoff)`` slices at once: what the gradient-boosted trees and
the stream model read (`rfm_features` for purchase, `next_action_features`). Only the events of
each slice ``[start, end)`` of a `HistoryIndex` are read (the leakage rule: strictly before the
label time). Counts over a history are differences of prefix sums, "the last cart" is a running
maximum of positions, so features for a million examples cost a few array passes, never a Python
loop over rows.

The as-of index (`evtlm.data.history_index`), the input checks the baselines share
(`evtlm.data.history_checks`) and the rankings over a catalog (`evtlm.data.catalog_rankings`)
live beside this module and are re-exported here. It must not look past a slice's end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evtlm.data.catalog_rankings import default_catalog, drop_excluded, item_popularity, top_per_row, with_fallback  # noqa: F401  (re-exported)
from evtlm.data.history_checks import (action_order, binary_labels, check_examples, check_labels_in,  # noqa: F401  (re-exported)
                                       require_columns, to_ns)
from evtlm.data.history_index import HistoryIndex, positions_in, strictly_earlier  # noqa: F401  (re-exported)
from evtlm.recipe import ACTIONS
from evtlm.timeunits import NS_PER_DAY, NS_PER_HOUR, NS_PER_SECOND


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
        lo = np.clip(np.searchsorted(index.by_user.keys, _key(index, start, q - days * NS_PER_DAY), "left"), start, end)
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
    out["gap_1_s"] = np.where(has[1], (t[0] - t[1]) / NS_PER_SECOND, np.nan)
    out["gap_2_s"] = np.where(has[2], (t[1] - t[2]) / NS_PER_SECOND, np.nan)
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
    return index.by_user.key(u, q)
