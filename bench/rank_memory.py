"""Memory per rank: `evtlm finetune` over tokenized shards in one process and in two CPU processes.

    python -m bench.rank_memory                  # ~20M events: ~50 min on 2 cores, ~3 GB disk
    python -m bench.rank_memory --events 5e6     # smaller and quicker

Issue 13 asks that under 2 CPU processes each rank's peak RSS be at most 0.6x a single
process's on the same data: with ``data.by_shard`` a rank opens only its own training shards.

1. A shop of ``--events`` events is simulated, partitioned and prepared for `recipes/purchase.yaml`
   (``data.by_shard``) by `bench.scale`'s own stages, in fresh child processes.
2. `evtlm finetune` of that recipe runs twice over the same prepared shards (the data cache and
   the scratch base, built by a one-step warm-up run, are shared: neither side builds them):
   one process at batch 16, then `accelerate launch` of two gloo processes
   (`recipes/accelerate/cpu_2proc.yaml`) at batch 8 each, the same global batch, both for
   ``--steps`` optimizer steps and one validation at the end.
3. Every process of each run is polled for its high-water mark (``VmHWM``, which counts the
   pages of the memory-mapped shards it touched): once when the run directory's ``run.json`` is
   written (training over, the model saved: the first row) and once when the command exits after
   its final evaluation (every baseline and the purchase ``model+gbt`` stack, shard by shard on
   every rank: the second row). ``--training-only`` stops each run at ``run.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, row, run_child, write_result

NAME = "rank_memory"
BATCH = 16  # the global batch of both runs


def _children(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _hwm_gb(pid: int) -> tuple[float, str] | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        with open(f"/proc/{pid}/cmdline") as fh:
            cmd = fh.read().replace("\0", " ")
    except (OSError, StopIteration):
        return None
    return kb / 2**20, cmd


def run_until_trained(cmd: list[str], env: dict[str, str], run_dir: Path, log: Path, timeout: float,
                      through_evaluation: bool = False) -> dict[str, Any]:
    """Run ``cmd``; poll its process tree's VmHWM until ``run_dir/run.json`` appears (training over,
    model saved). Without ``through_evaluation`` the run is stopped there; with it, polling goes on
    until the command exits (the final evaluation, metrics.json) and the whole run's peaks are
    returned too. Peaks are per finetune process (the launcher's own is left out)."""
    t0 = time.perf_counter()
    peaks: dict[int, float] = {}
    trained: dict[str, Any] | None = None

    def poll() -> None:
        for pid in _children(proc.pid):
            got = _hwm_gb(pid)
            if got and "finetune" in got[1] and "bin/accelerate" not in got[1]:  # not the launcher
                peaks[pid] = max(peaks.get(pid, 0.0), got[0])

    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(f"{' '.join(cmd[:4])} ... ran past {timeout:.0f} s (log: {log})")
                poll()
                if trained is None and (run_dir / "run.json").exists():
                    poll()
                    trained = {"peak_rss_gb": sorted(round(v, 3) for v in peaks.values()),
                               "seconds": round(time.perf_counter() - t0, 1)}
                    if not through_evaluation:
                        break
                time.sleep(0.3)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                proc.wait()
    if trained is None:
        raise RuntimeError(f"the run ended before training finished (exit {proc.returncode}); see {log}")
    if not through_evaluation:
        return trained
    if proc.returncode != 0 or not (run_dir / "metrics.json").exists():
        raise RuntimeError(f"the run failed in its final evaluation (exit {proc.returncode}); see {log}")
    return {**trained, "whole_run": {"peak_rss_gb": sorted(round(v, 3) for v in peaks.values()),
                                     "seconds": round(time.perf_counter() - t0, 1)}}


def _finetune_args(folder: Path, name: str, *overrides: str) -> list[str]:
    """`evtlm finetune` of the purchase recipe over ``folder``'s partition, into ``folder/runs/name``."""
    return ["finetune", str(REPO / "recipes/purchase.yaml"), f"data.path={folder / 'parts'}", "data.by_shard=true",
            *overrides, f"output.dir={folder / 'runs'}", f"output.name={name}", "output.overwrite=true", "--no-progress"]


def measure(events: float, steps: int, workdir: Path, through_evaluation: bool = True) -> dict[str, Any]:
    from bench.scale import _probe_events_per_user

    folder = workdir / f"shop-{int(events):d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    users = max(1, int(events / _probe_events_per_user(60)))
    out: dict[str, Any] = {"target_events": int(events), "users": users, "steps": steps, "global_batch": BATCH}
    out["simulate"] = run_child("bench.scale", {"stage": "simulate", "folder": str(folder), "users": users, "days": 60},
                                label="simulate")
    out["partition"] = run_child("bench.scale", {"stage": "partition", "folder": str(folder),
                                                 "shards": max(2, round(events / 1.5e6))}, label="partition")
    out["prepare"] = run_child("bench.scale", {"stage": "prepare_purchase", "folder": str(folder)}, label="prepare_purchase")
    env = {**os.environ, "EVTLM_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    bin_dir = Path(sys.executable).parent
    # the scratch base is pretrained once and cached before either run is measured: otherwise the
    # first run pretrains it (and pays for it) and the second reuses it
    run_until_trained([str(bin_dir / "evtlm"), *_finetune_args(folder, "warm", "train.max_steps=1", "train.max_eval_examples=10")],
                      env, folder / "runs" / "warm", folder / "warm.log", timeout=3600)
    for procs in (1, 2):
        name = f"p{procs}"
        args = _finetune_args(folder, name, f"train.max_steps={steps}", f"train.batch_size={BATCH // procs}",
                              f"train.eval_every={steps}", "train.save_every=1000000")
        if procs == 1:
            cmd = [str(bin_dir / "evtlm"), *args]
        else:
            cmd = [str(bin_dir / "accelerate"), "launch", "--config_file", str(REPO / "recipes/accelerate/cpu_2proc.yaml"),
                   "--main_process_port", "29531", "-m", "evtlm.cli.main", *args]
        print(f"[rank_memory] {procs} process(es) ...", flush=True)
        out[name] = run_until_trained(cmd, env, folder / "runs" / name, folder / f"{name}.log", timeout=3600,
                                      through_evaluation=through_evaluation)
        print(f"[rank_memory] {procs} process(es): peak RSS {out[name]['peak_rss_gb']} GB"
              + (f", whole run {out[name]['whole_run']['peak_rss_gb']} GB" if through_evaluation else ""), flush=True)
    out["disk_bytes"] = sum(p.stat().st_size for p in (folder / "cache").rglob("*") if p.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=float, default=2e7, help="events in the simulated shop (default 2e7)")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps of each run (default 300)")
    ap.add_argument("--workdir", help="where the shop and shards go (default: a temporary folder)")
    ap.add_argument("--training-only", action="store_true",
                    help="stop each run once its model is saved (leave the final evaluation out)")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="evtlm-ranks-"))
    try:
        d = measure(args.events, args.steps, workdir, through_evaluation=not args.training_only)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    one, two = d["p1"]["peak_rss_gb"][0], max(d["p2"]["peak_rss_gb"])
    events = d["simulate"]["events"]
    rows = [row(f"training under 2 CPU processes: each rank's peak RSS vs one process ({events / 1e6:.0f}M events, GB)",
                two, one, "≤ 0.6x", met=two <= 0.6 * one, unit="GB", tie_rule=False,
                note=f"ranks {' / '.join(f'{x:.2f}' for x in d['p2']['peak_rss_gb'])} GB vs {one:.2f} GB; {d['steps']} steps "
                     f"at global batch {BATCH} each and one validation, to the saved model")]
    if "whole_run" in d["p1"]:
        one_w, ranks_w = d["p1"]["whole_run"]["peak_rss_gb"][0], d["p2"]["whole_run"]["peak_rss_gb"]
        rows.append(row(f"the whole finetune (training and the final evaluation) under 2 CPU processes: each rank's peak RSS "
                        f"vs one process ({events / 1e6:.0f}M events, GB)", max(ranks_w), one_w, "≤ 0.6x",
                        met=max(ranks_w) <= 0.6 * one_w, unit="GB", tie_rule=False,
                        note=f"ranks {' / '.join(f'{x:.2f}' for x in ranks_w)} GB vs {one_w:.2f} GB; "
                             f"{d['p1']['whole_run']['seconds'] / 60:.1f} vs {d['p2']['whole_run']['seconds'] / 60:.1f} min "
                             "to metrics.json"))
    write_result(NAME, "Memory per rank: evtlm finetune over tokenized shards, one process vs two", rows, d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
