"""Built-in baselines (evtlm.evaluate.baselines, evtlm.data.history): each on a tiny log with a known answer,
the leakage rule, output shapes and catalog membership, and the errors a user can cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from evtlm.evaluate.baselines import BASELINES, Ranking, get_baselines
from evtlm.errors import DataError, TaskError
from evtlm.ingest.events import finalize_events
from evtlm.data.history import HistoryIndex, next_action_features, rfm_features
from evtlm.recipe import ACTIONS, ActionGbtConfig, EvalConfig, GbtConfig

T0 = pd.Timestamp("2024-01-01", tz="UTC")
# 1 thread: 80x faster on a busy box
FAST = EvalConfig(gbt=GbtConfig(max_iter=40, learning_rate=0.1, threads=1),
                  gbt_action=ActionGbtConfig(max_iter=40, learning_rate=0.1, threads=1))


def events(users, items, actions, hours) -> pd.DataFrame:
    """A canonical frame from parallel lists (hours after T0)."""
    return finalize_events(pd.DataFrame({
        "user_id": [str(u) for u in users], "item_id": items, "action": actions,
        "timestamp": T0 + pd.to_timedelta(np.asarray(hours, float), unit="h"),
    }))


def next_examples(ev: pd.DataFrame, field: str) -> pd.DataFrame:
    """One next_* example per event after a user's first: label = that event's item / action."""
    ex = ev[ev.groupby("user_id").cumcount() > 0]
    return pd.DataFrame({"user_id": ex["user_id"].to_numpy(), "label": ex[field].astype(str).to_numpy(),
                         "label_time": ex["timestamp"].to_numpy()})


def cycle_log(n_users=30, length=12, items=("a", "b", "c")) -> pd.DataFrame:
    """Each user walks the items in a strict cycle, starting at a user-dependent offset."""
    users = np.repeat(np.arange(n_users), length)
    step = np.tile(np.arange(length), n_users)
    return events(users, [items[(u + s) % len(items)] for u, s in zip(users, step)], ["view"] * len(users), step)


def future_of(ex: pd.DataFrame, rng: np.random.Generator, item="zz", action="purchase") -> pd.DataFrame:
    """Events at and after each example's label_time, for its user: what must never be read."""
    lag = np.where(rng.random(len(ex)) < 0.5, 0.0, rng.uniform(0, 48, len(ex)))  # exactly at t, or later
    t = pd.to_datetime(ex["label_time"], utc=True).reset_index(drop=True) + pd.to_timedelta(lag, unit="h")
    return pd.DataFrame({"user_id": ex["user_id"].astype(str).to_numpy(), "item_id": item, "action": action, "timestamp": t})


def hr_at_1(r: Ranking, labels) -> float:
    return float(np.mean(r.items[:, 0] == np.asarray(labels, dtype=object)))


# ------------------------------------------------------------------------------------ history
def test_bounds_are_strictly_before_and_inclusive_on_request():
    ev = events([1, 1, 1, 2], ["a", "b", "c", "a"], ["view"] * 4, [0, 1, 1, 5])
    idx = HistoryIndex(ev)
    t = T0 + pd.to_timedelta([1, 1, 0, 9], unit="h")
    start, end = idx.bounds(["1", "1", "1", "nobody"], t)
    assert (end - start).tolist() == [1, 1, 0, 0]  # events at exactly t are excluded
    start, end = idx.bounds(["1"], t[:1], inclusive=True)
    assert (end - start).tolist() == [3]


def test_visible_mask_is_each_users_events_up_to_their_last_training_label():
    ev = events([1, 1, 1, 2, 2], ["a", "b", "c", "a", "b"], ["view"] * 5, [0, 1, 2, 0, 1])
    idx = HistoryIndex(ev)
    mask = idx.visible_mask(["1", "1", "2"], T0 + pd.to_timedelta([0, 1, 0], unit="h"))
    assert idx.item_ids[idx.item[mask]].tolist() == ["a", "b", "a"]


