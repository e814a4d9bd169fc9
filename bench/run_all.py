"""``make bench``: every benchmark in turn, then the summary (bench/results/latest.{json,md}).

    python -m bench.run_all                    # prepare (5M events), train, predict; quality --quick
    python -m bench.run_all --quick            # everything in its quick mode (minutes)
    python -m bench.run_all --only prepare,train
    python -m bench.run_all --full-quality     # the quality recipes as shipped (hours on 2 cores)

A benchmark that fails is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

BENCHMARKS = ["prepare", "train", "predict", "quality"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="each benchmark's quick mode")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}")
    ap.add_argument("--full-quality", action="store_true", help="quality recipes without the --quick caps")
    args = ap.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}", file=sys.stderr)
        return 2

    from bench import predict_speed, prepare_speed, quality, train_speed
    from bench.common import RESULTS
    from bench.report import rebuild

    entry = {"prepare": prepare_speed.main, "train": train_speed.main, "predict": predict_speed.main, "quality": quality.main}
    failed = []
    for name in chosen:
        flags = ["--quick"] if args.quick or (name == "quality" and not args.full_quality) else []
        print(f"== bench {name} {' '.join(flags)}", flush=True)
        t0 = time.perf_counter()
        try:
            code = entry[name](flags)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            code = 1
        print(f"== bench {name}: {'ok' if code == 0 else 'FAILED'} in {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(name)
    rebuild(RESULTS)
    print((RESULTS / "latest.md").read_text())
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
