"""An event log larger than memory, partitioned by user on disk: `partition_events`.

Every stage after reading depends only on one user's events (plus global vocabularies), so a
log is split into shards by a stable hash of the user id and each shard is a log of its own.
Memory is bounded by the chunk and the shard size, not by the log:

1. **Read in chunks** (`evtlm.events.Ingest.chunks`: files, globs and folders; CSV, Parquet
   and JSON Lines streamed by pyarrow), each chunk checked and mapped (`Ingest.to_events`) and
   its rows appended to the shard of their user (``hash(user) % shards``).
2. **Finish each shard**: the same steps as an in-memory read (`Ingest.finish`): sort, exact
   duplicates, ``data.start`` / ``data.end``, the ``data.max_users`` subset (a global hash
   threshold, from every shard's users), sessions.

The shards together hold exactly the events of `evtlm.presets.load_event_log` (each user's
rows in the same order), and ``report.json`` is its data report: counts add up over chunks and
shards, row numbers are the whole log's. Engine: pyarrow's streaming readers and Parquet writer
(already a dependency; a log of 100M rows needs no query engine to be cut by user). Presets that
build their catalog from the whole table (``online_retail``, ``diginetica``, ``rees46``) and the
synthetic shop are read in memory first (small logs), then cut the same way.

Folder layout (written to a temporary sibling and renamed into place when complete, so a
partial folder is never read)::

    manifest.json        format, shards, placement, events and users per shard, how it was read
    report.json          the data report (`evtlm.events.DataReport`)
    shard-00000.parquet  canonical events (`evtlm.events`) of the users placed there, by (user, time)
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

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from evtlm.errors import DataError
from evtlm.events import (ACTION_DTYPE, NUMERIC_EXTRAS, STRING_DTYPE, DataReport, EventLog, Ingest, finalize_catalog,
                          read_catalog)
from evtlm.fsio import TMP_PREFIX, fsync_dir, fsync_tree, remove_tree
from evtlm.readers import ROW
from evtlm.recipe import DataConfig

FORMAT = 1
PLACEMENT = "pandas.util.hash_array(user_id) % shards"  # stable across runs, machines and versions of evtlm
MANIFEST = "manifest.json"

__all__ = ["Partition", "partition_events", "read_partition", "shard_of"]


def shard_of(user_id: pd.Series | np.ndarray, shards: int) -> np.ndarray:
    """The shard of each user id (`PLACEMENT`)."""
    ids = user_id.to_numpy(dtype=object) if isinstance(user_id, pd.Series) else np.asarray(user_id, dtype=object)
    return (pd.util.hash_array(ids) % np.uint64(shards)).astype(np.int64)


@dataclass
class Partition:
    """A complete partition folder: its manifest, data report and shards."""

    path: Path
    manifest: dict[str, Any]
    report: DataReport

    @property
    def shards(self) -> int:
        return int(self.manifest["shards"])

    def shard(self, k: int) -> pd.DataFrame:
        """The canonical events of shard ``k`` (dtypes as `evtlm.events.finalize_events` gives them)."""
        if not 0 <= k < self.shards:
            raise IndexError(f"shard {k} of a partition of {self.shards}")
        return _canonical(pq.read_table(self.path / _shard_name(k)).to_pandas())

    def iter_shards(self, ranks: tuple[int, int] = (0, 1)) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(k, events)`` of the shards of process ``rank`` of ``world`` (``ranks``): shard k
        belongs to rank k % world, so each process reads only its own."""
        rank, world = ranks
        for k in range(rank, self.shards, world):
            yield k, self.shard(k)

    @property
    def catalog(self) -> pd.DataFrame | None:
        path = self.path / "catalog.parquet"
        return finalize_catalog(pq.read_table(path).to_pandas()) if path.is_file() else None

    def event_log(self) -> EventLog:
        """Every shard in one `EventLog` (memory: the whole log), users in shard order."""
        events = pd.concat([self.shard(k) for k in range(self.shards)], ignore_index=True)
        return EventLog(events, self.catalog, self.report)


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.parquet"


