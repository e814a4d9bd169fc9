"""An event log larger than memory, partitioned by user on disk: `partition_events`.

Every stage after reading depends only on one user's events (plus global vocabularies), so a
log is split into shards by a stable hash of the user id and each shard is a log of its own.
Memory is bounded by the chunk and the shard size, not by the log:

1. **Read in chunks** (`evtlm.ingest.events.Ingest.chunks`: files, globs and folders; CSV, Parquet
   and JSON Lines streamed by pyarrow), each chunk checked and mapped (`Ingest.to_events`) and
   its rows appended to the shard of their user (``hash(user) % shards``).
2. **Finish each shard**: the same steps as an in-memory read (`Ingest.finish`): sort, exact
   duplicates, ``data.start`` / ``data.end``, the ``data.max_users`` subset (a global hash
   threshold, from every shard's users), sessions.

The shards together hold exactly the events of `evtlm.ingest.presets.load_event_log` (each user's
rows in the same order), and ``report.json`` is its data report: counts add up over chunks and
shards, row numbers are the whole log's. Engine: pyarrow's streaming readers and Parquet writer
(already a dependency; a log of 100M rows needs no query engine to be cut by user). Presets that
build their catalog from the whole table (``online_retail``, ``diginetica``, ``rees46``) and the
synthetic shop are read in memory first (small logs), then cut the same way.

Engines: the two steps are functions of their inputs (`cut_part` per input part, `clean_shard` /
`complete_shard` per shard; each returns its own report, merged in order), so the local engine
runs them one after another here and ``engine="dask"`` runs them as Dask tasks
(`evtlm.ingest.partition_dask`), writing the same bytes. ``out`` may be an fsspec URL.

Folder layout (written to a temporary sibling and renamed into place when complete, so a
partial folder is never read)::

    manifest.json        format, shards, placement, events and users per shard, how it was read
    report.json          the data report (`evtlm.ingest.events.DataReport`)
    shard-00000.parquet  canonical events (`evtlm.ingest.events`) of the users placed there, by (user, time)
    catalog.parquet      the item catalog, when the log has one

>>> import tempfile, pathlib
>>> from evtlm.recipe import DataConfig, SyntheticConfig
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> part = partition_events(DataConfig(synthetic=SyntheticConfig(users=40, days=14)), d / "shop", shards=4)
>>> part.shards, sum(part.manifest["events"]) == part.report.rows_kept
(4, True)
>>> shard = part.shard(2)
>>> bool((pd.util.hash_array(shard["user_id"].to_numpy(dtype=object)) % np.uint64(4) == 2).all())
True
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from evtlm.ingest.chunks import iter_chunks
from evtlm.errors import DataError
from evtlm.ingest.canonical import ACTION_DTYPE, NUMERIC_EXTRAS, STRING_DTYPE, EventLog
from evtlm.ingest.column_checks import check_columns
from evtlm.ingest.data_report import DataReport
from evtlm.ingest.events import Ingest
from evtlm.ingest.item_catalog import finalize_catalog, read_catalog
from evtlm.ingest.partition_fs import MANIFEST, Folder, filesystem
from evtlm.ingest.readers import MALFORMED, ROW, RawTable
from evtlm.recipe import DataConfig
from evtlm.ingest.sources import Source

FORMAT = 1
PLACEMENT = "pandas.util.hash_array(user_id) % shards"  # stable across runs, machines and versions of evtlm

__all__ = ["Partition", "partition_events", "read_partition", "shard_of"]


def shard_of(user_id: pd.Series | np.ndarray, shards: int) -> np.ndarray:
    """The shard of each user id (`PLACEMENT`)."""
    ids = user_id.to_numpy(dtype=object) if isinstance(user_id, pd.Series) else np.asarray(user_id, dtype=object)
    return (pd.util.hash_array(ids) % np.uint64(shards)).astype(np.int64)


@dataclass
class Partition:
    """A complete partition folder: its manifest, data report and shards (``fs``: the fsspec
    filesystem of a folder given as a URL, None for a local one)."""

    path: Path | str
    manifest: dict[str, Any]
    report: DataReport
    fs: Any = None

    @property
    def shards(self) -> int:
        return int(self.manifest["shards"])

    def _folder(self) -> Folder:
        return Folder(self.path, self.fs)

    def shard(self, k: int) -> pd.DataFrame:
        """The canonical events of shard ``k`` (dtypes as `evtlm.ingest.events.finalize_events` gives them)."""
        if not 0 <= k < self.shards:
            raise IndexError(f"shard {k} of a partition of {self.shards}")
        return _canonical(self._folder().read_table(_shard_name(k)).to_pandas())

    def iter_shards(self, ranks: tuple[int, int] = (0, 1)) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(k, events)`` of the shards of process ``rank`` of ``world`` (``ranks``): shard k
        belongs to rank k % world, so each process reads only its own."""
        rank, world = ranks
        for k in range(rank, self.shards, world):
            yield k, self.shard(k)

    @property
    def catalog(self) -> pd.DataFrame | None:
        folder = self._folder()
        return finalize_catalog(folder.read_table("catalog.parquet").to_pandas()) if folder.exists("catalog.parquet") else None

    def event_log(self) -> EventLog:
        """Every shard in one `EventLog` (memory: the whole log), users in shard order."""
        events = pd.concat([self.shard(k) for k in range(self.shards)], ignore_index=True)
        return EventLog(events, self.catalog, self.report)


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.parquet"