def test_rfm_features_ignore_events_at_or_after_the_cutoff_and_see_earlier_ones():
    ev = events([1] * 3, ["a", "a", "b"], ["view", "cart", "view"], [0, 10, 20])
    t = pd.Series([T0 + pd.Timedelta(hours=20)])
    base = rfm_features(HistoryIndex(ev), *HistoryIndex(ev).bounds(["1"], t), t)
    later = pd.concat([ev, events([1, 1], ["b", "c"], ["purchase", "cart"], [20, 30])])
    idx = HistoryIndex(later)
    pd.testing.assert_frame_equal(rfm_features(idx, *idx.bounds(["1"], t), t), base)
    earlier = pd.concat([ev, events([1], ["c"], ["purchase"], [19])])
    idx = HistoryIndex(earlier)
    changed = rfm_features(idx, *idx.bounds(["1"], t), t)
    assert changed.loc[0, "n_purchase"] == 1 and changed.loc[0, "hours_since_purchase"] == 1.0
    assert base.loc[0, "n_cart"] == 1 and base.loc[0, "carts_since_purchase"] == 1
    assert changed.loc[0, "carts_since_purchase"] == 0


# ---------------------------------------------------------------------------------- next_item
def test_transitions_learn_a_strict_cycle_and_only_rank_catalog_items():
    ev = cycle_log()
    ex = next_examples(ev, "item_id")
    train, test = ex[ex["user_id"].astype(int) < 20], ex[ex["user_id"].astype(int) >= 20]
    model = get_baselines("next_item", names=["transitions"], k=5)[0].fit(train, ev)
    r = model.predict(test, ev)
    assert r.items.shape == (len(test), 3)  # k capped at the catalog size
    assert hr_at_1(r, test["label"]) == 1.0
    assert set(r.items.ravel()) <= {"a", "b", "c"}
    assert (np.diff(r.scores, axis=1) <= 0).all()


def test_repeat_recommends_the_users_own_items_and_fills_with_popularity():
    # every user re-buys one personal item between views of shared popular items
    rng = np.random.default_rng(0)
    users, items, hours = [], [], []
    for u in range(40):
        seq = [f"own{u}" if s % 2 else f"pop{rng.integers(20)}" for s in range(10)]
        users += [u] * 10
        items += seq
        hours += list(range(10))
    ev = events(users, items, ["purchase"] * len(users), hours)
    ex = next_examples(ev, "item_id")
    ex = ex[ex["label"].str.startswith("own")]
    cut = T0 + pd.Timedelta(hours=5)  # a time split: own items are bought before and after it
    train, test = ex[ex["label_time"] <= cut], ex[ex["label_time"] > cut]
    repeat, pop = get_baselines("next_item", names=["repeat", "popularity"], k=4)
    repeat.fit(train, ev)
    assert hr_at_1(repeat.predict(test, ev), test["label"]) >= 0.9
    assert repeat.gamma in repeat.gammas and set(repeat.tuning) == set(repeat.gammas)
    assert hr_at_1(pop.fit(train, ev).predict(test, ev), test["label"]) == 0.0  # nobody else's item
    cold = pd.DataFrame({"user_id": ["stranger"], "label_time": [T0]})
    r = repeat.predict(cold, ev)  # no history: pure popularity, own items are each bought by one user
    assert r.items[0, :3].tolist() == pop.predict(cold, ev).items[0, :3].tolist()
    assert len(set(r.items[0])) == 4


def test_transitions_never_pair_events_at_the_same_time():
    # users 1-3 buy the invoice {a, b} (one time), then c: the pairs are b -> c only, never a -> b,
    # since a prediction never sees the lines of its own invoice
    ev = events([1, 1, 1, 2, 2, 2, 3, 3, 3, 9, 8], list("abcabcabc") + ["a", "b"], ["purchase"] * 11,
                [0, 0, 1] * 3 + [0, 0])
    ex = next_examples(ev, "item_id")
    t = get_baselines("next_item", names=["transitions"], k=3)[0].fit(ex[ex["user_id"] != "9"], ev)
    probe = pd.DataFrame({"user_id": ["9", "8"], "label_time": [T0 + pd.Timedelta(hours=5)] * 2})
    r = t.predict(probe, ev)
    assert r.scores[0, 0] < 0  # after a: nothing learned, popularity fill-in
    assert r.items[1, 0] == "c" and r.scores[1, 0] == 1.0  # after b: c


