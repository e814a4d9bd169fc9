"""Peak memory of `evtlm.data.prepare.prepare` on a large synthetic log (acceptance: 5M events < 4 GB).

    .venv/bin/python bench/prepare_memory.py                      # 5M events, purchase, GPT-2 BPE
    .venv/bin/python bench/prepare_memory.py --events 1e6 --task next_item

The synthetic shop is scaled (users) until it holds about ``--events`` events, then prepared
into examples with a throw-away cache directory. Peak resident memory is the process's
``ru_maxrss``: everything counts, the simulation included. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPT2 = REPO.parent / "shared" / "tokenizers" / "gpt2"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=5e6, help="target number of events (default 5e6)")
    ap.add_argument("--task", default="purchase")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--limit-gb", type=float, default=4.0)
    args = ap.parse_args(argv)

    from evtlm.data.prepare import prepare
    from evtlm.recipe import Recipe, SyntheticConfig
    from evtlm.ingest.simulate import simulate_shop

    # calibrate: events per user of this shop at this length, from a small run
    probe = simulate_shop(SyntheticConfig(users=500, days=args.days, seed=11)).events
    per_user = len(probe) / 500
    users = max(1, int(args.events / per_user))
    del probe
    model = {"base": str(GPT2)} if GPT2.is_dir() else {"base": "/absent", "when_unavailable": "scratch"}
    recipe = Recipe.model_validate({
        "data": {"synthetic": {"users": users, "days": args.days, "items": 2000, "seed": 11}},
        "task": {"name": args.task, "max_tokens": args.max_tokens},
        "model": model,
    })
    cache = Path(tempfile.mkdtemp(prefix="evtlm-bench-"))
    try:
        t0 = time.perf_counter()
        p = prepare(recipe, cache_dir=cache, progress=True)
        seconds = time.perf_counter() - t0
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
        result = {
            "events": len(p.events.events), "users": users, "task": args.task, "max_tokens": args.max_tokens,
            "examples": p.report["examples"],
            "train_tokens": p.report["splits"]["train"]["tokens"]["total"],
            "tokenizer": p.tokenizer_info.source, "seconds": round(seconds, 1),
            "peak_rss_gb": round(peak_gb, 2), "limit_gb": args.limit_gb, "ok": peak_gb < args.limit_gb,
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
