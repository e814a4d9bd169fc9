"""``verbalize.summaries``: the counts opening each later visit are those of the user's earlier
events only, and the text without the option is unchanged."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from evtlm.recipe import VerbalizeConfig
from evtlm.text.verbalize import verbalize_events

SUMMARY = re.compile(r"^ So far: (\d+) views?, (\d+) carts?, (\d+) purchases?; (no purchase yet|last purchase (today|(\d+) days? ago))\.")


def _events(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 300
    ev = pd.DataFrame({
        "user_id": rng.choice([f"u{i}" for i in range(6)], n), "item_id": rng.choice(["a", "b", "c", "d"], n),
        "action": rng.choice(["view", "cart", "purchase", "favorite"], n, p=[0.6, 0.2, 0.1, 0.1]),
        "timestamp": pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 40 * 86_400, n), unit="s"),
    }).sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    gap = ev.groupby("user_id")["timestamp"].diff() > pd.Timedelta(hours=6)
    ev["session_id"] = ev["user_id"] + "-" + gap.groupby(ev["user_id"]).cumsum().astype(str)
    return ev


@pytest.mark.parametrize("seed", range(4))
def test_each_summary_counts_only_the_users_earlier_events(seed):
    ev = _events(seed)
    pieces = verbalize_events(ev, None, VerbalizeConfig(summaries=True)).piece.tolist()
    checked = 0
    for i, piece in enumerate(pieces):
        m = SUMMARY.match(piece)
        if not m:
            continue
        earlier = ev.iloc[:i][ev["user_id"].iloc[:i] == ev["user_id"].iloc[i]]
        counts = earlier["action"].value_counts()
        assert [int(m.group(k)) for k in (1, 2, 3)] == [counts.get("view", 0), counts.get("cart", 0), counts.get("purchase", 0)]
        buys = earlier.loc[earlier["action"] == "purchase", "timestamp"]
        if buys.empty:
            assert m.group(4) == "no purchase yet"
        else:
            days = (ev["timestamp"].iloc[i] - buys.max()) // pd.Timedelta(days=1)
            assert m.group(4) == ("last purchase today" if days <= 0 else f"last purchase {days} day{'s' if days != 1 else ''} ago")
        assert " New visit" in piece  # a summary opens a later visit, before its break phrase
        checked += 1
    assert checked > 10


def test_without_summaries_the_text_is_unchanged():
    ev = _events(0)
    plain = verbalize_events(ev, None, VerbalizeConfig()).piece
    with_ = verbalize_events(ev, None, VerbalizeConfig(summaries=True)).piece
    assert not plain.str.contains("So far").any()
    stripped = with_.str.replace(r"^ So far: [^.]*\.", "", regex=True)
    assert (stripped == plain).all()
