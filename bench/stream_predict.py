"""Next-item prediction over the Taobao sample's whole catalog (~55k items): the stream read-out
against today's trie-beam path, a naive per-user loop, and one plain batched forward pass.

All sides use the same GPT-2 shape (random weights: throughput does not depend on them), the real
GPT-2 BPE from ../shared, and the same users' histories as of just after their last event
(``--users`` of them, the last ``task.max_tokens`` tokens each):

- **stream** (evtlm's default for next_item): items are single tokens; `evtlm.data.stream.now_windows`
  + `evtlm.train.stream_model.stream_predictions`, batched, ranks the whole label space with one
  product per user (the copy path on).
- **plain forward**: the same windows through the transformer body alone, batched: the floor
  any prediction path pays just to read the history.
- **naive stream loop**: the stream read-out one user at a time (batch size 1).
- **trie beams**: items spelled as " Product N" (4-6 BPE pieces), per-example prompts
  (`evtlm.decode.inference.now_prompts`) and `evtlm.decode.methods.beam_search_items` (batched, vectorised trie
  over every item), 20 beams; timed on ``--beam-users`` users.
- **naive generate**: per-user ``model.generate`` with a Python trie callback (the usual
  recipe), on ``--naive-users`` users.

    python -m bench.stream_predict            # 256 users (stream), 16 (beams), 4 (naive generate)
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
GPT2_TOK = REPO.parent / "shared" / "tokenizers" / "gpt2"


def _recipe(stream: bool):
    from evtlm.data.prepare import text_recipe
    from evtlm.recipe import Recipe

    task = {"name": "next_item", "max_tokens": 512, "formulation": "stream" if stream else "example"}
    return text_recipe(Recipe.model_validate({
        "data": {"preset": "taobao", "path": str(TAOBAO)}, "task": task, "verbalize": {"time": "none"},
        "model": {"item_tokens": stream}}))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--beam-users", type=int, default=16)
    ap.add_argument("--naive-users", type=int, default=4)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from bench.decode_speed import naive_beams
    from evtlm.data.prepare import item_vocabulary
    from evtlm.decode.methods import beam_search_items, candidate_token_ids
    from evtlm.decode.inference import now_prompts
    from evtlm.ingest.presets import load_event_log
    from evtlm.data.stream import now_windows
    from evtlm.train.stream_model import StreamLM, answer_token_ids, stream_predictions
    from evtlm.text.tokenization import add_item_tokens, item_token

    log = load_event_log(_recipe(True).data)
    ev = log.events
    users = ev["user_id"].drop_duplicates().to_numpy()[: args.users]
    part = ev[ev["user_id"].isin(users)].reset_index(drop=True)
    items = item_vocabulary(log)
    tok = AutoTokenizer.from_pretrained(str(GPT2_TOK))
    n_bpe = len(tok)
    add_item_tokens(tok, items)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=1024, n_layer=args.n_layer, n_head=4, n_embd=args.n_embd)
    lm = GPT2LMHeadModel(cfg).eval()
    space = [" " + item_token(i) for i in items]
    model = StreamLM(lm, answer_token_ids(tok, space), copy=True).eval()
    res = {"users": len(users), "catalog": len(space), "shape": f"{args.n_layer} x {args.n_embd}",
           "torch_threads": torch.get_num_threads()}

    # ---- stream: windows, then one product per user
    t_win, now = _timed(lambda: now_windows(part, log.catalog, _recipe(True), tok, space))
    stream_predictions(model, now.dataset.select(range(4)), now.ok[:4], top_k=10)  # warm-up
    t_stream, (idx, _) = _timed(lambda: stream_predictions(model, now.dataset, now.ok, top_k=10, batch_size=32))
    assert ((idx >= 0) & (idx < len(space))).all()
    res["stream_users_per_s"] = len(now.ok) / (t_stream + t_win)
    res["stream_users_per_s_excl_text"] = len(now.ok) / t_stream
    res["mean_window_tokens"] = float(np.mean([len(x) for x in now.dataset["input_ids"]]))

    # ---- plain batched forward over the same windows (body only, no ranking)
    from evtlm.train.stream_model import StreamCollator

    def plain():
        col = StreamCollator(0)
        ds = now.dataset
        lengths = np.asarray([len(x) for x in ds["input_ids"]])
        order = np.argsort(-lengths)
        with torch.inference_mode():
            for lo in range(0, len(order), 32):
                b = col([ds[int(i)] for i in order[lo:lo + 32]])
                lm.transformer(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)
    t_plain, _ = _timed(plain)
    res["plain_forward_users_per_s"] = len(now.ok) / t_plain

    # ---- naive stream loop: one user at a time
    k = min(args.users, 32)
    t_one, _ = _timed(lambda: stream_predictions(model, now.dataset.select(range(k)), now.ok[:k], top_k=10, batch_size=1))
    res["naive_stream_loop_users_per_s"] = k / t_one

    # ---- today's trie beams over BPE-spelled items, per-example prompts
    tok_bpe = AutoTokenizer.from_pretrained(str(GPT2_TOK))
    ex_recipe = _recipe(False)
    bu = users[: args.beam_users]
    bpart = part[part["user_id"].isin(bu)].reset_index(drop=True)
    as_of = int(bpart["timestamp"].astype("int64").max()) + 1
    prompts = now_prompts(bpart, log.catalog, ex_recipe, tok_bpe, " Product 1000000", as_of).prompts
    prompts = [p for p in prompts if p is not None]
    cand = candidate_token_ids(tok_bpe, [f" Product {i}" for i in items])
    bpe_lm = GPT2LMHeadModel(GPT2Config(vocab_size=n_bpe, n_positions=1024, n_layer=args.n_layer, n_head=4,
                                        n_embd=args.n_embd)).eval()
    eos = tok_bpe.eos_token_id
    kw = dict(top_k=10, num_beams=20, pad_id=eos, end_id=eos)
    beam_search_items(bpe_lm, prompts[:1], cand, batch_size=1, **kw)  # warm-up (trie build included below)
    t_beam, _ = _timed(lambda: beam_search_items(bpe_lm, prompts, cand, batch_size=8, **kw))
    res["trie_beam_users_per_s"] = len(prompts) / t_beam
    nu = prompts[: args.naive_users]
    t_naive, _ = _timed(lambda: naive_beams(bpe_lm, nu, cand, 10, 20, eos, "cpu"))
    res["naive_generate_users_per_s"] = len(nu) / t_naive
    res["ratios"] = {
        "stream_vs_trie_beam": res["stream_users_per_s"] / res["trie_beam_users_per_s"],
        "stream_vs_naive_generate": res["stream_users_per_s"] / res["naive_generate_users_per_s"],
        "stream_vs_naive_stream_loop": res["stream_users_per_s_excl_text"] / res["naive_stream_loop_users_per_s"],
        "plain_forward_vs_stream": res["plain_forward_users_per_s"] / res["stream_users_per_s_excl_text"],
    }
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
