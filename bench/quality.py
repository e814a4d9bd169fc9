"""Quality on real logs: the fine-tuned model next to every built-in baseline, same examples.

For each recipe below: ``evtlm finetune RECIPE [overrides]`` (which prepares the data, builds the
base, trains LoRA and ends with ``evtlm.evaluate.evaluate_run`` on the test split) in a fresh
process, then its ``metrics.json`` is read (``evtlm evaluate --run DIR`` is run only if the
finetune left none). Reported per recipe: the headline metric of the model and of the best
baseline (and every method's value in the details), and the wall time of the whole run.

=============================  ===========  ===========================================
recipe                         metric       what it asks
=============================  ===========  ===========================================
taobao_purchase.yaml           ROC-AUC      buys within 2 days of the cutoff?
taobao_next_action.yaml        macro-F1     next behaviour (view / cart / fav / buy)
taobao_next_item.yaml          NDCG@10      next item, leave-one-out
online_retail_next_item.yaml   HR@10        next product bought, descriptions as item text
=============================  ===========  ===========================================

These are long on 2 CPU cores (offline, the base is a small GPT-2 built and pretrained from
scratch on the training events; next-item decoding is a beam search per example), so
``--quick`` caps training steps, scratch pretraining, beams and evaluated examples
(`QUICK`); the overrides used are written next to every figure. Needs ``../shared/data``;
each recipe whose file is absent is skipped with the reason.

    python -m bench.quality --quick                       # all four, capped
    python -m bench.quality --recipes taobao_purchase     # one, as shipped (long)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, SHARED_DATA, row, write_result

NAME = "quality"
RECIPES = {  # recipe -> (data file, headline metric, its label)
    "taobao_purchase": ("taobao/UserBehavior_head84k.csv", "roc_auc", "ROC-AUC"),
    "taobao_next_action": ("taobao/UserBehavior_head84k.csv", "macro_f1", "macro-F1"),
    "taobao_next_item": ("taobao/UserBehavior_head84k.csv", "ndcg@10", "NDCG@10"),
    "online_retail_next_item": ("online_retail/online_retail.csv.gz", "hr@10", "HR@10"),
}
# --quick: what fits a few minutes per recipe on 2 shared cores
QUICK = {
    "common": ["train.max_steps=60", "train.eval_every=30", "train.save_every=1000", "eval.fit_max_examples=100",
               "model.scratch.pretrain_max_steps=40", "eval.max_examples=300"],
    "next_item": ["decode.num_beams=10", "eval.sasrec.epochs=10", "eval.fit_max_examples=50"],
}


def overrides_for(name: str, quick: bool, out_dir: Path) -> list[str]:
    over = [f"data.path={SHARED_DATA / RECIPES[name][0]}", f"output.dir={out_dir}", "output.overwrite=true"]
    if quick:
        over += QUICK["common"] + (QUICK["next_item"] if name.endswith("next_item") else [])
    return over


def run_recipe(name: str, quick: bool, out_dir: Path, timeout: float | None) -> dict[str, Any]:
    """One finetune + evaluation in a fresh process; its metrics and wall time."""
    recipe = REPO / "recipes" / f"{name}.yaml"
    over = overrides_for(name, quick, out_dir)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "evtlm.cli.main", "finetune", str(recipe), *over, "--no-progress"]
    t0 = time.perf_counter()
    (out_dir / f"{name}.started").write_text(f"{time.time():.0f}\n")  # for --collect after an interruption
    log = out_dir / f"{name}.log"
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    run_dir = out_dir / name
    metrics = run_dir / "metrics.json"
    if proc.returncode == 0 and not metrics.is_file():
        with open(log, "a") as fh:
            subprocess.run([sys.executable, "-m", "evtlm.cli.main", "evaluate", "--run", str(run_dir), "--no-progress"],
                           cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    seconds = time.perf_counter() - t0
    if not metrics.is_file():
        tail = log.read_text().splitlines()[-15:]
        return {"error": f"exit {proc.returncode}", "log_tail": tail, "seconds": seconds, "overrides": over}
    result = json.loads(metrics.read_text())
    run_json = run_dir / "run.json"
    base = json.loads(run_json.read_text()).get("base") if run_json.is_file() else None  # which base was used, why
    return {"seconds": round(seconds, 1), "overrides": over, "n": result["n"], "n_split": result["n_split"],
            "methods": result["methods"], "base": base, "recipe": f"recipes/{name}.yaml"}


def collect(name: str, quick: bool, out_dir: Path) -> dict[str, Any]:
    """A finished run directory's figures; wall time from ``<name>.started`` (written when the
    run began) to the last write of its ``metrics.json``."""
    run_dir = out_dir / name
    metrics, started = run_dir / "metrics.json", out_dir / f"{name}.started"
    if not metrics.is_file():
        return {"skipped": f"not run in this session (no {metrics})"}
    result = json.loads(metrics.read_text())
    run_json = run_dir / "run.json"
    seconds = metrics.stat().st_mtime - float(started.read_text()) if started.is_file() else None
    return {"seconds": None if seconds is None else round(seconds, 1), "overrides": overrides_for(name, quick, out_dir),
            "n": result["n"], "n_split": result["n_split"], "methods": result["methods"],
            "base": json.loads(run_json.read_text()).get("base") if run_json.is_file() else None,
            "recipe": f"recipes/{name}.yaml", "collected": True}


def write_all(details: dict[str, Any], quick: bool) -> tuple[list[dict[str, Any]], Path]:
    rows, notes = [], []
    for name, res in details["recipes"].items():  # this run's and earlier runs' recipes, in one table
        if "skipped" in res:
            notes.append(f"{name} skipped: {res['skipped']}")
        else:
            rows.append(summarize(name, res))
    details["notes"] = notes + ["quick mode caps: " + " ".join(QUICK["common"]) + "; next_item also " + " ".join(QUICK["next_item"])
                                if quick else "recipes as shipped"]
    return rows, write_result(NAME, "Quality on real logs: model vs the best baseline", rows, details)


def summarize(name: str, res: dict[str, Any]) -> dict[str, Any]:
    metric, label = RECIPES[name][1], RECIPES[name][2]
    if "error" in res:
        return row(f"{name}: {label}", None, None, ">= best baseline", met=False, note=f"failed ({res['error']})")
    methods = res["methods"]
    model = methods.get("model", {}).get(metric)
    baselines = {k: v.get(metric) for k, v in methods.items() if k != "model" and v.get(metric) is not None}
    best = max(baselines, key=baselines.get) if baselines else None
    ref = baselines.get(best) if best else None
    met = None if model is None or ref is None else model >= ref
    gap = "" if met or model is None or ref is None else f"; short by {ref - model:.3f}"
    return row(f"{name}: {label}", model, ref, ">= best baseline", met=met,
               note=f"best baseline: {best}{gap}; N={res['n']} of {res['n_split']}; "
                    + (f"{res['seconds'] / 60:.1f} min" if res.get("seconds") else "wall time unknown"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipe names (default: all four)")
    ap.add_argument("--quick", action="store_true", help="capped steps/examples (see QUICK)")
    ap.add_argument("--out-dir", default=str(REPO / "runs" / "bench"), help="run directories (not committed)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per recipe")
    ap.add_argument("--collect", action="store_true",
                    help="run nothing: read the run directories already in --out-dir (e.g. after an interrupted run)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prev = REPO / "bench" / "results" / f"{NAME}.json"
    old = json.loads(prev.read_text())["details"].get("recipes", {}) if prev.is_file() else {}

    details: dict[str, Any] = {"quick": args.quick, "recipes": dict(old)}
    for name in [n.strip() for n in args.recipes.split(",") if n.strip()]:
        if name not in RECIPES:
            print(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}", file=sys.stderr)
            return 2
        data = SHARED_DATA / RECIPES[name][0]
        if not data.is_file():
            details["recipes"][name] = {"skipped": f"{data} is absent (no ../shared/data beside this checkout)"}
        elif args.collect:
            details["recipes"][name] = collect(name, args.quick, out_dir)
        else:
            print(f"[quality] {name} ({'quick' if args.quick else 'as shipped'}) ...", file=sys.stderr, flush=True)
            try:
                details["recipes"][name] = run_recipe(name, args.quick, out_dir, args.timeout)
            except subprocess.TimeoutExpired:
                details["recipes"][name] = {"error": f"timed out after {args.timeout} s", "seconds": args.timeout,
                                            "overrides": overrides_for(name, args.quick, out_dir)}
        rows, path = write_all(details, args.quick)  # after every recipe: an interrupted run keeps what it finished
    for r in rows:
        print(f"{r['figure']:<40} model {r['evtlm']}  best baseline {r['reference']}  met {r['met']}  {r['note']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
