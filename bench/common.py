"""What every benchmark shares: paths, child processes with their own peak memory, result files.

Each benchmark measures evtlm and its reference *in the same run* (the machines are noisy and
shared: ratios hold, absolute times do not) and writes ``bench/results/<name>.json`` through
:func:`write_result`, which also rebuilds the summary ``bench/results/latest.json`` and
``latest.md`` from every result file present (`bench.report`), so one target refreshes its own
rows without erasing the others'.

A result is ``{"name", "title", "machine", "rows": [...], "details": {...}}``; a row is one figure
next to its reference and target::

    {"figure": "events/s, 5M synthetic", "evtlm": 61000.0, "reference": 1900.0, "ratio": 32.1,
     "target": ">= 20x", "met": true, "verdict": "met", "note": "naive on 50k events, per event"}

>>> row("x/s", 30.0, 1.5, ">= 20x", 20.0)["ratio"], row("x/s", 30.0, 1.5, ">= 20x", 20.0)["verdict"]
(20.0, 'met')
>>> row("peak GB", 3.1, None, "< 4 GB", met=3.1 < 4)["ratio"] is None
True

A figure within 1% of its reference (:data:`TIE`) is a **tie**: labelled so and never counted as
met, whatever the target says (a "win" inside the noise is not one):

>>> r = row("tokens/s", 100.5, 100.0, ">= 1.0x", 1.0)
>>> r["verdict"], r["met"]
('tie', False)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
GPT2_DIR = SHARED / "tokenizers" / "gpt2"
RESULTS = REPO / "bench" / "results"


def gpt2_available() -> bool:
    return (GPT2_DIR / "tokenizer.json").is_file()


def model_section() -> dict[str, Any]:
    """The recipe's ``model`` section: the real GPT-2 BPE when ../shared has it, else scratch."""
    if gpt2_available():
        return {"base": str(GPT2_DIR)}
    return {"base": "/nonexistent-gpt2", "when_unavailable": "scratch"}


def peak_rss_gb() -> float:
    """This process's peak resident memory in GiB.

    ``/proc/self/status`` VmHWM where it exists (the high-water mark of this process's own
    address space, which starts fresh at exec), else ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (2**30 if sys.platform == "darwin" else 2**20)


def child_main(fn, args: list[str] | None = None) -> None:
    """Run ``fn(**json_args)`` in this (child) process and print its result as the last line."""
    spec = json.loads((args or sys.argv[1:])[-1])
    result = fn(**spec)
    result["peak_rss_gb"] = round(peak_rss_gb(), 3)
    result["ru_maxrss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    print("BENCH-RESULT " + json.dumps(result, default=str), flush=True)


def run_child(module: str, spec: dict[str, Any], timeout: float | None = None, label: str = "") -> dict[str, Any]:
    """``python -m <module> --child '<json spec>'`` in a fresh process; its result dict.

    A fresh interpreter per side: the two sides never share a peak-memory high-water mark, an
    allocator arena or a warm cache. Child stderr (progress bars) passes through.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]), TOKENIZERS_PARALLELISM="true")
    cmd = [sys.executable, "-m", module, "--child", json.dumps(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise RuntimeError(f"benchmark child {label or module} failed (exit {proc.returncode}):\n{tail}")
    out = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
    out["process_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def machine() -> dict[str, Any]:
    """Where the figures were taken (they are only comparable within one run)."""
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True).stdout.strip() or None
    except OSError:
        info["git_commit"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    except ImportError:
        pass
    return info


# |evtlm / reference - 1| below this is a tie: within a shared machine's noise, never a win. The
# product's own rule (evtlm.evaluate.report.reading says "a tie" under the same 1%): one number for both.
from evtlm.evaluate.report import TIE  # noqa: E402


def is_tie(value: float | None, reference: float | None, tol: float = TIE) -> bool:
    """True when ``value`` is within ``tol`` (relative) of ``reference``.

    >>> is_tie(0.834, 0.836), is_tie(0.85, 0.80), is_tie(None, 1.0), is_tie(0.0, 0.0)
    (True, False, False, True)
    """
    if value is None or reference is None:
        return False
    if reference == 0:
        return value == 0
    return abs(value / reference - 1) < tol


def verdict(met: bool | None, value: float | None, reference: float | None,
            noise: float = 0.0) -> tuple[str | None, bool | None]:
    """``(label, met)`` of a figure against its reference: "tie" (met False) when the two are
    within :data:`TIE`, or within ``noise`` (the relative run-to-run spread the benchmark measured,
    when larger), else "met" / "short"; ``(None, None)`` for a row without a target.

    The one place where a verdict is made: `row` and `bench.quality` both call it.

    >>> verdict(True, 1.005, 1.0), verdict(True, 1.2, 1.0), verdict(False, 0.8, 1.0), verdict(None, 1.0, 1.0)
    (('tie', False), ('met', True), ('short', False), (None, None))
    >>> verdict(True, 1.05, 1.0, noise=0.10)  # a 5% lead inside a 10% spread is no lead
    ('tie', False)
    """
    if met is None:
        return None, None
    if is_tie(value, reference, max(TIE, noise)):
        return "tie", False
    return ("met", True) if met else ("short", False)


def row(figure: str, evtlm: float | None, reference: float | None, target: str, min_ratio: float | None = None,
        *, met: bool | None = None, note: str = "", unit: str = "", tie_rule: bool = True,
        tie_with: float | None = None, noise: float = 0.0) -> dict[str, Any]:
    """One figure next to its reference; ``met`` from ``ratio >= min_ratio`` unless given.

    ``verdict`` is "met", "short" or "tie" (`verdict`), a tie judged against ``tie_with`` when
    given (another figure the target must beat, e.g. the majority prior), else the reference,
    with a band of 1% or the measured relative ``noise``, whichever is wider.
    ``tie_rule=False`` only for a target that a tie meets by definition ("at most 2x the reference").
    """
    ratio = evtlm / reference if evtlm is not None and reference else None
    if met is None and min_ratio is not None and ratio is not None:
        met = ratio >= min_ratio
    label, met = verdict(met, evtlm, (reference if tie_with is None else tie_with) if tie_rule else None, noise)
    return {"figure": figure, "evtlm": evtlm, "reference": reference, "ratio": None if ratio is None else round(ratio, 3),
            "target": target, "met": met, "verdict": label, "note": note, "unit": unit}


def write_result(name: str, title: str, rows: list[dict[str, Any]], details: dict[str, Any],
                 out_dir: Path = RESULTS) -> Path:
    """``<out_dir>/<name>.json``, then the summary (latest.json / latest.md) rebuilt."""
    from bench.report import rebuild

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"name": name, "title": title, "machine": machine(), "rows": rows, "details": details}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    rebuild(out_dir)
    return path
