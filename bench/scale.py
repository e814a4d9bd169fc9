"""Scale: a ~100M-event shop on one machine, against the same pipeline at 5M events in the same run.

    python -m bench.scale                       # make bench-scale: 5M and ~100M events
    python -m bench.scale --events 2e7          # a smaller large side
    python -m bench.scale --quick               # 1M and 5M (minutes)

For each size, in fresh child processes (their own peak memory, `bench.common.run_child`):

1. **simulate**: `evtlm simulate --part-users` (`evtlm.ingest.simulate.write_shop_parts`): the shop
   written part by part as Parquet, about 1M users for 100M events;
2. **partition**: `evtlm.ingest.partition.partition_events` over that folder: read in chunks of 1M
   rows, every row checked and mapped as prepare does, cut by user into shards of about 1.5M
   events each (67 at 99M, 3 at 5M), each shard finished (sort, duplicates, sessions);
3. **prepare purchase** and **prepare next_item**: `evtlm.data.shard_prepare.prepare_shards` of
   `recipes/purchase.yaml` (stream, daily cutoffs, features) and `recipes/next_item.yaml`
   (stream, item tokens) over those shards (``data.by_shard``): the facts pass, then each shard
   tokenized and written as memory-mapped Arrow;
4. **train**: the purchase recipe's training loop over the prepared shards (`evtlm.train.fit.fit`
   on `ShardedData.prepared`, one epoch planned), from the child's start to its first optimizer
   step (imports, opening the shards, the scratch base, the feature scale), then memory after
   steps 10 to 1,500: the launch time, the peak, and whether the heap stays flat once the
   allocator has warmed up (steps 500-1,500: over the first few hundred steps it still grows
   with every new batch shape, 0.066 GB per 100 steps at first, 0.003 by step 1,500 at 5M events;
   mapped shard pages are counted apart: shared, and reclaimable).

Reported per stage and size: events/s, peak RSS (VmHWM of the child) and disk used; the ratio
of the large run's events/s to the small one's is the scaling figure (target ≥ 0.8: linear).
The data are written under ``--workdir`` (default: a temporary folder, removed after).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, child_main, row, run_child, write_result

NAME = "scale"
EVENTS_PER_SHARD = 1_500_000  # shards sized for memory: the same shard size at every scale


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child(stage: str, folder: str, users: int = 0, days: int = 60, part_users: int = 20_000,
          shards: int = 4, chunk_rows: int = 1_000_000, steps: int = 1500) -> dict[str, Any]:
    """One stage in this (child) process."""
    folder_p = Path(folder)
    t0 = time.perf_counter()
    if stage == "simulate":
        from evtlm.recipe import SyntheticConfig
        from evtlm.ingest.simulate import write_shop_parts

        _, _, report = write_shop_parts(SyntheticConfig(users=users, days=days, items=5000, seed=13), folder_p / "shop",
                                        part_users, "parquet", progress=True)
        seconds = time.perf_counter() - t0
        return {"events": report.rows_kept, "users": report.users, "seconds": round(seconds, 1),
                "disk_bytes": _disk_bytes(folder_p / "shop")}
    if stage in ("prepare_purchase", "prepare_next_item"):
        from evtlm.recipe import load_recipe
        from evtlm.data.shard_prepare import prepare_shards

        task = stage.removeprefix("prepare_")
        recipe = load_recipe(REPO / "recipes" / f"{task}.yaml", [f"data.path={folder_p / 'parts'}", "data.by_shard=true"])
        sharded = prepare_shards(recipe, cache_dir=folder_p / "cache", progress=True, use_cache=False)
        seconds = time.perf_counter() - t0
        return {"events": int(sum(sharded.manifest["events"])), "seconds": round(seconds, 1), "shards": sharded.shards,
                "windows": {k: int(sum(v)) for k, v in sharded.manifest["windows"].items()},
                "examples": {k: int(sum(v)) for k, v in sharded.manifest["examples"].items()},
                "disk_bytes": _disk_bytes(sharded.path)}
    if stage == "train":
        return _train_start(folder_p, t0, steps)
    from evtlm.ingest.partition import partition_events
    from evtlm.recipe import DataConfig

    cfg = DataConfig(preset="evtlm_shop", path=str(folder_p / "shop"))
    part = partition_events(cfg, folder_p / "parts", shards, chunk_rows=chunk_rows, progress=True)
    seconds = time.perf_counter() - t0
    return {"events": part.report.rows_kept, "rows_read": part.report.rows_read, "users": part.report.users,
            "seconds": round(seconds, 1), "shards": shards, "disk_bytes": _disk_bytes(folder_p / "parts"),
            "events_per_shard_max": max(part.manifest["events"])}


def _rss_gb(kind: str = "VmRSS") -> float:
    """Resident memory (GB): ``VmRSS`` in all, ``RssAnon`` (the process's own heap) or ``RssFile``
    (pages of memory-mapped files, the shards: shared, and given back under pressure)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(kind + ":")) / 2**20