def test_prior_and_popularity_rank_the_same_items_for_everyone():
    ev = events([1, 1, 1, 2, 2], ["a", "b", "b", "b", "c"], ["view"] * 5, [0, 1, 2, 0, 1])
    ex = next_examples(ev, "item_id")
    for b in get_baselines("next_item", names=["prior", "popularity"], k=2):
        r = b.fit(ex, ev).predict(ex, ev)
        assert r.items.shape == (len(ex), 2) and r.items[0, 0] == "b"
        assert (r.items == r.items[0]).all()


def test_label_space_entries_without_an_item_id_are_never_ranked():
    ev = cycle_log(6)
    ex = next_examples(ev, "item_id")
    labels = [None, "c", "a", None, "b"]  # evaluate's item ids: None where no item is known
    for b in get_baselines("next_item", FAST, names=["prior", "popularity", "transitions", "repeat"], k=5):
        r = b.fit(ex, ev, labels=labels).predict(ex, ev)
        assert r.items.shape == (len(ex), 3) and set(r.items.ravel()) == {"a", "b", "c"}, b.name
        assert (np.asarray(labels, dtype=object)[r.catalog_index] == r.items).all()
    with pytest.raises(DataError, match=r"lists ids twice: \['a'\]"):
        get_baselines("next_item", names=["popularity"])[0].fit(ex, ev, labels=["a", "b", "a", "c"])


def test_excluded_items_are_never_ranked_and_rows_stay_full():
    """decode.exclude_history_items masks the baselines as it masks the model (issue 12 finding
    14): the lists evaluate passes are never ranked, and rankings go deeper so k items remain."""
    rng = np.random.default_rng(1)
    n_users, length = 25, 8
    users = np.repeat(np.arange(n_users), length)
    items = [f"i{v}" for v in rng.integers(15, size=len(users))]
    ev = events(users, items, ["view"] * len(users), np.tile(np.arange(length), n_users))
    ex = next_examples(ev, "item_id")
    labels = sorted(set(items))
    index = HistoryIndex(ev)
    start, end = index.bounds(ex["user_id"], ex["label_time"])
    history = [sorted({labels.index(index.item_ids[c]) for c in index.item[a:b]}) for a, b in zip(start, end)]
    assert max(map(len, history)) >= 5  # deep enough to empty a 5-item list without going deeper
    for b in get_baselines("next_item", FAST, names=["prior", "popularity", "transitions", "repeat"], k=5):
        b.fit(ex, ev, labels=labels)
        r = b.predict(ex, ev, exclude=history)
        assert r.catalog_index.shape == (len(ex), 5) and (r.catalog_index >= 0).all() and b.k == 5, b.name
        assert not any(set(row) & set(banned) for row, banned in zip(r.catalog_index.tolist(), history)), b.name
        assert (np.asarray(labels, dtype=object)[r.catalog_index] == r.items).all() and (np.diff(r.scores, axis=1) <= 0).all()
        plain = b.predict(ex, ev, exclude=[[] for _ in history])  # nothing to exclude: the usual ranking
        assert (plain.catalog_index == b.predict(ex, ev).catalog_index).all()


# -------------------------------------------------------------------------------- next_action
def test_markov_learns_the_next_action_from_the_last_one():
    acts = ["view", "cart", "purchase"] * 20
    ev = events([0] * 30 + [1] * 30, ["x"] * 60, acts, list(range(30)) * 2)
    ex = next_examples(ev, "action")
    order = ["view", "cart", "purchase"]
    markov, prior = get_baselines("next_action", names=["markov", "prior"])
    p = markov.fit(ex, ev, labels=order).predict(ex, ev)
    assert p.shape == (len(ex), 3) and np.allclose(p.sum(axis=1), 1)
    assert (np.array(order)[p.argmax(axis=1)] == ex["label"].to_numpy()).all()
    q = prior.fit(ex, ev, labels=order).predict(ex, ev)
    assert np.allclose(q, q[0]) and q.min() > 0  # smoothed: no zero probability


def streak_log(n_users=40, length=15, stay=0.8, seed=0) -> pd.DataFrame:
    """Each user repeats their previous action with P ``stay``, else draws one of view/cart/purchase."""
    rng = np.random.default_rng(seed)
    verbs = np.array(["view", "cart", "purchase"])
    acts = np.empty((n_users, length), dtype=object)
    acts[:, 0] = rng.choice(verbs, n_users)
    for s in range(1, length):
        acts[:, s] = np.where(rng.random(n_users) < stay, acts[:, s - 1], rng.choice(verbs, n_users))
    users = np.repeat(np.arange(n_users), length)
    return events(users, ["x"] * users.size, acts.ravel().tolist(), np.tile(np.arange(length), n_users))


