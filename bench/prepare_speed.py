"""Preparation speed and peak memory: ``evtlm.data.prepare.prepare`` against the tutorial way.

Work measured on both sides: read the log file, validate it, verbalize every event, build the
purchase examples (user level: history before each cutoff -> " yes"/" no") and tokenize them.

- **evtlm**: ``evtlm.data.prepare.prepare(recipe, use_cache=False)`` (a throw-away cache dir, so nothing
  is read back from an earlier run). Recipes: ``recipes/purchase.yaml`` with its data pointed at
  the synthetic file through the ``evtlm_shop`` preset, and ``recipes/taobao_purchase.yaml``.
- **naive**: `bench.naive_prepare` (pandas ``read_csv``, ``iterrows`` string building, one
  tokenizer call per example). It runs on a subsample of the synthetic log (``--naive-events``,
  the first rows of the same file: whole users) and its rate is reported per event; evtlm also
  runs on that same subsample, so the small-input rate is visible too. On Taobao (84k events)
  both sides run on the whole file.

Each side runs in its own fresh process; its peak memory is that process's high-water mark
(VmHWM, = ``ru_maxrss`` of the child), so the two never share a peak. The tokenizer is the real
GPT-2 BPE from ``../shared/tokenizers/gpt2`` when present (else the recipe's scratch tokenizer,
trained on the training text: that training is then part of evtlm's time).

    python -m bench.prepare_speed                 # 5M synthetic events + Taobao (several minutes)
    python -m bench.prepare_speed --quick         # 500k events, naive on 20k
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import GPT2_DIR, REPO, SHARED_DATA, gpt2_available, model_section, row, run_child, write_result

NAME = "prepare_speed"
TAOBAO = SHARED_DATA / "taobao" / "UserBehavior_head84k.csv"
MEMORY_LIMIT_GB = 4.0


# ------------------------------------------------------------------------------- child sides
def simulate_side(path: str, events: float, items: int = 2000, days: int = 60, seed: int = 11) -> dict[str, Any]:
    """Write a synthetic shop of about ``events`` events to ``path`` (users scaled to fit)."""
    from evtlm.recipe import SyntheticConfig
    from evtlm.ingest.simulate import simulate_shop, write_shop

    probe = simulate_shop(SyntheticConfig(users=500, items=items, days=days, seed=seed)).events
    users = max(1, int(events / (len(probe) / 500)))
    t0 = time.perf_counter()
    log = simulate_shop(SyntheticConfig(users=users, items=items, days=days, seed=seed))
    write_shop(log, path)
    return {"events": len(log.events), "users": users, "seconds": round(time.perf_counter() - t0, 2)}


def _overrides(data_path: str, preset: str) -> list[str]:
    model = model_section()
    over = [f"data.path={data_path}", f"data.preset={preset}", f"model.base={model['base']}"]
    if "when_unavailable" in model:
        over.append(f"model.when_unavailable={model['when_unavailable']}")
    return over


def evtlm_side(recipe_path: str, data_path: str, preset: str, cache_dir: str) -> dict[str, Any]:
    """``prepare`` with no cache reuse; counts, stage-free total time."""
    # imports are not the work measured: both sides load theirs first (AutoTokenizer pulls in
    # torch, ~5 s on a busy machine, which the naive side also imports before its clock starts)
    import datasets  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

    from evtlm.data.prepare import prepare
    from evtlm.recipe import load_recipe

    t0, c0 = time.perf_counter(), time.process_time()
    recipe = load_recipe(recipe_path, _overrides(data_path, preset))
    p = prepare(recipe, cache_dir=cache_dir, progress=False, use_cache=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    splits = p.report["splits"]
    return {"events": len(p.events.events), "users": int(p.events.events["user_id"].nunique()),
            "examples": sum(p.report["examples"].values()), "tokens": sum(s["tokens"]["total"] for s in splits.values()),
            "tokenizer": p.tokenizer_info.source, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}


def naive_side(recipe_path: str, data_path: str, fmt: str) -> dict[str, Any]:
    from bench.naive_prepare import naive_prepare
    from evtlm.recipe import load_recipe

    r = load_recipe(recipe_path)  # the same horizon, windows and budget as evtlm's side
    return naive_prepare(data_path, fmt, str(GPT2_DIR), horizon_days=r.task.horizon_days, valid_days=r.split.valid_days,
                         test_days=r.split.test_days, max_tokens=r.task.max_tokens,
                         cutoff_every_days=r.task.cutoff_every_days)


SIDES = {"simulate": simulate_side, "evtlm": evtlm_side, "naive": naive_side}


def _child(argv: list[str]) -> None:
    import json

    from bench.common import child_main

    spec = json.loads(argv[-1])
    side = SIDES[spec.pop("side")]
    child_main(lambda **kw: side(**kw), [json.dumps(spec)])


# ------------------------------------------------------------------------------------ parent
def head_copy(src: Path, dst: Path, rows: int) -> int:
    """The header and first ``rows`` events of ``src`` (rows are grouped by user: whole users but
    the last), plus its catalog file. Returns the rows written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(src) as fin, open(dst, "w") as fout:
        fout.write(fin.readline())
        for line in fin:
            if n == rows:
                break
            fout.write(line)
            n += 1
    cat = src.with_name(src.stem + ".catalog.csv")
    if cat.is_file():
        shutil.copy(cat, dst.with_name(dst.stem + ".catalog.csv"))
    return n


