"""Quality on real logs: the fine-tuned model next to every built-in baseline, same examples.

For each recipe below: ``evtlm finetune RECIPE [overrides]`` (which prepares the data, builds the
base, trains LoRA and ends with ``evtlm.evaluate.harness.evaluate_run`` on the test split) in a fresh
process, then its ``metrics.json`` is read (``evtlm evaluate --run DIR`` is run only if the
finetune left none). Reported per recipe: the headline metric of the model and of the best
baseline (and every method's value in the details), and the wall time of the whole run.

==============================  ==========  ==================================================
recipe                          metric      target (issue 10 / 11)
==============================  ==========  ==================================================
taobao_next_item.yaml           NDCG@10     >= 1.25x repeat and above every other baseline
online_retail_next_item.yaml    HR@10,      >= 1.05x the best baseline, each
                                NDCG@10
taobao_next_action.yaml         macro-F1    >= 0.42 and >= the best baseline + 0.03
yoochoose_next_item.yaml        HR@20,      >= the best baseline, each
                                MRR@20
taobao_purchase.yaml            ROC-AUC     >= the best baseline + 0.02
online_retail_repurchase.yaml   ROC-AUC     >= the best baseline (gbt)
purchase.yaml (synthetic shop)  ROC-AUC     >= the best baseline (gbt)
==============================  ==========  ==================================================

Purchase recipes also report ``model+gbt`` (the model stacked with the gbt baseline on
validation, `evtlm.evaluate.calibration`) against ``gbt``: its own row, target ">= gbt" (">= gbt + 0.01" for the
main job, issue 11). Rows built on the
model (``model calibrated``, ``model+gbt``) are never a "best baseline".

Every figure is on the **full test split** (a recipe that samples its test split is reported as
sampled); the model and every baseline are scored on the same examples by one
``evtlm.evaluate.harness.evaluate_run``. A model within 1% of its reference, or of any baseline (the
majority prior included), is reported as a **tie**, which never counts as met
(`bench.common.verdict`, the one rule every benchmark uses). Needs ``../shared/data``; each recipe whose file is absent is
skipped with the reason. ``--quick`` caps training for a smoke run (its figures are not the
reported ones).

    python -m bench.quality                                 # every recipe, as shipped
    python -m bench.quality --recipes taobao_next_item      # one
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, SHARED_DATA, is_tie, row, verdict, write_result
from evtlm.evaluate.calibration import CALIBRATED, STACKED

MODEL_ROWS = ("model", CALIBRATED, STACKED)  # the model's rows: never a baseline to beat

NAME = "quality"
RECIPES = {  # recipe -> (data file, [(metric, label)], target kind, parameter)
    "taobao_next_item": ("taobao/UserBehavior_head84k.csv", [("ndcg@10", "NDCG@10")], "ratio_of:repeat", 1.25),
    "online_retail_next_item": ("online_retail/online_retail.csv.gz", [("hr@10", "HR@10"), ("ndcg@10", "NDCG@10")],
                                "ratio_best", 1.05),
    "taobao_next_action": ("taobao/UserBehavior_head84k.csv", [("macro_f1", "macro-F1")], "margin_best", (0.42, 0.03)),
    "yoochoose_next_item": ("yoochoose/yoochoose-clicks-100k_train_full.txt", [("hr@20", "HR@20"), ("mrr@20", "MRR@20")],
                            "ratio_best", 1.0),
    "taobao_purchase": ("taobao/UserBehavior_head84k.csv", [("roc_auc", "ROC-AUC")], "margin_best", (0.0, 0.02)),
    "online_retail_repurchase": ("online_retail/online_retail.csv.gz", [("roc_auc", "ROC-AUC")], "ratio_best", 1.0),
    "purchase": (None, [("roc_auc", "ROC-AUC")], "ratio_best", 1.0),  # the main job: the embedded synthetic shop
}
# model+gbt against gbt (issue 11): the main job's stack must add 0.01 ROC-AUC, the others must not lose
STACK_MARGIN = {"purchase": 0.01}
# --quick: a smoke run in minutes (not the reported figures)
QUICK = {
    "common": ["train.max_steps=30", "train.eval_every=15", "train.save_every=1000", "eval.fit_max_examples=100",
               "model.scratch.pretrain_max_steps=20", "eval.max_examples=300"],
    "next_item": ["eval.sasrec.epochs=5"],
}


def overrides_for(name: str, quick: bool, out_dir: Path) -> list[str]:
    data = RECIPES[name][0]
    over = ([f"data.path={SHARED_DATA / data}"] if data else []) + [f"output.dir={out_dir}", "output.overwrite=true"]
    if quick:
        over += QUICK["common"] + (QUICK["next_item"] if name.endswith("next_item") else [])
    return over


def run_recipe(name: str, quick: bool, out_dir: Path, timeout: float | None, threads: int | None = None) -> dict[str, Any]:
    """One finetune + evaluation in a fresh process; its metrics and wall time. ``threads``: the
    process's OpenMP threads (1 when recipes share the cores: oversubscribed OpenMP is 3-5x slower)."""
    recipe = REPO / "recipes" / f"{name}.yaml"
    over = overrides_for(name, quick, out_dir)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
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
            rows.extend(summarize(name, res))
    details["notes"] = notes + ["QUICK SMOKE RUN, not the reported figures: " + " ".join(QUICK["common"])
                                if quick else "recipes as shipped, full test splits"]
    return rows, write_result(NAME, "Quality on real logs: model vs the best baseline", rows, details)


