"""predict_file / `evtlm predict`: one valid record per user (error records included), label-space
answers only, CSV output, and prediction prompts identical to training prompts.

The run directories are the tiny finetune runs of tests/test_evaluate.py (`tiny_run`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_evaluate import _isolated, tiny_run  # noqa: F401  (_isolated: caches in tmp, one thread; autouse)

from evtlm.recipe import Recipe, dump_recipe, load_recipe


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """A shop written by `evtlm simulate` plus broken rows: user 'ghost' has only bad rows, user
    '1' gains a bad row and an event on an item the run never saw."""
    from evtlm.cli.main import main

    path = tmp_path_factory.mktemp("hist") / "shop.csv"
    assert main(["simulate", "--users", "30", "--items", "40", "--days", "28", "--seed", "11", "--out", str(path)]) == 0
    with path.open("a") as f:
        f.write("ghost,not-a-time,view,3,ghost-1,1.0\n")
        f.write("ghost,2024-01-05T10:00:00Z,teleport,3,ghost-1,1.0\n")
        f.write("1,2024-01-28T10:00:00Z,view,999999,1-9,2.0\n")  # an item unknown to the run
        f.write("1,yesterday,view,3,1-9,2.0\n")
    return path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_cli_writes_valid_jsonl_for_every_user(history, tmp_path, capsys):
    """Acceptance: a purchase run + a simulate file -> one valid JSONL record per user."""
    from evtlm.cli.main import main

    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--run", str(tiny_run("purchase")), "--history", str(history), "--out", str(out),
                 "--no-progress", "--chunk-users", "7"]) == 0  # several chunks
    assert "31 users, 30 predictions, 1 error records" in capsys.readouterr().out
    records = _jsonl(out)
    users = [r["user_id"] for r in records]
    raw = pd.read_csv(history, dtype=str)["user_id"].unique()
    assert sorted(users) == sorted(raw) and len(set(users)) == len(users)  # every user exactly once
    by_user = {r["user_id"]: r for r in records}
    assert set(by_user["ghost"]) == {"user_id", "error"} and "dropped while reading" in by_user["ghost"]["error"]
    for r in records:
        if "error" not in r:
            # the run's calibration.json (fitted on validation by finetune's evaluation): p_raw beside it
            assert set(r) == {"user_id", "p_purchase", "p_raw", "answer"}
            assert 0.0 <= r["p_purchase"] <= 1.0 and r["answer"] == ("yes" if r["p_purchase"] >= 0.5 else "no")


def test_predict_error_records_instead_of_crashes(history, tmp_path):
    """--as-of before some users' first event: those users get error records; on_bad_rows=error stops."""
    from evtlm.errors import DataError
    from evtlm.predict.batch import predict_file

    events = pd.read_csv(history, dtype=str)
    firsts = pd.to_datetime(events.groupby("user_id")["timestamp"].min(), utc=True, errors="coerce").dropna()
    as_of = firsts.sort_values().iloc[len(firsts) // 2]  # half the users start later
    summary = predict_file(tiny_run("purchase"), history, tmp_path / "p.jsonl", progress=False, as_of=str(as_of))
    records = _jsonl(tmp_path / "p.jsonl")
    late = {u for u, t in firsts.items() if t >= as_of}
    errors = {r["user_id"]: r["error"] for r in records if "error" in r}
    assert late <= set(errors) and all("as-of" in errors[u] for u in late)
    assert summary["users"] == len(records) == events["user_id"].nunique()
    with pytest.raises(DataError, match="unparseable timestamp"):
        predict_file(tiny_run("purchase"), history, tmp_path / "q.jsonl", progress=False, on_bad_rows="error")


def test_predict_applies_the_calibration_evaluate_reports(tmp_path):
    """The same shop the run was trained on, predicted as of the test cutoff: every test user's
    p_purchase is the report's `model calibrated` probability (same metrics over the test split),
    p_raw the model row's, and p_purchase = the saved calibrator applied to p_raw."""
    from evtlm.evaluate.calibration import load_calibration
    from evtlm.cli.main import main
    from evtlm.data.prepare import prepare
    from evtlm.evaluate.harness import evaluate_run, truth
    from evtlm.decode.inference import load_run_recipe, read_label_space
    from evtlm.evaluate.metrics import binary_metrics
    from evtlm.predict.batch import predict_file
    from transformers import AutoTokenizer

    run = tiny_run("purchase")
    recipe = load_run_recipe(run)
    shop = recipe.data.synthetic
    path = tmp_path / "shop.csv"
    assert main(["simulate", "--users", str(shop.users), "--items", str(shop.items), "--days", str(shop.days),
                 "--seed", str(shop.seed), "--out", str(path)]) == 0
    result = evaluate_run(run, split="test", max_examples=10**9, progress=False)  # every test example; writes calibration.json
    cal = load_calibration(run)
    assert cal is not None and cal.skipped is None
    test = prepare(recipe, tokenizer=AutoTokenizer.from_pretrained(run / "tokenizer"), progress=False).examples["test"]
    assert test["label_time"].nunique() == 1  # user level: one shared cutoff
    predict_file(run, path, tmp_path / "p.csv", progress=False, as_of=str(test["label_time"].iloc[0]))
    with (tmp_path / "p.csv").open() as f:
        rows = {r["user_id"]: r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values()))) == ["user_id", "p_purchase", "p_raw", "answer", "error"]
    p = np.array([float(rows[str(u)]["p_purchase"]) for u in test["user_id"]])
    raw = np.array([float(rows[str(u)]["p_raw"]) for u in test["user_id"]])
    assert np.allclose(p, cal.apply(raw), atol=2e-6)
    y = truth("purchase", test["label_index"].to_numpy(), read_label_space(run))
    for row, probs in (("model calibrated", p), ("model", raw)):
        ours, reported = binary_metrics(y, probs), result["methods"][row]
        for metric in ("log_loss", "brier", "positive_rate"):  # records keep 6 significant digits: equal to 1e-5
            assert ours[metric] == pytest.approx(reported[metric], abs=1e-5), (row, metric)


