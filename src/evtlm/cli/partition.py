"""`evtlm partition RECIPE [key.sub=value ...] --out DIR [--shards N] [--chunk-rows R] [--engine local|dask]`:
read the recipe's log in chunks and cut it by user into shards on disk (`evtlm.ingest.partition`).

    evtlm partition recipes/taobao_purchase.yaml data.path=UserBehavior.csv --out taobao_parts --shards 64
    evtlm partition recipes/taobao_purchase.yaml data.path=/shared/UserBehavior --out s3://bucket/taobao_parts \
        --shards 64 --engine dask --scheduler tcp://10.0.0.1:8786

``--engine dask`` runs the same steps as Dask tasks, a part and then a shard at a time, on a
local cluster or the one at ``--scheduler`` (`evtlm.ingest.partition_dask`, the ``evtlm[dask]`` extra);
its folder is byte for byte the local engine's.

Memory is one chunk, then one shard: a log larger than memory can be checked and cut. The data
report (``report.json``) is the one an in-memory read gives.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "partition",
        help="cut a recipe's event log by user into shards on disk, reading it in chunks",
        description="Read the recipe's data section in chunks (files, folders, globs; CSV, Parquet, JSON Lines), "
        "check every row as prepare does, and write the events by a stable hash of the user id into N Parquet "
        "shards with the data report. Memory: one chunk, then one shard.",
    )
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    p.add_argument("--out", required=True, metavar="DIR", help="the partition folder to write")
    p.add_argument("--shards", type=int, default=16, help="number of shards (default 16)")
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows read at a time (default 1,000,000)")
    p.add_argument("--engine", choices=["local", "dask"], default="local",
                   help="local: this process (default); dask: Dask tasks per input part and per shard "
                   "(needs pip install 'evtlm[dask]')")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="the Dask scheduler to run on (tcp://host:8786); default: a local cluster")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="workers of the local Dask cluster (default: up to 4, one per core)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR when it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from evtlm.errors import DataError
    from evtlm.ingest.partition import partition_events
    from evtlm.recipe import load_recipe

    if args.chunk_rows < 1:
        raise DataError(f"--chunk-rows {args.chunk_rows} must be at least 1", where="evtlm partition",
                        fix="e.g. --chunk-rows 1000000")
    if args.engine != "dask" and (args.scheduler or args.workers):
        raise DataError(f"--{'scheduler' if args.scheduler else 'workers'} is for the dask engine",
                        where="evtlm partition", fix="add --engine dask, or leave it out")
    if args.workers is not None and (args.workers < 1 or args.scheduler):
        raise DataError(f"--workers {args.workers}", where="evtlm partition",
                        fix="at least 1, and only for the local cluster (not with --scheduler)")
    recipe = load_recipe(args.recipe, args.overrides)
    t0 = time.perf_counter()
    part = partition_events(recipe.data, args.out, args.shards, chunk_rows=args.chunk_rows,
                            progress=not args.quiet, overwrite=args.overwrite, engine=args.engine,
                            scheduler=args.scheduler, workers=args.workers)
    seconds = time.perf_counter() - t0
    r, m = part.report, part.manifest
    engine = f", {args.engine} engine" if args.engine != "local" else ""
    print(f"wrote {args.out.rstrip('/')}/ ({part.shards} shards, read {m['read']}{engine}): {r.rows_kept:,} events of "
          f"{r.users:,} users from {r.rows_read:,} rows ({sum(r.dropped.values()):,} dropped, "
          f"{r.duplicates_removed:,} duplicates)")
    print(f"events per shard: {min(m['events']):,} .. {max(m['events']):,}  "
          f"[{seconds:.1f}s, {r.rows_read / max(seconds, 1e-9):,.0f} events/s]")
    return 0
