"""A real pretrained base against the scratch recipe, at the same training time (issue 14 item 3).

The synthetic purchase task (`recipes/purchase.yaml`: a 2-layer, 64-dim GPT-2 pretrained on the
event text, then fully fine-tuned) and `recipes/purchase_smollm2.yaml` (SmolLM2-135M + LoRA on
every Llama projection, the same data, split, stream formulation and cutoff features), each as
``evtlm finetune RECIPE [overrides]`` in a fresh process. SmolLM2 gets ``--steps`` optimizer steps
of the recipe's batch (16 windows x 128 tokens): the default, 2, is what fits in the scratch
recipe's training time on one CPU core (its pretraining plus fine-tuning took ~28 s; one SmolLM2
step ~30 s). Both are scored on the same seeded sample of the test split (``--eval-examples``;
the model and gbt on the same users), and both runs' training seconds are reported, so the
reader sees how equal the budgets were.

The figure is a report, not a target: "whichever wins" (issue 14). Needs the converted base
(``make base-smollm2``); skipped with that reason otherwise.

    python -m bench.pretrained_base                 # ~30 min on one core, most of it SmolLM2's evaluation
    python -m bench.pretrained_base --steps 20      # a longer SmolLM2 budget, same comparison
    python -m bench.pretrained_base --reuse --longer runs/bench/pretrained_base/smollm2_24   # report runs already made
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

from bench.common import REPO, row, write_result

RUNS = REPO / "runs" / "bench" / "pretrained_base"


def finetune(recipe: str, name: str, overrides: list[str], runs: Path, reuse: bool) -> dict[str, Any]:
    """One run in a fresh process (or, with ``reuse``, the run directory an earlier one left)."""
    wall = None
    if not reuse:
        cmd = [str(Path(sys.executable).parent / "evtlm"), "finetune", str(REPO / "recipes" / f"{recipe}.yaml"),
               f"output.dir={runs}", f"output.name={name}", "output.overwrite=true", "train.threads=1", *overrides,
               "--no-progress"]
        env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = round(time.perf_counter() - t0, 1)
        if done.returncode != 0:
            raise SystemExit(f"{recipe} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return collect(runs / name, recipe, overrides, wall)


def collect(run_dir: Path, recipe: str, overrides: list[str], wall: float | None) -> dict[str, Any]:
    """Test ROC-AUCs and the training budget of a finished run.

    ``step_seconds`` is the optimizer steps' time alone, steps x batch x max_tokens / the logged
    tokens/s (an upper bound: windows are at most max_tokens): fit's own time also holds its
    validation passes, which for a stream run score every validation window (17 min for SmolLM2
    on one core, a second for the scratch GPT-2)."""
    import csv

    import yaml

    run = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    resolved = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    with open(run_dir / "train_log.csv") as fh:
        rates = [float(r["tokens_per_s"]) for r in csv.DictReader(fh) if r.get("tokens_per_s")]
    steps = run["training"]["steps"]
    tokens = steps * resolved["train"]["batch_size"] * resolved["task"]["max_tokens"]
    return {"recipe": recipe, "run_dir": str(run_dir), "overrides": overrides, "wall_seconds": wall, "steps": steps,
            "fit_seconds": run["training"]["train_seconds"], "step_seconds": round(tokens / rates[-1], 1) if rates else None,
            "pretrain_seconds": (run["base"].get("pretrain") or {}).get("seconds") or 0.0, "n": metrics["n"],
            "roc_auc": {m: v.get("roc_auc") for m, v in metrics["methods"].items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2, help="SmolLM2 optimizer steps (default 2: the scratch recipe's time)")
    ap.add_argument("--eval-examples", type=int, default=600, help="test examples both runs are scored on (seeded sample)")
    ap.add_argument("--runs", type=Path, default=RUNS, help=f"where the two run directories go (default {RUNS})")
    ap.add_argument("--reuse", action="store_true", help="read <runs>/scratch and <runs>/smollm2 left by an earlier "
                    "run of these same commands instead of training again")
    ap.add_argument("--longer", type=Path, default=None, metavar="RUN_DIR",
                    help="also report a finished purchase_smollm2 run with a longer budget (same overrides, more steps)")
    args = ap.parse_args(argv)
    from evtlm.text import bases

    if not bases.is_installed("smollm2-135m"):
        print(f"skipped: the SmolLM2 base is not converted at {bases.base_dir('smollm2-135m')} (run `make base-smollm2`)")
        return 0
    common = [f"eval.max_examples={args.eval_examples}"]
    scratch = finetune("purchase", "scratch", common, args.runs, args.reuse)
    # one evaluation inside the short fit, at its end (it scores every validation window regardless)
    smol = finetune("purchase_smollm2", "smollm2", common + [f"train.max_steps={args.steps}", "train.warmup_ratio=0",
                                                             "train.eval_every=100000", "train.save_every=100000",
                                                             "train.max_eval_examples=64", "eval.fit_max_examples=64"],
                    args.runs, args.reuse)
    budget = (f"SmolLM2 {smol['steps']} steps in ~{smol['step_seconds']:.0f} s; scratch {scratch['pretrain_seconds']:.0f} s "
              f"pretraining + {scratch['steps']} steps in ~{scratch['step_seconds']:.0f} s")
    rows = [
        row("purchase ROC-AUC: SmolLM2 + LoRA vs scratch GPT-2", smol["roc_auc"]["model"], scratch["roc_auc"]["model"],
            "(report)", note=f"{budget}; N={smol['n']} test examples (seeded sample), one CPU thread each"),
        row("purchase ROC-AUC: SmolLM2 + LoRA vs gbt", smol["roc_auc"]["model"], smol["roc_auc"].get("gbt"), "(report)",
            note="the same users"),
        row("purchase ROC-AUC: scratch GPT-2 vs gbt", scratch["roc_auc"]["model"], scratch["roc_auc"].get("gbt"), "(report)",
            note="the same users"),
    ]
    details = {"scratch": scratch, "smollm2": smol}
    scratch_budget = max(scratch["step_seconds"] + scratch["pretrain_seconds"], 1.0)
    if args.longer is not None:
        longer = details["smollm2_longer"] = collect(args.longer, "purchase_smollm2", [], None)
        rows.insert(1, row(f"purchase ROC-AUC: SmolLM2 + LoRA, {longer['steps']} steps, vs scratch GPT-2",
                           longer["roc_auc"]["model"], scratch["roc_auc"]["model"], "(report)",
                           note=f"~{longer['step_seconds']:.0f} s of steps ({longer['step_seconds'] / scratch_budget:.0f}x the "
                           f"scratch budget); gbt {longer['roc_auc'].get('gbt'):.4f} on the same users"))
    if smol["wall_seconds"] and scratch["wall_seconds"]:  # not known for reused runs
        rows.append(row("wall time of the whole run (s): SmolLM2 vs scratch", smol["wall_seconds"], scratch["wall_seconds"],
                        "(report)", note="data, base, training, evaluation with baselines and calibration"))
    path = write_result("pretrained_base", "A pretrained base (SmolLM2-135M + LoRA) vs the scratch recipe, same training time",
                        rows, details)
    print(json.dumps(details, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
