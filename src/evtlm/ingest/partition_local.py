"""The local engine of `evtlm.ingest.partition.partition_events` (one process): the steps of
`evtlm.ingest.partition_steps` one after another, the parts and then the shards, writing the bytes
`evtlm.ingest.partition_dask` writes. It must not import `evtlm.ingest.partition`, which imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from evtlm.ingest.events import Ingest
from evtlm.ingest.item_catalog import read_catalog
from evtlm.ingest.partition_folder import _shard_name, write_shard
from evtlm.ingest.partition_fs import Folder
from evtlm.ingest.partition_steps import (PartCut, _absorb, clean_shard, complete_shard, cut_part, finish_report,
                                          merge_cuts, plan_read, raw_events, read_clean, shifted, user_keys,
                                          write_clean)
from evtlm.ingest.partition_summary import _Summary


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
