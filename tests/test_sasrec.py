"""The SASRec baseline (evtlm.sasrec): it learns a planted sequence, scores only catalog items,
is seeded, never reads events at or after a label time, and cuts training windows right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from evtlm.baselines import get_baselines
from evtlm.events import finalize_events
from evtlm.recipe import EvalConfig, SasrecConfig
from evtlm.sasrec import SASRec, SASRecNet, _chronological

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
    x, y = SASRec._training_windows(items, np.array([0, 5]), np.array([4, 6]), 3)
    # A's targets 11..14 need two windows of 3 (the newest first); B has one target
    assert (y + 0).tolist() == [[13, 14, 15], [0, 0, 12], [0, 0, 22]]
    assert x.tolist() == [[12, 13, 14], [0, 0, 11], [0, 0, 21]]


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