def test_same_as_last_repeats_the_previous_action_with_a_finite_log_loss():
    ev = streak_log()
    ex = next_examples(ev, "action")
    order = ["view", "cart", "purchase", "favorite"]  # favorite: never seen, still > 0
    (same,) = get_baselines("next_action", names=["same_as_last"])
    p = same.fit(ex, ev, labels=order).predict(ex, ev)
    previous = ev.groupby("user_id")["action"].shift(1).dropna().astype(str).to_numpy()  # the event before each label
    assert p.shape == (len(ex), 4) and np.allclose(p.sum(axis=1), 1) and p.min() > 0
    assert (np.array(order)[p.argmax(axis=1)] == previous).all()  # the decision: the previous action
    # the mixing weight is the training maximum-likelihood one (a grid search agrees)
    y, last = ex["label"].map(order.index).to_numpy(), pd.Series(previous).map(order.index).to_numpy()
    def loglik(w):
        return np.log(w * (y == last) + (1 - w) * same.prior[y]).sum()
    grid = np.linspace(0.01, 0.99, 99)
    assert abs(same.weight - grid[np.argmax([loglik(w) for w in grid])]) <= 0.01
    assert 0.6 < same.weight < 0.9  # stay 0.8 = w + (1 - w) * ~1/3
    # no history, or a last action outside the label order: the prior
    odd = pd.concat([ev, events([99], ["x"], ["remove_from_cart"], [0])])
    cold = pd.DataFrame({"user_id": ["nobody", "99"], "label_time": [T0 + pd.Timedelta(days=9)] * 2})
    np.testing.assert_allclose(same.predict(cold, odd), np.tile(same.prior, (2, 1)))


def test_same_as_last_keeps_the_previous_action_as_its_decision_when_it_rarely_repeats():
    ev = streak_log(stay=0.0, seed=1)  # never a deliberate repeat: the fitted weight is ~0
    ex = next_examples(ev, "action")
    train = ex[ex["label"] != "view"]  # a lopsided prior that would otherwise win the argmax
    (same,) = get_baselines("next_action", names=["same_as_last"])
    p = same.fit(train, ev, labels=["view", "cart", "purchase"]).predict(ex, ev)
    previous = ev.groupby("user_id")["action"].shift(1).dropna().astype(str).to_numpy()
    assert (np.array(["view", "cart", "purchase"])[p.argmax(axis=1)] == previous).all()
    assert same.weight < 0.5 and p.min() > 0


VERBS = ["view", "cart", "favorite", "purchase"]


def two_step_log(n_users=80, length=14, seed=0) -> pd.DataFrame:
    """Each user's next action is a fixed function of the previous two (codes into VERBS): after a
    view, the successor of the action before it; after anything else, a view. From a random pair
    this runs view, cart, view, favorite, view, purchase, view, view, cart, ...: what follows a
    view depends on the action before it, which no single previous action (Markov) can tell."""
    rng = np.random.default_rng(seed)
    acts = np.zeros((n_users, length), np.int64)
    acts[:, :2] = rng.integers(0, 4, (n_users, 2))
    for s in range(2, length):
        acts[:, s] = np.where(acts[:, s - 1] == 0, (acts[:, s - 2] + 1) % 4, 0)
    users = np.repeat(np.arange(n_users), length)
    items = [f"i{k}" for k in rng.integers(0, 30, users.size)]
    hours = np.tile(np.arange(length), n_users) + rng.uniform(0, 0.5, users.size)  # distinct, irregular times
    return events(users, items, np.array(VERBS)[acts.ravel()].tolist(), hours)


def rule_examples(ev: pd.DataFrame) -> pd.DataFrame:
    """next_action examples with at least two earlier events (the rule's inputs)."""
    ex = next_examples(ev, "action")
    return ex[ex.groupby("user_id").cumcount() >= 1].reset_index(drop=True)


