"""`evtlm partition RECIPE [key.sub=value ...] --out DIR [--shards N] [--chunk-rows R]`: read the
recipe's log in chunks and cut it by user into shards on disk (`evtlm.partition`).

    evtlm partition recipes/taobao_purchase.yaml data.path=UserBehavior.csv --out taobao_parts --shards 64

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
    p.add_argument("--overwrite", action="store_true", help="replace DIR when it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from evtlm.errors import DataError
    from evtlm.partition import partition_events
    from evtlm.recipe import load_recipe

    if args.chunk_rows < 1:
        raise DataError(f"--chunk-rows {args.chunk_rows} must be at least 1", where="evtlm partition",
                        fix="e.g. --chunk-rows 1000000")
    recipe = load_recipe(args.recipe, args.overrides)
    t0 = time.perf_counter()
    part = partition_events(recipe.data, args.out, args.shards, chunk_rows=args.chunk_rows,
                            progress=not args.quiet, overwrite=args.overwrite)
    seconds = time.perf_counter() - t0
    r, m = part.report, part.manifest
    print(f"wrote {part.path}/ ({part.shards} shards, read {m['read']}): {r.rows_kept:,} events of "
          f"{r.users:,} users from {r.rows_read:,} rows ({sum(r.dropped.values()):,} dropped, "
          f"{r.duplicates_removed:,} duplicates)")
    print(f"events per shard: {min(m['events']):,} .. {max(m['events']):,}  "
          f"[{seconds:.1f}s, {r.rows_read / max(seconds, 1e-9):,.0f} events/s]")
    return 0
