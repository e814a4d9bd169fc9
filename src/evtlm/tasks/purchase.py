"""``purchase``: will this user buy? Answers " yes" / " no"; the model's output is a probability.

Two levels (``task.level``):

- ``user``: at a cutoff time, "does the user buy within ``task.horizon_days`` after it?" The
  prompt is every event before the cutoff, then how long ago the last one was (recency is the
  strongest purchase signal, and the model cannot see it otherwise) and the question. Cutoffs:
  the test window's start (test), the valid window's start (valid), and in the training window
  one every ``task.cutoff_every_days`` (default: H) counted back from H before its end, so each
  user gives several training examples, each labelled over a full horizon. A
  label window ``[cutoff, cutoff + H)`` is clipped at the start of the next split's window: a
  training label never looks at validation or test events. Needs ``split.method=time``.
- ``session``: "does this session end in a purchase?" The prompt is the user's earlier events
  plus this session's events before its first purchase (a session that starts with a purchase
  has nothing to predict from and is skipped); for a session without a purchase, the whole
  session, with the label time just after its last event.

>>> elapsed_phrase(90 * 60 * 10**9), elapsed_phrase(3 * 86_400 * 10**9 + 5), elapsed_phrase(10**9)
('1 hour', '3 days', 'less than an hour')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from evtlm.errors import TaskError
from evtlm.tasks.splits import TEST, TRAIN, VALID
from evtlm.ingest.events import session_starts
from evtlm.recipe import SESSION_GAP_MINUTES
from evtlm.timeunits import NS_PER_DAY, NS_PER_HOUR
from evtlm.tasks.base import (
    ExampleSet,
    TaskContext,
    assign_splits,
    candidates_frame,
    cap_per_user,
    finish_table,
    require_distinct_first_tokens,
    train_mask_for,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ANSWERS = [" no", " yes"]  # label_index 1 = buys
SESSION_QUESTION = " Will this session end in a purchase?"


def elapsed_phrase(ns: int) -> str:
    """Time since the last event, coarsely, in words (few distinct strings: cheap to tokenize)."""
    hours = ns // NS_PER_HOUR
    if hours < 1:
        return "less than an hour"
    if hours < 24:
        return f"{hours} hour" + ("s" if hours > 1 else "")
    days = ns // NS_PER_DAY
    return f"{days} day" + ("s" if days > 1 else "")


def horizon_text(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


class Purchase:
    name: ClassVar[str] = "purchase"
    metric_names: ClassVar[tuple[str, ...]] = ("roc_auc", "log_loss", "brier", "ece", "accuracy", "macro_f1")
    primary_metric: ClassVar[str] = "roc_auc"
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"log_loss", "brier", "ece"})
    stream: ClassVar[bool] = False
    stream_formulation: ClassVar[bool] = True
    answer: ClassVar[str] = "binary"
    probability_field: ClassVar[str] = "p_purchase"  # a prediction record's P(yes)

    def label_space(self, ctx: TaskContext, train_mask: np.ndarray) -> list[str]:
        return list(ANSWERS)

    def build_examples(self, ctx: TaskContext) -> ExampleSet:
        cand = self._user_level(ctx) if ctx.task.level == "user" else self._session_level(ctx)
        mask = train_mask_for(ctx, cand)
        buys = cand.pop("buys").to_numpy()
        cand["label"] = buys.astype(np.int64)  # 1 = buys (what evtlm.evaluate.baselines expects)
        cand["target"] = np.where(buys, ANSWERS[1], ANSWERS[0])
        cand["label_index"] = buys.astype(np.int64)
        info = {"level": ctx.task.level}
        if ctx.task.level == "user":
            info["horizon_days"] = ctx.task.horizon_days
            info["label_window_days"] = self._window_days
        return ExampleSet(finish_table(ctx, cand), list(ANSWERS), mask, info=info)

    def check_label_space(self, label_space: list[str], tokenizer: PreTrainedTokenizerBase) -> None:
        require_distinct_first_tokens(self.name, label_space, tokenizer)

    # ------------------------------------------------------------------------------- levels
    def _user_level(self, ctx: TaskContext) -> pd.DataFrame:
        if ctx.windows is None:
            raise TaskError(
                "purchase at user level asks about a horizon after a global cutoff, which needs split.method=time",
                where="split.method=leave_one_out with task.level=user",
                fix="set split.method=time, or task.level=session",
            )
        w, idx = ctx.windows, ctx.index
        horizon = int(round(ctx.task.horizon_days * NS_PER_DAY))
        train_end, valid_end, end = w.train_end.value, w.valid_end.value, w.end.value
        # training cutoffs: train_end - H, then every task.cutoff_every_days (default H) back while
        # some history can precede them; each label window [c, c + H) ends inside the training window
        every = int(round((ctx.task.cutoff_every_days or ctx.task.horizon_days) * NS_PER_DAY))
        k = np.arange(0, max(1, int((train_end - horizon - w.start.value) // every) + 1))
        train_cuts = train_end - horizon - k * every
        train_cuts = train_cuts[train_cuts > w.start.value]
        cuts = np.concatenate([train_cuts, [train_end, valid_end]]).astype(np.int64)
        stops = np.concatenate([train_cuts + horizon, [min(train_end + horizon, valid_end), min(valid_end + horizon, end)]])
        splits = np.concatenate([np.full(len(train_cuts), TRAIN), [VALID, TEST]])
        self._window_days = {
            "train": ctx.task.horizon_days,
            "valid": (stops[-2] - cuts[-2]) / NS_PER_DAY,
            "test": (stops[-1] - cuts[-1]) / NS_PER_DAY,
        }
        # every (user, cutoff) pair: U x C rows, C ~ days / H
        n_users, n_cuts = len(idx.user_start), len(cuts)
        users = np.repeat(np.arange(n_users, dtype=np.int64), n_cuts)
        cut, stop = np.tile(cuts, n_users), np.tile(stops, n_users)
        cand = candidates_frame(ctx, users, cut, stop, np.full(len(users), -1), split=np.tile(splits, n_users))
        cand = cand[(cand["hist_stop"] - cand["hist_start"]) >= ctx.task.min_history].reset_index(drop=True)
        # purchases of the user in [cutoff, stop): prefix counts of purchase rows
        bought = np.concatenate([[0], np.cumsum(ctx.events["action"].to_numpy() == "purchase")])
        u, lt, le = (cand[c].to_numpy() for c in ("user_code", "label_time", "label_end"))
        cand["buys"] = bought[idx.before(u, le)] - bought[idx.before(u, lt)] > 0
        cand["question"] = user_questions(idx.ts[cand["hist_stop"].to_numpy() - 1], lt, ctx.task.horizon_days)
        return cap_per_user(ctx, cand)

    def _session_level(self, ctx: TaskContext) -> pd.DataFrame:
        ev, idx = ctx.events, ctx.index
        n = len(ev)
        # ingestion fills every session id (data.session_gap_minutes); the pause rule covers
        # events built by hand
        new = session_starts(idx.user_code, idx.ts, SESSION_GAP_MINUTES, pd.factorize(ev["session_id"])[0])
        start = np.flatnonzero(new)
        stop = np.append(start[1:], n)
        code = np.cumsum(new) - 1  # [N] session of each row
        purchase_rows = np.flatnonzero(ev["action"].to_numpy() == "purchase")
        first = np.full(len(start), n, dtype=np.int64)
        np.minimum.at(first, code[purchase_rows], purchase_rows)
        buys = first < n
        label_time = np.where(buys, idx.ts[np.minimum(first, n - 1)], idx.ts[stop - 1] + 1)
        label_end = np.where(buys, label_time + 1, label_time)
        cand = candidates_frame(ctx, idx.user_code[start], label_time, label_end, np.where(buys, first, -1),
                                buys=buys, session_start=start)
        # the session must have begun: at least one of its events is in the prompt
        cand = cand[cand["hist_stop"] > cand["session_start"]].drop(columns="session_start")
        cand = assign_splits(ctx, cand.reset_index(drop=True))
        cand["question"] = SESSION_QUESTION
        return cand


def user_questions(last_ts: np.ndarray, label_ts: np.ndarray | int, horizon_days: float) -> np.ndarray:
    """The user-level question asked at ``label_ts`` (int ns) after events ending at ``last_ts``.

    Each distinct hour count is phrased once (few strings for millions of examples).

    >>> user_questions(np.array([0]), 3 * 86_400 * 10**9, 7).tolist()
    [' 3 days later: will they buy within 7 days?']
    """
    hours = (np.asarray(label_ts, dtype=np.int64) - np.asarray(last_ts, dtype=np.int64)) // NS_PER_HOUR
    uniq, inverse = np.unique(hours, return_inverse=True)
    words = np.array([elapsed_phrase(int(h) * NS_PER_HOUR) for h in uniq], dtype=object)[inverse.ravel()]
    return " " + words + f" later: will they buy within {horizon_text(horizon_days)}?"