def test_next_action_features_read_only_the_slice():
    ev = events([1] * 5, ["a", "b", "a", "a", "c"], ["view", "cart", "view", "purchase", "view"], [0, 1, 1.2, 5, 9])
    idx = HistoryIndex(ev)
    t = pd.Series([T0 + pd.Timedelta(hours=9)])
    f = next_action_features(idx, *idx.bounds(["1"], t)).iloc[0]
    assert f["action_1"] == ACTIONS.index("purchase") and f["action_2"] == ACTIONS.index("view")
    assert f["gap_1_s"] == pytest.approx(3.8 * 3600) and f["gap_2_s"] == pytest.approx(0.2 * 3600)
    assert (f["n_events"], f["item_seen"], f["item_purchase"], f["item_cart"]) == (4, 3, 1, 0)
    assert (f["same_item"], f["session_events"], f["session_purchase"], f["last10_view"]) == (1, 1, 1, 2)
    assert np.isnan(f["same_category"]) and np.isnan(f["category_seen"])  # no categories in this log
    empty = next_action_features(idx, *idx.bounds(["nobody"], t)).iloc[0]
    assert empty["n_events"] == 0 and empty["action_1"] == -1 and np.isnan(empty[["gap_1_s", "hour", "item_seen"]]).all()


def test_next_action_gbt_learns_a_rule_of_the_previous_two_actions():
    ev = two_step_log()
    ex = rule_examples(ev)
    train, test = ex[ex["user_id"].astype(int) < 60], ex[ex["user_id"].astype(int) >= 60]
    order = VERBS + ["remove_from_cart"]  # never a training label: kept at its small prior share
    gbt, markov = get_baselines("next_action", FAST, names=["gbt", "markov"])
    p = gbt.fit(train, ev, labels=order).predict(test, ev)
    assert p.shape == (len(test), 5) and np.allclose(p.sum(axis=1), 1) and p.min() > 0
    y = test["label"].map(order.index).to_numpy()
    assert f1_score(y, p.argmax(axis=1), average="macro", labels=range(4)) > 0.97
    q = markov.fit(train, ev, labels=order).predict(test, ev)
    assert f1_score(y, q.argmax(axis=1), average="macro", labels=range(4)) < 0.5  # one previous action is not enough


def test_next_action_gbt_never_reads_events_at_or_after_label_time():
    ev = two_step_log(n_users=40, seed=1)
    ex = rule_examples(ev)
    probe = ex.sort_values("label_time").groupby("user_id").tail(1)  # each user's last example
    gbt = get_baselines("next_action", FAST, names=["gbt"])[0].fit(ex, ev, labels=VERBS)
    clean = gbt.predict(probe, ev)
    # each user's events at or after the probe's label time rewritten (action, item), more added
    late = (ev["timestamp"] >= ev["user_id"].map(probe.set_index("user_id")["label_time"])).to_numpy()
    assert late.sum() >= len(probe)  # the probes' own targets at least
    rewritten = ev.copy()
    rewritten.loc[late, ["action", "item_id"]] = ["remove_from_cart", "zz"]
    rewritten = finalize_events(pd.concat([rewritten, future_of(probe, np.random.default_rng(2))], ignore_index=True))
    np.testing.assert_allclose(gbt.predict(probe, rewritten), clean)
    # fitting: events after each user's last training label time are not read
    after = future_of(probe.assign(label_time=probe["label_time"] + pd.Timedelta(seconds=1)), np.random.default_rng(3))
    refit = get_baselines("next_action", FAST, names=["gbt"])[0]
    refit.fit(ex, HistoryIndex(finalize_events(pd.concat([ev, after], ignore_index=True))), labels=VERBS)
    np.testing.assert_allclose(refit.predict(probe, ev), clean)
    # and the check has teeth: one more event just before a label time changes that prediction
    one = probe.iloc[[0]]
    before = events([one["user_id"].iloc[0]], ["b"], ["purchase"], [0]).assign(
        timestamp=pd.Timestamp(one["label_time"].iloc[0]) - pd.Timedelta(seconds=1))
    assert not np.allclose(gbt.predict(one, finalize_events(pd.concat([ev, before], ignore_index=True))), clean[:1])


