"""Tokenized shards: a partitioned log (`evtlm.ingest.partition`) prepared shard by shard, so memory is
bounded by the shard, not the log, and each training process reads only its own shards.

Every stage after reading depends on one user's events plus a few facts of the whole log
(`evtlm.data.prepare.LogFacts`). `prepare_shards` therefore runs in two passes over the shards, one
shard in memory at a time:

1. **Facts**: the log's first and last timestamp (so the split windows), every item id (the item
   tokens) and, for tasks whose answers come from the data (next_item, next_action), the union of
   each shard's training label space, computed by the task's own rule under those windows and
   merged by the task (``merge_label_spaces``).
2. **Shards**: `evtlm.data.prepare.prepare` on each shard's users with those facts and one tokenizer.
   A shard's examples, windows, token ids and labels are then those the whole-log `prepare`
   builds for the same users (`tests/test_shard_data.py` checks it); only example ids are
   numbered per shard, and the within-window identity codes ``ev_cat`` (and next_action's
   ``ev_item``), which the model only compares for equality, are numbered per shard.

The tokenizer: a given or pretrained one as is; a scratch tokenizer is trained on the first
shard's training text (users are hashed to shards, so it is a uniform sample of the users;
about 1/shards of the text a whole-log run would train it on), then the log's item tokens added.

Layout: a data-cache entry (`evtlm.data.cache`), written to a temporary sibling and committed with
its completion marker, so a partial one is never read. Its key covers the partition's files, the
recipe's data / verbalize / task / split sections, the model fields the data stage reads and the
tokenizer. Its files, and how a committed folder is read (`ShardedData`), are
`evtlm.data.shard_folder`'s (re-exported here); this module owns the two passes that write it and
must not import a model.

>>> import tempfile, pathlib
>>> from evtlm.ingest.partition import partition_events
>>> from evtlm.recipe import Recipe
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> r = Recipe.model_validate({"data": {"synthetic": {"users": 150, "days": 30, "seed": 3}},
...     "task": {"name": "purchase", "formulation": "stream", "max_tokens": 64},
...     "model": {"when_unavailable": "scratch", "scratch": {"n_layer": 1, "n_head": 2, "n_embd": 16, "vocab_size": 400}}})
>>> part = partition_events(r.data, d / "shop", shards=3)
>>> r = r.model_copy(update={"data": r.data.model_copy(update={"path": str(part.path), "synthetic": None})})
>>> sharded = prepare_shards(r, cache_dir=d / "cache", progress=False)
>>> sharded.shards, len(sharded.dataset("train")) == sum(sharded.manifest["windows"]["train"])
(3, True)
>>> len(sharded.dataset("train", ranks=(1, 2))) == sharded.manifest["windows"]["train"][1]  # rank 1 of 2: shard 1
True
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from evtlm.data import cache as datacache
from evtlm.data.data_report import merge_split_parts, split_parts, split_summary
from evtlm.data.prepare import prepare
from evtlm.data.prepared import LogFacts
from evtlm.data.shard_folder import MANIFEST, ShardedData, ShardedPrepared, _label_space_of, _open, _shard_dir
from evtlm.data.task_defaults import text_recipe
from evtlm.errors import DataError, TaskError
from evtlm.ingest.events import EventLog
from evtlm.recipe import Recipe
from evtlm.tasks.splits import SPLITS

__all__ = ["ShardedData", "ShardedPrepared", "prepare_shards", "log_facts", "is_sharded"]

FORMAT = 2  # of the manifest; part of the cache key: an entry of another format is rebuilt


def is_sharded(recipe: Recipe) -> bool:
    """True when ``data.path`` names a partition folder (`evtlm.ingest.partition`)."""
    from evtlm.ingest.partition_fs import MANIFEST as PART_MANIFEST

    path = recipe.data.path
    return path is not None and Path(path).is_dir() and (Path(path) / PART_MANIFEST).is_file()


def log_facts(recipe: Recipe, part, progress: bool = False) -> LogFacts:
    """Pass 1 (see the module doc): windows, items and label space of the whole partition."""
    from tqdm.auto import tqdm

    from evtlm.tasks.splits import time_windows
    from evtlm.tasks import TaskContext, get_task

    recipe = text_recipe(recipe)
    lo = hi = None
    items: set[str] = set()
    for k in tqdm(range(part.shards), desc="facts: times and items", unit="shard", disable=not progress, leave=False):
        ev = part.shard(k)
        if len(ev):
            t0, t1 = ev["timestamp"].min(), ev["timestamp"].max()
            lo, hi = (t0, t1) if lo is None else (min(lo, t0), max(hi, t1))
        items.update(ev["item_id"].dropna().astype(str).unique().tolist())
    if lo is None:
        raise DataError("the partition holds no events", where=str(part.path), fix="check the partition's data report")
    windows = None
    if recipe.split.method == "time":
        windows = time_windows(pd.DataFrame({"timestamp": [lo, hi]}), recipe.split)
    task = get_task(recipe.task.name)
    space = None
    merge = getattr(task, "merge_label_spaces", None)  # tasks whose answers come from the data
    if merge is not None:
        spaces, ctx = [], None
        for k in tqdm(range(part.shards), desc="facts: label space", unit="shard", disable=not progress, leave=False):
            ev = part.shard(k)
            ctx = TaskContext.build(ev, part.catalog, recipe.task, recipe.split, recipe.verbalize, windows=windows)
            try:
                spaces.append(task.build_examples(ctx).label_space)
            except TaskError as exc:  # a shard without training targets adds nothing; the whole log decides
                if "training window" not in str(exc):
                    raise
        space = merge(ctx, spaces)
    return LogFacts(windows=windows, label_space=space, items=sorted(items))


def prepare_shards(recipe: Recipe, *, tokenizer=None, cache_dir: str | Path | None = None, progress: bool = True,
                   use_cache: bool = True) -> ShardedData:
    """Tokenized shards of the partition folder ``recipe.data.path`` (see the module doc)."""
    from tqdm.auto import tqdm

    from evtlm.ingest.partition import read_partition
    from evtlm.fsio import default_cache_dir
    from evtlm.text.tokenization import tokenizer_fingerprint, try_load_pretrained

    recipe = text_recipe(recipe)
    if not is_sharded(recipe):
        raise DataError(f"data.path {recipe.data.path!r} is not a partition folder", where="data.path",
                        fix="write one with `evtlm partition RECIPE --out DIR` and point data.path at DIR")
    part = read_partition(recipe.data.path)
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "shards"
    if tokenizer is None:  # a pretrained tokenizer when one loads (offline: the local cache), as prepare does
        tokenizer, _ = try_load_pretrained(recipe.model)
    scratch = tokenizer is None
    tok_key = f"scratch:{recipe.model.scratch.vocab_size}" if scratch else tokenizer_fingerprint(tokenizer)
    key = datacache.cache_key(recipe, {**datacache.data_fingerprint(recipe.data), "format": FORMAT}, tok_key)
    final = root / key
    if use_cache and datacache.is_complete(final):
        return _open(final, from_cache=True)

    facts = log_facts(recipe, part, progress)
    from evtlm.tasks import get_task

    stream_task = get_task(recipe.task.name).stream  # pretraining: report rows are chunks of streams
    tmp = datacache.new_entry(root)
    try:
        counts: dict[str, dict[str, list[int]]] = {name: {s: [] for s in SPLITS} for name in ("examples", "windows", "tokens")}
        events, users, next_id = [], [], 0
        parts: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}  # each shard's, for an exact report
        cold: dict[str, tuple[int, set]] | None = None  # next_item: examples and items outside the label space
        dropped = dict.fromkeys(SPLITS, 0)  # task.examples_per_user: examples over the cap
        # events/s and ETA over the whole log, the shard in the postfix
        bar = tqdm(total=int(sum(part.manifest["events"])), desc="prepare shards", unit="ev", unit_scale=True,
                   disable=not progress)
        for k in range(part.shards):
            bar.set_postfix_str(f"shard {k + 1}/{part.shards}")
            log = EventLog(part.shard(k), part.catalog, part.report)
            events.append(len(log.events))
            users.append(int(log.events["user_id"].nunique()))
            work = tmp / f"work-{k:05d}"
            # example ids run on across shards: ids of the whole folder are unique
            try:
                prepared = prepare(recipe, tokenizer=tokenizer, cache_dir=work, progress=False, events=log, facts=facts,
                                   first_example_id=next_id)
            except TaskError as exc:  # e.g. a shard too small to hold a training example
                raise TaskError(f"shard {k} of {part.shards} ({len(log.events):,} events): {exc.what}",
                                where=exc.where, fix="; ".join(f for f in (exc.fix, "or partition into fewer shards") if f)) from None
            next_id += sum(len(prepared.index[s]) for s in SPLITS)
            for s in SPLITS:
                parts[s].append(split_parts(prepared.index[s]))
                dropped[s] += int(prepared.report["task"]["examples_per_user"]["dropped"].get(s, 0))
            if prepared.report.get("cold_items") is not None:
                cold = cold or {s: (0, set()) for s in SPLITS}
                for s in SPLITS:
                    out = prepared.index[s].loc[prepared.index[s]["label_index"] < 0, "label"]
                    cold[s] = (cold[s][0] + len(out), cold[s][1] | set(out.astype(str)))
            tokenizer = prepared.tokenizer  # a scratch one, trained on shard 0, tokenizes every later shard
            if k == 0:
                tokenizer.save_pretrained(str(tmp / "tokenizer"))
            for s in SPLITS:
                counts["examples"][s].append(len(prepared.index[s]))
                counts["windows"][s].append(len(prepared.datasets[s]))
                counts["tokens"][s].append(int(prepared.index[s]["n_tokens"].sum()))
            entry = prepared.cache_path
            del prepared
            entry.rename(tmp / _shard_dir(k))
            shutil.rmtree(work, ignore_errors=True)
            bar.update(events[-1])
        bar.close()
        rows = recipe.task.max_tokens if stream_task else None
        splits = {s: split_summary(merge_split_parts(parts[s]), stream_rows=rows, labels=not stream_task) for s in SPLITS}
        manifest = {"format": FORMAT, "shards": part.shards, "partition": str(part.path), "label_space": facts.label_space
                    if facts.label_space is not None else _label_space_of(tmp), "facts": facts.key(),
                    "events": events, "users": users, "splits": splits,
                    "examples_per_user_dropped": dropped, "cold_items": _cold_report(cold, parts), **counts,
                    "tokenizer": "trained on shard 0's training text" if scratch else "given or pretrained"}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        final = datacache.commit_entry(tmp, final)
    except BaseException:
        datacache.discard(tmp)
        raise
    return _open(final, from_cache=False)


def _cold_report(cold: dict[str, tuple[int, set]] | None, parts: dict[str, list[dict[str, Any]]]) -> dict | None:
    """next_item's ``cold_items`` over every shard (`evtlm.tasks.next_item.cold_report`'s figures):
    examples add up, distinct items are the union of the shards'."""
    if cold is None:
        return None
    out = {}
    for s, (n, items) in cold.items():
        total = sum(int(p["tokens"].sum()) for p in parts[s])
        out[s] = {"examples": n, "share": float(n / total) if total else 0.0, "distinct_items": len(items)}
    return out
