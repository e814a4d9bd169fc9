"""Visits: `session_starts`, the one session rule (ingestion, `evtlm.data.history.HistoryIndex`
and the purchase task's visits all call it), and `derive_sessions`, the ``"<user>-<k>"`` ids a log
without a session column gets. Pure functions of events sorted by (user, time): they must not read
files, filter rows or touch a report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.ingest.canonical import STRING_DTYPE, _arrow
from evtlm.timeunits import NS_PER_MINUTE


def session_starts(user_code: np.ndarray, ts_ns: np.ndarray, gap_minutes: float,
                   session_code: np.ndarray | None = None) -> np.ndarray:
    """True on the first event of each visit, for events sorted by (user, time): the one session
    rule. A visit starts at a user's first event and where the session id changes; where an
    event has no session id (``session_code`` < 0, or no codes at all), after a pause longer
    than ``gap_minutes`` (the recipe's ``data.session_gap_minutes``).

    >>> m = 60 * 10**9  # a minute in ns
    >>> session_starts(np.array([0, 0, 0, 1]), np.array([0, 20, 90, 100]) * m, 30).tolist()
    [True, False, True, True]
    >>> session_starts(np.array([0, 0, 0]), np.array([0, 5, 90]) * m, 30, np.array([4, 7, 7])).tolist()
    [True, True, False]
    """
    n = len(user_code)
    if n == 0:
        return np.zeros(0, bool)
    user_code, ts_ns = np.asarray(user_code), np.asarray(ts_ns, np.int64)
    new = np.r_[True, user_code[1:] != user_code[:-1]]
    pause = np.r_[True, np.diff(ts_ns) > int(gap_minutes * NS_PER_MINUTE)]
    if session_code is None:
        return new | pause
    session_code = np.asarray(session_code)
    changed = np.r_[True, session_code[1:] != session_code[:-1]]
    no_id = session_code < 0
    return new | np.where(no_id, pause | ~np.r_[True, no_id[:-1]], changed)


def derive_sessions(user_id: pd.Series, timestamp: pd.Series, gap_minutes: float) -> pd.Series:
    """Session ids ``"<user>-<k>"`` (k = 1, 2, … per user) for events sorted by (user, time).

    A new session starts at a user's first event and after every gap longer than
    ``gap_minutes``; the user prefix keeps ids unique across users.

    >>> ts = pd.to_datetime(["2024-01-01 10:00", "2024-01-01 10:20", "2024-01-01 11:30",
    ...                      "2024-01-01 10:00"], utc=True)
    >>> derive_sessions(pd.Series(["a", "a", "a", "b"]), pd.Series(ts), 30).tolist()
    ['a-1', 'a-1', 'a-2', 'b-1']
    """
    n = len(user_id)
    if n == 0:
        return pd.Series([], dtype=STRING_DTYPE)
    codes, _ = pd.factorize(user_id)
    new_user = np.r_[True, codes[1:] != codes[:-1]]
    new = session_starts(codes, timestamp.dt.as_unit("ns").array.asi8, gap_minutes)
    k = np.cumsum(new)  # global session counter
    run = np.cumsum(new_user) - 1  # index of the user's block
    local = k - k[np.flatnonzero(new_user)][run] + 1  # 1, 2, … within each user
    ids = pc.binary_join_element_wise(_arrow(user_id.astype(STRING_DTYPE)).cast(pa.large_string()),
                                      pa.array(local).cast(pa.large_string()),
                                      pa.scalar("-", pa.large_string()))
    return pd.Series(pd.arrays.ArrowStringArray(ids), index=user_id.index,
                     dtype=STRING_DTYPE)