# ----------------------------------------------------------------------------------- purchase
def planted_purchase_log(n_users=400, seed=0):
    """Users with a cart not followed by a purchase buy in the next week with P 0.85, else 0.1."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for h in np.sort(rng.uniform(0, 300, rng.integers(3, 12))):
            rows.append((u, f"i{rng.integers(50)}", "view", h))
        if rng.random() < 0.5:
            h = rng.uniform(0, 300)
            rows.append((u, "c", "cart", h))
            if rng.random() < 0.4:
                rows.append((u, "c", "purchase", h + rng.uniform(0, 30)))
    ev = events(*zip(*rows))
    cutoff = T0 + pd.Timedelta(hours=340)
    idx = HistoryIndex(ev)
    users = np.arange(n_users).astype(str)
    open_cart = rfm_features(idx, *idx.bounds(users, [cutoff] * n_users), [cutoff] * n_users)["carts_since_purchase"] > 0
    label = (rng.random(n_users) < np.where(open_cart, 0.85, 0.1)).astype(int)
    ex = pd.DataFrame({"user_id": users, "label": label, "label_time": cutoff})
    return ev, ex


def test_gbt_and_popularity_find_a_planted_purchase_rule_and_prior_does_not():
    ev, ex = planted_purchase_log()
    train, test = ex.iloc[:300], ex.iloc[300:]
    scores = {b.name: b.fit(train, ev).predict(test, ev) for b in get_baselines("purchase", FAST)}
    assert set(scores) == {"prior", "popularity", "gbt"}
    assert roc_auc_score(test["label"], scores["gbt"]) > 0.75
    assert roc_auc_score(test["label"], scores["popularity"]) > 0.75
    assert np.allclose(scores["prior"], train["label"].mean())
    for p in scores.values():
        assert p.shape == (len(test),) and ((p >= 0) & (p <= 1)).all()


def test_the_trees_fit_on_a_seeded_sample_of_at_most_max_train_examples(monkeypatch):
    """eval.gbt.max_train_examples: the trees see that many training examples (features are computed
    for them alone), the same ones for the same seed; under the cap the fit is the whole split's."""
    import evtlm.evaluate.tree_baselines as tb

    ev, ex = planted_purchase_log()
    train, test = ex.iloc[:300], ex.iloc[300:]
    seen = []
    real_fit = tb._fit_trees
    monkeypatch.setattr(tb, "_fit_trees", lambda g, x, y: seen.append(len(x)) or real_fit(g, x, y))

    def gbt(cap):
        cfg = FAST.model_copy(update={"gbt": FAST.gbt.model_copy(update={"max_train_examples": cap})})
        return get_baselines("purchase", cfg, names=["gbt"])[0].fit(train, ev)

    full, capped, again = gbt(None), gbt(200), gbt(200)
    assert seen == [300, 200, 200] and capped.sampled_fit == (200, 300) and full.sampled_fit is None
    np.testing.assert_array_equal(capped.predict(test, ev), again.predict(test, ev))  # seeded
    np.testing.assert_array_equal(gbt(300).predict(test, ev), full.predict(test, ev))  # at the cap: all of them
    assert roc_auc_score(test["label"], capped.predict(test, ev)) > 0.75  # the planted rule, from 200


def test_session_level_never_measures_time_from_a_label_time_that_depends_on_the_label():
    # session-level purchase: the label time is the first purchase of a buying session but 1 ns
    # after the last event of the others, so "hours since the last event" would be the answer
    rng = np.random.default_rng(0)
    n_events = rng.integers(1, 6, 200)
    users = np.repeat(np.arange(200), n_events)
    ev = events(users, ["x"] * len(users), ["view"] * len(users), np.sort(rng.uniform(0, 500, len(users))))
    last = ev.groupby("user_id")["timestamp"].max()
    y = rng.integers(0, 2, len(last))
    gap = np.where(y == 1, pd.Timedelta(minutes=1), pd.Timedelta(nanoseconds=1))
    ex = pd.DataFrame({"user_id": last.index.to_numpy(), "label": y, "label_time": last.to_numpy() + gap})
    gbt = get_baselines("purchase", FAST, names=["gbt"], level="session")[0].fit(ex.iloc[:150], ev)
    assert gbt.clock == "last_event" and "hours_since_last" not in gbt.columns
    assert roc_auc_score(y[150:], gbt.predict(ex.iloc[150:], ev)) < 0.75  # no leaked answer to learn
    with pytest.warns(UserWarning, match="alone separates the purchase labels"):
        guarded = get_baselines("purchase", FAST, names=["gbt"])[0].fit(ex, ev)  # level forgotten
    assert guarded.clock == "last_event"


