"""The SASRec baseline (evtlm.evaluate.sasrec): it learns a planted sequence, scores only catalog items,
is seeded, never reads events at or after a label time, and cuts training windows right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from evtlm.evaluate.baselines import get_baselines
from evtlm.ingest.events import finalize_events
from evtlm.recipe import EvalConfig, SasrecConfig
from evtlm.data.history import strictly_earlier
from evtlm.evaluate.sasrec import SASRec, SASRecNet, _chronological

T0 = pd.Timestamp("2024-01-01", tz="UTC")
ITEMS = [f"i{j}" for j in range(6)]


def cycle_log(n_users=24, length=16) -> pd.DataFrame:
    """Every user walks i0 -> i1 -> ... -> i5 -> i0, starting at a user-dependent item."""
    users = np.repeat(np.arange(n_users), length)
    step = np.tile(np.arange(length), n_users)
    return finalize_events(pd.DataFrame({
        "user_id": users.astype(str), "item_id": [ITEMS[(u + s) % 6] for u, s in zip(users, step)],
        "action": "view", "timestamp": T0 + pd.to_timedelta(step, unit="h"),
    }))


def split(ev: pd.DataFrame, cut_hours: int = 12):
    """Next-item examples: train = targets before the cut, test = after it."""
    ex = ev[ev.groupby("user_id").cumcount() > 0]
    ex = pd.DataFrame({"user_id": ex["user_id"].to_numpy(), "label": ex["item_id"].astype(str).to_numpy(),
                       "label_time": ex["timestamp"].to_numpy()})
    cut = T0 + pd.Timedelta(hours=cut_hours)
    return ex[ex["label_time"] < cut].reset_index(drop=True), ex[ex["label_time"] >= cut].reset_index(drop=True)


def tiny(**kw) -> EvalConfig:
    base = dict(dim=16, heads=2, max_len=8, lr=1e-2, epochs=25, batch_size=32, threads=1, seed=3)
    return EvalConfig(sasrec=SasrecConfig(**{**base, **kw}))


@pytest.fixture(scope="module")
def data():
    ev = cycle_log()
    return (ev, *split(ev))


@pytest.fixture(scope="module")
def fitted(data):
    ev, train, _ = data
    return SASRec("next_item", k=3, cfg=tiny()).fit(train, ev)


def test_sasrec_learns_a_cycle_over_the_full_catalog(data, fitted):
    ev, _, test = data
    r = fitted.predict(test, ev)
    assert r.items.shape == (len(test), 3)
    assert np.mean(r.items[:, 0] == test["label"].to_numpy()) >= 0.9  # HR@1
    assert set(r.items.ravel()) <= set(ITEMS) and (np.diff(r.scores, axis=1) <= 0).all()
    assert 1 <= fitted.epochs_run <= 25 and fitted.history[0]["loss"] > fitted.history[-1]["loss"]
    assert fitted.best_valid_ndcg == max(h["valid_ndcg@10"] for h in fitted.history)


def test_sampled_softmax_learns_it_too(data):
    ev, train, test = data
    model = SASRec("next_item", k=1, cfg=tiny(full_softmax_items=1, negatives=4)).fit(train, ev)
    assert np.mean(model.predict(test, ev).items[:, 0] == test["label"].to_numpy()) >= 0.9


def test_same_seed_same_model_and_the_callers_rng_untouched(data, fitted):
    ev, train, test = data
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    again = SASRec("next_item", k=3, cfg=tiny()).fit(train, ev)
    assert torch.rand(1) == expected
    np.testing.assert_allclose(again.predict(test, ev).scores, fitted.predict(test, ev).scores, rtol=1e-5)


def test_future_events_change_nothing_and_no_history_gets_popularity(data, fitted):
    ev, train, test = data
    probe = test.sort_values("label_time").groupby("user_id").tail(1)
    future = pd.DataFrame({"user_id": probe["user_id"].to_numpy(), "item_id": "i0", "action": "purchase",
                           "timestamp": pd.to_datetime(probe["label_time"], utc=True).to_numpy()})  # at label time
    leaky = finalize_events(pd.concat([ev, future], ignore_index=True))
    a, b = fitted.predict(probe, ev), fitted.predict(probe, leaky)
    assert (a.items == b.items).all() and np.allclose(a.scores, b.scores)
    cold = fitted.predict(pd.DataFrame({"user_id": ["new", "0"], "label_time": [T0 + pd.Timedelta(days=9), T0]}), ev)
    assert cold.items[0].tolist() == cold.items[1].tolist()  # both without history: popularity
    assert (cold.scores < 0).all()


def test_null_catalog_entries_are_never_ranked(data):
    ev, train, test = data
    labels = ITEMS[:3] + [None] + ITEMS[3:]
    r = SASRec("next_item", k=10, cfg=tiny(epochs=2)).fit(train, ev, labels=labels).predict(test, ev)
    assert r.items.shape == (len(test), 6) and set(r.items.ravel()) == set(ITEMS)


def test_training_windows_are_right_aligned_and_cover_every_target():
    items = np.array([10, 11, 12, 13, 14, 20, 21])  # user A: 5 items, user B: 2 items
    x, y, slot = SASRec._training_windows(items, np.array([0, 5]), np.array([4, 6]), 3)
    # A's targets 11..14 need two windows of 3 (the newest first); B has one target
    assert (y + 0).tolist() == [[13, 14, 15], [0, 0, 12], [0, 0, 22]]
    assert x.tolist() == [[12, 13, 14], [0, 0, 11], [0, 0, 21]]
    assert slot.tolist() == [[0, 1, 2], [0, 0, 2], [0, 0, 2]]  # each target from the slot before it


def test_a_target_is_predicted_only_from_items_strictly_before_its_time():
    # one user, three "invoices": {10}, {11, 12} at one time, {13, 14} at a later one
    items, times = np.array([10, 11, 12, 13, 14]), np.array([0, 1, 1, 2, 2])
    ctx = strictly_earlier(np.zeros(5, np.int64), times)
    assert ctx.tolist() == [-1, 0, 0, 2, 2]
    x, y, slot = SASRec._training_windows(items, np.array([0]), np.array([4]), 4, ctx)
    assert x.tolist() == [[11, 12, 13, 14]] and y.tolist() == [[12, 13, 14, 15]]
    # 12 and 13 are both predicted from 10 (slot 0), 14 and 15 from 12, the last of {11, 12}
    assert slot.tolist() == [[0, 0, 2, 2]]
    # windows of one input: a target whose context is not that input (but an earlier one) is dropped
    x, y, slot = SASRec._training_windows(items, np.array([0]), np.array([4]), 1, ctx)
    assert x.tolist() == [[14], [13], [12], [11]] and y.tolist() == [[0], [14], [0], [12]]


def test_simultaneous_events_are_not_learned_from_one_another():
    # every user buys baskets {i0, i1}, {i2, i3}, {i0, i1}, ...: the lines of a basket share a
    # time and come in random order. Learning from one line to its sibling would rank the
    # sibling of the last line first; only "the other basket comes next" may be learned.
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        for k in range(8):
            pair = ["i0", "i1"] if k % 2 == 0 else ["i2", "i3"]
            rows += [(str(u), item, k) for item in rng.permutation(pair)]
    ev = finalize_events(pd.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                                       "action": "purchase", "timestamp": T0 + pd.to_timedelta([r[2] for r in rows], unit="h")}))
    last = ev.groupby("user_id").tail(1)
    train = pd.DataFrame({"user_id": last["user_id"].to_numpy(), "label": last["item_id"].astype(str).to_numpy(),
                          "label_time": last["timestamp"].to_numpy()})
    model = SASRec("next_item", k=2, cfg=tiny(epochs=40, patience=40)).fit(train, ev)
    probe = pd.DataFrame({"user_id": ["0"], "label_time": [T0 + pd.Timedelta(hours=8)]})  # after basket {c, d}
    assert set(model.predict(probe, ev).items[0]) == {"i0", "i1"}  # the next basket, not d's successor


def test_chronological_packs_catalog_items_and_pads_on_the_left():
    recent = np.array([[3, -1, 1, 0], [-1, -1, -1, -1]])  # most recent first, -1 = not in catalog
    assert _chronological(recent, 3).tolist() == [[1, 2, 4], [0, 0, 0]]  # ids are codes + 1


def test_padding_does_not_leak_into_real_positions():
    net = SASRecNet(n_items=5, dim=8, max_len=4, blocks=1, heads=2, dropout=0.0).eval()
    with torch.no_grad():
        a = net(torch.tensor([[0, 0, 1, 2]]))[0, -1]
        net.pos.weight[:2] += 5.0  # change what the padded slots hold; real slots keep theirs
        b = net(torch.tensor([[0, 0, 1, 2]]))[0, -1]
    assert torch.allclose(a, b, atol=1e-6) and torch.isfinite(a).all()


def test_registry_builds_sasrec_with_the_recipe_settings():
    (b,) = get_baselines("next_item", tiny(dim=24, heads=3), names=["sasrec"])
    assert isinstance(b, SASRec) and b.k == 20 and b.cfg.sasrec.dim == 24


@pytest.mark.parametrize("full", [True, False])
def test_chunked_losses_give_the_unchunked_gradients(data, monkeypatch, full):
    ev, train, _ = data
    model = SASRec("next_item", k=3, cfg=tiny(epochs=1, negatives=3)).fit(train, ev)
    net = model.net.train()
    x, y, slot = SASRec._training_windows(np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 5, 4]), np.array([0, 6]), np.array([5, 10]), 4)
    xb, yb, sb = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(slot)

    def grads(budget):
        monkeypatch.setattr("evtlm.evaluate.sasrec._LOGIT_BUDGET", budget)
        net.zero_grad()
        torch.manual_seed(0)  # the same dropout masks
        loss, n = model._step(xb, yb, sb, 6, full, torch.Generator().manual_seed(1))  # the same negatives
        return loss, n, [p.grad.clone() for p in net.parameters()]

    whole, chunked = grads(10**9), grads(2 * (6 if full else 4))  # 2 positions per chunk
    assert whole[1] == chunked[1] == int((y > 0).sum())
    assert whole[0] == pytest.approx(chunked[0], rel=1e-5)
    for a, b in zip(whole[2], chunked[2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    if full:  # and it is the plain cross-entropy over the catalog
        torch.manual_seed(0)
        keep = yb > 0
        reference = F.cross_entropy(net.catalog_logits(net(xb)[keep]), yb[keep] - 1)
        assert whole[0] == pytest.approx(reference.item(), rel=1e-5)


def test_defaults_train_on_the_full_softmax_or_at_least_1000_negatives():
    c = SasrecConfig()
    assert c.negatives >= 1000 and c.full_softmax_items >= 4000


def test_overlapping_windows_score_every_target_once_with_half_a_window_of_context():
    items = np.arange(10, 17)  # one user, 7 items: targets 11..16
    x, y, slot = SASRec._training_windows(items, np.array([0]), np.array([6]), 4, stride=2)
    assert x.tolist() == [[13, 14, 15, 16], [11, 12, 13, 14], [0, 0, 11, 12]]  # ids are items + 1
    assert y.tolist() == [[0, 0, 16, 17], [0, 0, 14, 15], [0, 0, 12, 13]]  # the newest 2 per window
    assert sorted(y[y > 0].tolist()) == list(range(12, 18))  # every target exactly once
    # a run of simultaneous items {11, 12, 13}: all three are predicted from 10, up to 2 slots back
    ctx = strictly_earlier(np.zeros(5, np.int64), np.array([0, 1, 1, 1, 2]))
    _, y, slot = SASRec._training_windows(np.arange(10, 15), np.array([0]), np.array([4]), 4, ctx, stride=2)
    assert y.tolist() == [[0, 0, 14, 15], [0, 0, 12, 13]] and slot.tolist() == [[0, 0, 0, 3], [0, 0, 2, 2]]