def read_partition(path: str | Path) -> Partition:
    """A partition folder written by `partition_events` (a local path or an fsspec URL); a clear
    error when it is not one, or was never completed."""
    folder = Folder.at(path)
    meta = folder.file(MANIFEST)
    if not folder.exists(MANIFEST):
        raise DataError(f"{str(path)!r} is not a partition folder (no {MANIFEST})", where=str(path),
                        fix="write one with `evtlm partition RECIPE --out DIR` (a partial one is never renamed into place)")
    manifest = json.loads(folder.read_text(MANIFEST))
    if manifest.get("format") != FORMAT:
        raise DataError(f"partition format {manifest.get('format')!r}, this evtlm reads {FORMAT}", where=str(meta),
                        fix="partition the log again with this version")
    report = DataReport(**json.loads(folder.read_text("report.json")))
    return Partition(folder.root, manifest, report, folder.fs)


# ------------------------------------------------------------------------------------ writing
ENGINES = ("local", "dask")


def partition_events(cfg: DataConfig, out: str | Path, shards: int, *, base_dir: str | Path | None = None,
                     chunk_rows: int = 1_000_000, progress: bool = False, overwrite: bool = False,
                     engine: str = "local", scheduler: Any = None, workers: int | None = None) -> Partition:
    """Cut the log of ``cfg`` into ``shards`` shards by user under ``out`` (see the module doc).

    ``engine`` ``local`` reads the parts one after another in this process; ``dask`` runs the
    same steps as Dask tasks, a part and then a shard at a time (`evtlm.ingest.partition_dask`;
    ``scheduler``: a scheduler address, a ``distributed.Client``, or None for a local cluster of
    ``workers`` processes).
    Both write the same bytes. ``out`` may be an fsspec URL (``s3://bucket/parts``, ``memory://p``).
    """
    from evtlm.ingest.presets import PRESETS, resolve_data_config

    if shards < 1:
        raise DataError(f"shards = {shards}", where="evtlm partition --shards", fix="give at least 1")
    if engine not in ENGINES:
        raise DataError(f"engine {engine!r}", where="evtlm partition --engine", fix=f"one of {', '.join(ENGINES)}")
    if isinstance(cfg.path, str) and cfg.path.startswith("file://"):
        cfg = cfg.model_copy(update={"path": str(filesystem(cfg.path)[1])})
    target = Folder.at(out)
    if target.exists() and not overwrite:
        raise DataError(f"{str(out)!r} exists", where="evtlm partition --out",
                        fix="choose a new folder, or pass --overwrite to replace it")
    runner = None
    if engine == "dask":
        from evtlm.ingest.partition_dask import DaskRunner

        runner = DaskRunner(scheduler, workers)  # fails here, before anything is written, without the extra or a scheduler
    try:
        tmp = target.temporary()
        try:
            resolved = resolve_data_config(cfg) if cfg.preset else cfg
            preset = resolved.preset
            # a preset with a reader of its own builds its catalog from the whole table; evtlm_shop's
            # reader only finds the catalog beside the events, so it streams like a plain mapping
            whole = preset is not None and PRESETS[preset].reader is not None and preset != "evtlm_shop"
            if cfg.path is None and cfg.preset is None or whole:
                how = "in memory (the synthetic shop)" if cfg.path is None else (
                    f"in memory (preset {preset!r} builds its catalog from the whole table), then cut by user")
                meta = _cut_in_memory(cfg, base_dir, tmp, shards, progress)
            else:
                if preset == "evtlm_shop":
                    from evtlm.ingest.preset_readers import evtlm_shop_config

                    resolved = evtlm_shop_config(resolved, base_dir)
                how = f"in chunks of {chunk_rows:,} rows"
                ingest = Ingest(resolved, base_dir)
                if runner is None:
                    meta = _cut_streaming(ingest, tmp, shards, chunk_rows, progress)
                else:
                    meta = runner.cut(ingest, tmp, shards, chunk_rows, progress)
            manifest = {"format": FORMAT, "shards": shards, "placement": PLACEMENT, "read": how, **meta,
                        "source": json.loads(tmp.read_text("report.json"))["source"]}
            tmp.write_text(MANIFEST, json.dumps(manifest, indent=1) + "\n")
            target.replace_with(tmp)
        except BaseException:
            tmp.remove()
            raise
    finally:
        if runner is not None:
            runner.close()
    return read_partition(out)


def _cut_in_memory(cfg: DataConfig, base_dir, tmp: Folder, shards: int, progress: bool) -> dict[str, Any]:
    from evtlm.ingest.presets import load_event_log

    log = load_event_log(cfg, base_dir)
    where = shard_of(log.events["user_id"], shards)
    counts = _write_shards(tmp, shards, lambda k: log.events.loc[where == k], progress)
    _write_tail(tmp, log.report, log.catalog)
    return counts