def _train_start(folder: Path, t0: float, steps: int = 1500) -> dict[str, Any]:
    """The purchase recipe's training over the shards prepared by ``prepare_purchase``: seconds
    from this process's start to the first optimizer step, and RSS along the first ``steps``."""
    from evtlm.cli.finetune import finetune  # noqa: F401  (the same imports a launch pays)
    from evtlm.train.modeling import apply_lora, load_base
    from evtlm.recipe import load_recipe
    from evtlm.data.shard_prepare import prepare_shards
    from evtlm.data.stream import N_PURCHASE_FEATURES
    from evtlm.train.stream_model import StreamLM, answer_token_ids
    from evtlm.train.fit import fit

    # seconds since launch at the end of each stage: where the launch time goes
    stages: dict[str, float] = {"imports": round(time.perf_counter() - t0, 1)}

    def done(stage: str) -> None:
        stages[stage] = round(time.perf_counter() - t0, 1)

    recipe = load_recipe(REPO / "recipes/purchase.yaml", [f"data.path={folder / 'parts'}", "data.by_shard=true",
                                                           "train.max_steps=null", "train.epochs=1", "train.eval_every=1000000",
                                                           "train.save_every=1000000", "train.log_every=50"])
    sharded = prepare_shards(recipe, cache_dir=folder / "cache", progress=False)  # the entry prepare_purchase wrote
    done("open the prepared shards")
    prepared = sharded.prepared(recipe)
    done("the training split")
    model, _ = load_base(recipe.model, prepared.tokenizer, pretrain_texts=prepared.train_texts, cache_dir=folder / "cache",
                         progress=False, seed=recipe.train.seed)
    lora = recipe.lora.model_copy(update={"enabled": False})  # the scratch base is fully fine-tuned, as the recipe does
    model = StreamLM(apply_lora(model, lora), answer_token_ids(prepared.tokenizer, prepared.label_space),
                     target_features=N_PURCHASE_FEATURES, feature_bins=recipe.model.feature_bins)
    done("the base (scratch pretraining)")
    model.fit_feature_scale(sharded.dataset("train"))
    done("feature scale")
    marks: dict[int, float] = {}
    first: list[float] = []

    class Enough(Exception):
        pass

    def on_step(step: int) -> None:
        if step == 1:
            first.append(time.perf_counter() - t0)
            done("first step (loaders, sampler, one batch)")
        if step in (10, 50, 100, 200, 300, 500, 1000, 1500, steps):
            marks[step] = {kind: round(_rss_gb(kind), 3) for kind in ("VmRSS", "RssAnon", "RssFile")}
        if step >= steps:
            raise Enough

    datasets = {"train": prepared.datasets["train"]}
    try:
        fit(model, datasets, recipe.train, folder / "run", pad_id=prepared.tokenizer.pad_token_id, progress=False,
            on_step=on_step, train_is_per_process=True)
    except Enough:
        pass
    # the allocator warms up over the first few hundred steps (batches of new shapes); after that
    # a run whose memory grew with the data it has read would keep growing
    heap = [m["RssAnon"] for m in marks.values()]
    late_steps = [k for k in marks if k >= 500] or list(marks)  # a tiny shop's epoch may end sooner
    late = [marks[k]["RssAnon"] for k in late_steps]
    early = [m["RssAnon"] for k, m in marks.items() if 100 <= k <= 300] or heap
    return {"events": int(sum(sharded.manifest["events"])), "first_step_s": round(first[0], 1), "launch_stages_s": stages,
            "train_windows": len(prepared.datasets["train"]), "rss_gb_at_step": marks, "steps": max(marks),
            "anon_growth_gb": round(max(late) - min(late), 3), "growth_steps": [min(late_steps), max(late_steps)],
            "anon_growth_100_300_gb": round(max(early) - min(early), 3),
            "seconds": round(time.perf_counter() - t0, 1)}


def _stage_note(train: dict[str, Any]) -> str:
    """"; seconds per launch stage: imports 5.1, ..." from cumulative marks (runs from before the marks: "")."""
    marks = train.get("launch_stages_s")
    if not marks:
        return ""
    last, parts = 0.0, []
    for stage, at in marks.items():
        parts.append(f"{stage} {at - last:.1f}")
        last = at
    return "; seconds per launch stage: " + ", ".join(parts)


def _probe_events_per_user(days: int) -> float:
    from evtlm.recipe import SyntheticConfig
    from evtlm.ingest.simulate import simulate_parts

    [log] = list(simulate_parts(SyntheticConfig(users=2000, days=days, items=5000, seed=13), 2000))
    return len(log.events) / 2000


