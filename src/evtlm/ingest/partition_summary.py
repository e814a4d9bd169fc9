"""`_Summary`: the data report's totals (`DataReport.summarize`) over the shards of a partition,
added shard by shard and merged in shard order. It owns the counting only; it must not read or
write shards, nor import the modules that do (`evtlm.ingest.partition_steps` and the engines).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evtlm.ingest.data_report import DataReport


class _Summary:
    """`DataReport.summarize` over shards: sums, and distinct items / visits as unions of 64-bit
    hashes (a user lies in one shard, an item or a visit id may lie in several). Derived visit
    ids start with their user's id, so those are only counted."""

    def __init__(self, derived_sessions: bool = False) -> None:
        self.derived_sessions = derived_sessions
        self.n_sessions = 0
        self.rows = self.users = self.missing = 0
        self.items: list[np.ndarray] = []  # each shard's distinct hashes, made unique once at the end
        self.sessions: list[np.ndarray] = []
        self.actions: dict[str, int] = {}
        self.start: pd.Timestamp | None = None
        self.end: pd.Timestamp | None = None

    def merge(self, other: _Summary) -> None:
        """Another shard's summary added (as if its events had been `add` ed here)."""
        self.rows, self.users, self.missing = self.rows + other.rows, self.users + other.users, self.missing + other.missing
        self.n_sessions += other.n_sessions
        self.items.extend(other.items)
        self.sessions.extend(other.sessions)
        for a, n in other.actions.items():
            self.actions[a] = self.actions.get(a, 0) + n
        if other.start is not None:
            self.start = other.start if self.start is None else min(self.start, other.start)
            self.end = other.end if self.end is None else max(self.end, other.end)

    def add(self, events: pd.DataFrame, catalog: pd.DataFrame | None) -> None:
        if len(events) == 0:
            return
        self.rows += len(events)
        self.users += int(events["user_id"].nunique())
        if self.derived_sessions:
            self.n_sessions += int(events["session_id"].nunique())
        for col, attr in (("item_id", "items"), ("session_id", "sessions"))[: 1 if self.derived_sessions else 2]:
            ids = events[col].dropna().unique()
            getattr(self, attr).append(pd.util.hash_array(np.asarray(ids, dtype=object)).astype(np.uint64))
        for a, n in events["action"].value_counts().items():
            self.actions[str(a)] = self.actions.get(str(a), 0) + int(n)
        lo, hi = events["timestamp"].min(), events["timestamp"].max()
        self.start = lo if self.start is None else min(self.start, lo)
        self.end = hi if self.end is None else max(self.end, hi)
        if catalog is not None:
            self.missing += int((~events["item_id"].dropna().isin(catalog["item_id"])).sum())

    def fill(self, report: DataReport) -> None:
        from evtlm.recipe import ACTIONS

        report.rows_kept, report.users = self.rows, self.users
        def distinct(parts: list[np.ndarray]) -> int:  # (one sort at the end: a union per shard grew quadratically)
            return len(np.unique(np.concatenate(parts))) if parts else 0

        report.items = distinct(self.items)
        report.sessions = self.n_sessions if self.derived_sessions else distinct(self.sessions)
        report.events_per_action = {a: self.actions[a] for a in ACTIONS if self.actions.get(a)}
        report.time_start = self.start.isoformat() if self.start is not None else None
        report.time_end = self.end.isoformat() if self.end is not None else None
