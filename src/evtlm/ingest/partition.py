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

Engines: the two steps are functions of their inputs (`evtlm.ingest.partition_steps`: `cut_part`
per input part, `clean_shard` / `complete_shard` per shard; each returns its own report, merged in
order), so the local engine (`evtlm.ingest.partition_local`) runs them one after another in this
process and ``engine="dask"`` runs them as Dask tasks (`evtlm.ingest.partition_dask`), writing the
same bytes. ``out`` may be an fsspec URL.

The folder (its layout and reader: `evtlm.ingest.partition_folder`) is written to a temporary
sibling and renamed into place when complete, so a partial folder is never read. This module owns
`partition_events` only (its checks, the in-memory cut, the manifest, the rename into place); the
siblings named here must not import it.

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
from pathlib import Path
from typing import Any

import numpy as np  # noqa: F401  (the module doctest)
import pandas as pd  # noqa: F401  (the module doctest)

from evtlm.errors import DataError
from evtlm.ingest.events import Ingest
from evtlm.ingest.partition_folder import FORMAT, PLACEMENT, Partition, _write_tail, read_partition, shard_of, write_shard
from evtlm.ingest.partition_fs import MANIFEST, Folder, filesystem
from evtlm.ingest.partition_local import _cut_streaming
from evtlm.recipe import DataConfig

__all__ = ["Partition", "partition_events", "read_partition", "shard_of"]


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
