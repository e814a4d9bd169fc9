"""Event ingestion: any log in, one canonical table out.

The canonical table (one row per event, whatever the source format):

=============  ==============================  ===========================================
column         dtype                           meaning
=============  ==============================  ===========================================
user_id        string                          who acted
timestamp      datetime64[ns, UTC]             when
action         category (`evtlm.recipe.ACTIONS`)  what, as a canonical verb
item_id        string, nullable                on what
session_id     string, nullable                visit; derived by an inactivity gap if absent
(extras)       float / string                  optional: price, quantity, category, …
=============  ==============================  ===========================================

Rows are sorted stably by ``(user_id, timestamp, original order)``. The optional item catalog is a
table ``item_id -> title, category, brand, price, …``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evtlm.recipe import ACTIONS

CANONICAL_COLUMNS: tuple[str, ...] = ("user_id", "timestamp", "action", "item_id", "session_id")
ACTION_DTYPE = pd.CategoricalDtype(categories=list(ACTIONS), ordered=False)
STRING_DTYPE = pd.StringDtype()


@dataclass
class DataReport:
    """What a read kept and dropped, and why. Written to a run's ``data_report.json``.

    ``dropped`` counts rows by reason ("unparseable timestamp", "before data.start", …);
    ``dropped_rows`` keeps the first few 1-based source row numbers of each reason.
    """

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    duplicates_removed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)
    users: int = 0
    items: int = 0
    sessions: int = 0
    events_per_action: dict[str, int] = field(default_factory=dict)
    time_start: str | None = None
    time_end: str | None = None
    notes: list[str] = field(default_factory=list)

    def add_dropped(self, reason: str, row_numbers: np.ndarray | list[int]) -> None:
        """Count rows dropped for ``reason`` (1-based source row numbers)."""
        rows = np.asarray(row_numbers)
        if rows.size == 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + int(rows.size)
        kept = self.dropped_rows.setdefault(reason, [])
        kept.extend(int(r) for r in rows[: max(0, 5 - len(kept))])

    def summarize(self, events: pd.DataFrame) -> None:
        """Fill the counts that describe the kept events."""
        self.rows_kept = len(events)
        self.users = int(events["user_id"].nunique())
        self.items = int(events["item_id"].nunique())
        self.sessions = int(events["session_id"].nunique()) if "session_id" in events else 0
        counts = events["action"].value_counts()
        self.events_per_action = {a: int(counts.get(a, 0)) for a in ACTIONS if counts.get(a, 0)}
        if len(events):
            self.time_start = events["timestamp"].min().isoformat()
            self.time_end = events["timestamp"].max().isoformat()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EventLog:
    """The canonical events, the optional catalog, and the report of how they were read."""

    events: pd.DataFrame
    catalog: pd.DataFrame | None
    report: DataReport


def finalize_events(df: pd.DataFrame) -> pd.DataFrame:
    """Enforce canonical dtypes and the stable ``(user_id, timestamp, original order)`` sort.

    ``df`` must hold the canonical columns (``session_id`` may be missing: it is then all null);
    extra columns are kept after them.

    >>> raw = pd.DataFrame({"user_id": ["2", "1", "1"], "item_id": ["a", "b", "c"],
    ...     "action": ["view", "cart", "view"],
    ...     "timestamp": pd.to_datetime([5, 9, 9], unit="s", utc=True)})
    >>> finalize_events(raw)[["user_id", "item_id", "action"]].values.tolist()
    [['1', 'b', 'cart'], ['1', 'c', 'view'], ['2', 'a', 'view']]
    """
    out = df.copy()
    if "session_id" not in out:
        out["session_id"] = pd.Series(pd.NA, index=out.index, dtype=STRING_DTYPE)
    for col in ("user_id", "item_id", "session_id"):
        out[col] = out[col].astype(STRING_DTYPE)
    out["action"] = out["action"].astype(ACTION_DTYPE)
    ts = out["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts, utc=True)
    out["timestamp"] = ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    extras = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    out = out[list(CANONICAL_COLUMNS) + extras]
    # mergesort is stable: equal (user, time) keep their original order
    out = out.sort_values(["user_id", "timestamp"], kind="mergesort").reset_index(drop=True)
    return out
