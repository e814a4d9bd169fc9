"""Tasks: registry, prompts/targets, label spaces, metric names, purchase windows and sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evtlm.errors import TaskError
from evtlm.ingest.events import finalize_events
from evtlm.recipe import Recipe, SplitConfig
from evtlm.tasks.splits import TEST, TRAIN, VALID
from evtlm.tasks import TASKS, TaskContext, get_task
from evtlm.tasks.base import require_distinct_first_tokens

D = pd.Timedelta(days=1)


def log(rows) -> pd.DataFrame:
    """rows: (user, day offset from 2024-01-01, action, item, session)."""
    df = pd.DataFrame(rows, columns=["user_id", "day", "action", "item_id", "session_id"])
    df["timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(df.pop("day"), unit="D")
    return finalize_events(df)


def examples(events, **sections):
    r = Recipe.model_validate(sections)
    ctx = TaskContext.build(events, None, r.task, r.split, r.verbalize)
    return ctx, get_task(r.task.name).build_examples(ctx)


# 20 days; valid = days [12, 16), test = [16, 20.01)
EVENTS = log([
    ("a", 0, "view", "1", "a1"), ("a", 1, "cart", "1", "a2"), ("a", 5, "purchase", "1", "a3"),
    ("a", 9, "view", "2", "a4"), ("a", 13, "purchase", "2", "a5"), ("a", 17, "view", "9", "a6"),
    ("b", 2, "view", "3", "b1"), ("b", 2.01, "purchase", "3", "b1"), ("b", 19, "view", "1", "b2"),
    ("b", 20, "view", "3", "b3"),
])
SPLIT = {"valid_days": 4, "test_days": 4}


def test_registry_and_metrics():
    assert sorted(TASKS) == ["next_action", "next_item", "pretrain", "purchase"]
    assert get_task("next_item").metric_names == ("hr@k", "ndcg@k", "mrr@k")
    assert get_task("next_action").metric_names == ("macro_f1", "accuracy", "roc_auc", "log_loss", "brier", "ece")
    with pytest.raises(TaskError, match="unknown task 'nxt_item'.*next_item"):
        get_task("nxt_item")


def test_purchase_user_level_cutoffs_and_windows():
    ctx, ex = examples(EVENTS, task={"name": "purchase", "horizon_days": 4}, split=SPLIT)
    t = ex.table
    assert ex.label_space == [" no", " yes"]
    w = ctx.windows
    cuts = {s: sorted(set(t.loc[t["split"] == c, "label_time"])) for c, s in enumerate(("train", "valid", "test"))}
    assert cuts["valid"] == [w.train_end.value] and cuts["test"] == [w.valid_end.value]
    # training cutoffs: every 4 days back from the end of the training window, labels clipped to it
    assert np.diff(cuts["train"]).tolist() == [4 * D.value] * (len(cuts["train"]) - 1)
    assert (t.loc[t["split"] == TRAIN, "label_end"] <= w.train_end.value).all()
    a_valid = t[(t["user_id"] == "a") & (t["split"] == VALID)].iloc[0]
    assert a_valid["label"] == 1 and a_valid["target"] == " yes"  # bought on day 13, inside [12, 16)
    b_test = t[(t["user_id"] == "b") & (t["split"] == TEST)].iloc[0]
    assert b_test["label"] == 0 and "days later: will they buy within 4 days?" in b_test["question"]
    # the combination fails when the recipe loads (evtlm.recipe.checks) ...
    with pytest.raises(ValueError, match="got 'leave_one_out' with a user-level purchase task"):
        examples(EVENTS, task={"name": "purchase"}, split={"method": "leave_one_out"})
    # ... and the task still refuses sections put together without validation
    r = Recipe.model_validate({"task": {"name": "purchase"}})
    ctx = TaskContext.build(EVENTS, None, r.task, SplitConfig(method="leave_one_out"), r.verbalize)
    with pytest.raises(TaskError, match="needs split.method=time"):
        get_task("purchase").build_examples(ctx)


def test_purchase_session_level_stops_before_the_first_purchase():
    ctx, ex = examples(EVENTS, task={"name": "purchase", "level": "session"}, split=SPLIT)
    b1 = ex.table[(ex.table["user_id"] == "b") & (ex.table["label"] == 1)].iloc[0]
    # session b1: viewed, then bought; the prompt is the view only, the label is the purchase
    assert b1["hist_stop"] - b1["hist_start"] == 1 and ctx.events["action"].iloc[b1["target_pos"]] == "purchase"
    # a's purchase-only sessions (a3, a5) have nothing before the purchase inside them: skipped
    a = ex.table[ex.table["user_id"] == "a"]
    assert len(a) == 4 and a["label"].sum() == 0
    # a session without a purchase: the whole session is the prompt, label time just after it
    last = ctx.index.ts[a["hist_stop"].to_numpy() - 1]
    assert (a["label_time"].to_numpy() == last + 1).all()


def test_next_item_cold_items_kept():
    _, ex = examples(EVENTS, task={"name": "next_item"}, split=SPLIT)
    t = ex.table
    assert ex.label_space == [" Product 1", " Product 2", " Product 3"]  # items of the training window
    cold = t[t["label"] == "9"]
    assert len(cold) == 1 and cold["label_index"].iloc[0] == -1 and cold["split"].iloc[0] == TEST
    assert ex.info["cold_items"]["test"]["examples"] == 1


def test_next_action_label_space_and_cap():
    _, ex = examples(EVENTS, task={"name": "next_action", "examples_per_user": 1}, split={"method": "leave_one_out"})
    assert ex.label_space == [" viewed", " added to cart", " bought"]  # canonical order, training actions only
    assert ex.table[ex.table["split"] == TRAIN].groupby("user_id").size().max() == 1
    _, only = examples(EVENTS, task={"name": "next_action", "target_actions": ["purchase"]}, split=SPLIT)
    assert set(only.table["label"]) == {"purchase"}


@pytest.mark.parametrize("task", [{"name": "next_action"}, {"name": "next_item"}, {"name": "purchase", "horizon_days": 2},
                                  {"name": "purchase", "level": "session"}])
def test_examples_per_user_caps_training_only(task):
    """Issue 12 finding 8: the cap bounds training cost; the reported test figure is on the full split."""
    _, full = examples(EVENTS, task=task, split=SPLIT)
    ctx, capped = examples(EVENTS, task={**task, "examples_per_user": 1}, split=SPLIT)
    t, f = capped.table, full.table
    train = t[t["split"] == TRAIN]
    assert train.groupby("user_id").size().max() == 1  # each user's latest training example only
    latest = f[f["split"] == TRAIN].groupby("user_id")["label_time"].max()
    assert (train.set_index("user_id")["label_time"] == latest.reindex(train["user_id"]).to_numpy()).all()
    for code in (VALID, TEST):  # every held-out example, exactly as without a cap
        pd.testing.assert_frame_equal(t[t["split"] == code].reset_index(drop=True), f[f["split"] == code].reset_index(drop=True))
    assert ctx.capped == {"train": int((f["split"] == TRAIN).sum()) - len(train), "valid": 0, "test": 0}
    assert (f["split"] == TEST).sum() > f[f["split"] == TEST]["user_id"].nunique() or task["name"] == "purchase"


def test_first_token_clash_is_an_error():
    class FirstWord:  # one token per word
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[hash(w) % 997 for w in t.split()] for t in texts]}

    with pytest.raises(TaskError, match="' removed from cart', ' removed it'.*verbalize.verbs"):
        require_distinct_first_tokens("next_action", [" viewed", " removed from cart", " removed it"], FirstWord())


def test_pretrain_streams_per_split():
    ctx, ex = examples(EVENTS, task={"name": "pretrain"}, split=SPLIT)
    t = ex.table
    assert ex.label_space == [] and (t["label_index"] == -1).all()
    # a's training stream: days 0..9 (rows 0-3); b's valid stream is empty, test stream 2 events
    a_train = t[(t["user_id"] == "a") & (t["split"] == TRAIN)].iloc[0]
    assert (a_train["hist_start"], a_train["hist_stop"]) == (0, 4)
    assert ex.train_mask.sum() == 6