def _write_shards(tmp: Folder, shards: int, events_of, progress: bool) -> dict[str, list[int]]:
    from tqdm.auto import tqdm

    events, users = [], []
    for k in tqdm(range(shards), desc="write shards", unit="shard", disable=not progress):
        ev = events_of(k)
        write_shard(tmp, k, ev.reset_index(drop=True))
        events.append(len(ev))
        users.append(int(ev["user_id"].nunique()))
    return {"events": events, "users": users}


def write_shard(folder: Folder, k: int, events: pd.DataFrame) -> None:
    """Shard ``k``'s canonical events, as every engine writes them (one Parquet writer setting)."""
    folder.write_table(_shard_name(k), pa.Table.from_pandas(events, preserve_index=False))


def _write_tail(tmp: Folder, report: DataReport, catalog: pd.DataFrame | None) -> None:
    if catalog is not None:
        tmp.write_table("catalog.parquet", pa.Table.from_pandas(catalog, preserve_index=False))
    tmp.write_text("report.json", json.dumps(report.to_dict(), indent=1, default=str) + "\n")


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


# ------------------------------------------------ the steps every engine runs (pure: no shared state)
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


# ------------------------------------------------------------------- the local engine: one process
def _cut_streaming(ingest: Ingest, tmp: Folder, shards: int, chunk_rows: int, progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    cfg = ingest.cfg
    plan = plan_read(ingest, chunk_rows, shards)
    writers: dict[int, pq.ParquetWriter] = {}
    cuts: list[PartCut] = []
    bar = tqdm(total=_known_rows(ingest), desc="read + cut by user", unit="row", unit_scale=True,
               disable=not progress)
    try:
        for part in ingest.sources:  # one after another: each part's rows follow the last part's
            offset = sum(c.rows for c in cuts)

            def write(k: int, table: pa.Table, offset=offset) -> None:
                if k not in writers:
                    writers[k] = tmp.writer(f"raw/{_shard_name(k)}", table.schema)
                writers[k].write_table(shifted(table, offset))

            cuts.append(cut_part(ingest, part, plan, write, progress=bar.update))
            plan.units = plan.units or cuts[-1].units
            bar.set_postfix(shards_open=len(writers))
    finally:
        for w in writers.values():
            w.close()
        bar.close()
    merge_cuts(ingest, cuts)
    schema = next((c.schema for c in cuts if c.schema is not None), None)
    if schema is None:
        ingest.check_not_empty(0)
    catalog = read_catalog(cfg.catalog, ingest.base_dir, cfg.on_bad_rows, ingest.report) if cfg.catalog else None

    def raw_shard(k: int) -> pd.DataFrame:
        name = f"raw/{_shard_name(k)}"
        return raw_events([tmp.read_table(name)] if k in writers else [], schema)

    subset = cfg.max_users is not None
    dups: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    bar = tqdm(total=shards * (2 if subset else 1), desc="finish shards", unit="shard", disable=not progress)
    if subset:  # the subset is chosen among every user left after the filters: all shards first
        for k in range(shards):
            df, dup, step = clean_shard(ingest, raw_shard(k))
            _absorb(ingest.report, step)
            dups.append(dup)
            hashes.append(user_keys(df))
            write_clean(tmp, k, df)
            bar.update()
    threshold = ingest.choose_users(np.concatenate(hashes)) if subset else None
    merged = _Summary(derived_sessions=cfg.columns.session is None)
    counts: dict[str, list[int]] = {"events": [], "users": []}
    for k in range(shards):
        if subset:
            df = read_clean(tmp, k)
        else:
            df, dup, step = clean_shard(ingest, raw_shard(k))
            _absorb(ingest.report, step)
            dups.append(dup)
        events, summary, step = complete_shard(ingest, df, threshold, catalog)
        _absorb(ingest.report, step)
        merged.merge(summary)
        write_shard(tmp, k, events)
        counts["events"].append(len(events))
        counts["users"].append(int(events["user_id"].nunique()))
        bar.update()
    bar.close()
    tmp.remove("raw")
    finish_report(ingest, tmp, dups, merged, catalog)
    return counts


def _known_rows(ingest: Ingest) -> int | None:
    """Rows of a Parquet log from its footers (an ETA); None for text, whose length is unknown."""
    if all(s.path.name.lower().endswith((".parquet", ".pq")) for s in ingest.sources):
        return sum(pq.ParquetFile(s.path).metadata.num_rows for s in ingest.sources)
    return None


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Types as `evtlm.ingest.events.finalize_events` gives them, after a Parquet round trip."""
    for col in ("user_id", "item_id", "session_id"):
        if col in df:
            df[col] = df[col].astype(STRING_DTYPE)
    if "action" in df:
        df["action"] = df["action"].astype(ACTION_DTYPE)
    for col in df.columns:
        if col not in ("user_id", "item_id", "session_id", "action", "timestamp", ROW) and (
                df[col].dtype == object or pd.api.types.is_string_dtype(df[col].dtype)):
            df[col] = df[col].astype(STRING_DTYPE)  # (pandas 3 reads Arrow strings as its NaN-valued str)
    return df


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
