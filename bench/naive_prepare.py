"""The reference for `bench.prepare_speed`: event log -> purchase examples, the tutorial way.

Written the way most "LLMs on event logs" notebooks do it, on purpose: ``pandas.read_csv``,
validation with pandas, one Python string per event built in a ``DataFrame.iterrows`` loop, each
example's history filtered in Python, and one tokenizer call per example. It produces the same
kind of examples as ``evtlm.data.prepare.prepare`` for the purchase task at user level (history before a
cutoff, relative-time phrases, session breaks, "will they buy within H days?" + " yes"/" no",
the oldest tokens cut when the budget is exceeded) so the two sides do comparable work; it is
not meant to be byte-identical to evtlm's text.

>>> gap_phrase(40), gap_phrase(3 * 60), gap_phrase(3 * 3600), gap_phrase(30 * 3600), gap_phrase(5 * 86400)
('seconds later', '3 minutes later', '3 hours later', 'the next day', '5 days later')
"""

from __future__ import annotations

import time
from typing import Any

VERBS = {"view": "viewed", "cart": "added {} to cart", "remove_from_cart": "removed {} from cart",
         "favorite": "saved {}", "purchase": "bought {}", "return": "returned {}"}
TAOBAO_ACTIONS = {"pv": "view", "cart": "cart", "fav": "favorite", "buy": "purchase"}
DAY = 86400.0


def gap_phrase(seconds: float) -> str:
    """Relative time between two events, in words (the usual if/elif ladder)."""
    if seconds < 60:
        return "seconds later"
    if seconds < 3600:
        return f"{round(seconds / 60)} minutes later"
    if seconds < DAY:
        return f"{round(seconds / 3600)} hours later"
    if seconds < 2 * DAY:
        return "the next day"
    return f"{round(seconds / DAY)} days later"


def read_log(path: str, fmt: str, nrows: int | None) -> Any:
    """Read + validate: the pandas calls a notebook would make. ``fmt``: ``shop`` or ``taobao``."""
    import pandas as pd

    if fmt == "taobao":
        df = pd.read_csv(path, header=None, names=["user_id", "item_id", "category_id", "behavior", "timestamp"], nrows=nrows)
        df["action"] = df["behavior"].map(TAOBAO_ACTIONS)
        df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
        # the dataset's documented range (China time)
        lo, hi = pd.Timestamp("2017-11-25", tz="Asia/Shanghai"), pd.Timestamp("2017-12-04", tz="Asia/Shanghai")
        df = df[(df["timestamp"] >= lo) & (df["timestamp"] < hi)]
    else:
        df = pd.read_csv(path, nrows=nrows)
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    if df["action"].isna().any():
        raise ValueError(f"unknown actions: {sorted(df.loc[df['action'].isna()].index[:5])}")
    bad = ~df["action"].isin(list(VERBS))
    if bad.any():
        raise ValueError(f"unknown actions: {df.loc[bad, 'action'].unique()[:5]}")
    df = df.dropna(subset=["user_id", "timestamp", "item_id"])
    df["user_id"] = df["user_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    df = df.drop_duplicates(subset=["user_id", "timestamp", "action", "item_id"])
    return df.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def naive_prepare(path: str, fmt: str, tokenizer_dir: str, nrows: int | None = None, horizon_days: float = 7,
                  valid_days: float = 7, test_days: float = 7, max_tokens: int = 256,
                  cutoff_every_days: float | None = None) -> dict[str, Any]:
    """Purchase examples from ``path`` the tutorial way; counts and timings. Training cutoffs
    come every ``cutoff_every_days`` (None: every ``horizon_days``, task.cutoff_every_days's rule)."""
    import pandas  # noqa: F401  (imports are not the work measured)
    from transformers import AutoTokenizer

    t0, c0 = time.perf_counter(), time.process_time()
    df = read_log(path, fmt, nrows)
    t_read = time.perf_counter()

    # verbalize: one sentence per event, built row by row
    per_user: dict[str, list[tuple[float, str, str]]] = {}
    prev_time: dict[str, float] = {}
    for _, r in df.iterrows():
        ts = r["timestamp"].timestamp()
        verb = VERBS[r["action"]].format(f"Product {r['item_id']}") if r["action"] != "view" else f"viewed Product {r['item_id']}"
        if r["user_id"] in prev_time:
            gap = ts - prev_time[r["user_id"]]
            text = f" New visit {gap_phrase(gap)}: {verb}." if gap > 1800 else f" {gap_phrase(gap)} {verb}."
        else:
            text = f" {verb}."
        prev_time[r["user_id"]] = ts
        per_user.setdefault(r["user_id"], []).append((ts, text, r["action"]))
    t_verb = time.perf_counter()

    # examples: a cutoff every E days (E = H unless set) from H before the validation start, plus valid and test cutoffs
    every = (cutoff_every_days or horizon_days) * DAY
    end = df["timestamp"].max().timestamp() + 1
    valid_start = end - (test_days + valid_days) * DAY
    test_start = end - test_days * DAY
    start = df["timestamp"].min().timestamp()
    cutoffs = [test_start, valid_start]
    c = valid_start - horizon_days * DAY
    while c > start:
        cutoffs.append(c)
        c -= every
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.truncation_side = "left"  # keep the newest events and the answer
    n_examples = n_tokens = 0
    for user, events in per_user.items():
        for cut in cutoffs:
            history = [text for ts, text, _ in events if ts < cut]
            if not history:
                continue
            buys = any(a == "purchase" and cut <= ts < cut + horizon_days * DAY for ts, _, a in events)
            last = max(ts for ts, _, _ in events if ts < cut)
            prompt = f"User {user}" + "".join(history) + f" {gap_phrase(cut - last)}: will they buy within {horizon_days:g} days?"
            ids = tok(prompt + (" yes" if buys else " no") + tok.eos_token, truncation=True, max_length=max_tokens)["input_ids"]
            n_examples += 1
            n_tokens += len(ids)
    t_tok = time.perf_counter()
    return {"events": len(df), "users": len(per_user), "examples": n_examples, "tokens": n_tokens,
            "seconds": round(t_tok - t0, 3), "cpu_seconds": round(time.process_time() - c0, 3),
            "stage_seconds": {"read_validate": round(t_read - t0, 3), "verbalize": round(t_verb - t_read, 3),
                              "examples_tokenize": round(t_tok - t_verb, 3)}}
