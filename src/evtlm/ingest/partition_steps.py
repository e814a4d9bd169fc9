"""The steps every engine runs to cut a log by user (pure: no shared state): `cut_part` per input
part (read in chunks, check and map every row, hash each row's user to a shard), `merge_cuts` of
the parts' reports, `clean_shard` / `complete_shard` per shard, `finish_report`; each returns its
own report, merged in order. `evtlm.ingest.partition_local` runs them one after another and
`evtlm.ingest.partition_dask` as Dask tasks; this module must not choose an engine, nor import
one or `evtlm.ingest.partition`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.ingest.canonical import NUMERIC_EXTRAS
from evtlm.ingest.chunks import iter_chunks
from evtlm.ingest.column_checks import check_columns
from evtlm.ingest.data_report import DataReport
from evtlm.ingest.events import Ingest
from evtlm.ingest.partition_folder import _canonical, _write_tail, shard_of
from evtlm.ingest.partition_fs import Folder
from evtlm.ingest.partition_summary import _Summary
from evtlm.ingest.readers import MALFORMED, ROW, RawTable
from evtlm.ingest.sources import Source


def _schema(events: pd.DataFrame) -> pa.Schema:
    """The raw shards' columns: fixed types, so a chunk whose optional column is all empty
    (no session ids, no price) writes the same schema as the others."""
    fields = [pa.field(ROW, pa.int64()), pa.field("timestamp", pa.timestamp("ns", tz="UTC"))]
    for col in events.columns:
        if col in (ROW, "timestamp"):
            continue
        fields.append(pa.field(col, pa.float64() if col in NUMERIC_EXTRAS else pa.string()))
    return pa.schema(fields)


def _arrow_chunk(events: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    cols = {}
    for f in schema:
        values = events[f.name]
        if pa.types.is_string(f.type):
            values = values.astype(object).where(values.notna(), None)
        cols[f.name] = pa.array(values, type=f.type, from_pandas=True)
    return pa.table(cols, schema=schema)


@dataclass
class ReadPlan:
    """What reading any one part needs, fixed before the parts are read: the first part's
    columns and delimiter, the roles, and the unit each timestamp column's first chunk was read
    in (a later part must read its column the same way, as one sequential read would)."""

    fmt: str
    names: list[str]
    delimiter: str | None
    roles: dict[str, str]
    chunk_rows: int
    shards: int
    units: dict[str, str]


@dataclass
class PartCut:
    """One part read, checked and hashed to shards: its data rows (malformed ones included), the
    shards it gave rows to, its report (row numbers counted from the part's first row) and schema."""

    rows: int
    shards: list[int]
    report: DataReport
    schema: pa.Schema | None
    units: dict[str, str]


def plan_read(ingest: Ingest, chunk_rows: int, shards: int) -> ReadPlan:
    """Every part's columns checked (`Ingest`'s plan), before any is read."""
    _, fmt, names, delim, roles = ingest._plan(None, None, "data.path")
    return ReadPlan(fmt, names, delim, roles, chunk_rows, shards, {})


def _scratch(ingest: Ingest, units: dict[str, str] | None = None) -> Ingest:
    """A copy of ``ingest`` with a report of its own: a step's counts, merged in order later."""
    ing = copy.copy(ingest)
    ing.report = DataReport(source=ingest.report.source)
    ing._units = dict(units or {})
    return ing


def _part_chunks(ing: Ingest, part: Source, plan: ReadPlan) -> Iterator[RawTable]:
    cfg = ing.cfg
    return iter_chunks([part], fmt=plan.fmt, delimiter=plan.delimiter, has_header=cfg.has_header, names=plan.names,
                       wanted=list(dict.fromkeys(plan.roles.values())), on_bad_rows=cfg.on_bad_rows,
                       report=ing.report, encoding=cfg.encoding, chunk_rows=plan.chunk_rows)


def first_units(ingest: Ingest, plan: ReadPlan) -> dict[str, str]:
    """The timestamp units a sequential read fixes on the log's first chunk (one chunk is read)."""
    ing = _scratch(ingest)
    for part in ingest.sources:
        for chunk in _part_chunks(ing, Source(part.path, dict(part.partition)), plan):
            ing.to_events(chunk)
            return dict(ing._units)
    return {}


def cut_part(ingest: Ingest, part: Source, plan: ReadPlan, write, progress=None) -> PartCut:
    """Read one part in chunks, check and map each (`Ingest.to_events`) and hand every shard's
    rows to ``write(k, table)``, in file order. Row numbers start at 1 in this part."""
    ing = _scratch(ingest, plan.units)
    part = Source(part.path, dict(part.partition))
    schema: pa.Schema | None = None
    written: set[int] = set()
    for chunk in _part_chunks(ing, part, plan):
        check_columns(plan.roles, list(chunk.df.columns), chunk.source, header=True)
        ing.report.rows_read += len(chunk.df)
        events = ing.to_events(chunk)
        if progress is not None:
            progress(len(chunk.df))
        if len(events) == 0:
            continue
        schema = schema or _schema(events)
        where = shard_of(events["user_id"], plan.shards)
        table = _arrow_chunk(events, schema)
        order = np.argsort(where, kind="stable")  # rows of one shard together, file order kept
        bounds = np.searchsorted(where[order], np.arange(plan.shards + 1))
        for k in range(plan.shards):
            lo, hi = bounds[k], bounds[k + 1]
            if hi > lo:
                write(k, table.take(order[lo:hi]))
                written.add(k)
    ing.report.rows_read += ing.report.dropped.get(MALFORMED, 0)
    return PartCut(part.rows, sorted(written), ing.report, schema, dict(ing._units))


def merge_cuts(ingest: Ingest, cuts: list[PartCut]) -> list[int]:
    """The parts' reports into ``ingest.report`` in part order, row numbers shifted to the whole
    log's; the offset of each part's rows (what its ``_row`` values need adding)."""
    offsets, next_row = [], 1
    for part, cut in zip(ingest.sources, cuts):
        part.first_row, part.rows = next_row, cut.rows
        offsets.append(next_row - 1)
        _absorb(ingest.report, cut.report, shift=next_row - 1)
        next_row += cut.rows
    ingest._record_files(ingest.sources)
    return offsets


def _absorb(report: DataReport, step: DataReport, shift: int = 0) -> None:
    """Add a step's counts to ``report`` as if its rows had been dropped there, in order."""
    report.rows_read += step.rows_read
    report.duplicates_removed += step.duplicates_removed
    for reason, n in step.dropped.items():
        report.dropped[reason] = report.dropped.get(reason, 0) + n
        rows = set(report.dropped_rows.get(reason, [])) | {r + shift for r in step.dropped_rows.get(reason, [])}
        report.dropped_rows[reason] = sorted(rows)[:5]
    for value, n in step.raw_actions.items():
        report.raw_actions[value] = report.raw_actions.get(value, 0) + n
    report.notes.extend(step.notes)


def shifted(table: pa.Table, offset: int) -> pa.Table:
    """A piece of a part with its ``_row`` numbers in the whole log's numbering."""
    if offset == 0:
        return table
    i = table.schema.get_field_index(ROW)
    return table.set_column(i, table.schema.field(i), pc.add(table.column(i), pa.scalar(offset, pa.int64())))


def raw_events(tables: list[pa.Table], schema: pa.Schema) -> pd.DataFrame:
    """A shard's raw rows (its pieces in part order) as canonical columns."""
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return _canonical(table.to_pandas())


def clean_shard(ingest: Ingest, raw: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, DataReport]:
    """`Ingest.clean` of one shard: the rows left, the duplicates' row numbers, the step's report."""
    ing = _scratch(ingest)
    df, dup = ing.clean([raw])
    return df, dup, ing.report


def complete_shard(ingest: Ingest, df: pd.DataFrame, threshold: int | None,
                   catalog: pd.DataFrame | None) -> tuple[pd.DataFrame, _Summary, DataReport]:
    """The ``max_users`` subset and sessions of one cleaned shard: its events, summary and report."""
    ing = _scratch(ingest)
    events = ing.complete(ing.keep_users(df, threshold))
    summary = _Summary(derived_sessions=ingest.cfg.columns.session is None)
    summary.add(events, catalog)
    return events, summary, ing.report


def write_clean(folder: Folder, k: int, df: pd.DataFrame) -> None:
    folder.write_table(f"raw/clean-{k:05d}.parquet", pa.Table.from_pandas(df, preserve_index=False))


def read_clean(folder: Folder, k: int) -> pd.DataFrame:
    return _canonical(folder.read_table(f"raw/clean-{k:05d}.parquet").to_pandas())


def user_keys(df: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_array(np.asarray(df["user_id"].unique(), dtype=object))


def finish_report(ingest: Ingest, tmp: Folder, dups: list[np.ndarray], summary: _Summary,
                  catalog: pd.DataFrame | None) -> None:
    """The merged report's last lines (duplicates, totals, catalog), then report.json."""
    ingest.note_duplicates(np.concatenate(dups) if dups else np.array([], dtype=np.int64))
    ingest.check_not_empty(summary.rows)
    summary.fill(ingest.report)
    ingest.note_catalog(catalog, missing=summary.missing)
    _write_tail(tmp, ingest.report, catalog)
