"""`evtlm partition --engine dask`: the local engine's steps as Dask tasks, past one machine.

`evtlm.ingest.partition` cuts a log by user in two kinds of step, each a pure function of its inputs:
*cut a part* (`evtlm.ingest.partition_steps.cut_part`: read one input file in chunks, check and map every row,
hash each row's user to a shard) and *finish a shard* (`clean_shard`, `complete_shard`: sort,
duplicates, ``data.start`` / ``data.end``, the ``data.max_users`` subset, sessions). The local
engine runs them one after another in one process; this one submits them to a Dask cluster, a
task per input part and then a task per shard, and the driver merges the small results (reports,
counts, summaries) in the local engine's order, so the shards, ``manifest.json`` and
``report.json`` are byte for byte the local engine's (a test checks it on a local cluster).

The job::

    driver   list the parts, check every part's columns, read the log's first chunk (the
             timestamp unit a sequential read fixes there and keeps for every later chunk)
    task/part   cut_part -> raw/part-PPPPP/shard-KKKKK.parquet in the staging folder; rows
             numbered from the part's own first row (its offset is known only when the parts
             before it are read: the driver adds it later), a PartCut back
    driver   merge the parts' reports in part order (row numbers shifted), read the catalog
    task/shard  the shard's pieces in part order, offsets added -> clean_shard -> complete_shard
             -> shard-KKKKK.parquet, a summary back (with data.max_users: two rounds, the subset
             threshold chosen on the driver from every shard's user hashes in between)
    driver   the report, the manifest; the folder renamed into place (local or shared disk), or
             on an object store moved file by file, manifest.json last

Why Dask (``dask.distributed``) and not Ray Data: the job is a bag of independent Python tasks
over files with small results, which ``Client.submit`` / ``gather`` express directly, and
whose results must come back in a fixed order to give the local engine's bytes; Ray Data's block
datasets re-partition and re-encode rows, which the byte-identical contract would have to
undo. Dask is pure-Python wheels (a few MB, no raylet or object-store processes), a
``LocalCluster`` starts in-process in about a second (so the test suite runs the real scheduler
on a laptop or a 2-core CI box), and Dask's own I/O speaks fsspec, the URLs ``--out`` takes here.
Install it as the optional extra: ``pip install 'evtlm[dask]'``.

Where the files are: every worker must open the input parts by the paths the driver sees (a
shared filesystem, or the same paths on each node) and write the staging folder, so on several
machines ``--out`` is a shared path or an fsspec URL (``s3://bucket/parts``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from evtlm.errors import DataError
from evtlm.ingest.events import Ingest
from evtlm.ingest.item_catalog import read_catalog
from evtlm.ingest.partition_folder import _shard_name, write_shard
from evtlm.ingest.partition_steps import (PartCut, _absorb, clean_shard, complete_shard, cut_part, finish_report,
                                          first_units, merge_cuts, plan_read, raw_events, read_clean, shifted,
                                          user_keys, write_clean)
from evtlm.ingest.partition_summary import _Summary
from evtlm.ingest.partition_fs import Folder

__all__ = ["DaskRunner"]

INSTALL = "pip install 'evtlm[dask]'"


def _piece(p: int, k: int) -> str:
    return f"raw/part-{p:05d}/{_shard_name(k)}"


# ------------------------------------------------------------------ the tasks (run on the workers)
def _part_task(ingest: Ingest, p: int, part, plan, folder: Folder) -> PartCut:
    writers: dict[int, Any] = {}

    def write(k: int, table) -> None:
        if k not in writers:
            writers[k] = folder.writer(_piece(p, k), table.schema)
        writers[k].write_table(table)

    try:
        return cut_part(ingest, part, plan, write)
    finally:
        for w in writers.values():
            w.close()


def _raw_shard(folder: Folder, k: int, written: list[list[int]], offsets: list[int], schema) -> pd.DataFrame:
    tables = [shifted(folder.read_table(_piece(p, k)), off) for p, (ks, off) in enumerate(zip(written, offsets)) if k in ks]
    return raw_events(tables, schema)


def _clean_task(ingest: Ingest, k: int, folder: Folder, written, offsets, schema):
    """Round one under data.max_users: the shard cleaned and kept aside, its users' hashes back."""
    df, dup, step = clean_shard(ingest, _raw_shard(folder, k, written, offsets, schema))
    write_clean(folder, k, df)
    return dup, user_keys(df), step


