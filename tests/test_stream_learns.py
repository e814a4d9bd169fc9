"""The stream model learns what the synthetic shop planted, better than the item-to-item baseline.

The shop's next views follow category stickiness (70% stay in the category, popular items first)
and abandoned carts come back at the start of the next visit (60%): a sequence model reading the
history (with the copy path for returning items) should rank the next item better than
first-order transitions, which only know the last item. In the default suite (~1-2 min on 2 cores).
"""

from __future__ import annotations

from tests.conftest import REPO, finetune_metrics


def test_stream_model_learns_the_planted_next_item_rule_better_than_transitions(tmp_path, monkeypatch):
    result = finetune_metrics(REPO / "recipes/next_item.yaml", [
        "data.synthetic.users=500", "data.synthetic.items=150", "data.synthetic.days=30",
        "split.method=leave_one_out", "verbalize.time=none", "task.max_tokens=192",
        "model.scratch={n_layer: 1, n_head: 2, n_embd: 32, n_positions: 192, vocab_size: 400, pretrain_epochs: 0}",
        "train.epochs=8", "train.batch_size=16", "train.threads=1", "train.lr=3e-3", "train.eval_every=1000", "train.save_every=1000",
        "eval.baselines=[transitions,repeat]",  # train.threads=1: a 32-dim model gains nothing from more
    ], tmp_path, monkeypatch)
    m = result["methods"]
    print({name: {k: round(v, 4) for k, v in row.items() if k in ("hr@10", "ndcg@10")} for name, row in m.items()},
          f"N={result['n']}")
    assert result["formulation"] == "stream" and not result["sampled"]
    assert m["model"]["hr@10"] > m["transitions"]["hr@10"]
    assert m["model"]["ndcg@10"] > m["transitions"]["ndcg@10"]