def measure(events: float, days: int, workdir: Path) -> dict[str, Any]:
    users = max(1, int(events / _probe_events_per_user(days)))
    folder = workdir / f"shop-{int(events):d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shards = max(1, round(events / EVENTS_PER_SHARD))
    out = {"target_events": int(events), "users": users, "days": days}
    out["simulate"] = run_child("bench.scale", {"stage": "simulate", "folder": str(folder), "users": users,
                                               "days": days}, label="simulate")
    out["partition"] = run_child("bench.scale", {"stage": "partition", "folder": str(folder), "shards": shards},
                                 label="partition")
    for stage in ("prepare_purchase", "prepare_next_item", "train"):
        out[stage] = run_child("bench.scale", {"stage": stage, "folder": str(folder)}, label=stage)
    for stage in ("simulate", "partition", "prepare_purchase", "prepare_next_item"):
        s = out[stage]
        s["events_per_s"] = round(s["events"] / max(s["seconds"], 1e-9))
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--events", type=float, default=1e8, help="the large side (default 1e8)")
    ap.add_argument("--small", type=float, default=5e6, help="the reference side (default 5e6)")
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="1M and 5M events")
    ap.add_argument("--workdir", help="where the shops and shards are written (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.child:
        child_main(child, [args.child])
        return 0
    small, large = (1e6, 5e6) if args.quick else (args.small, args.events)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="evtlm-scale-"))
    try:
        ref = measure(small, args.days, workdir)
        big = measure(large, args.days, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for stage in ("simulate", "partition", "prepare_purchase", "prepare_next_item"):
        b, r = big[stage], ref[stage]
        rows.append(row(f"{stage}: events/s at {b['events'] / 1e6:.0f}M vs {r['events'] / 1e6:.0f}M events",
                        b["events_per_s"], r["events_per_s"], "≥ 0.8x (linear scaling)", 0.8, unit="events/s",
                        note=f"{b['seconds']:.0f} s vs {r['seconds']:.0f} s", tie_rule=False))
        rows.append(row(f"{stage}: peak RSS at {b['events'] / 1e6:.0f}M events (GB)", b["peak_rss_gb"], 8.0,
                        "< 8 GB", met=b["peak_rss_gb"] < 8.0, unit="GB", tie_rule=False,
                        note=f"{r['peak_rss_gb']:.2f} GB at {r['events'] / 1e6:.0f}M; disk "
                        f"{b['disk_bytes'] / 2**30:.2f} GiB vs {r['disk_bytes'] / 2**30:.2f} GiB"))
    t = big["train"]
    rows.append(row(f"train: seconds from launch to the first step over the {t['events'] / 1e6:.0f}M-event shards",
                    t["first_step_s"], 60.0, "< 60 s", met=t["first_step_s"] < 60, unit="s", tie_rule=False,
                    note=f"{t['train_windows']:,} training windows, one epoch planned; {ref['train']['first_step_s']:.0f} s at "
                    f"{ref['train']['events'] / 1e6:.0f}M" + _stage_note(t)))
    at = t["rss_gb_at_step"]
    rows.append(row(f"train: peak RSS over {t['steps']:,} steps at {t['events'] / 1e6:.0f}M events (GB)", t["peak_rss_gb"], 8.0,
                    "< 8 GB", met=t["peak_rss_gb"] < 8.0, unit="GB", tie_rule=False,
                    note=f"VmHWM of the training process, mapped shard pages included; {ref['train']['peak_rss_gb']:.2f} GB at "
                    f"{ref['train']['events'] / 1e6:.0f}M"))
    at = t["rss_gb_at_step"]
    lo, hi = t["growth_steps"]
    rows.append(row(f"train: heap (RssAnon) growth over steps {lo:,}-{hi:,} at {t['events'] / 1e6:.0f}M events (GB)",
                    t["anon_growth_gb"], 0.05, "flat (< 0.05 GB)", met=t["anon_growth_gb"] < 0.05, unit="GB", tie_rule=False,
                    note="RSS / heap / mapped shard pages (GB) by step: " + ", ".join(
                        f"{k}: {v['VmRSS']:.2f} / {v['RssAnon']:.2f} / {v['RssFile']:.2f}" for k, v in at.items())
                    + f"; over steps 100-300 (the allocator's warm-up) {t['anon_growth_100_300_gb']:.3f} GB"))
    details = {"small": ref, "large": big}
    path = write_result(NAME, "Scale: simulate, partition, prepare (tokenized shards) and train at ~100M events vs 5M",
                        rows, details)
    for r in rows:
        print(f"{r['figure']:<60} {r['evtlm']} vs {r['reference']}  ratio {r['ratio']}  {r['verdict']}  {r['note']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
