"""Event ingestion: any log in, one canonical table out.

The canonical table (one row per event, whatever the source format: `evtlm.ingest.canonical`)
has the columns ``user_id``, ``timestamp``, ``action``, ``item_id``, ``session_id`` and optional
extras, rows sorted stably by ``(user_id, timestamp, original order)``; the optional item catalog
(`evtlm.ingest.item_catalog`) is a table ``item_id -> title, category, brand, price, …``.

`read_events` reads one file through the mapping in a `DataConfig` (no preset logic; presets
live in `evtlm.ingest.presets`, whose `load_event_log` is what the pipeline calls). The steps, each
vectorised: read the wanted columns as strings (`evtlm.ingest.readers`) -> check ids, timestamps (parsed,
and plausible: 1990 to tomorrow, one unit per column; see `evtlm.ingest.values.read_timestamps`) and
actions, naming bad rows by their 1-based data row number (`on_bad_rows: error` raises,
``skip`` drops and counts; the kept rows keep their own values, as every parsed column is
assigned on the index of the rows still kept) -> drop exact duplicates -> ``data.start``/``data.end`` ->
``max_users`` -> sort -> derive sessions by inactivity gap.

This module owns reading and mapping (`Ingest`, `read_events`); the table's shape, the report,
sessions, the column check, the catalog and the finishing steps live in the siblings named here,
which must not import it.

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
from pathlib import Path

import pandas as pd

from evtlm.errors import DataError
from evtlm.ingest.chunks import iter_chunks, part_columns, read_table
from evtlm.ingest.readers import MALFORMED, ROW, BadRows, RawTable, detect_format, resolve_path
from evtlm.recipe import ACTIONS, DataConfig
from evtlm.ingest.sources import Source, describe, find_sources
from evtlm.ingest.values import clean_ids, map_actions, read_timestamps, to_number
from evtlm.ingest.canonical import NUMERIC_EXTRAS, STRING_DTYPE, EventLog
from evtlm.ingest.column_checks import check_columns
from evtlm.ingest.data_report import DataReport
from evtlm.ingest.finish_steps import FinishSteps
from evtlm.ingest.item_catalog import read_catalog

# moved to siblings, importable from here as before
from evtlm.ingest.canonical import ACTION_DTYPE, CANONICAL_COLUMNS, finalize_events  # noqa: F401
from evtlm.ingest.finish_steps import user_hashes  # noqa: F401
from evtlm.ingest.item_catalog import finalize_catalog  # noqa: F401
from evtlm.ingest.sessions import derive_sessions, session_starts  # noqa: F401


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


class Ingest(FinishSteps):
    """One read: the resolved file, its `DataReport`, and the steps from raw table to `EventLog`.

    `read_events` chains ``read -> to_events -> finish``; presets with their own file layouts
    (`evtlm.ingest.presets`) transform the raw table in between and reuse the same checks. The
    steps of `finish` are inherited from `evtlm.ingest.finish_steps.FinishSteps`.
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


def read_events(cfg: DataConfig, base_dir: str | Path | None = None) -> EventLog:
    """Read ``cfg.path`` through the column mapping of ``cfg`` (presets: `evtlm.ingest.presets`)."""
    ingest = Ingest(cfg, base_dir)
    events = ingest.to_events(ingest.read())
    catalog = None
    if cfg.catalog is not None:
        catalog = read_catalog(cfg.catalog, base_dir, cfg.on_bad_rows, ingest.report)
    return ingest.finish([events], catalog)