def _finish_task(ingest: Ingest, k: int, folder: Folder, written, offsets, schema, threshold, catalog, subset: bool):
    if subset:
        df, dup, cleaned = read_clean(folder, k), None, None
    else:
        df, dup, cleaned = clean_shard(ingest, _raw_shard(folder, k, written, offsets, schema))
    events, summary, step = complete_shard(ingest, df, threshold, catalog)
    write_shard(folder, k, events)
    return dup, cleaned, step, summary, len(events), int(events["user_id"].nunique())


# ------------------------------------------------------------------------------ the driver
class DaskRunner:
    """A Dask client for one partition job: ``scheduler`` an address (``tcp://host:8786``), a
    ``distributed.Client``, or None for a `LocalCluster` on this machine (closed afterwards)."""

    def __init__(self, scheduler: Any = None, workers: int | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as err:
            raise DataError("the dask engine needs dask.distributed, which is not installed",
                            where="evtlm partition --engine dask", fix=f"{INSTALL}, or use --engine local") from err
        self._own: list[Any] = []
        if scheduler is not None and not isinstance(scheduler, str):
            self.client = scheduler
            return
        if scheduler is None:
            n = workers or max(1, min(4, os.cpu_count() or 1))
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0",
                                   silence_logs=logging.ERROR)
            self._own.append(cluster)
            self.client = Client(cluster)
        else:
            try:
                self.client = Client(scheduler)  # waits distributed.comm.timeouts.connect (Dask's config: 30s)
            except (OSError, TimeoutError, ValueError, TypeError) as err:
                raise DataError(f"cannot reach the Dask scheduler at {scheduler!r} ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else 'no answer'})",
                                where="evtlm partition --scheduler",
                                fix="start one (`dask scheduler`, then `dask worker ADDRESS` on each node) and give "
                                f"its address, e.g. tcp://10.0.0.1:8786, or leave --scheduler out for a local cluster "
                                f"({INSTALL} on every node)") from None
        self._own.insert(0, self.client)

    def close(self) -> None:
        for thing in self._own:
            thing.close()
        self._own = []

    def _results(self, futures: list, desc: str, progress: bool) -> list:
        """Every task's result in submission order; the first failed task's error (in that
        order, as the local engine would meet it) is raised as it was."""
        from distributed import as_completed, wait
        from tqdm.auto import tqdm

        if progress:
            for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="task"):
                pass
        wait(futures)
        for f in futures:
            if f.status == "error":
                raise f.exception()
        return self.client.gather(futures)

    def cut(self, ingest: Ingest, tmp: Folder, shards: int, chunk_rows: int, progress: bool) -> dict[str, Any]:
        client, cfg = self.client, ingest.cfg
        plan = plan_read(ingest, chunk_rows, shards)
        plan.units = first_units(ingest, plan)
        ing = client.scatter(ingest, hash=False)
        cuts: list[PartCut] = self._results(
            [client.submit(_part_task, ing, p, part, plan, tmp, pure=False) for p, part in enumerate(ingest.sources)],
            "read + cut by user (parts)", progress)
        offsets = merge_cuts(ingest, cuts)
        schema = next((c.schema for c in cuts if c.schema is not None), None)
        if schema is None:
            ingest.check_not_empty(0)
        catalog = read_catalog(cfg.catalog, ingest.base_dir, cfg.on_bad_rows, ingest.report) if cfg.catalog else None
        written = [c.shards for c in cuts]
        ing = client.scatter(ingest, hash=False)
        cat = client.scatter(catalog, hash=False) if catalog is not None else None
        subset = cfg.max_users is not None
        dups: list[np.ndarray] = []
        threshold = None
        if subset:  # the subset is chosen among every user left after the filters: all shards first
            rounds = self._results([client.submit(_clean_task, ing, k, tmp, written, offsets, schema, pure=False)
                                    for k in range(shards)], "clean shards", progress)
            for dup, _, step in rounds:
                _absorb(ingest.report, step)
                dups.append(dup)
            threshold = ingest.choose_users(np.concatenate([keys for _, keys, _ in rounds]))
        done = self._results([client.submit(_finish_task, ing, k, tmp, written, offsets, schema, threshold, cat, subset,
                                            pure=False) for k in range(shards)], "finish shards", progress)
        merged = _Summary(derived_sessions=cfg.columns.session is None)
        counts: dict[str, list[int]] = {"events": [], "users": []}
        for dup, cleaned, step, summary, n_events, n_users in done:  # shard order: the local engine's
            if not subset:
                _absorb(ingest.report, cleaned)
                dups.append(dup)
            _absorb(ingest.report, step)
            merged.merge(summary)
            counts["events"].append(n_events)
            counts["users"].append(n_users)
        tmp.remove("raw")
        finish_report(ingest, tmp, dups, merged, catalog)
        return counts
