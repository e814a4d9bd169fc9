"""Leakage properties of the splits, on hundreds of tiny generated logs (hypothesis).

For every task and split method: no prompt holds an event at or after its label time; no event
that decides a test label appears in any training example's prompt or label; items first seen
after the training window are kept as cold examples (label_index -1) and counted, never dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtlm.errors import DataError, TaskError
from evtlm.ingest.events import finalize_events
from evtlm.recipe import Recipe
from evtlm.tasks.splits import TEST, TRAIN, EventIndex, SplitConfig, split_leave_one_out, time_windows
from evtlm.tasks import TaskContext, get_task

HOUR = 3600
ACTS = ["view", "view", "cart", "purchase", "favorite"]


EVENT = st.tuples(st.integers(0, 3), st.integers(0, 240), st.sampled_from(ACTS), st.integers(0, 5))


@st.composite
def tiny_logs(draw) -> pd.DataFrame:
    """Up to 4 users and 20 events over 10 days (hour resolution: timestamp ties happen)."""
    rows = draw(st.lists(EVENT, min_size=1, max_size=20)) + [(0, 0, "view", 0), (1, 240, "view", 1)]
    df = pd.DataFrame(rows, columns=["user_id", "t", "action", "item_id"]).astype({"user_id": str, "item_id": str})
    df["timestamp"] = pd.to_datetime(df.pop("t") * HOUR, unit="s", utc=True)
    df["session_id"] = df["user_id"] + "-" + (df["timestamp"].dt.dayofyear).astype(str)  # one visit a day
    return finalize_events(df)


CONFIGS = [
    ("next_item", "time", "user"), ("next_item", "leave_one_out", "user"),
    ("next_action", "time", "user"), ("next_action", "leave_one_out", "user"),
    ("purchase", "time", "user"), ("purchase", "time", "session"), ("purchase", "leave_one_out", "session"),
]


def build(events: pd.DataFrame, name: str, method: str, level: str):
    r = Recipe.model_validate({"task": {"name": name, "level": level, "horizon_days": 2},
                               "split": {"method": method, "valid_days": 2, "test_days": 2}})
    ctx = TaskContext.build(events, None, r.task, r.split, r.verbalize)
    return ctx, get_task(name).build_examples(ctx)


def label_rows(ctx: TaskContext, ex) -> set[int]:
    """Event rows that decide an example's label: its target event, or (purchase within a
    horizon) its user's events in [label_time, label_end)."""
    if ex.target_pos >= 0:
        return {int(ex.target_pos)}
    lo, hi = ctx.index.user_start[ex.user_code], ctx.index.user_stop[ex.user_code]
    ts = ctx.index.ts[lo:hi]
    return {int(lo + i) for i in np.flatnonzero((ts >= ex.label_time) & (ts < ex.label_end))}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=tiny_logs(), config=st.sampled_from(CONFIGS))
def test_no_leakage(events, config):
    check_no_leakage(events, *config)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=tiny_logs())
def test_no_leakage_every_config(events, config):
    check_no_leakage(events, *config)


def check_no_leakage(events: pd.DataFrame, name: str, method: str, level: str) -> None:
    ctx, exset = build(events, name, method, level)
    t = exset.table
    ts, users = ctx.index.ts, ctx.index.user_code
    test_rows: set[int] = set()
    for ex in t[t["split"] == TEST].itertuples():
        test_rows |= label_rows(ctx, ex)
    for ex in t.itertuples():
        prompt = np.arange(ex.hist_start, ex.hist_stop)
        # the prompt: the user's own events, all strictly before the label time, and all of them
        assert (users[prompt] == ex.user_code).all()
        assert (ts[prompt] < ex.label_time).all()
        assert ex.hist_stop == ctx.index.user_stop[ex.user_code] or ts[ex.hist_stop] >= ex.label_time
        if ex.split == TRAIN:
            assert not (set(prompt.tolist()) | label_rows(ctx, ex)) & test_rows
    if method == "time":
        w = ctx.windows
        expected = np.searchsorted([w.train_end.value, w.valid_end.value], t["label_time"].to_numpy(), side="right")
        assert (t["split"].to_numpy() == expected).all()
    elif len(t):  # leave-one-out: each user's latest example is test
        last = t.sort_values(["user_code", "label_time", "target_pos"]).groupby("user_code").tail(1)
        assert (last["split"] == TEST).all()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=tiny_logs())
def test_cold_items_are_counted_not_dropped(events):
    ctx, exset = build(events, "next_item", "time", "user")
    t = exset.table
    # every event with at least one earlier event of its user is an example: nothing dropped
    ts, codes = ctx.index.ts, ctx.index.user_code
    earlier = ctx.index.before(codes, ts) - ctx.index.user_start[codes]
    assert len(t) == int((earlier >= 1).sum())
    seen = set(events.loc[ts < ctx.windows.train_end.value, "item_id"])
    cold = ~t["label"].isin(seen).to_numpy()
    assert ((t["label_index"].to_numpy() < 0) == cold).all()
    report = exset.info["cold_items"]
    for code, split in enumerate(("train", "valid", "test")):
        part = cold[t["split"].to_numpy() == code]
        assert report[split]["examples"] == int(part.sum())
    assert report["train"]["examples"] == 0  # a training target is a training-window event


def test_event_index_before_excludes_ties():
    ev = finalize_events(pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": list("1231"),
                                       "action": ["view"] * 4, "timestamp": pd.to_datetime([1, 2, 2, 1], unit="s", utc=True)}))
    idx = EventIndex.from_events(ev)
    t2 = pd.Timestamp(2, unit="s", tz="UTC").value
    assert idx.before(np.array([0, 0, 1]), np.array([t2, t2 + 1, t2])).tolist() == [1, 3, 4]


def test_unsorted_events_are_refused():
    ev = finalize_events(pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"], "action": ["view"] * 2,
                                       "timestamp": pd.to_datetime([1, 2], unit="s", utc=True)}))
    with pytest.raises(DataError, match="not sorted by"):
        EventIndex.from_events(ev.iloc[::-1].reset_index(drop=True))


def test_windows_too_long_for_the_log():
    ev = finalize_events(pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"], "action": ["view"] * 2,
                                       "timestamp": ["2024-01-01", "2024-01-05"]}))
    with pytest.raises(TaskError, match="training window is empty.*4.00 days"):
        time_windows(ev, SplitConfig(valid_days=2, test_days=3))


def test_leave_one_out_codes():
    assert split_leave_one_out(np.array([3, 3, 5])).tolist() == [1, 2, 2]
