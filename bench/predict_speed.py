"""Prediction throughput: users/s of evtlm's batched decoders against a naive per-user loop.

The measurement itself is ``bench/decode_speed.py`` (written with the decoders; read its
docstring): purchase scoring (``first_token_probs``, batched, LM head on the last position only,
against one unpadded forward per user) and top-10 next-item decoding over a catalog of
multi-token " Product N" strings (``beam_search_items``: batched trie-constrained beam search,
against per-user ``model.generate`` with a ``prefix_allowed_tokens_fn`` Python trie callback).
Both sides run on the same prompts with the same randomly initialised GPT-2 in the same
process, and are checked to return the same answers (purchase probabilities equal to 1e-3;
top-10 agreement reported), so the speed-up is not bought with a different answer.

This wrapper runs it in a fresh process and turns its JSON into the summary's rows.

    python -m bench.predict_speed                 # GPT-2 small (124M), 64 + 16 users, 2,000 items
    python -m bench.predict_speed --quick         # GPT-2 "mini" (4 x 256), 32 + 8 users
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, gpt2_available, row, write_result

NAME = "predict_speed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="small", choices=["tiny", "mini", "small"])
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--beam-users", type=int, default=16)
    ap.add_argument("--catalog", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="GPT-2 mini, 32 + 8 users, 1,000 items")
    args = ap.parse_args(argv)
    if args.quick:
        args.shape, args.users, args.beam_users, args.catalog = "mini", min(args.users, 32), min(args.beam_users, 8), 1000
    if not gpt2_available():
        notes = ["skipped: needs the GPT-2 tokenizer in ../shared/tokenizers/gpt2 (multi-token item strings are "
                 "what the constrained decoder is for; a scratch tokenizer would not show it)"]
        write_result(NAME, "Prediction: users/s", [], {"notes": notes})
        print(notes[0])
        return 0

    with tempfile.TemporaryDirectory(prefix="evtlm-bench-predict-") as tmp:
        out = Path(tmp) / "decode_speed.json"
        cmd = [sys.executable, str(REPO / "bench" / "decode_speed.py"), "--shape", args.shape, "--users", str(args.users),
               "--beam-users", str(args.beam_users), "--catalog", str(args.catalog), "--out", str(out)]
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
        res = json.loads(out.read_text())

    p, b = res["purchase"], res["next_item_top10"]
    setting = f"GPT-2 {res['shape']}, prompts ~{res['mean_prompt_tokens']:.0f} tokens"
    rows = [
        row("users/s, purchase P(yes)", p["batched_users_per_s"], p["naive_users_per_s"], ">= 10x", 10.0,
            note=f"{p['users']} users, {setting}; same probabilities (1e-3)"),
        row("users/s, next-item top-10", b["batched_users_per_s"], b["naive_users_per_s"], ">= 10x", 10.0,
            note=f"{b['users']} users, {res['catalog']} items (<= {res['catalog_tokens_max']} tokens), "
                 f"{res['num_beams']} beams; top-10 agreement with naive {b['top_k_agreement_with_naive']:.2f}"),
        row("users/s, next-item, evtlm one user at a time", b["per_user_vectorised_users_per_s"], b["naive_users_per_s"],
            "(context)", note="the vectorised trie processor alone, without batching"),
    ]
    details = {"decode_speed": res}
    rows += stream_rows(details, quick=args.quick)
    path = write_result(NAME, "Prediction: users/s against a naive per-user loop", rows, details)
    print(f"wrote {path}")
    return 0


def stream_rows(details: dict, quick: bool) -> list[dict]:
    """Next item over the Taobao sample's whole catalog: the stream read-out (`bench.stream_predict`)
    against trie beams, naive generate and one plain forward pass, same process, same users."""
    from bench.common import SHARED_DATA

    if not (SHARED_DATA / "taobao" / "UserBehavior_head84k.csv").is_file():
        details["stream"] = "skipped: ../shared/data/taobao is absent"
        return []
    with tempfile.TemporaryDirectory(prefix="evtlm-bench-stream-") as tmp:
        out = Path(tmp) / "stream.json"
        size = ["--users", "64", "--beam-users", "4", "--naive-users", "2"] if quick else []
        subprocess.run([sys.executable, "-m", "bench.stream_predict", *size, "--out", str(out)], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "src")), check=True)
        res = json.loads(out.read_text())
    details["stream"] = res
    setting = f"Taobao sample, {res['catalog']:,} items, GPT-2 {res['shape']}, windows ~{res['mean_window_tokens']:.0f} tokens"
    return [
        row("users/s, next item, stream vs trie beams", res["stream_users_per_s"], res["trie_beam_users_per_s"], ">= 10x",
            10.0, note=f"{setting}; text preparation included on the stream side"),
        row("users/s, next item, stream vs naive generate", res["stream_users_per_s"], res["naive_generate_users_per_s"],
            ">= 10x", 10.0, note="per-user model.generate with a Python trie callback"),
        row("users/s, next item, stream vs one user at a time", res["stream_users_per_s_excl_text"],
            res["naive_stream_loop_users_per_s"], "(context)", note="the same read-out with batch size 1"),
        row("users/s, plain forward vs stream", res["plain_forward_users_per_s"], res["stream_users_per_s_excl_text"],
            "<= 2x", met=res["plain_forward_users_per_s"] <= 2 * res["stream_users_per_s_excl_text"],
            tie_rule=False,  # "at most 2x": a tie with the plain forward meets it
            note="ranking the whole catalog costs at most as much as reading the history"),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
