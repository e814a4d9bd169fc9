"""`evtlm.data.prepare.prepare`: ids = prompt + answer + eos, prompt masking, budget, cache, report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evtlm.data.prepare import prepare
from evtlm.errors import TaskError
from evtlm.recipe import Recipe

SMALL = {"synthetic": {"users": 40, "items": 30, "days": 21, "seed": 3}}
SPLIT = {"valid_days": 3, "test_days": 3}


def recipe(tokenizer_dir, **over) -> Recipe:
    sections = {"data": SMALL, "split": SPLIT, "model": {"base": str(tokenizer_dir)}, **over}
    return Recipe.model_validate(sections)


def check_rows(p, split: str, n: int = 25) -> None:
    """Each row is tokenizer(prompt) + tokenizer(target) + eos, labels -100 on the prompt."""
    ds, text, tok = p.datasets[split], p.examples[split].set_index("example_id"), p.tokenizer
    for row in ds.select(range(min(n, len(ds)))):
        ex = text.loc[row["example_id"]]
        prompt = tok(ex["prompt"], add_special_tokens=False)["input_ids"]
        target = tok(ex["target"], add_special_tokens=False)["input_ids"]
        assert row["input_ids"] == prompt + target + [tok.eos_token_id]
        k = row["prompt_length"]
        assert k == len(prompt) and row["labels"][:k] == [-100] * k and row["labels"][k:] == row["input_ids"][k:]
        assert row["label_index"] == ex["label_index"] and row["user_id"] == ex["user_id"]


def test_purchase_rows_cache_and_report(tokenizer_dir, tmp_path):
    r = recipe(tokenizer_dir, task={"name": "purchase", "horizon_days": 3})
    p = prepare(r, cache_dir=tmp_path, progress=False)
    assert not p.from_cache and set(p.datasets) == {"train", "valid", "test"}
    check_rows(p, "train")
    check_rows(p, "test")
    rep = p.report
    assert rep["examples"]["train"] == len(p.datasets["train"]) > 0
    assert set(rep["splits"]["test"]["label_distribution"]) <= {"yes", "no"}
    assert {"p50", "p90", "p99", "max"} <= set(rep["splits"]["train"]["tokens"])
    assert rep["tokenizer"]["source"] == "pretrained" and rep["events"]["rows_kept"] == len(p.events.events)
    again = prepare(r, cache_dir=tmp_path, progress=False)
    assert again.from_cache and again.cache_path == p.cache_path
    assert again.datasets["valid"]["input_ids"] == p.datasets["valid"]["input_ids"]
    from evtlm.ingest.presets import load_event_log

    pd.testing.assert_frame_equal(again.events.events, load_event_log(r.data).events)  # dtypes survive the cache
    other = prepare(recipe(tokenizer_dir, task={"name": "purchase", "horizon_days": 2}), cache_dir=tmp_path, progress=False)
    assert not other.from_cache  # a changed task section is a new cache entry


def test_budget_drops_oldest_events_never_the_target(tokenizer_dir, tmp_path):
    r = recipe(tokenizer_dir, task={"name": "next_item", "max_tokens": 40, "formulation": "example"})
    p = prepare(r, cache_dir=tmp_path, progress=False, use_cache=False)
    lengths = np.array([len(x) for x in p.datasets["train"]["input_ids"]])
    assert lengths.max() <= 40 and p.report["splits"]["train"]["truncation_rate"] > 0.3
    check_rows(p, "train", n=60)  # truncated prompts start with the first kept event's standalone form
    text = p.examples["train"]
    cut = text[text["truncated"]].iloc[0]
    ix = p.index["train"].set_index(p.index["train"].index)
    kept = ix.loc[ix["kept_start"] > ix["hist_start"]].iloc[0]
    assert cut["prompt"].startswith(f"User {kept['user_id']} ")
    cold = p.report["cold_items"]
    assert set(cold) == {"train", "valid", "test"} and cold["train"]["examples"] == 0


def test_target_that_cannot_fit_is_an_error(tokenizer_dir, tmp_path):
    long_prefix = "Extraordinarily long product designation number, catalogue edition two thousand"
    r = recipe(tokenizer_dir, task={"name": "next_item", "max_tokens": 16, "formulation": "example"},
               verbalize={"item_prefix": long_prefix})
    with pytest.raises(TaskError, match="cannot fit their question and answer in task.max_tokens=16"):
        prepare(r, cache_dir=tmp_path, progress=False, use_cache=False)


def test_pretrain_chunks_and_training_text(tokenizer_dir, tmp_path):
    r = recipe(tokenizer_dir, task={"name": "pretrain", "max_tokens": 64})
    p = prepare(r, cache_dir=tmp_path, progress=False, use_cache=False)
    train = p.datasets["train"]
    assert all(len(x) <= 64 for x in train["input_ids"]) and train["labels"] == train["input_ids"]
    assert set(train["prompt_length"]) == {0}
    # training text: only events before the end of the training window
    end = pd.Timestamp(p.report["split"]["windows"]["train_end"])
    ev = p.events.events
    assert len(p.train_texts) == ev.loc[ev["timestamp"] < end, "user_id"].nunique()
    tok = p.tokenizer
    flat = [t for x in train["input_ids"] for t in x]
    assert len(flat) == sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in p.train_texts)


def test_scratch_tokenizer_from_training_text(tmp_path):
    r = Recipe.model_validate({"data": SMALL, "split": SPLIT, "task": {"name": "next_action", "max_tokens": 128,
                                                                      "formulation": "example"},
                               "model": {"base": str(tmp_path / "no-model"), "when_unavailable": "scratch",
                                         "scratch": {"vocab_size": 400}}})
    p = prepare(r, cache_dir=tmp_path, progress=False)
    assert p.tokenizer_info.source == "scratch" and "no such directory" in p.tokenizer_info.reason
    check_rows(p, "valid")
    again = prepare(r, cache_dir=tmp_path, progress=False)
    assert again.from_cache and again.tokenizer.get_vocab() == p.tokenizer.get_vocab()


def test_cli_prepare_prints_report_and_uses_cache(tokenizer_dir, tmp_path, capsys):
    import json

    from evtlm.cli.main import main

    path = tmp_path / "r.yaml"
    path.write_text(f"data: {{synthetic: {{users: 30, items: 20, days: 14, seed: 5}}}}\n"
                    f"split: {{valid_days: 2, test_days: 2}}\nmodel: {{base: {tokenizer_dir}}}\n")
    args = ["prepare", str(path), "task.horizon_days=2", "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert main([*args, "--json", str(tmp_path / "rep.json")]) == 0
    out = capsys.readouterr().out
    assert "built and cached" in out and "examples" in out and "truncated" in out
    assert json.loads((tmp_path / "rep.json").read_text())["task"]["horizon_days"] == 2
    assert main(args) == 0 and "served from the cache" in capsys.readouterr().out


def test_report_counts_what_examples_per_user_dropped(tmp_path):
    """Issue 12 finding 8: the cap drops training examples only, and the data report says how many."""
    sections = {"data": {"synthetic": {"users": 30, "items": 20, "days": 14, "seed": 5}}, "split": SPLIT,
                "model": {"base": str(tmp_path / "no-model"), "when_unavailable": "scratch", "scratch": {"vocab_size": 400}}}
    task = {"name": "purchase", "horizon_days": 2, "max_tokens": 64}
    full = prepare(Recipe.model_validate({**sections, "task": task}), cache_dir=tmp_path, progress=False)
    p = prepare(Recipe.model_validate({**sections, "task": {**task, "examples_per_user": 2}}), cache_dir=tmp_path, progress=False)
    capped = p.report["task"]["examples_per_user"]
    assert capped["cap"] == 2 and capped["dropped"]["valid"] == capped["dropped"]["test"] == 0
    assert capped["dropped"]["train"] == full.report["examples"]["train"] - p.report["examples"]["train"] > 0
    assert p.report["examples"]["test"] == full.report["examples"]["test"]
    assert full.report["task"]["examples_per_user"] == {"cap": None, "dropped": {"train": 0, "valid": 0, "test": 0}}


def test_percentiles_from_a_token_histogram_are_numpys_to_the_last_bit():
    """The data report of a sharded log reads percentiles from merged histograms
    (`evtlm.data.shard_prepare`): they must equal np.percentile over the whole array, not nearly."""
    from evtlm.data.prepare import percentile_of_counts

    rng = np.random.default_rng(0)
    for _ in range(500):
        x = rng.integers(0, 600, rng.integers(1, 300))
        for q in (50, 90, 99):
            assert percentile_of_counts(np.bincount(x), q) == np.percentile(x, q)
