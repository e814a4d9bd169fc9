"""Event ingestion: any log in, one canonical table out.

The canonical table (one row per event, whatever the source format):

=============  ==============================  ===========================================
column         dtype                           meaning
=============  ==============================  ===========================================
user_id        string                          who acted
timestamp      datetime64[ns, UTC]             when
action         category (`evtlm.recipe.ACTIONS`)  what, as a canonical verb
item_id        string, nullable                on what
session_id     string, nullable                visit; derived by an inactivity gap if absent
(extras)       float / string                  optional: price, quantity, category, …
=============  ==============================  ===========================================

Rows are sorted stably by ``(user_id, timestamp, original order)``. The optional item catalog is a
table ``item_id -> title, category, brand, price, …``.

`read_events` reads one file through the mapping in a `DataConfig` (no preset logic; presets
live in `evtlm.ingest.presets`, whose `load_event_log` is what the pipeline calls). The steps, each
vectorised: read the wanted columns as strings (`evtlm.ingest.readers`) -> check ids, timestamps (parsed,
and plausible: 1990 to tomorrow, one unit per column; see `evtlm.ingest.values.read_timestamps`) and
actions, naming bad rows by their 1-based data row number (`on_bad_rows: error` raises,
``skip`` drops and counts; the kept rows keep their own values, as every parsed column is
assigned on the index of the rows still kept) -> drop exact duplicates -> ``data.start``/``data.end`` ->
``max_users`` -> sort -> derive sessions by inactivity gap.

>>> import tempfile, pathlib
>>> from evtlm.recipe import DataConfig
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "log.csv").write_text("user,item,what,ts\\n1,a,pv,1511544070\\n1,b,buy,1511544130\\n"
...                                 "1,b,buy,1511544130\\n2,a,pv,1511600000\\n")
>>> cfg = DataConfig(path="log.csv", columns={"user": "user", "item": "item", "action": "what",
...                  "timestamp": "ts"}, actions={"pv": "view", "buy": "purchase"})
>>> log = read_events(cfg, base_dir=d)
>>> log.events[["user_id", "action", "item_id", "session_id"]].values.tolist()
[['1', 'view', 'a', '1-1'], ['1', 'purchase', 'b', '1-1'], ['2', 'view', 'a', '2-1']]
>>> log.report.rows_read, log.report.duplicates_removed
(4, 1)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.errors import DataError, closest
from evtlm.ingest.chunks import iter_chunks, part_columns, read_table
from evtlm.ingest.readers import MALFORMED, ROW, BadRows, RawTable, detect_format, resolve_path, table_columns
from evtlm.recipe import ACTIONS, CatalogConfig, DataConfig
from evtlm.ingest.sources import Source, describe, find_sources
from evtlm.ingest.values import clean_ids, map_actions, read_timestamps, to_number

CANONICAL_COLUMNS: tuple[str, ...] = ("user_id", "timestamp", "action", "item_id", "session_id")
ACTION_DTYPE = pd.CategoricalDtype(categories=list(ACTIONS), ordered=False)
STRING_DTYPE = pd.StringDtype()
# extras read as numbers (non-numeric values are bad rows); any other extra stays a string
NUMERIC_EXTRAS = frozenset({"price", "quantity", "amount", "revenue", "value", "rating"})


@dataclass
class DataReport:
    """What a read kept and dropped, and why. Written to a run's ``data_report.json``.

    ``dropped`` counts rows by reason ("unparseable timestamp", "before data.start", …);
    ``dropped_rows`` keeps the five smallest 1-based source row numbers of each reason.
    ``raw_actions`` counts the raw action values as read (before mapping and filters).
    """

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    duplicates_removed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)
    users: int = 0
    items: int = 0
    sessions: int = 0
    events_per_action: dict[str, int] = field(default_factory=dict)
    time_start: str | None = None
    time_end: str | None = None
    notes: list[str] = field(default_factory=list)
    raw_actions: dict[str, int] = field(default_factory=dict)
    catalog_items: int = 0
    # a log in several files: each one's path, data rows and first row in the numbering above
    # (row numbers run on from file to file, so dropped_rows name rows of the whole log)
    files: list[dict[str, Any]] = field(default_factory=list)

    def add_dropped(self, reason: str, row_numbers: np.ndarray | list[int]) -> None:
        """Count rows dropped for ``reason`` (1-based source row numbers)."""
        rows = np.asarray(row_numbers)
        if rows.size == 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + int(rows.size)
        # the five smallest row numbers: the same whichever order (chunks, shards) drops came in
        kept = self.dropped_rows.get(reason, [])
        self.dropped_rows[reason] = sorted(set(kept) | set(int(r) for r in np.sort(rows)[:5]))[:5]

    def summarize(self, events: pd.DataFrame) -> None:
        """Fill the counts that describe the kept events."""
        self.rows_kept = len(events)
        self.users = int(events["user_id"].nunique())
        self.items = int(events["item_id"].nunique())
        self.sessions = int(events["session_id"].nunique()) if "session_id" in events else 0
        counts = events["action"].value_counts()
        self.events_per_action = {a: int(counts.get(a, 0)) for a in ACTIONS if counts.get(a, 0)}
        if len(events):
            self.time_start = events["timestamp"].min().isoformat()
            self.time_end = events["timestamp"].max().isoformat()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EventLog:
    """The canonical events, the optional catalog, and the report of how they were read."""

    events: pd.DataFrame
    catalog: pd.DataFrame | None
    report: DataReport


def _arrow(values: pd.Series) -> pa.Array:
    return pa.array(values, from_pandas=True)


def finalize_events(df: pd.DataFrame) -> pd.DataFrame:
    """Enforce canonical dtypes and the stable ``(user_id, timestamp, original order)`` sort.

    ``df`` must hold the canonical columns (``session_id`` may be missing: it is then all null);
    extra columns are kept after them.

    >>> raw = pd.DataFrame({"user_id": ["2", "1", "1"], "item_id": ["a", "b", "c"],
    ...     "action": ["view", "cart", "view"],
    ...     "timestamp": pd.to_datetime([5, 9, 9], unit="s", utc=True)})
    >>> finalize_events(raw)[["user_id", "item_id", "action"]].values.tolist()
    [['1', 'b', 'cart'], ['1', 'c', 'view'], ['2', 'a', 'view']]
    """
    out = df.copy()
    if "session_id" not in out:
        out["session_id"] = pd.Series(pd.NA, index=out.index, dtype=STRING_DTYPE)
    for col in ("user_id", "item_id", "session_id"):
        out[col] = out[col].astype(STRING_DTYPE)
    out["action"] = out["action"].astype(ACTION_DTYPE)
    ts = out["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts, utc=True)
    out["timestamp"] = ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    extras = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    out = out[list(CANONICAL_COLUMNS) + extras]
    # pyarrow's sort is stable and ~10x faster than pandas' on millions of string keys:
    # equal (user, time) keep their original order
    order = pc.sort_indices(pa.table({"u": _arrow(out["user_id"]), "t": _arrow(out["timestamp"])}),
                            sort_keys=[("u", "ascending"), ("t", "ascending")])
    return out.take(order.to_numpy()).reset_index(drop=True)


def session_starts(user_code: np.ndarray, ts_ns: np.ndarray, gap_minutes: float,
                   session_code: np.ndarray | None = None) -> np.ndarray:
    """True on the first event of each visit, for events sorted by (user, time): the one session
    rule. A visit starts at a user's first event and where the session id changes; where an
    event has no session id (``session_code`` < 0, or no codes at all), after a pause longer
    than ``gap_minutes`` (the recipe's ``data.session_gap_minutes``).

    >>> m = 60 * 10**9  # a minute in ns
    >>> session_starts(np.array([0, 0, 0, 1]), np.array([0, 20, 90, 100]) * m, 30).tolist()
    [True, False, True, True]
    >>> session_starts(np.array([0, 0, 0]), np.array([0, 5, 90]) * m, 30, np.array([4, 7, 7])).tolist()
    [True, True, False]
    """
    n = len(user_code)
    if n == 0:
        return np.zeros(0, bool)
    user_code, ts_ns = np.asarray(user_code), np.asarray(ts_ns, np.int64)
    new = np.r_[True, user_code[1:] != user_code[:-1]]
    pause = np.r_[True, np.diff(ts_ns) > int(gap_minutes * 60e9)]
    if session_code is None:
        return new | pause
    session_code = np.asarray(session_code)
    changed = np.r_[True, session_code[1:] != session_code[:-1]]
    no_id = session_code < 0
    return new | np.where(no_id, pause | ~np.r_[True, no_id[:-1]], changed)


def derive_sessions(user_id: pd.Series, timestamp: pd.Series, gap_minutes: float) -> pd.Series:
    """Session ids ``"<user>-<k>"`` (k = 1, 2, … per user) for events sorted by (user, time).

    A new session starts at a user's first event and after every gap longer than
    ``gap_minutes``; the user prefix keeps ids unique across users.

    >>> ts = pd.to_datetime(["2024-01-01 10:00", "2024-01-01 10:20", "2024-01-01 11:30",
    ...                      "2024-01-01 10:00"], utc=True)
    >>> derive_sessions(pd.Series(["a", "a", "a", "b"]), pd.Series(ts), 30).tolist()
    ['a-1', 'a-1', 'a-2', 'b-1']
    """
    n = len(user_id)
    if n == 0:
        return pd.Series([], dtype=STRING_DTYPE)
    codes, _ = pd.factorize(user_id)
    new_user = np.r_[True, codes[1:] != codes[:-1]]
    new = session_starts(codes, timestamp.dt.as_unit("ns").array.asi8, gap_minutes)
    k = np.cumsum(new)  # global session counter
    run = np.cumsum(new_user) - 1  # index of the user's block
    local = k - k[np.flatnonzero(new_user)][run] + 1  # 1, 2, … within each user
    ids = pc.binary_join_element_wise(_arrow(user_id.astype(STRING_DTYPE)).cast(pa.large_string()),
                                      pa.array(local).cast(pa.large_string()),
                                      pa.scalar("-", pa.large_string()))
    return pd.Series(pd.arrays.ArrowStringArray(ids), index=user_id.index,
                     dtype=STRING_DTYPE)


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


def _aligned(values: pd.Series, index: pd.Index, name: str) -> pd.Series:
    """``values`` checked to carry ``index`` before it is assigned into a frame by label.

    Rows dropped by earlier checks leave gaps in the frame's index; a parsed column on a fresh
    0..n-1 index would be aligned by label, silently giving every row after the first gap
    another row's value (and NaT/NA to the last ones). That is a bug in the parser, so it fails
    loudly here instead of corrupting events.
    """
    if not values.index.equals(index):
        raise AssertionError(f"parsed column {name!r} lost its row index ({len(values)} values, "
                             f"{len(index)} rows): a parser in evtlm.ingest.values must keep its input's index")
    return values


class Ingest:
    """One read: the resolved file, its `DataReport`, and the steps from raw table to `EventLog`.

    `read_events` chains ``read -> to_events -> finish``; presets with their own file layouts
    (`evtlm.ingest.presets`) transform the raw table in between and reuse the same checks.
    """

    def __init__(self, cfg: DataConfig, base_dir: str | Path | None = None) -> None:
        if cfg.path is None:
            raise DataError("data.path is not set", where="data",
                            fix="name the event log in data.path (or leave it unset to use the synthetic "
                            "shop through evtlm.ingest.presets.load_event_log)")
        self.cfg = cfg
        self.base_dir = base_dir
        self.sources: list[Source] = find_sources(cfg.path, base_dir)
        given = Path(cfg.path).expanduser()
        # the log's own path: its file, or the folder / glob naming its parts
        self.path = self.sources[0].path if len(self.sources) == 1 else (
            given if given.is_absolute() or base_dir is None else Path(base_dir) / given)
        self.report = DataReport(source=describe(self.sources, self.path))
        self._units: dict[str, str] = {}  # timestamp column -> the unit its first chunk was read in

    def roles(self) -> dict[str, str]:
        """Recipe path -> raw column for every column the mapping needs."""
        c = self.cfg.columns
        out = {"data.columns.user": c.user, "data.columns.timestamp": c.timestamp}
        if c.item:
            out["data.columns.item"] = c.item
        if c.action and self.cfg.constant_action is None:
            out["data.columns.action"] = c.action
        if c.session:
            out["data.columns.session"] = c.session
        out.update({f"data.columns.extra.{k}": v for k, v in c.extra.items()})
        return out

    def read(self, path: str | Path | None = None, roles: dict[str, str] | None = None, *,
             what: str = "data.path") -> RawTable:
        """Read a table (the main log by default, all its parts) after checking that every role's
        column exists in every part."""
        parts, fmt, names, delim, roles = self._plan(path, roles, what)
        malformed = self.report.dropped.get(MALFORMED, 0)
        table = read_table(parts, fmt=fmt, delimiter=delim, has_header=self.cfg.has_header, names=names,
                           wanted=list(dict.fromkeys(roles.values())), on_bad_rows=self.cfg.on_bad_rows,
                           report=self.report, encoding=self.cfg.encoding,
                           source=describe(parts, self.path if path is None else path))
        check_columns(roles, list(table.df.columns), table.source, header=True)  # JSONL: keys known now
        self.report.rows_read += len(table.df) + self.report.dropped.get(MALFORMED, 0) - malformed
        self._record_files(parts)
        return table

    def chunks(self, chunk_rows: int, roles: dict[str, str] | None = None) -> Iterator[RawTable]:
        """The main log in chunks of about ``chunk_rows`` rows (memory: one chunk at a time), with
        the same rows, numbers and counts as `read`: `to_events` per chunk adds up to the whole."""
        parts, fmt, names, delim, roles = self._plan(None, roles, "data.path")
        malformed = self.report.dropped.get(MALFORMED, 0)
        for chunk in iter_chunks(parts, fmt=fmt, delimiter=delim, has_header=self.cfg.has_header, names=names,
                                 wanted=list(dict.fromkeys(roles.values())), on_bad_rows=self.cfg.on_bad_rows,
                                 report=self.report, encoding=self.cfg.encoding, chunk_rows=chunk_rows):
            check_columns(roles, list(chunk.df.columns), chunk.source, header=True)
            self.report.rows_read += len(chunk.df)
            yield chunk
        self.report.rows_read += self.report.dropped.get(MALFORMED, 0) - malformed
        self._record_files(parts)

    def _plan(self, path, roles, what) -> tuple[list[Source], str, list[str], str | None, dict[str, str]]:
        """The parts to read, their format, the first part's columns and delimiter, the roles."""
        cfg = self.cfg
        parts = self.sources if path is None else [Source(resolve_path(path, self.path.parent, what))]
        roles = self.roles() if roles is None else roles
        fmts = {detect_format(p.path) if cfg.format == "auto" or path is not None else cfg.format for p in parts}
        if len(fmts) > 1:
            raise DataError(f"the log's files mix formats ({', '.join(sorted(fmts))})", where=str(self.path),
                            fix="keep one format per log (or set data.format to read every file as one)")
        fmt = fmts.pop()
        first: tuple[list[str], str | None] | None = None
        for part in parts:  # every part must have every mapped column: all are checked before reading
            cols, delim = part_columns(part, fmt, cfg.delimiter, cfg.has_header, cfg.column_names, cfg.encoding)
            check_columns(roles, cols, str(part.path), header=cfg.has_header)
            first = first or (cols, delim)
        assert first is not None
        return parts, fmt, first[0], first[1], roles

    def _record_files(self, parts: list[Source]) -> None:
        if len(parts) > 1 and parts is self.sources:
            self.report.files = [{"path": str(p.path), "rows": p.rows, "first_row": p.first_row} for p in parts]

    def to_events(self, table: RawTable, cfg: DataConfig | None = None) -> pd.DataFrame:
        """Raw table -> canonical columns (+ extras, + ``_row``); bad rows raise or are dropped.

        ``cfg`` overrides the mapping for this table (presets reading several files, or columns
        they computed, e.g. DIGINETICA's purchases).
        """
        cfg = cfg or self.cfg
        c, df = cfg.columns, table.df
        bad = BadRows(table, cfg.on_bad_rows, self.report)
        out = pd.DataFrame({ROW: df[ROW]})
        out["user_id"] = _aligned(clean_ids(df[c.user]), out.index, "user_id")
        out = bad.drop(out, out["user_id"].isna(), reason="empty user id", column=c.user,
                       values=df[c.user], expected="a non-empty id", fix="fill in the ids or check data.columns.user")
        if c.item:
            out["item_id"] = _aligned(clean_ids(df[c.item].loc[out.index]), out.index, "item_id")
            out = bad.drop(out, out["item_id"].isna(), reason="empty item id", column=c.item,
                           values=df[c.item], expected="a non-empty id",
                           fix="fill in the ids or check data.columns.item")
        else:
            out["item_id"] = pd.Series(pd.NA, index=out.index, dtype=STRING_DTYPE)
        raw_ts = df[c.timestamp].loc[out.index]
        parsed = read_timestamps(raw_ts, cfg.timestamp, unit_seen=self._units.get(c.timestamp))
        self._units.setdefault(c.timestamp, parsed.unit)  # later chunks of this column read it the same way
        out["timestamp"] = _aligned(parsed.ts, out.index, "timestamp")
        for check in parsed.checks:  # unparseable, another unit, before 1990, in the future
            keep = pd.Series(check.mask, index=raw_ts.index).loc[out.index]
            out = bad.drop(out, keep, reason=check.reason, column=c.timestamp, values=raw_ts,
                           expected=check.expected, fix=check.fix)
        out = self._actions(out, df, bad, cfg)
        if c.session:
            out["session_id"] = _aligned(clean_ids(df[c.session].loc[out.index]), out.index, "session_id")
        for name, col in c.extra.items():
            raw = df[col].loc[out.index]
            if name in NUMERIC_EXTRAS:
                out[name] = _aligned(to_number(raw), out.index, name)
                blank = raw.isna() | (raw.astype("string").str.strip() == "").fillna(True)
                out = bad.drop(out, out[name].isna() & ~blank, reason=f"non-numeric {name}", column=col,
                               values=raw, expected="a number", fix=f"fix the values or check data.columns.extra.{name}")
            else:
                out[name] = _aligned(clean_ids(raw), out.index, name)
        return out

    def _actions(self, out: pd.DataFrame, df: pd.DataFrame, bad: BadRows, cfg: DataConfig) -> pd.DataFrame:
        if cfg.constant_action is not None:
            out["action"] = cfg.constant_action
            return out
        col = cfg.columns.action
        if col is None:
            raise DataError("no action column and no constant action", where="data.columns.action",
                            fix="set data.columns.action, or data.constant_action (e.g. view) for a log of clicks")
        raw = df[col].loc[out.index]
        canon, dropped, counts = map_actions(raw, cfg.actions, cfg.drop_actions)
        for value, n in counts.items():
            self.report.raw_actions[value] = self.report.raw_actions.get(value, 0) + n
        raw_str = raw.astype("string").str.strip()
        for value in cfg.drop_actions:  # intentional: counted per value, never an error
            mask = dropped & (raw_str == value).fillna(False).to_numpy()
            out = bad.drop(out, mask, reason=f"action {value!r} in data.drop_actions", bad=False)
            canon, dropped, raw_str = canon[~mask], dropped[~mask], raw_str[~mask]
        out = out.assign(action=canon)  # a new frame: out may be a slice of the input (pandas 2 warns)
        if cfg.actions:
            known = ", ".join(f"{k} -> {v}" for k, v in cfg.actions.items())
            expected = f"a value mapped in data.actions ({known})"
        else:
            expected = f"a canonical action ({', '.join(ACTIONS)}), as data.actions is empty"
        seen = ", ".join(repr(v) for v in list(counts)[:12])
        return bad.drop(out, out["action"].isna(), reason="unmapped action value", column=col, values=raw_str,
                        expected=f"{expected}; values in the file: {seen}",
                        fix="map each value in data.actions (e.g. data.actions: {clik: view}) or list it in "
                        "data.drop_actions")

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


def check_columns(roles: dict[str, str], names: list[str], source: str, header: bool = True) -> None:
    """Every mapped column must exist; all the missing ones are reported at once, with hints."""
    if not names:
        return
    missing = {k: v for k, v in roles.items() if v not in names}
    if not missing:
        return
    parts = []
    for key, col in missing.items():
        near = closest(col, names)
        parts.append(f"{col!r} ({key}; " + (f"did you mean {near[0]!r}?)" if near else "no close match)"))
    fix = "set the mapping to one of the file's columns"
    looks_like_data = sum(n.replace(".", "", 1).lstrip("-").isdigit() for n in names) * 2 >= len(names)
    if header and looks_like_data:
        fix = ("the first line looks like data, not a header: set data.has_header: false and "
               "data.column_names (one name per field; validate-data: --no-header --column-names)")
    elif header:
        # (worded exactly as README's troubleshooting example, which tests/test_readme.py compares)
        fix += "; a file without a header line needs data.has_header: false and data.column_names"
    # a column the log may simply not have: say how to declare it absent (only the recipe key
    # was ever shown, so `--item-col ''` / `data.columns.item: null` stayed undiscoverable)
    absent = {"data.columns.item": "a log without items: data.columns.item: null (validate-data: --item-col '')",
              "data.columns.action": "a log without actions: data.columns.action: null and data.constant_action "
                                     "(validate-data: --action-col '' --constant-action view)",
              "data.columns.session": "no session column: data.columns.session: null (validate-data: --session-col '')"}
    if not (header and looks_like_data):  # (no header at all: absent columns are not the point)
        fix += "".join(f"; {absent[k]}" for k in missing if k in absent)
    from evtlm.ingest.presets import suggest_preset  # lazy: evtlm.ingest.presets imports this module

    preset = suggest_preset(names, header=header)
    if preset:
        fix = f"{preset}; or {fix}"
    raise DataError(f"{'column' if len(missing) == 1 else 'columns'} not found: {', '.join(parts)}",
                    where=f"{source} (columns: {', '.join(names[:40])})", fix=fix)


def read_catalog(cfg: CatalogConfig, base_dir: str | Path | None, on_bad_rows: str = "error",
                 report: DataReport | None = None) -> pd.DataFrame:
    """An item catalog: ``item_id`` + the canonical fields of ``cfg.fields`` (all columns if empty)."""
    path = resolve_path(cfg.path, base_dir, "data.catalog.path")
    report = report if report is not None else DataReport(source=str(path))
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    names, delim = table_columns(path, fmt, cfg.delimiter, True, None)
    fields = dict(cfg.fields) or {n: n for n in names if n != cfg.item}
    roles = {"data.catalog.item": cfg.item} | {f"data.catalog.fields.{k}": v for k, v in fields.items()}
    check_columns(roles, names, str(path))
    table = read_table(path, fmt=fmt, delimiter=delim, has_header=True, names=names,
                       wanted=list(dict.fromkeys(roles.values())), on_bad_rows=on_bad_rows, report=report)
    df = table.df
    out = pd.DataFrame({ROW: df[ROW], "item_id": clean_ids(df[cfg.item])})
    out = BadRows(table, on_bad_rows, report).drop(out, out["item_id"].isna(), reason="empty catalog item id",
                                                   column=cfg.item, values=df[cfg.item], expected="a non-empty id",
                                                   fix="fill in the ids or check data.catalog.item")
    for name, col in fields.items():
        raw = df[col].loc[out.index]
        out[name] = to_number(raw) if name in NUMERIC_EXTRAS else clean_ids(raw)
    return finalize_catalog(out.drop(columns=[ROW]), report)


def finalize_catalog(catalog: pd.DataFrame, report: DataReport | None = None) -> pd.DataFrame:
    """One row per item (the first one read wins), ``item_id`` as a string column."""
    catalog = catalog.assign(item_id=catalog["item_id"].astype(STRING_DTYPE))
    dup = catalog["item_id"].duplicated()
    if dup.any() and report is not None:
        report.notes.append(f"catalog: {int(dup.sum()):,} repeated item ids, the first row of each kept")
    return catalog.loc[~dup].reset_index(drop=True)


def read_events(cfg: DataConfig, base_dir: str | Path | None = None) -> EventLog:
    """Read ``cfg.path`` through the column mapping of ``cfg`` (presets: `evtlm.ingest.presets`)."""
    ingest = Ingest(cfg, base_dir)
    events = ingest.to_events(ingest.read())
    catalog = None
    if cfg.catalog is not None:
        catalog = read_catalog(cfg.catalog, base_dir, cfg.on_bad_rows, ingest.report)
    return ingest.finish([events], catalog)
