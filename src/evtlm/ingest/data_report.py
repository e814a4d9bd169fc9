"""The data report of a read: `DataReport`, what it kept and dropped, and why (a run's
``data_report.json``, a partition folder's ``report.json``). It owns the counts only: the reading,
checking and cleaning that fill it in live in `evtlm.ingest.events` and its siblings, which this
module must not import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evtlm.recipe import ACTIONS


@dataclass
class DataReport:
    """What a read kept and dropped, and why. Written to a run's ``data_report.json``.

    ``dropped`` counts rows by reason ("unparseable timestamp", "before data.start", …);
    ``dropped_rows`` keeps the five smallest 1-based source row numbers of each reason.
    ``raw_actions`` counts the raw action values as read (before mapping and filters).
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
    raw_actions: dict[str, int] = field(default_factory=dict)
    catalog_items: int = 0
    # a log in several files: each one's path, data rows and first row in the numbering above
    # (row numbers run on from file to file, so dropped_rows name rows of the whole log)
    files: list[dict[str, Any]] = field(default_factory=list)

    def add_dropped(self, reason: str, row_numbers: np.ndarray | list[int]) -> None:
        """Count rows dropped for ``reason`` (1-based source row numbers)."""
        rows = np.asarray(row_numbers)
        if rows.size == 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + int(rows.size)
        # the five smallest row numbers: the same whichever order (chunks, shards) drops came in
        kept = self.dropped_rows.get(reason, [])
        self.dropped_rows[reason] = sorted(set(kept) | set(int(r) for r in np.sort(rows)[:5]))[:5]

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
