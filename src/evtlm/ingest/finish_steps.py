"""The steps that finish a read, from mapped rows to the canonical `EventLog`: sort, exact
duplicates, ``data.start`` / ``data.end``, the ``data.max_users`` subset, sessions, the report's
totals. Each depends only on one user's events (plus, for the subset, every user's hash), so
`evtlm.ingest.partition` runs them shard by shard. They are methods of `FinishSteps`, which
`evtlm.ingest.events.Ingest` inherits; reading files and mapping columns stay there, and this
module must not import it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from evtlm.errors import DataError
from evtlm.ingest.canonical import EventLog, _arrow, finalize_events
from evtlm.ingest.readers import ROW, BadRows, RawTable
from evtlm.ingest.sessions import derive_sessions


def _duplicated(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    # factorize each column to ints first: duplicated() over int columns is ~5x faster than
    # over millions of strings
    codes = {c: (df[c].dt.as_unit("ns").array.asi8 if pd.api.types.is_datetime64_any_dtype(df[c].dtype)
                 else pd.factorize(df[c])[0]) for c in cols}
    return pd.DataFrame(codes).duplicated().to_numpy()


def _duplicated_sorted(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Exact duplicates (all but the first of each) of a frame sorted by (user_id, timestamp).

    Identical rows share (user, time), so after the sort they sit next to each other or inside
    a run of equal (user, time): only rows equal to a neighbour on those two keys are compared
    on every column (a small fraction of a real log, instead of hashing millions of strings).
    """
    n = len(df)
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    u = _arrow(df["user_id"])
    t = df["timestamp"].dt.as_unit("ns").array.asi8
    tie = pc.equal(u.slice(1), u.slice(0, n - 1)).to_numpy(zero_copy_only=False) & (t[1:] == t[:-1])
    candidate = np.zeros(n, dtype=bool)
    candidate[1:] |= tie
    candidate[:-1] |= tie
    idx = np.flatnonzero(candidate)
    if idx.size:
        dup[idx] = _duplicated(df.iloc[idx], keys)  # stable sort: the first in file order is kept
    return dup


def _bound(value: str, timezone: str, name: str) -> tuple[pd.Timestamp, str]:
    """A range bound in UTC and how to show it: naive bounds are in ``data.timestamp.timezone``."""
    try:
        ts = pd.Timestamp(value)
    except ValueError as err:
        raise DataError(f"{name} = {value!r} is not a date", where=name,
                        fix="use ISO-8601, e.g. '2017-11-25 00:00'") from err
    if ts.tzinfo is None:
        return ts.tz_localize(timezone).tz_convert("UTC"), f"{value} {timezone}"
    return ts.tz_convert("UTC"), value


class FinishSteps:
    """The finishing steps of an `evtlm.ingest.events.Ingest` (mixed into it): they read its
    ``cfg``, ``report``, ``path`` and ``sources``."""

    def finish(self, frames: list[pd.DataFrame], catalog: pd.DataFrame | None = None) -> EventLog:
        """Dedupe, range filter, user subset, sort, sessions, report: the canonical `EventLog`.

        The steps are methods of their own (`clean`, `choose_users`, `complete`) because each
        depends only on one user's events plus, for ``max_users``, the hashes of every user
        left: `evtlm.ingest.partition` runs them shard by shard with the same result.
        """
        df, dup_rows = self.clean(frames)
        self.note_duplicates(dup_rows)
        df = self.keep_users(df, self.choose_users(user_hashes(df["user_id"])))
        self.check_not_empty(len(df))
        events = self.complete(df)
        self.report.summarize(events)
        self.note_catalog(catalog, events)
        return EventLog(events, catalog, self.report)

    def clean(self, frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, np.ndarray]:
        """Concatenate, sort (`finalize_events`), drop exact duplicates and rows outside
        ``data.start`` / ``data.end``; the rows left and the row numbers of the duplicates."""
        cfg, report = self.cfg, self.report
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        keys = [c for c in df.columns if c != ROW]
        df = finalize_events(df)  # sorted first: see _duplicated_sorted; `_row` rides along as an extra
        dup_rows = np.array([], dtype=np.int64)
        if cfg.dedupe:
            dup = _duplicated_sorted(df, keys)
            if dup.any():
                report.duplicates_removed += int(dup.sum())
                dup_rows = df[ROW].to_numpy()[dup]
                df = df.loc[~dup]
        fake = BadRows(RawTable(df, str(self.path), parts=self.sources), "skip", report)
        tz = cfg.timestamp.timezone
        if cfg.start:
            start, label = _bound(cfg.start, tz, "data.start")
            df = fake.drop(df, (df["timestamp"] < start).to_numpy(), reason=f"before data.start ({label})", bad=False)
        if cfg.end:
            end, label = _bound(cfg.end, tz, "data.end")
            df = fake.drop(df, (df["timestamp"] >= end).to_numpy(), reason=f"at or after data.end ({label})", bad=False)
        return df, dup_rows

    def note_duplicates(self, dup_rows: np.ndarray) -> None:
        if len(dup_rows):
            self.report.notes.append(f"exact duplicate rows removed: {len(dup_rows):,} "
                                     f"(first: data rows {', '.join(map(str, np.sort(dup_rows)[:5]))})")

    def choose_users(self, hashes: np.ndarray) -> int | None:
        """The ``data.max_users`` subset as a hash threshold: users whose `user_hashes` value is
        at most the returned one are kept (None: every user). ``hashes``: one per user left."""
        n = self.cfg.max_users
        if n is None or len(hashes) <= n:
            return None
        # a hash of the id (not file order) picks the subset: the same users on every read
        return int(np.partition(hashes, n - 1)[n - 1])

    def keep_users(self, df: pd.DataFrame, threshold: int | None) -> pd.DataFrame:
        if threshold is None:
            return df
        fake = BadRows(RawTable(df, str(self.path), parts=self.sources), "skip", self.report)
        outside = pd.util.hash_array(df["user_id"].to_numpy(dtype=object)) > np.uint64(threshold)
        return fake.drop(df, outside, reason=f"user outside the data.max_users={self.cfg.max_users} subset", bad=False)

    def check_not_empty(self, rows: int) -> None:
        if rows == 0:
            raise DataError(f"no events left in {self.path} after filtering",
                            where=f"dropped: {self.report.dropped}",
                            fix="check data.start / data.end, data.drop_actions and the column mapping")

    def complete(self, df: pd.DataFrame) -> pd.DataFrame:
        """The canonical events: ``_row`` dropped, sessions derived where the log has none."""
        events = df.drop(columns=[ROW]).reset_index(drop=True)
        gap = derive_sessions(events["user_id"], events["timestamp"], self.cfg.session_gap_minutes)
        events["session_id"] = events["session_id"].fillna(gap) if self.cfg.columns.session else gap
        return events

    def note_catalog(self, catalog: pd.DataFrame | None, events: pd.DataFrame | None = None,
                     missing: int | None = None) -> None:
        """Catalog size and how many events name items it lacks (``missing``: counted already)."""
        if catalog is None:
            return
        self.report.catalog_items = len(catalog)
        if missing is None:
            missing = int((~events["item_id"].dropna().isin(catalog["item_id"])).sum())
        if missing:
            self.report.notes.append(f"{missing:,} events name items missing from the catalog")


def user_hashes(user_id: pd.Series) -> np.ndarray:
    """One stable 64-bit hash per distinct user (pandas' fixed-key hash: the same on every run and
    machine), the key `Ingest.choose_users` and `evtlm.ingest.partition` place users by."""
    return pd.util.hash_array(np.asarray(user_id.unique(), dtype=object)).astype(np.uint64)
