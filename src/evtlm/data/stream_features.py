"""The per-target features of the stream windows (``tgt_feat``, `evtlm.data.stream`'s module doc): what a
gradient-boosted tree reads at each target, encoded for the model's read-out. Purchase: the
recency / frequency / monetary features as of each cutoff (`purchase_features`); next_action:
the gbt's own inputs strictly before the target event (`action_features`). The columns are fixed
whatever the log has, so the model's input width never depends on the data. It only encodes
`evtlm.data.history` features: it must not look past a target's cutoff or build window rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evtlm.recipe import ACTIONS


# `purchase_features` columns, fixed whatever the log has (a missing one reads as "never"/0):
# the model's input width cannot depend on whether a prediction file has prices
PURCHASE_FEATURES = (
    "n_events", *[f"n_{a}" for a in ACTIONS], *[f"n_{a}_{d}d" for d in (1, 3, 7) for a in ACTIONS],
    "hours_since_last", "hours_since_first", "hours_since_cart", "hours_since_purchase", "hours_since_favorite",
    "carts_since_purchase", "removals_since_purchase", "n_sessions", "session_events", "session_carts",
    "purchases_per_session", "spend",
)
N_PURCHASE_FEATURES = 2 * len(PURCHASE_FEATURES)  # log1p value + a "missing / never" flag each

# `action_features` columns: the next_action gbt's own (`evtlm.data.history.next_action_features`)
ACTION_FEATURES = (
    "action_1", "action_2", "action_3", "gap_1_s", "gap_2_s", "hour", "n_events",
    *[f"{kind}_{a}" for a in ACTIONS for kind in ("n", "share", "last10")],
    "item_seen", "item_cart", "item_favorite", "item_purchase", "category_seen", "category_cart",
    "same_item", "same_category", "session_events", "session_cart", "session_favorite", "session_purchase",
)
N_ACTION_FEATURES = 2 * len(ACTION_FEATURES)


def target_feature_width(task: str) -> int:
    """Width of ``tgt_feat`` for ``task`` with ``model.history_features`` on (0: none)."""
    return {"purchase": N_PURCHASE_FEATURES, "next_action": N_ACTION_FEATURES}.get(task, 0)


def purchase_features(log, user_ids, label_time_ns: np.ndarray, level: str = "user") -> np.ndarray:
    """[n, N_PURCHASE_FEATURES] float32: `evtlm.data.history.rfm_features` of each ``(user, cutoff)``
    over the events strictly before the cutoff, ``sign(x) log1p(|x|)`` of each, then a 1/0 flag
    per column for "never" (NaN: no cart yet) or absent from this log (no prices). Session-level
    labels measure durations from the last event, as the gbt baseline does (the label time itself
    depends on the label there).

    >>> ev = pd.DataFrame({"user_id": ["u"] * 2, "item_id": ["a", "b"], "action": ["view", "cart"],
    ...     "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True)})
    >>> f = purchase_features(ev, ["u"], np.array([pd.Timestamp("2024-01-03", tz="UTC").value]))  # ns
    >>> i = PURCHASE_FEATURES.index("hours_since_cart"); round(float(np.expm1(f[0, i])), 3), float(f[0, len(PURCHASE_FEATURES) + i])
    (24.0, 0.0)
    """
    from evtlm.data.history import rfm_features
    from evtlm.data.history_index import HistoryIndex

    index = log if isinstance(log, HistoryIndex) else HistoryIndex(log)
    times = pd.to_datetime(np.asarray(label_time_ns, dtype=np.int64), utc=True)
    start, end = index.bounds(pd.Series(list(user_ids), dtype=object), times)
    frame = rfm_features(index, start, end, times, "label_time" if level == "user" else "last_event")
    return _encode_features(frame, PURCHASE_FEATURES)


def _encode_features(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """``sign(x) log1p(|x|)`` of each of ``columns`` (fixed: a column the frame lacks reads as
    missing), then a 1/0 flag per column for missing / never; float32 [n, 2 * len(columns)]."""
    x = frame.reindex(columns=list(columns)).to_numpy(dtype=np.float64)
    never = np.isnan(x)
    x = np.where(never, 0.0, np.sign(x) * np.log1p(np.abs(x)))
    return np.concatenate([x, never.astype(np.float64)], axis=1).astype(np.float32)


def action_features(log, user_ids, label_time_ns: np.ndarray, catalog: pd.DataFrame | None = None) -> np.ndarray:
    """[n, N_ACTION_FEATURES] float32: what the next_action gbt reads before each target
    (`evtlm.data.history.next_action_features` over the user's events strictly before the target's
    time: nothing of the target itself, not even its gap), encoded as `purchase_features`.

    >>> ev = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "a"], "action": ["view", "cart", "view"],
    ...     "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True)})
    >>> f = action_features(ev, ["u"], np.array([pd.Timestamp("2024-01-03", tz="UTC").value]))  # the third event
    >>> i = ACTION_FEATURES.index("n_cart"); float(np.expm1(f[0, i])), f.shape == (1, N_ACTION_FEATURES)
    (1.0, True)
    """
    from evtlm.data.history import next_action_features
    from evtlm.data.history_index import HistoryIndex

    # the catalog's categories too (an EventLog carries its own): evaluation and prediction alike
    index = log if isinstance(log, HistoryIndex) else HistoryIndex(log, catalog=catalog)
    times = pd.to_datetime(np.asarray(label_time_ns, dtype=np.int64), utc=True)
    start, end = index.bounds(pd.Series(list(user_ids), dtype=object), times)
    return _encode_features(next_action_features(index, start, end), ACTION_FEATURES)


def target_features(recipe, log, user_ids, label_time_ns: np.ndarray, catalog: pd.DataFrame | None = None) -> np.ndarray | None:
    """``tgt_feat`` of each target (purchase: `purchase_features` as of its cutoff; next_action:
    `action_features` before it), or None when the task or ``model.history_features`` has none."""
    if not recipe.model.history_features:
        return None
    if recipe.task.name == "purchase":
        return purchase_features(log, user_ids, label_time_ns, recipe.task.level)
    if recipe.task.name == "next_action":
        return action_features(log, user_ids, label_time_ns, catalog)
    return None