def test_next_item_predictions_are_label_space_items_and_csv(history, tmp_path):
    from evtlm.predict.batch import predict_file

    run = tiny_run("next_item")
    items = set(json.loads((run / "label_items.json").read_text()))
    predict_file(run, history, tmp_path / "items.jsonl", top_k=5, progress=False)
    records = [r for r in _jsonl(tmp_path / "items.jsonl") if "error" not in r]
    assert len(records) == 30
    for r in records:
        got = [it["item_id"] for it in r["items"]]
        assert len(got) == 5 and set(got) <= items and "999999" not in got  # only label-space items
        scores = [it["score"] for it in r["items"]]
        assert scores == sorted(scores, reverse=True) and max(scores) <= 0  # log-probabilities, best first

    predict_file(run, history, tmp_path / "items.csv", top_k=3, progress=False)
    with (tmp_path / "items.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["user_id", "item_1", "score_1", "item_2", "score_2", "item_3", "score_3", "error"]
    assert len(rows) == 31 and sum(bool(r["error"]) for r in rows) == 1
    assert all(r["item_1"] in items for r in rows if not r["error"])


@pytest.mark.parametrize("task", [
    {"name": "purchase"}, {"name": "purchase", "level": "session"}, {"name": "next_action", "formulation": "example"},
    {"name": "next_item", "formulation": "example"},
])
def test_prediction_prompts_equal_training_prompts(task, tokenizer_dir, tmp_path):
    """now_prompts at an example's label time == the training prompt's ids, truncation included.
    (Stream runs read windows instead: tests/test_stream.py checks prediction reads the same position.)"""
    from transformers import AutoTokenizer

    from evtlm.data.prepare import prepare
    from evtlm.decode.inference import now_prompts

    recipe = Recipe.model_validate({"data": {"synthetic": {"users": 40, "items": 30, "days": 28}}, "task": {**task, "max_tokens": 48},
                                    "split": {"valid_days": 5, "test_days": 5}, "model": {"base": str(tokenizer_dir)}})
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    p = prepare(recipe, tokenizer=tok, cache_dir=tmp_path, progress=False, use_cache=False)
    ev = p.events.events
    ts = ev["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    for split in ("train", "test"):
        ix, ds = p.index[split], p.datasets[split]
        trunc = np.flatnonzero(ix["kept_start"].to_numpy() > ix["hist_start"].to_numpy())
        rows = np.unique(np.r_[trunc[:3], np.linspace(0, len(ix) - 1, 4).astype(int)])
        assert len(trunc), "the budget should truncate some prompts"
        for i in rows:
            u, t = ix["user_id"].iloc[i], int(ix["label_time"].iloc[i])
            hist = ev[(ev["user_id"] == u).to_numpy() & (ts < t)]
            now = now_prompts(hist, p.events.catalog, recipe, tok, [ix["target"].iloc[i]], as_of=t)
            want = ds[int(i)]["input_ids"][: ds[int(i)]["prompt_length"]]
            assert now.prompts[0] == want, (split, i, tok.decode(now.prompts[0]), tok.decode(want))


def test_now_prompts_reports_short_histories():
    from evtlm.decode.inference import now_prompts

    class Bytes:  # a stand-in tokenizer, one token per byte: no tokenizer files needed
        eos_token_id = 0
        backend_tokenizer = None

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [list(t.encode()) or [] for t in texts]}

    ev = pd.DataFrame({"user_id": pd.array(["a", "a", "b"], dtype="string"),
                       "timestamp": pd.to_datetime([1, 2, 3], unit="h", utc=True),
                       "action": pd.Categorical(["view", "cart", "view"]), "item_id": pd.array(["7", "7", "8"], dtype="string"),
                       "session_id": pd.array(["a1", "a1", "b1"], dtype="string")})
    recipe = load_recipe(None, ["task.name=next_action", "task.min_history=2", "task.max_tokens=400"])
    now = now_prompts(ev, None, recipe, Bytes(), " viewed", as_of=10**18)
    assert now.user_ids == ["a", "b"] and now.prompts[1] is None and "at least 2" in now.errors[1]
    assert bytes(now.prompts[0]).decode() == "User a viewed Product 7. An hour later added it to cart. Next action:"


def test_run_recipe_keeps_the_presets_values(tmp_path):
    """The run stores its data section with the preset merged in; reloading gives exactly those
    settings, including a preset value the recipe overrode back to the schema default."""
    from evtlm.decode.inference import load_run_recipe
    from evtlm.ingest.presets import resolve_data_config

    recipe = load_recipe(None, ["data.preset=taobao", "data.path=u.csv", "data.has_header=true"])
    written = recipe.model_copy(update={"data": resolve_data_config(recipe.data)})  # as evtlm.train.run_dir does
    (tmp_path / "recipe.resolved.yaml").write_text(dump_recipe(written))
    data = resolve_data_config(load_run_recipe(tmp_path).data)
    assert data.actions["pv"] == "view" and data.column_names == written.data.column_names
    assert data.has_header is True  # the recipe's explicit choice survives the round trip