# ------------------------------------------------------------------------------------ leakage
CASES = {
    "purchase": lambda: planted_purchase_log(120),
    "next_action": lambda: (two_step_log(12), next_examples(two_step_log(12), "action")),  # actions that vary
    "next_item": lambda: (cycle_log(12), next_examples(cycle_log(12), "item_id")),
}


@pytest.mark.parametrize("task", ["purchase", "next_action", "next_item"])
def test_events_at_or_after_label_time_change_no_prediction(task):
    ev, ex = CASES[task]()
    names = [n for n in BASELINES[task] if n != "sasrec"]  # sasrec: tests/test_sasrec.py
    rng = np.random.default_rng(1)
    # predicting: events at/after an example's label time (buys, never-seen items) are unseen;
    # probe each user's last example (an earlier example's future is a later one's past)
    probe = ex.sort_values("label_time").groupby("user_id").tail(1)
    leaky = finalize_events(pd.concat([ev, future_of(probe, rng)], ignore_index=True))
    # fitting: events after each user's last training label time are unseen
    after = future_of(probe.assign(label_time=probe["label_time"] + pd.Timedelta(seconds=1)), rng)
    leaky_fit = finalize_events(pd.concat([ev, after], ignore_index=True))
    for name in names:
        fitted = get_baselines(task, FAST, names=[name], k=3)[0].fit(ex, ev)
        clean = fitted.predict(probe, ev)
        for dirty in (fitted.predict(probe, leaky),
                      get_baselines(task, FAST, names=[name], k=3)[0].fit(ex, HistoryIndex(leaky_fit)).predict(probe, ev)):
            if isinstance(clean, Ranking):
                assert (clean.items == dirty.items).all(), name
                assert np.allclose(clean.scores, dirty.scores), name
            else:
                assert np.allclose(clean, dirty), name
    # and the check has teeth: one more event before a label time does change a prediction
    t = pd.to_datetime(ex["label_time"], utc=True).max()
    user = ex.loc[pd.to_datetime(ex["label_time"], utc=True).idxmax(), "user_id"]
    earlier = finalize_events(pd.concat([ev, pd.DataFrame({"user_id": [user], "item_id": ["b"], "action": ["cart"],
                                                           "timestamp": [t - pd.Timedelta(seconds=1)]})]))
    model = get_baselines(task, FAST, names=[names[-1]], k=3)[0].fit(ex, ev)
    before, changed = model.predict(ex, ev), model.predict(ex, earlier)
    before, changed = (before.scores, changed.scores) if isinstance(before, Ranking) else (before, changed)
    assert not np.allclose(before, changed)


# ----------------------------------------------------------------------------- registry, errors
def test_get_baselines_follows_the_eval_config():
    cfg = EvalConfig(baselines=["repeat", "prior"], k=[1, 7])
    got = get_baselines("next_item", cfg)
    assert [b.name for b in got] == ["repeat", "prior"] and got[0].k == 7
    assert {b.name for b in get_baselines("next_item")} == {"prior", "popularity", "transitions", "repeat", "sasrec"}
    assert [b.name for b in get_baselines("next_action")] == ["prior", "markov", "same_as_last", "gbt"]
    assert get_baselines("pretrain") == []


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(TaskError, match="did you mean 'next_item'"):
        get_baselines("next_itme")
    with pytest.raises(TaskError, match="no baseline 'sasrec' for task 'purchase'.*valid for purchase"):
        get_baselines("purchase", names=["sasrec"])
    with pytest.raises(TaskError, match="unknown level 'visit'"):
        get_baselines("purchase", level="visit")


