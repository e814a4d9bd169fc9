"""Decoding throughput: batched evtlm decoders vs a naive one-user-at-a-time loop, same model, same run.

Two workloads, each timed both ways on the same prompts:

- purchase scoring: P(" yes") vs P(" no") per user. evtlm: :func:`evtlm.decode.methods.first_token_probs`
  (length-sorted left-padded batches, LM head on the last position only). Naive: one unpadded
  forward per user, full logits, softmax over the two answer tokens.
- next-item top-10 over a catalog of " Product N" strings (multi-token under GPT-2 BPE). evtlm:
  :func:`evtlm.decode.methods.beam_search_items` (vectorised trie ``LogitsProcessor``, batched). Naive:
  per-user ``model.generate`` with the classic ``prefix_allowed_tokens_fn`` Python callback (a dict
  trie looked up per beam per step). Also reported: evtlm's processor one user at a time, which
  separates the gain from batching from the gain from the vectorised processor.

The model is a randomly initialised GPT-2 of the chosen shape with the real 50,257-token
vocabulary (throughput does not depend on the weights). Both sides are checked to return the
same top items on the first users (they run the same beam search), so the speed-up is not bought
with a different answer.

    python bench/decode_speed.py --shape small --users 64 --beam-users 16 --catalog 2000
    python bench/decode_speed.py --shape tiny        # seconds, for a smoke run

Prints a table and writes JSON to ``--out`` (default ``bench/results/decode_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evtlm.decode.methods import beam_search_items, candidate_token_ids, first_token_probs  # noqa: E402

SHAPES = {  # GPT-2 family shapes; "small" is the 124M model users fine-tune by default
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),
    "mini": dict(n_layer=4, n_head=4, n_embd=256),
    "small": dict(n_layer=12, n_head=12, n_embd=768),
}
VERBS = ["viewed", "added to cart", "purchased", "added to favorites"]
GAPS = ["", " 2 minutes later", " 1 hour later", " the next day"]


def make_prompts(tok, n_users: int, catalog_ids: np.ndarray, rng, min_events=5, max_events=40) -> list[list[int]]:
    """Verbalized-looking histories of random length, tokenized with the real GPT-2 BPE."""
    texts = []
    for u in range(n_users):
        k = int(rng.integers(min_events, max_events))
        events = [f"{GAPS[rng.integers(4)]} {VERBS[rng.integers(4)]} Product {rng.choice(catalog_ids)}."
                  for _ in range(k)]
        texts.append(f"User {u}" + "".join(events) + " Next, User viewed")
    return [list(ids) for ids in tok(texts)["input_ids"]]


def timed(fn, warm_up, repeats: int = 1):
    """Best wall time of `repeats` runs of fn after `warm_up` (the same call on a couple of users:
    first-call allocations and lazy imports are not the steady state)."""
    warm_up()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def naive_first_token(model, prompts, yes_no, device):
    out = np.zeros((len(prompts), 2))
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            logits = model(input_ids=torch.tensor([p], device=device)).logits[0, -1]
            out[i] = torch.softmax(logits[yes_no], -1).cpu().numpy()
    return out


def naive_beams(model, prompts, cand, top_k, num_beams, marker, device):
    """Per-user generate() constrained by a Python callback over a dict trie (the usual recipe)."""
    trie: dict[tuple, set] = {}
    for c in cand:
        for j in range(len(c) + 1):
            trie.setdefault(tuple(c[:j]), set()).add(c[j] if j < len(c) else marker)
    item_of = {tuple(c): i for i, c in enumerate(cand)}
    all_tokens = list(range(model.config.vocab_size))
    indices = np.full((len(prompts), top_k), -1)
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            width = len(p)

            def allowed(_batch_id, ids, width=width):
                got = sorted(trie.get(tuple(ids[width:].tolist()), ()))
                return got or all_tokens  # a finished beam: anything (it is not extended)
            out = model.generate(input_ids=torch.tensor([p], device=device), num_beams=num_beams,
                                 num_return_sequences=num_beams, do_sample=False, length_penalty=0.0,
                                 early_stopping=False, max_new_tokens=max(map(len, cand)) + 1,
                                 eos_token_id=marker, pad_token_id=marker, prefix_allowed_tokens_fn=allowed)
            found = []
            for seq in out[:, width:].tolist():
                item = item_of.get(tuple(seq[: seq.index(marker)] if marker in seq else seq))
                if item is not None and item not in found:
                    found.append(item)
            indices[i, : min(top_k, len(found))] = found[:top_k]
    return indices


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--users", type=int, default=64, help="users for purchase scoring")
    ap.add_argument("--beam-users", type=int, default=16, help="users for top-10 beam search")
    ap.add_argument("--catalog", type=int, default=2000, help="items in the catalog")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--beam-batch-size", type=int, default=8)
    ap.add_argument("--num-beams", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--tokenizer", default=str(REPO.parent / "shared" / "tokenizers" / "gpt2"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "decode_speed.json"))
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if args.threads:
        torch.set_num_threads(args.threads)
    if not (Path(args.tokenizer) / "tokenizer.json").is_file():
        print(f"needs the GPT-2 tokenizer in {args.tokenizer} (pass --tokenizer DIR)", file=sys.stderr)
        return 2
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024, **SHAPES[args.shape])).to(device).eval()
    catalog_ids = rng.choice(np.arange(1000, 100000), size=args.catalog, replace=False)
    cand = candidate_token_ids(tok, [f" Product {i}" for i in catalog_ids])
    prompts = make_prompts(tok, args.users, catalog_ids, rng)
    yes_no = [tok(" yes")["input_ids"][0], tok(" no")["input_ids"][0]]
    eos = tok.eos_token_id
    results = {"device": device if device == "cpu" else torch.cuda.get_device_name(),
               "torch_threads": torch.get_num_threads(), "platform": platform.processor() or platform.machine(),
               "shape": args.shape, "catalog": args.catalog, "num_beams": args.num_beams, "top_k": args.top_k,
               "mean_prompt_tokens": float(np.mean([len(p) for p in prompts])),
               "catalog_tokens_max": max(map(len, cand))}

    answers = [[t] for t in yes_no]
    t_b, p_b = timed(lambda: first_token_probs(model, prompts, answers, batch_size=args.batch_size, pad_id=eos),
                     lambda: first_token_probs(model, prompts[:2], answers, pad_id=eos))
    t_n, p_n = timed(lambda: naive_first_token(model, prompts, yes_no, device),
                     lambda: naive_first_token(model, prompts[:2], yes_no, device))
    assert np.allclose(p_b, p_n, atol=1e-3), "batched and naive purchase scores differ"
    results["purchase"] = {"users": len(prompts), "batched_users_per_s": len(prompts) / t_b,
                           "naive_users_per_s": len(prompts) / t_n, "speedup": t_n / t_b}

    bp = prompts[: args.beam_users]
    kw = dict(top_k=args.top_k, num_beams=args.num_beams, pad_id=eos, end_id=eos)
    warm = bp[:2]
    t_bb, (i_b, _) = timed(lambda: beam_search_items(model, bp, cand, batch_size=args.beam_batch_size, **kw),
                           lambda: beam_search_items(model, warm, cand, batch_size=2, **kw))
    t_b1, _ = timed(lambda: beam_search_items(model, bp, cand, batch_size=1, **kw), lambda: None)
    t_nb, i_n = timed(lambda: naive_beams(model, bp, cand, args.top_k, args.num_beams, eos, device),
                      lambda: naive_beams(model, warm[:1], cand, args.top_k, args.num_beams, eos, device))
    agree = float(np.mean([len(set(a) & set(b)) / args.top_k for a, b in zip(i_b, i_n)]))
    results["next_item_top10"] = {"users": len(bp), "batched_users_per_s": len(bp) / t_bb,
                                  "per_user_vectorised_users_per_s": len(bp) / t_b1,
                                  "naive_users_per_s": len(bp) / t_nb, "speedup": t_nb / t_bb,
                                  "top_k_agreement_with_naive": agree}

    print(f"device {results['device']} | GPT-2 {args.shape} | prompts ~{results['mean_prompt_tokens']:.0f} tokens "
          f"| catalog {args.catalog} items (<= {results['catalog_tokens_max']} tokens)")
    print(f"{'workload':<26}{'evtlm users/s':>15}{'naive users/s':>15}{'speed-up':>10}")
    for name, key in (("purchase P(yes)", "purchase"), ("next item top-10 beams", "next_item_top10")):
        r = results[key]
        print(f"{name:<26}{r['batched_users_per_s']:>15.1f}{r['naive_users_per_s']:>15.1f}{r['speedup']:>9.1f}x")
    r = results["next_item_top10"]
    print(f"  (vectorised processor, one user at a time: {r['per_user_vectorised_users_per_s']:.1f} users/s; "
          f"top-10 agreement with naive: {r['top_k_agreement_with_naive']:.2f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