def read_partition(path: str | Path) -> Partition:
    """A partition folder written by `partition_events`; a clear error when it is not one, or
    was never completed."""
    path = Path(path)
    meta = path / MANIFEST
    if not meta.is_file():
        raise DataError(f"{str(path)!r} is not a partition folder (no {MANIFEST})", where=str(path),
                        fix="write one with `evtlm partition RECIPE --out DIR` (a partial one is never renamed into place)")
    manifest = json.loads(meta.read_text())
    if manifest.get("format") != FORMAT:
        raise DataError(f"partition format {manifest.get('format')!r}, this evtlm reads {FORMAT}", where=str(meta),
                        fix="partition the log again with this version")
    report = DataReport(**json.loads((path / "report.json").read_text()))
    return Partition(path, manifest, report)


# ------------------------------------------------------------------------------------ writing
def partition_events(cfg: DataConfig, out: str | Path, shards: int, *, base_dir: str | Path | None = None,
                     chunk_rows: int = 1_000_000, progress: bool = False, overwrite: bool = False) -> Partition:
    """Cut the log of ``cfg`` into ``shards`` shards by user under ``out`` (see the module doc)."""
    from evtlm.presets import PRESETS, resolve_data_config

    if shards < 1:
        raise DataError(f"shards = {shards}", where="evtlm partition --shards", fix="give at least 1")
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{str(out)!r} exists", where="evtlm partition --out",
                        fix="choose a new folder, or pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f"{TMP_PREFIX}{out.name}-"))
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
                from evtlm.preset_readers import evtlm_shop_config

                resolved = evtlm_shop_config(resolved, base_dir)
            how = f"in chunks of {chunk_rows:,} rows"
            meta = _cut_streaming(resolved, base_dir, tmp, shards, chunk_rows, progress)
        manifest = {"format": FORMAT, "shards": shards, "placement": PLACEMENT, "read": how, **meta,
                    "source": json.loads((tmp / "report.json").read_text())["source"]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        fsync_tree(tmp)
        if out.exists():
            aside = out.with_name(f"{TMP_PREFIX}discard-{out.name}-{os.getpid()}")
            out.rename(aside)
            remove_tree(aside)
        tmp.rename(out)
        fsync_dir(out.parent)
    except BaseException:
        remove_tree(tmp)
        raise
    return read_partition(out)


def _cut_in_memory(cfg: DataConfig, base_dir, tmp: Path, shards: int, progress: bool) -> dict[str, Any]:
    from evtlm.presets import load_event_log

    log = load_event_log(cfg, base_dir)
    where = shard_of(log.events["user_id"], shards)
    counts = _write_shards(tmp, shards, lambda k: log.events.loc[where == k], progress)
    _write_tail(tmp, log.report, log.catalog)
    return counts


def _write_shards(tmp: Path, shards: int, events_of, progress: bool) -> dict[str, list[int]]:
    from tqdm.auto import tqdm

    events, users = [], []
    for k in tqdm(range(shards), desc="write shards", unit="shard", disable=not progress):
        ev = events_of(k)
        pq.write_table(pa.Table.from_pandas(ev.reset_index(drop=True), preserve_index=False), tmp / _shard_name(k))
        events.append(len(ev))
        users.append(int(ev["user_id"].nunique()))
    return {"events": events, "users": users}


def _write_tail(tmp: Path, report: DataReport, catalog: pd.DataFrame | None) -> None:
    if catalog is not None:
        pq.write_table(pa.Table.from_pandas(catalog, preserve_index=False), tmp / "catalog.parquet")
    (tmp / "report.json").write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n")


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


def _cut_streaming(cfg: DataConfig, base_dir, tmp: Path, shards: int, chunk_rows: int,
                   progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    ingest = Ingest(cfg, base_dir)
    raw = tmp / "raw"
    raw.mkdir()
    writers: dict[int, pq.ParquetWriter] = {}
    schema: pa.Schema | None = None
    total = _known_rows(ingest)
    bar = tqdm(total=total, desc="read + cut by user", unit="row", unit_scale=True, disable=not progress)
    try:
        for chunk in ingest.chunks(chunk_rows):
            events = ingest.to_events(chunk)
            bar.update(len(chunk.df))
            if len(events) == 0:
                continue
            schema = schema or _schema(events)
            where = shard_of(events["user_id"], shards)
            table = _arrow_chunk(events, schema)
            order = np.argsort(where, kind="stable")  # rows of one shard together, file order kept
            bounds = np.searchsorted(where[order], np.arange(shards + 1))
            for k in range(shards):
                lo, hi = bounds[k], bounds[k + 1]
                if hi > lo:
                    if k not in writers:
                        writers[k] = pq.ParquetWriter(raw / _shard_name(k), schema)
                    writers[k].write_table(table.take(order[lo:hi]))
            bar.set_postfix(shards_open=len(writers), events=f"{ingest.report.rows_read:,}")
    finally:
        for w in writers.values():
            w.close()
        bar.close()
    if schema is None:
        ingest.check_not_empty(0)
    catalog = read_catalog(cfg.catalog, base_dir, cfg.on_bad_rows, ingest.report) if cfg.catalog else None
    return _finish_shards(ingest, raw, tmp, shards, schema, catalog, progress)


def _known_rows(ingest: Ingest) -> int | None:
    """Rows of a Parquet log from its footers (an ETA); None for text, whose length is unknown."""
    if all(s.path.name.lower().endswith((".parquet", ".pq")) for s in ingest.sources):
        return sum(pq.ParquetFile(s.path).metadata.num_rows for s in ingest.sources)
    return None


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Types as `evtlm.events.finalize_events` gives them, after a Parquet round trip."""
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


def _finish_shards(ingest: Ingest, raw: Path, tmp: Path, shards: int, schema: pa.Schema,
                   catalog: pd.DataFrame | None, progress: bool) -> dict[str, Any]:
    """Pass 2: each shard cleaned as `Ingest.finish` would; the max_users threshold from every
    shard's users; then sessions and the report, merged over shards."""
    from tqdm.auto import tqdm

    def raw_shard(k: int) -> pd.DataFrame:
        path = raw / _shard_name(k)
        table = pq.read_table(path) if path.is_file() else schema.empty_table()
        return _canonical(table.to_pandas())

    subset = ingest.cfg.max_users is not None
    dups: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    bar = tqdm(total=shards * (2 if subset else 1), desc="finish shards", unit="shard", disable=not progress)
    if subset:  # the subset is chosen among every user left after the filters: all shards first
        for k in range(shards):
            df, dup = ingest.clean([raw_shard(k)])
            dups.append(dup)
            hashes.append(pd.util.hash_array(np.asarray(df["user_id"].unique(), dtype=object)))
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), raw / f"clean-{k:05d}.parquet")
            bar.update()
    threshold = ingest.choose_users(np.concatenate(hashes)) if subset else None
    merged = _Summary(derived_sessions=ingest.cfg.columns.session is None)
    counts: dict[str, list[int]] = {"events": [], "users": []}
    for k in range(shards):
        if subset:
            df = _canonical(pq.read_table(raw / f"clean-{k:05d}.parquet").to_pandas())
        else:
            df, dup = ingest.clean([raw_shard(k)])
            dups.append(dup)
        df = ingest.keep_users(df, threshold)
        events = ingest.complete(df)
        merged.add(events, catalog)
        pq.write_table(pa.Table.from_pandas(events, preserve_index=False), tmp / _shard_name(k))
        counts["events"].append(len(events))
        counts["users"].append(int(events["user_id"].nunique()))
        bar.update()
    bar.close()
    remove_tree(raw)
    ingest.note_duplicates(np.concatenate(dups) if dups else np.array([], dtype=np.int64))
    ingest.check_not_empty(merged.rows)
    merged.fill(ingest.report)
    ingest.note_catalog(catalog, missing=merged.missing)
    _write_tail(tmp, ingest.report, catalog)
    return counts


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
