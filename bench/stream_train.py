"""Training: supervised targets per second, the stream formulation against one prompt per target.

Same data (the Taobao sample, next item, leave-one-out, items as single tokens, the recipe's
verbalization), same GPT-2 shape and optimizer, same number of optimizer steps (``--steps`` of
``--batch-size`` rows), in one process, alternating, best of ``--repeats``:

- **example**: `evtlm.data.prepare.prepare` with ``task.formulation=example``: one prompt per target
  (history up to ``max_tokens``, question, answer), the causal LM loss on the answer token
  (transformers computes the logits of every position over the whole vocabulary, as the example
  path always has);
- **stream**: ``task.formulation=stream``: windows of the same budget, every target in a window
  read in one pass (`evtlm.train.stream_model.StreamLM`, copy path on), full softmax and sampled
  softmax (``train.negatives``) both reported.

A target is one supervised answer: an example (a row) on the example side, ``n_targets`` of a
window on the stream side.

    python -m bench.stream_train              # 8 steps x 16, best of 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
TAOBAO = REPO.parent / "shared" / "data" / "taobao" / "UserBehavior_head84k.csv"


def _recipe(formulation: str):
    from evtlm.data.prepare import text_recipe
    from evtlm.recipe import load_recipe

    return text_recipe(load_recipe(REPO / "recipes" / "taobao_next_item.yaml",
                                   [f"data.path={TAOBAO}", f"task.formulation={formulation}", "model.item_tokens=true"]))


def _run(model, batches, collate, steps: int) -> tuple[float, int, int]:
    """(seconds, targets, real tokens) of ``steps`` optimizer steps over ``batches``."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    targets = tokens = 0
    t0 = time.perf_counter()
    for rows in batches[:steps]:
        batch = collate(rows)
        tokens += int(batch.pop("real_tokens"))
        batch.pop("slot_tokens"), batch.pop("n_examples"), batch.pop("tgt_example", None)
        out = model(**batch, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        targets += int(out.n_targets) if getattr(out, "n_targets", None) is not None else len(rows)
    return time.perf_counter() - t0, targets, tokens


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from evtlm.train.batching import CausalCollator
    from evtlm.data.prepare import prepare
    from evtlm.train.modeling import build_scratch_model
    from evtlm.data.stream import STREAM_COLUMNS
    from evtlm.train.stream_model import StreamCollator, StreamLM, answer_token_ids

    rng = np.random.default_rng(0)
    sides = {}
    for formulation in ("example", "stream"):
        r = _recipe(formulation)
        p = prepare(r, progress=False)
        ds = p.datasets["train"]
        cols = [c for c in STREAM_COLUMNS if c in ds.column_names] if formulation == "stream" else ["input_ids", "labels"]
        ds = ds.select_columns(cols)
        pick = rng.choice(len(ds), size=args.steps * args.batch_size, replace=len(ds) < args.steps * args.batch_size)
        rows = [ds[int(i)] for i in pick]
        batches = [rows[i:i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
        sides[formulation] = (r, p, batches)
    results: dict = {"steps": args.steps, "batch_size": args.batch_size}
    variants = {"example": None, "stream (full softmax)": None, "stream (4,096 sampled negatives)": 4096}
    for _ in range(args.repeats):
        for name, negatives in variants.items():
            r, p, batches = sides["example" if name == "example" else "stream"]
            torch.manual_seed(0)
            lm = build_scratch_model(r.model.scratch, p.tokenizer)
            if name == "example":
                model, collate = lm, CausalCollator(p.tokenizer.pad_token_id or 0, "pad")
            else:
                model = StreamLM(lm, answer_token_ids(p.tokenizer, p.label_space), copy=True, negatives=negatives)
                collate = StreamCollator(p.tokenizer.pad_token_id or 0)
            seconds, targets, tokens = _run(model, batches, collate, args.steps)
            best = results.get(name)
            if best is None or seconds < best["seconds"]:
                results[name] = {"seconds": seconds, "targets": targets, "tokens": tokens,
                                 "targets_per_s": targets / seconds, "tokens_per_s": tokens / seconds}
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