def test_bad_inputs_are_clear_errors():
    ev, ex = planted_purchase_log(20)
    gbt = get_baselines("purchase", FAST, names=["gbt"])[0]
    with pytest.raises(TaskError, match="not fitted"):
        gbt.predict(ex, ev)
    with pytest.raises(DataError, match=r"lack the columns \['label'\]"):
        gbt.fit(ex.drop(columns="label"), ev)
    with pytest.raises(DataError, match="purchase labels must be 0/1, got \\['maybe'\\]"):
        gbt.fit(ex.assign(label=["maybe"] + [0] * 19), ev)
    with pytest.raises(DataError, match="missing timestamps"):
        gbt.fit(ex.assign(label_time=pd.NaT), ev)
    with pytest.raises(DataError, match="lack the columns"):
        gbt.fit(ex, ev.drop(columns="action"))
    ev2 = cycle_log(3)
    with pytest.raises(DataError, match="bad action order"):
        get_baselines("next_action", names=["markov"])[0].fit(next_examples(ev2, "action"), ev2, labels=["view", "walk"])
    with pytest.raises(DataError, match="not in the action order"):
        get_baselines("next_action", names=["markov"])[0].fit(next_examples(ev2, "action"), ev2, labels=["cart"])


# ------------------------------------------------------------------------------------- shards
def _shop(n_users=150, seed=0) -> pd.DataFrame:
    """A random log of views, carts and purchases over 40 days (prices for the spend features)."""
    rng = np.random.default_rng(seed)
    n = n_users * 30
    ev = events(rng.integers(0, n_users, n), rng.choice(list("abcdefgh"), n),
                rng.choice(["view", "view", "view", "cart", "purchase", "favorite"], n), np.sort(rng.uniform(0, 40 * 24, n)))
    return ev.assign(price=rng.uniform(1, 50, n).round(2))


def _purchase_examples(ev: pd.DataFrame) -> pd.DataFrame:
    """Every user at days 10, 20, 30: does a purchase follow within 5 days?"""
    rows = []
    for day in (10, 20, 30):
        t = T0 + pd.Timedelta(days=day)
        window = ev[(ev["timestamp"] >= t) & (ev["timestamp"] < t + pd.Timedelta(days=5))]
        buyers = set(window.loc[window["action"] == "purchase", "user_id"])
        rows += [(u, int(u in buyers), t) for u in ev["user_id"].unique()]
    return pd.DataFrame(rows, columns=["user_id", "label", "label_time"])


@pytest.mark.parametrize("task", ["purchase", "next_action"])
def test_every_shardable_baseline_fits_and_predicts_from_shards_as_from_the_whole_log(task):
    """Users split into 3 shards, each read on its own (evtlm.data.history_shards): every purchase and
    next_action baseline gives the whole log's predictions, whatever the order of the examples."""
    from evtlm.data.history_shards import ShardedEvents

    ev = _shop()
    shard_of = {u: i % 3 for i, u in enumerate(sorted(ev["user_id"].unique()))}
    sharded = ShardedEvents(3, lambda k: ev[ev["user_id"].map(shard_of) == k])
    examples = _purchase_examples(ev) if task == "purchase" else next_examples(ev, "action")
    examples = examples.assign(shard=examples["user_id"].map(shard_of))
    cut = examples["label_time"] < T0 + pd.Timedelta(days=25)
    train, test = examples[cut], examples[~cut].sample(frac=1.0, random_state=1)  # shuffled: pieces are put back
    labels = ["view", "cart", "purchase", "favorite"] if task == "next_action" else None
    bases = get_baselines(task, FAST)
    assert bases and all(task in b.shardable for b in bases)
    for whole, parted in zip(bases, get_baselines(task, FAST)):
        whole.fit(train, ev, labels=labels)
        parted.fit(train, sharded, labels=labels)
        np.testing.assert_array_equal(parted.predict(test, sharded), whole.predict(test, ev), err_msg=whole.name)
        if whole.name == "gbt" and task == "purchase":
            pd.testing.assert_frame_equal(parted.features(test, sharded), whole.features(test, ev))
    assert sharded.loads < 3 * 2 * 2 * len(bases)  # the shard kept from the last call is not read again


def test_next_item_baselines_from_shards_say_they_need_the_whole_log():
    from evtlm.data.history_shards import ShardedEvents

    ev = _shop()
    sharded = ShardedEvents(1, lambda k: ev)
    train = next_examples(ev, "item_id").assign(shard=0)
    with pytest.raises(TaskError, match="learns from the whole log at once"):
        get_baselines("next_item", FAST, names=["transitions"])[0].fit(train, sharded)
    with pytest.raises(DataError, match="no 'shard' column"):
        get_baselines("purchase", FAST, names=["gbt"])[0].fit(_purchase_examples(ev), sharded)