def _standard_errors(methods: dict[str, dict[str, float]], metric: str, ref_name: str | None, method: str = "model") -> str:
    """``; SE ...`` for a metric whose standard error the evaluation recorded (ROC-AUC: DeLong's),
    with the model-minus-reference difference in units of the unpaired SE (conservative: the two
    are scored on the same examples); '' otherwise.

    >>> _standard_errors({"model": {"roc_auc": 0.545, "roc_auc_se": 0.021}, "gbt": {"roc_auc": 0.536, "roc_auc_se": 0.02}},
    ...                  "roc_auc", "gbt")
    '; SE (DeLong) model 0.021, gbt 0.020: the difference +0.009 is 0.3 SE'
    """
    model, ref = methods.get(method, {}), methods.get(ref_name or "", {})
    se_m, se_r = model.get(f"{metric}_se"), ref.get(f"{metric}_se")
    if se_m is None or se_r is None or any(map(math.isnan, (se_m, se_r))):
        return ""
    diff = model[metric] - ref[metric]
    return (f"; SE (DeLong) {method} {se_m:.3f}, {ref_name} {se_r:.3f}: the difference {diff:+.3f} is "
            f"{abs(diff) / math.hypot(se_m, se_r):.1f} SE")


def summarize(name: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline metric: the model against the reference its target names."""
    _, metrics, kind, param = RECIPES[name]
    out = []
    for metric, label in metrics:
        figure = f"{name}: {label}"
        if "error" in res:
            out.append(row(figure, None, None, _target_text(kind, param), met=False, note=f"failed ({res['error']})"))
            continue
        methods = res["methods"]
        model = methods.get("model", {}).get(metric)
        baselines = {k: v.get(metric) for k, v in methods.items() if k not in MODEL_ROWS and v.get(metric) is not None}
        best = max(baselines, key=baselines.get) if baselines else None
        if kind.startswith("ratio_of:"):  # a ratio to one named baseline, and above all the others
            ref_name = kind.split(":", 1)[1]
            ref = baselines.get(ref_name)
            others = [v for k, v in baselines.items() if k != ref_name]
            met = None if model is None or ref is None else model >= param * ref and all(model > v for v in others)
        elif kind == "margin_best":
            floor, margin = param
            ref_name, ref = best, baselines.get(best) if best else None
            met = None if model is None or ref is None else model >= floor and model >= ref + margin
        else:
            ref_name, ref = best, baselines.get(best) if best else None
            met = None if model is None or ref is None else model >= param * ref
        tied = tied_with(model, ref_name, baselines)
        label, met = verdict(met, model, baselines[tied] if tied else None)
        label = (label or "short") + (f" with {tied}" if tied and tied != ref_name else "")
        sampled = f"N={res['n']} of {res['n_split']}" + (" (SAMPLED)" if res["n"] < res["n_split"] else " (full test split)")
        note = (f"{label}; reference: {ref_name}; best baseline: {best} {baselines.get(best, float('nan')):.4f}; {sampled}; "
                + (f"{res['seconds'] / 60:.1f} min" if res.get("seconds") else "wall time unknown"))
        note += _standard_errors(methods, metric, ref_name)
        out.append(row(figure, model, ref, _target_text(kind, param), met=met, note=note,
                       tie_with=baselines[tied] if tied else None))
        stacked, gbt = methods.get(STACKED, {}).get(metric), baselines.get("gbt")
        if stacked is not None and gbt is not None:  # purchase: the stack against the trees it reads
            margin = STACK_MARGIN.get(name, 0.0)
            stack_met = stacked >= gbt + margin
            stack_label, _ = verdict(stack_met, stacked, gbt)
            out.append(row(f"{figure} ({STACKED})", stacked, gbt, f">= gbt + {margin:g}" if margin else ">= gbt",
                           met=stack_met, note=f"{stack_label or 'short'}; reference: gbt; {sampled}"
                           + _standard_errors(methods, metric, "gbt", STACKED)))
    return out


def tied_with(model: float | None, ref_name: str | None, baselines: dict[str, float]) -> str | None:
    """The baseline the model ties (`bench.common.is_tie`): its reference first, then the
    majority prior, then any other; None when it ties none.

    A model within 1% of the prior has learned nothing the label counts do not know, whatever
    the target says about the other baselines.

    >>> tied_with(0.503, "repeat", {"repeat": 0.40, "prior": 0.50, "popularity": 0.45})
    'prior'
    >>> tied_with(0.60, "gbt", {"gbt": 0.50, "prior": 0.50}) is None
    True
    """
    order = ([ref_name] if ref_name in baselines else []) + (["prior"] if "prior" in baselines else []) + sorted(baselines)
    return next((name for name in order if is_tie(model, baselines[name])), None)


def _target_text(kind: str, param) -> str:
    if kind.startswith("ratio_of:"):
        return f">= {param}x {kind.split(':', 1)[1]}, > every other baseline"
    if kind == "margin_best":
        return f">= {param[0]} and >= best baseline + {param[1]}"
    return f">= {param}x best baseline" if param != 1.0 else ">= best baseline"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipe names (default: all)")
    ap.add_argument("--quick", action="store_true", help="capped steps/examples (see QUICK)")
    ap.add_argument("--out-dir", default=str(REPO / "runs" / "bench"), help="run directories (not committed)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per recipe")
    ap.add_argument("--jobs", type=int, default=2,
                    help="recipes run at once, one torch thread each (default 2: one per core; 1: one at a time)")
    ap.add_argument("--collect", action="store_true",
                    help="run nothing: read the run directories already in --out-dir (e.g. after an interrupted run)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prev = REPO / "bench" / "results" / f"{NAME}.json"
    old = json.loads(prev.read_text())["details"].get("recipes", {}) if prev.is_file() else {}

    details: dict[str, Any] = {"quick": args.quick, "recipes": dict(old), "jobs": args.jobs}
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        print(f"unknown recipe {unknown[0]!r}; known: {', '.join(RECIPES)}", file=sys.stderr)
        return 2

    def one(name: str) -> tuple[str, dict[str, Any]]:
        data = SHARED_DATA / RECIPES[name][0] if RECIPES[name][0] else None  # None: embedded data
        if data is not None and not data.is_file():
            return name, {"skipped": f"{data} is absent (no ../shared/data beside this checkout)"}
        if args.collect:
            return name, collect(name, args.quick, out_dir)
        print(f"[quality] {name} ({'quick' if args.quick else 'as shipped'}) ...", file=sys.stderr, flush=True)
        try:
            return name, run_recipe(name, args.quick, out_dir, args.timeout, threads=1 if args.jobs > 1 else None)
        except subprocess.TimeoutExpired:
            return name, {"error": f"timed out after {args.timeout} s", "seconds": args.timeout,
                          "overrides": overrides_for(name, args.quick, out_dir)}

    from concurrent.futures import ThreadPoolExecutor

    rows, path = write_all(details, args.quick)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # each recipe is its own process
        for name, res in pool.map(one, names):
            details["recipes"][name] = res
            rows, path = write_all(details, args.quick)  # after every recipe: an interrupted run keeps what it finished
    for r in rows:
        print(f"{r['figure']:<40} model {r['evtlm']}  best baseline {r['reference']}  met {r['met']}  {r['note']}")
    print(f"wrote {path}")
    if not args.quick:  # the README's results table is generated from this output, never pasted
        from bench.readme_results import write

        write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