def measure(name: str, recipe: Path, data: Path, preset: str, fmt: str, cache: Path, naive_data: Path) -> dict[str, Any]:
    print(f"[prepare] {name}: evtlm on {data.name} ...", file=sys.stderr, flush=True)
    ev = run_child("bench.prepare_speed", {"side": "evtlm", "recipe_path": str(recipe), "data_path": str(data),
                                            "preset": preset, "cache_dir": str(cache)}, label=f"evtlm {name}")
    out = {"evtlm": ev}
    if naive_data != data:
        print(f"[prepare] {name}: evtlm on the naive subsample ...", file=sys.stderr, flush=True)
        out["evtlm_subsample"] = run_child("bench.prepare_speed", {"side": "evtlm", "recipe_path": str(recipe),
                                                                    "data_path": str(naive_data), "preset": preset,
                                                                    "cache_dir": str(cache)}, label=f"evtlm sub {name}")
    print(f"[prepare] {name}: naive on {naive_data.name} ...", file=sys.stderr, flush=True)
    out["naive"] = run_child("bench.prepare_speed", {"side": "naive", "recipe_path": str(recipe),
                                                      "data_path": str(naive_data), "fmt": fmt}, label=f"naive {name}")
    for side in out.values():
        side["events_per_s"] = side["events"] / side["seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(argv)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=float, default=5e6, help="synthetic log size (default 5e6)")
    ap.add_argument("--naive-events", type=int, default=50_000, help="rows the naive side prepares")
    ap.add_argument("--quick", action="store_true", help="500k events, naive on 20k")
    ap.add_argument("--skip-taobao", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.naive_events = min(args.events, 5e5), min(args.naive_events, 20_000)

    tmp = Path(tempfile.mkdtemp(prefix="evtlm-bench-prepare-"))
    notes, rows, details = [], [], {"tokenizer": "gpt2 (../shared)" if gpt2_available() else "scratch BPE (no ../shared)"}
    try:
        shop = tmp / "shop.csv"
        print(f"[prepare] writing a {args.events:,.0f}-event synthetic shop ...", file=sys.stderr, flush=True)
        details["simulate"] = run_child("bench.prepare_speed", {"side": "simulate", "path": str(shop), "events": args.events})
        sub = tmp / "sub" / "shop.csv"
        head_copy(shop, sub, args.naive_events)
        syn = measure("synthetic", REPO / "recipes" / "purchase.yaml", shop, "evtlm_shop", "shop", tmp / "cache", sub)
        details["synthetic"] = syn
        n = syn["evtlm"]["events"]
        label = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"
        rows.append(row(f"events/s, synthetic {label} events", syn["evtlm"]["events_per_s"], syn["naive"]["events_per_s"],
                        ">= 20x", 20.0, note=f"naive on the first {syn['naive']['events']:,} events, rate per event"))
        rows.append(row(f"events per CPU-second, synthetic {label} events", n / syn["evtlm"]["cpu_seconds"],
                        syn["naive"]["events"] / syn["naive"]["cpu_seconds"], "(context)",
                        note="CPU time of all the process's threads: less sensitive to other load than wall time"))
        rows.append(row(f"events/s, both on the same {syn['naive']['events'] / 1e3:.0f}k events",
                        syn["evtlm_subsample"]["events_per_s"], syn["naive"]["events_per_s"], "(context)",
                        note="fixed costs (tokenizer load, Arrow datasets) weigh more on small inputs"))
        rows.append(row(f"peak memory, synthetic {label} events", syn["evtlm"]["peak_rss_gb"], None, "< 4 GB",
                        met=syn["evtlm"]["peak_rss_gb"] < MEMORY_LIMIT_GB and n >= 4.5e6, unit="GB",
                        note=f"naive: {syn['naive']['peak_rss_gb']:.2f} GB on {syn['naive']['events']:,} events"
                        + ("" if n >= 4.5e6 else "; target is for 5M events, not met by a smaller run")))
        if args.skip_taobao:
            notes.append("Taobao skipped (--skip-taobao)")
        elif not TAOBAO.is_file():
            notes.append(f"Taobao skipped: {TAOBAO} is absent (no ../shared/data beside this checkout)")
        else:
            tb = measure("taobao", REPO / "recipes" / "taobao_purchase.yaml", TAOBAO, "taobao", "taobao", tmp / "cache", TAOBAO)
            details["taobao"] = tb
            rows.append(row(f"events/s, Taobao {tb['evtlm']['events'] / 1e3:.0f}k events", tb["evtlm"]["events_per_s"],
                            tb["naive"]["events_per_s"], ">= 20x", 20.0, note="both sides on the whole file"))
            rows.append(row("events per CPU-second, Taobao", tb["evtlm"]["events"] / tb["evtlm"]["cpu_seconds"],
                            tb["naive"]["events"] / tb["naive"]["cpu_seconds"], "(context)",
                            note="CPU time of all the process's threads: less sensitive to other load than wall time"))
        notes.append("evtlm = read + validate + verbalize + examples + tokenize + Arrow datasets, in a fresh process "
                     "(imports excluded, tokenizer load included); naive = bench/naive_prepare.py")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    details["notes"] = notes
    path = write_result(NAME, "Preparation: events/s and peak memory", rows, details)
    for r in rows:
        print(f"{r['figure']:<48} evtlm {r['evtlm']:>12,.2f}  ref {r['reference'] or 0:>10,.2f}  "
              f"ratio {r['ratio'] or 0:>6.1f}  target {r['target']:<8} met {r['met']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
