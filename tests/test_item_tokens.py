"""`model.item_tokens`: every item is one added token, end to end.

Verbalization, the label space, training, evaluation and prediction all follow the option, so
next-item prediction becomes a single decoding step over the catalog.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from test_evaluate import REPO, TINY, session_root

from evtlm.cli.main import main


@pytest.fixture(scope="module")
def item_token_run() -> Path:
    root = session_root()
    os.environ.setdefault("EVTLM_CACHE", str(root / "cache"))
    torch.set_num_threads(1)
    code = main(["finetune", str(REPO / "recipes/next_item.yaml"), *TINY, "model.item_tokens=true", "model.item_init=transitions",
                 "model.markov_path=true", "model.pair_memory=true",
                 f"output.dir={root}", "output.name=next_item_tokens", "--no-progress"])
    assert code == 0
    return root / "next_item_tokens"


def test_label_space_is_one_added_token_per_item(item_token_run: Path) -> None:
    from transformers import AutoTokenizer

    labels = json.loads((item_token_run / "label_space.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(item_token_run / "tokenizer"))
    assert labels and all(label.startswith(" <item_") and label.endswith(">") for label in labels)
    ids = [tok(label, add_special_tokens=False)["input_ids"] for label in labels]
    assert all(len(i) == 1 for i in ids), "each answer must be a single decoding step"
    assert len({i[0] for i in ids}) == len(labels)


def test_the_run_dir_reloads_the_markov_path_as_trained(item_token_run: Path) -> None:
    from safetensors.torch import load_file

    from evtlm.train.run_dir import load_run_model
    from evtlm.train.stream_model import HEAD_FILE

    model, _ = load_run_model(item_token_run)
    assert model.markov, "the run trained with model.markov_path=true: predict and evaluate must read it too"
    saved = load_file(str(item_token_run / HEAD_FILE))["markov_scale"].item()
    assert model.markov_scale.item() == saved
    assert abs(saved - 0.3) > 1e-6, "the learned scale, not the initial one"


def test_the_run_dir_reloads_the_pair_memory_as_trained(item_token_run: Path) -> None:
    from safetensors.torch import load_file

    from evtlm.train.run_dir import load_run_model
    from evtlm.train.stream_model import HEAD_FILE

    model, _ = load_run_model(item_token_run)
    assert model.pair_memory, "the run trained with model.pair_memory=true: predict and evaluate must read it too"
    saved = load_file(str(item_token_run / HEAD_FILE))
    for name in ("pair_indptr", "pair_cols", "pair_weight"):
        torch.testing.assert_close(getattr(model, name).detach(), saved[name], rtol=0, atol=0)
    assert len(saved["pair_cols"]) == int(saved["pair_indptr"][-1]) > 0
    assert saved["pair_weight"].abs().max() > 0, "the learned weights, not the zeros it starts from"


def test_prompts_and_predictions_use_item_tokens(item_token_run: Path, tmp_path: Path) -> None:
    from evtlm.recipe import SyntheticConfig
    from evtlm.ingest.simulate import simulate_shop, write_shop

    history, _ = write_shop(simulate_shop(SyntheticConfig(users=6, items=40, days=28, seed=11)), tmp_path / "h.csv")
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--run", str(item_token_run), "--history", str(history), "--out", str(out),
                 "--top-k", "3", "--no-progress"]) == 0
    labels = {label.strip()[len("<item_"):-1] for label in json.loads((item_token_run / "label_space.json").read_text())}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6
    for rec in records:
        if "error" not in rec:
            assert len(rec["items"]) == 3
            assert {it["item_id"] for it in rec["items"]} <= labels
