"""Where the stream windows fall: `plan_windows` cuts each user's events into end-aligned windows of at
most ``task.max_tokens`` tokens that cover every target (the rule, with ``min_context``, is in
`evtlm.data.stream`'s module doc). It only plans event-row ranges from token counts: it must not
read text, tokens or labels, nor build the window rows (`evtlm.data.stream.stream_table`).

>>> cum = np.array([0, 3, 6, 9, 12])             # one user, 4 events of 3 tokens
>>> w = plan_windows(cum, np.array([0]), np.array([4]), np.array([1]), np.zeros(3, np.int64),
...                  np.array([1, 2, 3]), max_tokens=5, min_context=0.0)
>>> w.start.tolist(), w.stop.tolist(), w.of_target.tolist()   # end-aligned: events [2, 3), then [0, 1)
([2, 0], [3, 1], [1, 0, 0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evtlm.errors import TaskError


@dataclass
class Windows:
    """Windows ``[start, stop)`` of event rows, the user of each, and each target's window."""

    user: np.ndarray  # [W] user code
    start: np.ndarray  # [W] first event row
    stop: np.ndarray  # [W] one past the last event row
    of_target: np.ndarray  # [n_targets] window of each target


def plan_windows(piece_cum: np.ndarray, user_start: np.ndarray, user_stop: np.ndarray, actor_len: np.ndarray,
                 tgt_user: np.ndarray, tgt_pos: np.ndarray, max_tokens: int, min_context: float) -> Windows:
    """End-aligned windows covering every target (see `evtlm.data.stream`'s module doc).

    ``tgt_pos`` is where each target's history stops: one past the last event strictly before
    its time (ties at one timestamp stay out, as in the per-example prompts), or the user's stop
    row for "after the last event"; targets are sorted by it. Each round opens one window per user, ending just before the
    user's latest uncovered target (its answer is read after the window's last event) and reaching back as far as the budget allows; it covers
    that user's uncovered targets with at least ``min_context`` of the window before them (all
    of them when the window starts at the user's first event). Vectorised over users; the
    number of rounds is the largest number of windows of one user.
    """
    tgt_user = np.asarray(tgt_user, np.int64)
    tgt_pos = np.asarray(tgt_pos, np.int64)
    of_target = np.full(len(tgt_pos), -1, np.int64)
    users, starts, stops = [], [], []
    remaining = np.arange(len(tgt_pos))
    n_windows = 0
    while len(remaining):
        u, p = tgt_user[remaining], tgt_pos[remaining]
        last = np.r_[u[1:] != u[:-1], True]  # latest remaining target of each user (rows are sorted)
        wu, wp = u[last], p[last]
        stop = np.minimum(wp, user_stop[wu])  # the latest target is read after the window's last event
        budget = max_tokens - actor_len[wu]
        start = np.searchsorted(piece_cum, piece_cum[stop] - budget, side="left")
        start = np.maximum(start, user_start[wu])
        too_long = (budget < 0) | ((start == stop) & (stop > user_start[wu]))
        if too_long.any():
            i = int(np.flatnonzero(too_long)[0])
            raise TaskError(f"an event of {int(piece_cum[stop[i]] - piece_cum[stop[i] - 1])} tokens does not fit "
                            f"task.max_tokens={max_tokens} with its actor text", where="task.max_tokens",
                            fix="raise task.max_tokens, or shorten the item text (verbalize.item / item_template)")
        # the earliest target a window may read: one with min_context of the window before it
        lo = np.where(start == user_start[wu], start, start + np.floor(min_context * (stop - start)).astype(np.int64))
        lo = np.minimum(lo, wp)
        win_of_user = np.full(len(user_start), -1, np.int64)
        win_of_user[wu] = np.arange(len(wu))
        w = win_of_user[u]
        covered = p >= lo[w]
        of_target[remaining[covered]] = n_windows + w[covered]
        users.append(wu), starts.append(start), stops.append(stop)
        n_windows += len(wu)
        remaining = remaining[~covered]
    cat = (lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64))
    return Windows(cat(users), cat(starts), cat(stops), of_target)
