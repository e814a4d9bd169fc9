"""`evtlm prepare RECIPE [key.sub=value ...] [--json OUT]`: build (or load) the tokenized dataset
and print its data report: examples per split, labels, tokens per example, truncation, cold items."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="build the tokenized train/valid/test datasets of a recipe and print the data report",
        description="Read the events, build the task's examples under the recipe's split, tokenize and cache "
        "them (a second run with the same inputs is served from the cache), and print the data report.",
    )
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    p.add_argument("--json", metavar="OUT", help="also write the report (data_report.json content) to OUT")
    p.add_argument("--cache-dir", metavar="DIR", help="cache root (default: $EVTLM_CACHE or ~/.cache/evtlm)")
    p.add_argument("--no-cache", action="store_true", help="rebuild and keep the result in memory only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from evtlm.data.prepare import prepare
    from evtlm.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.data.by_shard:  # tokenized shards of a partition folder (evtlm.data.shard_prepare)
        from evtlm.data.shard_prepare import prepare_shards

        sharded = prepare_shards(recipe, cache_dir=args.cache_dir, progress=not args.quiet, use_cache=not args.no_cache)
        prepared = sharded.prepared(recipe)
        print(format_report(prepared.report))
        print(f"\n{sharded.shards} tokenized shards (tokenizer: {sharded.manifest['tokenizer']}), "
              + ("served from the cache: " if sharded.from_cache else "built and cached: ") + str(sharded.path))
        if args.json:
            Path(args.json).write_text(json.dumps(prepared.report, indent=2, default=str) + "\n")
            print(f"report written to {args.json}")
        return 0
    prepared = prepare(recipe, cache_dir=args.cache_dir, progress=not args.quiet, use_cache=not args.no_cache)
    print(format_report(prepared.report))
    if prepared.from_cache:
        print(f"\nserved from the cache: {prepared.cache_path}")
    elif prepared.cache_path is not None:
        print(f"\nbuilt and cached: {prepared.cache_path}")
    if args.json:
        Path(args.json).write_text(json.dumps(prepared.report, indent=2, default=str) + "\n")
        print(f"report written to {args.json}")
    return 0


def format_report(report: dict[str, Any]) -> str:
    """The data report as a few aligned lines (the JSON has everything).

    >>> r = {"events": {"source": "synthetic", "rows_kept": 10, "users": 2, "items": 3},
    ...      "task": {"name": "purchase", "label_space_size": 2, "max_tokens": 64},
    ...      "split": {"method": "time", "windows": None}, "tokenizer": {"source": "scratch", "vocab_size": 300,
    ...      "reason": "offline"}, "cold_items": None, "notes": [],
    ...      "splits": {s: {"examples": 4, "users": 2, "label_distribution": {"no": 3, "yes": 1},
    ...                     "tokens": {"p50": 20.0, "p90": 30.0, "p99": 31.0, "max": 31}, "truncation_rate": 0.25}
    ...                 for s in ("train", "valid", "test")}}
    >>> print(format_report(r).splitlines()[4])
    split    examples  users   p50   p90   p99   max  truncated  labels
    """
    ev, task, tok = report["events"], report["task"], report["tokenizer"]
    lines = [
        f"events    {ev.get('rows_kept', 0):,} rows, {ev.get('users', 0):,} users, {ev.get('items', 0):,} items "
        f"({ev.get('source', '?')})",
        f"task      {task['name']}, label space {task['label_space_size']:,}, max_tokens {task['max_tokens']}",
        f"split     {report['split']['method']}"
        + (f": train < {report['split']['windows']['train_end']} <= valid < {report['split']['windows']['valid_end']} <= test"
           if report["split"].get("windows") else ""),
        f"tokenizer {tok['source']} ({tok['vocab_size']:,} tokens)" + (f"; {tok['reason']}" if tok.get("reason") else ""),
        f"{'split':<8}{'examples':>9}{'users':>7}{'p50':>6}{'p90':>6}{'p99':>6}{'max':>6}{'truncated':>11}  labels",
    ]
    for split, s in report["splits"].items():
        t = s["tokens"]
        dist = s["label_distribution"]
        shown = ", ".join(f"{k}: {v:,}" for k, v in list(dist.items())[:4]) + (" …" if len(dist) > 4 else "")
        lines.append(f"{split:<8}{s['examples']:>9,}{s['users']:>7,}{t['p50']:>6.0f}{t['p90']:>6.0f}{t['p99']:>6.0f}"
                     f"{t['max']:>6}{s['truncation_rate']:>10.1%}  {shown}")
    cold = report.get("cold_items")
    if cold:
        lines.append("cold items (targets never seen in training, kept as misses): " + ", ".join(
            f"{s} {c['examples']:,} ({c['share']:.1%}, {c['distinct_items']:,} items)" for s, c in cold.items()))
    capped = task.get("examples_per_user") or {}
    if capped.get("cap") is not None:
        lines.append(f"capped    task.examples_per_user={capped['cap']}: "
                     + ", ".join(f"{s} {n:,} dropped" for s, n in capped.get("dropped", {}).items()))
    lines += [f"note: {n}" for n in report.get("notes", [])]
    dropped = ev.get("dropped") or {}
    if dropped:
        lines.append("dropped rows: " + ", ".join(f"{k}: {v:,}" for k, v in dropped.items()))
    return "\n".join(lines)
