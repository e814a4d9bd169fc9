"""A partition folder, read and written: `read_partition` and `Partition` read a complete one back,
`write_shard` and `_write_tail` write its files, `shard_of` places a user (`PLACEMENT`). It owns the
format only; cutting a log into it (`evtlm.ingest.partition` and the engines) builds on it, and
this module must not import them.

Folder layout (written to a temporary sibling and renamed into place when complete, so a
partial folder is never read)::

    manifest.json        format, shards, placement, events and users per shard, how it was read
    report.json          the data report (`evtlm.ingest.events.DataReport`)
    shard-00000.parquet  canonical events (`evtlm.ingest.events`) of the users placed there, by (user, time)
    catalog.parquet      the item catalog, when the log has one
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from evtlm.errors import DataError
from evtlm.ingest.canonical import ACTION_DTYPE, STRING_DTYPE, EventLog
from evtlm.ingest.data_report import DataReport
from evtlm.ingest.item_catalog import finalize_catalog
from evtlm.ingest.partition_fs import MANIFEST, Folder
from evtlm.ingest.readers import ROW

FORMAT = 1
PLACEMENT = "pandas.util.hash_array(user_id) % shards"  # stable across runs, machines and versions of evtlm


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


def write_shard(folder: Folder, k: int, events: pd.DataFrame) -> None:
    """Shard ``k``'s canonical events, as every engine writes them (one Parquet writer setting)."""
    folder.write_table(_shard_name(k), pa.Table.from_pandas(events, preserve_index=False))


def _write_tail(tmp: Folder, report: DataReport, catalog: pd.DataFrame | None) -> None:
    if catalog is not None:
        tmp.write_table("catalog.parquet", pa.Table.from_pandas(catalog, preserve_index=False))
    tmp.write_text("report.json", json.dumps(report.to_dict(), indent=1, default=str) + "\n")


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
