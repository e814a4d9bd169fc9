"""The GPU check: `evtlm finetune` at real model sizes in bf16, DDP over every visible GPU.

    make bench-gpu                       # python -m bench.gpu: needs CUDA, about 3-5 minutes
    python -m bench.gpu --dry-run        # the same workloads, tiny and in fp32 on CPU (a test runs this)

Workloads (each one `accelerate launch --num_processes <GPUs> -m evtlm.cli.main finetune ...` in a
fresh process, on the embedded synthetic shop, so nothing needs the network):

- ``gpt2_124m_purchase``: a GPT-2-124M-shaped model (12 layers, 768 wide, 12 heads, 1024
  positions; random init when no weights are present, which here is always: the scratch base
  with pretraining off) trained on the purchase prompts, one prompt per cutoff;
- ``gpt2_124m_next_item_stream``: the same shape on the next-item streams (every event a target,
  items as tokens, the copy path): supervised targets per second is the stream's figure;
- ``smollm2_lora_purchase``: `recipes/purchase_smollm2.yaml` (SmolLM2-135M + LoRA), when the
  converted base is installed (`make base-smollm2`; skipped with the reason otherwise).

For each: tokens/s and supervised targets/s (`train_log.csv`, the median of the log rows after the
first, all processes summed), achieved matmul FLOP/s (6 x matmul parameters x tokens/s, plus the
attention's 12 x layers x width x context per token) as a share of the GPU's dense bf16 peak
(from the device name; None for an unknown GPU), and peak memory per process
(``torch.cuda.max_memory_allocated``). Results: ``bench/results/gpu.json`` (dry run: printed only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, row, write_result

NAME = "gpu"
# dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name()
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "A10G": 125e12, "A10": 125e12,
             "L40S": 362e12, "L40": 181e12, "L4": 121e12, "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12,
             "B200": 2250e12, "MI300X": 1307e12}
GPT2_124M = ["model.scratch.n_layer=12", "model.scratch.n_head=12", "model.scratch.n_embd=768",
             "model.scratch.n_positions=1024", "model.scratch.vocab_size=8192", "model.scratch.pretrain_epochs=0",
             "model.scratch.dropout=0.0"]
TINY = ["model.scratch.n_layer=1", "model.scratch.n_head=2", "model.scratch.n_embd=32", "model.scratch.n_positions=256",
        "model.scratch.vocab_size=700", "model.scratch.pretrain_epochs=0"]


def workloads(dry: bool) -> list[dict[str, Any]]:
    steps = 3 if dry else 60
    common = [f"train.max_steps={steps}", "train.log_every=1" if dry else "train.log_every=10",
              f"train.eval_every={steps + 1}", f"train.save_every={steps + 1}", "train.early_stopping_patience=null",
              "train.mixed_precision=" + ("no" if dry else "bf16"), "eval.baselines=[]",
              "eval.max_examples=64", "eval.fit_max_examples=32", "train.max_eval_examples=32"]
    shop = ["data.synthetic.users=200", "data.synthetic.days=28"] if dry else ["data.synthetic.users=4000"]
    size = TINY if dry else GPT2_124M
    return [
        {"name": "gpt2_124m_purchase", "recipe": "recipes/purchase.yaml",
         "overrides": [*shop, *size, *common, "task.max_tokens=" + ("128" if dry else "1024"),
                       "train.batch_size=" + ("4" if dry else "16")]},
        {"name": "gpt2_124m_next_item_stream", "recipe": "recipes/next_item.yaml",
         "overrides": [*shop, *size, *common, "task.max_tokens=" + ("128" if dry else "1024"),
                       "train.batch_size=" + ("4" if dry else "16")]},
        {"name": "smollm2_lora_purchase", "recipe": "recipes/purchase_smollm2.yaml", "needs": "smollm2-135m",
         "overrides": [*shop, *common, "task.max_tokens=" + ("128" if dry else "512"),
                       "train.batch_size=" + ("2" if dry else "16")]},
    ]


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _base_installed(name: str) -> str | None:
    """None when the named base is installed, else why not."""
    from evtlm.text.bases import base_dir, is_installed

    return None if is_installed(name) else f"base {name} not installed at {base_dir(name)} (make base-smollm2)"


def _matmul_shape(run_dir: Path) -> dict[str, int]:
    """Matmul parameters (embeddings and norms left out) and the attention's shape, from the run's config."""
    base = json.loads((run_dir / "run.json").read_text()).get("base", {})
    cfg = dict(base.get("config") or {})  # (a scratch base records its shape; a pretrained one its path)
    if not cfg.get("model_type") and base.get("path") and (Path(base["path"]) / "config.json").is_file():
        cfg = json.loads((Path(base["path"]) / "config.json").read_text())
    layers = cfg.get("n_layer") or cfg.get("num_hidden_layers") or 0
    width = cfg.get("n_embd") or cfg.get("hidden_size") or 0
    inner = cfg.get("n_inner") or cfg.get("intermediate_size") or 4 * width
    if cfg.get("model_type") == "llama":  # q,k,v,o (k, v narrower with grouped-query heads) + gate/up/down
        kv = width * cfg.get("num_key_value_heads", cfg.get("num_attention_heads", 1)) // max(cfg.get("num_attention_heads", 1), 1)
        per_layer = 2 * width * width + 2 * width * kv + 3 * width * inner
    else:  # GPT-2: c_attn (3 d^2), c_proj (d^2), c_fc + c_proj of the MLP (2 d x inner)
        per_layer = 4 * width * width + 2 * width * inner
    vocab = cfg.get("vocab_size", 0)
    return {"layers": layers, "width": width, "matmul_params": layers * per_layer + width * vocab}


def _read_log(run_dir: Path) -> dict[str, Any]:
    with open(run_dir / "train_log.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("tokens_per_s")]
    later = rows[1:] or rows  # the first window holds compilation and warm-up

    def med(key: str) -> float | None:
        vals = [float(r[key]) for r in later if r.get(key)]
        return statistics.median(vals) if vals else None

    return {"log_rows": len(rows), "tokens_per_s": med("tokens_per_s"), "targets_per_s": med("targets_per_s"),
            "peak_mem_gb": max((float(r["peak_mem_gb"]) for r in rows if r.get("peak_mem_gb")), default=None),
            "first_loss": float(rows[0]["loss"]) if rows else None, "last_loss": float(rows[-1]["loss"]) if rows else None}


def run_workload(w: dict[str, Any], root: Path, processes: int, dry: bool, timeout: float) -> dict[str, Any]:
    if w.get("needs"):
        why = _base_installed(w["needs"])
        if why:
            return {"name": w["name"], "skipped": why}
    from evtlm.fsio import default_cache_dir

    cache = root / "cache"  # datasets of this run only; installed bases (SmolLM2) read from the user's cache
    if not cache.exists():
        cache.mkdir(parents=True)
        (default_cache_dir() / "bases").mkdir(parents=True, exist_ok=True)
        (cache / "bases").symlink_to(default_cache_dir() / "bases", target_is_directory=True)
    env = dict(os.environ, EVTLM_CACHE=str(cache), PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    if dry:
        env.setdefault("OMP_NUM_THREADS", "1")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if processes > 1 and not dry:
        launcher += ["--multi_gpu"]  # (CPU processes in a dry run talk over gloo)
    cmd = [*launcher, "-m", "evtlm.cli.main", "finetune", str(REPO / w["recipe"]), *w["overrides"],
           f"output.dir={root / 'runs'}", f"output.name={w['name']}", "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise RuntimeError(f"workload {w['name']} failed (exit {proc.returncode}):\n{tail}")
    run_dir = root / "runs" / w["name"]
    out = {"name": w["name"], "processes": processes, "seconds": round(seconds, 1), **_read_log(run_dir),
           **_matmul_shape(run_dir)}
    ctx = int(next((o.split("=")[1] for o in w["overrides"] if o.startswith("task.max_tokens=")), 512))
    if out["tokens_per_s"]:
        per_token = 6 * out["matmul_params"] + 12 * out["layers"] * out["width"] * ctx
        out["model_flops_per_s"] = per_token * out["tokens_per_s"]
    return out


def bf16_peak(device: str) -> float | None:
    """The dense bf16 peak of one GPU named ``device`` (longest matching name first).

    >>> bf16_peak("NVIDIA H200"), bf16_peak("NVIDIA A100-SXM4-80GB"), bf16_peak("cpu")
    (989000000000000.0, 312000000000000.0, None)
    """
    for key in sorted(BF16_PEAK, key=len, reverse=True):
        if key in device:
            return BF16_PEAK[key]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny models in fp32 on CPU: checks the code paths")
    ap.add_argument("--processes", type=int, help="processes (default: every visible GPU; 1 in a dry run)")
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per workload")
    args = ap.parse_args(argv)
    gpus = _gpus()
    if not args.dry_run and gpus == 0:
        print("bench.gpu: no CUDA device here; run `python -m bench.gpu --dry-run` to check the code paths on CPU",
              file=sys.stderr)
        return 2
    processes = args.processes or (1 if args.dry_run else gpus)
    device = "cpu"
    if gpus and not args.dry_run:
        import torch

        device = torch.cuda.get_device_name(0)
    peak = bf16_peak(device)
    chosen = [w for w in workloads(args.dry_run) if not args.only or w["name"] in args.only.split(",")]
    root = Path(tempfile.mkdtemp(prefix="evtlm-bench-gpu-"))
    results = []
    try:
        for w in chosen:
            r = run_workload(w, root, processes, args.dry_run, args.timeout)
            if "model_flops_per_s" in r and peak:
                r["mfu"] = r["model_flops_per_s"] / (peak * processes)
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    details = {"device": device, "processes": processes, "bf16_peak_per_gpu": peak, "dry_run": args.dry_run,
               "workloads": results}
    rows = []
    for r in results:
        if "skipped" in r:
            continue
        rows.append(row(f"{r['name']}: tokens/s ({r['processes']} x {device})", r["tokens_per_s"], None, "",
                        unit="tokens/s", note=f"targets/s {r['targets_per_s']:.4g}; peak memory "
                        f"{r['peak_mem_gb'] or 0:.2f} GB/process; MFU {r.get('mfu') or 0:.1%}; {r['seconds']:.0f} s"))
    if args.dry_run:
        print(json.dumps(details, indent=1, default=str))
    else:
        path = write_result(NAME, "GPU check: bf16 fine-tuning at GPT-2-124M and SmolLM2 sizes, DDP", rows, details)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
