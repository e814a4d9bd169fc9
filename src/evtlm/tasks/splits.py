"""Leakage-safe splits: which events an example may see, and which split it belongs to.

Two methods (``split.method``):

- ``time`` (default): the log's last ``test_days`` are the test window, the ``valid_days`` before
  it the validation window, everything earlier the training window. An example belongs to the
  split its **label time** falls in.
- ``leave_one_out``: per user, the last example is test, the second-to-last valid, the earlier
  ones train (the protocol of the sequential-recommendation literature).

The one invariant every task relies on: an example's prompt holds only the user's events
*strictly before* its label time; events sharing the label's timestamp are excluded too (a log
with second resolution often stamps a cart and its purchase with the same second).

Events are the canonical table (`evtlm.ingest.events.finalize_events`): sorted by ``(user_id,
timestamp)``, so a user's events before a time are one contiguous range of rows, found for all
examples at once with one ``searchsorted`` (`EventIndex.before`).

>>> import pandas as pd
>>> from evtlm.ingest.events import finalize_events
>>> ev = finalize_events(pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["1", "2", "3", "1"],
...     "action": ["view"] * 4, "timestamp": pd.to_datetime([10, 20, 20, 15], unit="s", utc=True)}))
>>> idx = EventIndex.from_events(ev)
>>> t = pd.Timestamp(20, unit="s", tz="UTC").value
>>> idx.before(np.array([0, 1]), np.array([t, t])).tolist()   # a: only row 0 is before t=20 s
[1, 4]
>>> idx.user_start.tolist(), idx.user_stop.tolist()
([0, 3], [3, 4])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evtlm.errors import DataError, TaskError
from evtlm.recipe import SplitConfig

__all__ = [
    "SPLITS",
    "TRAIN",
    "VALID",
    "TEST",
    "EventIndex",
    "TimeWindows",
    "time_windows",
    "split_by_time",
    "split_leave_one_out",
    "training_event_mask",
    "assert_prompts_before_labels",
]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class EventIndex:
    """Positions of each user's events in a table sorted by ``(user, time)``, and their times
    (int ns): the one event index. The tasks read it over the canonical table
    (`from_events`); `evtlm.data.history_index.HistoryIndex` builds on it for the features.

    ``user_code[i]`` numbers users in table order, so ``user_start[u]:user_stop[u]`` are user
    ``u``'s rows. ``before(u, t)`` is the row where ``u``'s events at or after ``t`` begin.

    >>> idx = EventIndex.from_sorted(np.array([0, 0, 1]), np.array([5, 9, 5]), np.array(["a", "b"], dtype=object))
    >>> idx.before([0, 0, 1], [9, 10, 5]).tolist(), idx.before([0], [9], inclusive=True).tolist()
    ([1, 2, 2], [2])
    """

    user_ids: np.ndarray  # [U] user_id strings, in table order
    user_code: np.ndarray  # [N] int64
    user_start: np.ndarray  # [U] int64, first row of each user
    user_stop: np.ndarray  # [U] int64, one past the last row
    ts: np.ndarray  # [N] int64 nanoseconds since the epoch (UTC)
    times: np.ndarray  # [K] sorted distinct event times
    keys: np.ndarray  # [N] user_code * (K + 1) + rank of ts: non-decreasing

    @classmethod
    def from_events(cls, events: pd.DataFrame) -> EventIndex:
        """The index of the canonical table (sorted by user, then time; an unsorted one is an error)."""
        codes, uniques = pd.factorize(events["user_id"], sort=False)
        index = cls.from_sorted(codes, events["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64),
                                np.asarray(uniques, dtype=object))
        if len(index.keys) > 1 and np.any(np.diff(index.keys) < 0):
            raise DataError(
                "events are not sorted by (user_id, timestamp)",
                where="the canonical event table",
                fix="build it with evtlm.ingest.events.finalize_events (or evtlm.ingest.presets.load_event_log)",
            )
        return index

    @classmethod
    def from_sorted(cls, user_code: np.ndarray, ts: np.ndarray, user_ids: np.ndarray) -> EventIndex:
        """The index of events already in ``(user_code, ts)`` order (``user_ids[code]`` names a user)."""
        codes = np.asarray(user_code, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.int64)
        times = np.unique(ts)
        # composite key (user, time rank) so one searchsorted finds every query's slice; the rank
        # keeps it far inside int64 (rank < K + 1, users < 1e7 and K <= N: below 2**63)
        keys = codes * (len(times) + 1) + np.searchsorted(times, ts)
        bounds = np.searchsorted(codes, np.arange(len(user_ids) + 1))
        return cls(user_ids=user_ids, user_code=codes, user_start=bounds[:-1].astype(np.int64),
                   user_stop=bounds[1:].astype(np.int64), ts=ts, times=times, keys=keys)

    def key(self, user_code: np.ndarray, times: np.ndarray, inclusive: bool = False) -> np.ndarray:
        """Search keys of ``(user, time)`` queries: below every key of the user's events at or after
        ``times`` (``inclusive``: after ``times``)."""
        rank = np.searchsorted(self.times, np.asarray(times, dtype=np.int64), side="right" if inclusive else "left")
        return np.asarray(user_code, dtype=np.int64) * (len(self.times) + 1) + rank

    def before(self, user_code: np.ndarray, times: np.ndarray, inclusive: bool = False) -> np.ndarray:
        """Row one past the user's last event strictly before ``times`` (int ns), per query
        (``inclusive``: at or before)."""
        return np.searchsorted(self.keys, self.key(user_code, times, inclusive), side="left")


@dataclass(frozen=True)
class TimeWindows:
    """``[start, train_end)`` train, ``[train_end, valid_end)`` valid, ``[valid_end, end)`` test."""

    start: pd.Timestamp  # first event
    train_end: pd.Timestamp
    valid_end: pd.Timestamp
    end: pd.Timestamp  # after the last event (rounded up to a whole second)

    def to_dict(self) -> dict[str, str]:
        return {k: getattr(self, k).isoformat() for k in ("start", "train_end", "valid_end", "end")}


def time_windows(events: pd.DataFrame, cfg: SplitConfig) -> TimeWindows:
    """The three global windows, counted back from the log's last event.

    >>> from evtlm.ingest.events import finalize_events
    >>> ev = finalize_events(pd.DataFrame({"user_id": ["a"] * 2, "item_id": ["1", "2"],
    ...     "action": ["view"] * 2, "timestamp": ["2024-01-01", "2024-01-31"]}))
    >>> w = time_windows(ev, SplitConfig(valid_days=5, test_days=10))
    >>> str(w.train_end.date()), str(w.valid_end.date())
    ('2024-01-16', '2024-01-21')
    """
    if len(events) == 0:
        raise DataError("the event log is empty", where="split", fix="check data.path and data filters")
    ts = events["timestamp"]
    # end is exclusive: the last event's time rounded up to the next whole second
    start, end = ts.min(), (ts.max() + pd.Timedelta(1, "ns")).ceil("s")
    valid_end = end - pd.Timedelta(days=cfg.test_days)
    train_end = valid_end - pd.Timedelta(days=cfg.valid_days)
    if train_end <= start:
        span = (end - start) / pd.Timedelta(days=1)
        raise TaskError(
            f"the training window is empty: the log spans {span:.2f} days but split.valid_days + "
            f"split.test_days = {cfg.valid_days + cfg.test_days:g}",
            where="split.valid_days, split.test_days",
            fix="make the valid and test windows shorter than the log, or use split.method=leave_one_out",
        )
    return TimeWindows(start=start, train_end=train_end, valid_end=valid_end, end=end)


def split_by_time(label_times: np.ndarray, windows: TimeWindows) -> np.ndarray:
    """Split code (0 train, 1 valid, 2 test) of each label time (int ns)."""
    t = np.asarray(label_times, dtype=np.int64)
    return np.where(t < windows.train_end.value, TRAIN, np.where(t < windows.valid_end.value, VALID, TEST)).astype(np.int8)


def split_leave_one_out(user_code: np.ndarray) -> np.ndarray:
    """Per user, last -> test, second-to-last -> valid, earlier -> train.

    ``user_code`` must be grouped by user, each user's candidates in time order.

    >>> split_leave_one_out(np.array([0, 0, 0, 1, 2, 2])).tolist()
    [0, 1, 2, 2, 1, 2]
    """
    codes = np.asarray(user_code, dtype=np.int64)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int8)
    # rank from the end within each run of equal codes: run_stop - 1 - position
    change = np.flatnonzero(np.diff(codes)) + 1
    run_stop = np.repeat(np.append(change, len(codes)), np.diff(np.concatenate([[0], change, [len(codes)]])))
    from_end = run_stop - 1 - np.arange(len(codes))
    return np.where(from_end == 0, TEST, np.where(from_end == 1, VALID, TRAIN)).astype(np.int8)


def training_event_mask(
    index: EventIndex,
    method: str,
    windows: TimeWindows | None,
    example_user: np.ndarray | None = None,
    example_split: np.ndarray | None = None,
    example_time: np.ndarray | None = None,
) -> np.ndarray:
    """Which events belong to the training window: the only text a label space, a scratch
    tokenizer or pretraining may learn from.

    ``time``: events before ``train_end``. ``leave_one_out``: each user's events before the label
    time of their earliest valid/test example (all events of a user without one).
    """
    if method == "time":
        assert windows is not None
        return index.ts < windows.train_end.value
    cutoff = np.full(len(index.user_start), np.iinfo(np.int64).max, dtype=np.int64)
    if example_user is not None and len(example_user):
        held = np.asarray(example_split) != TRAIN
        np.minimum.at(cutoff, np.asarray(example_user)[held], np.asarray(example_time)[held])
    return index.ts < cutoff[index.user_code]


def assert_prompts_before_labels(index: EventIndex, hist_stop: np.ndarray, label_time: np.ndarray,
                                 hist_start: np.ndarray) -> None:
    """The leakage invariant, checked on every built example (cheap: one gather).

    A failure is a bug in a task, never a user error, hence a plain ``AssertionError``.
    """
    nonempty = np.asarray(hist_stop) > np.asarray(hist_start)
    last = index.ts[np.asarray(hist_stop)[nonempty] - 1]
    bad = np.flatnonzero(last >= np.asarray(label_time)[nonempty])
    if len(bad):
        raise AssertionError(f"{len(bad)} prompts hold an event at or after their label time")
