"""`evtlm simulate`: write the synthetic shop (events CSV + catalog) for a seed.

    evtlm simulate --users 2000 --seed 7 --out shop.csv     # + shop.catalog.csv beside it
    evtlm simulate --users 1000000 --part-users 20000 --out big_shop   # a folder of Parquet parts

The same arguments write the same bytes (`evtlm.ingest.simulate.write_shop`). ``--part-users`` writes a
shop too large for memory one part of users at a time (`evtlm.ingest.simulate.write_shop_parts`): a
folder that ``data.path`` reads as one log, its catalog beside it (``big_shop.catalog.csv``).

Settings left out take the
defaults of `evtlm.recipe.SyntheticConfig`, the schema of a recipe's ``data.synthetic``.
"""

from __future__ import annotations

import argparse

from evtlm.errors import RecipeError

_FLAGS = {"users": int, "items": int, "categories": int, "days": int, "seed": int, "start": str}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="write the synthetic shop's events and catalog for a seed",
        description="Simulate a shop (catalog, users, multi-session journeys with planted rules; see "
        "evtlm.ingest.simulate) and write its events as CSV and its catalog beside it (<stem>.catalog.csv). "
        "Deterministic: the same arguments write the same bytes.",
    )
    p.add_argument("--users", type=int, help="number of users (default 2000)")
    p.add_argument("--items", type=int, help="catalog size (default 500)")
    p.add_argument("--categories", type=int, help="number of categories (default 12)")
    p.add_argument("--days", type=int, help="days simulated (default 60)")
    p.add_argument("--start", help="first day, ISO date (default 2024-01-01)")
    p.add_argument("--seed", type=int, help="random seed (default 7)")
    p.add_argument("--out", required=True, help="events CSV to write (.csv or .csv.gz); with --part-users, a folder")
    p.add_argument("--part-users", type=int, metavar="N",
                   help="write a folder of parts of N users each, one part in memory at a time (large shops)")
    p.add_argument("--part-format", choices=("parquet", "csv.gz", "csv"), default="parquet",
                   help="file format of the parts (default parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def synthetic_config(args: argparse.Namespace):
    """The `SyntheticConfig` of the flags given; schema violations as a one-line RecipeError."""
    from pydantic import ValidationError

    from evtlm.recipe import SyntheticConfig

    given = {k: getattr(args, k) for k in _FLAGS if getattr(args, k, None) is not None}
    try:
        cfg = SyntheticConfig(**given)
        import pandas as pd

        pd.Timestamp(cfg.start)
    except ValidationError as err:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc']))} {e['msg'].lower()}" for e in err.errors())
        raise RecipeError(f"invalid simulate settings: {problems}", where="evtlm simulate",
                          fix="see `evtlm simulate --help`") from None
    except ValueError as err:
        raise RecipeError(f"--start {args.start!r} is not a date ({err})", where="evtlm simulate",
                          fix="give an ISO date such as 2024-01-01") from None
    return cfg


def run(args: argparse.Namespace) -> int:
    import time

    from evtlm.ingest.simulate import simulate_shop, write_shop

    cfg = synthetic_config(args)
    t0 = time.perf_counter()
    if args.part_users is not None:
        return _run_parts(args, cfg, t0)
    log = simulate_shop(cfg)
    events_path, catalog_path = write_shop(log, args.out)
    r = log.report
    actions = ", ".join(f"{a} {n:,}" for a, n in r.events_per_action.items())
    print(f"wrote {events_path} ({r.rows_kept:,} events: {r.users:,} users, {r.items:,} items, "
          f"{r.sessions:,} visits, {r.time_start[:10]} .. {r.time_end[:10]}; seed {cfg.seed})")
    print(f"wrote {catalog_path} ({len(log.catalog):,} items, {log.catalog['category'].nunique()} categories)")
    print(f"events per action: {actions}  [{time.perf_counter() - t0:.1f}s]")
    return 0


def _run_parts(args: argparse.Namespace, cfg, t0: float) -> int:
    import time

    from evtlm.ingest.simulate import write_shop_parts

    if args.part_users < 1:
        raise RecipeError(f"--part-users {args.part_users} must be at least 1", where="evtlm simulate",
                          fix="give the number of users per part, e.g. --part-users 20000")
    folder, catalog_path, r = write_shop_parts(cfg, args.out, args.part_users, args.part_format,
                                               progress=not args.quiet)
    seconds = time.perf_counter() - t0
    parts = -(-cfg.users // args.part_users)
    print(f"wrote {folder}/ ({parts} parts, {r.rows_kept:,} events: {r.users:,} users, {r.items:,} items, "
          f"{r.sessions:,} visits, {r.time_start[:10]} .. {r.time_end[:10]}; seed {cfg.seed})")
    print(f"wrote {catalog_path} ({r.catalog_items:,} items)")
    print(f"events per action: {', '.join(f'{a} {n:,}' for a, n in r.events_per_action.items())}  "
          f"[{seconds:.1f}s, {r.rows_kept / max(seconds, 1e-9):,.0f} events/s]")
    return 0
