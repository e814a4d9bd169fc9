"""The canonical event table: its columns and dtypes, `finalize_events` (which enforces them and
the sort) and `EventLog` (the events, the optional catalog and the report of how they were read).
It owns the table's shape only; reading and mapping a raw log (`evtlm.ingest.events`) and
sessions (`evtlm.ingest.sessions`) build on it, and it must not import them.

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

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.ingest.data_report import DataReport
from evtlm.recipe import ACTIONS

CANONICAL_COLUMNS: tuple[str, ...] = ("user_id", "timestamp", "action", "item_id", "session_id")
ACTION_DTYPE = pd.CategoricalDtype(categories=list(ACTIONS), ordered=False)
STRING_DTYPE = pd.StringDtype()
# extras read as numbers (non-numeric values are bad rows); any other extra stays a string
NUMERIC_EXTRAS = frozenset({"price", "quantity", "amount", "revenue", "value", "rating"})


@dataclass
class EventLog:
    """The canonical events, the optional catalog, and the report of how they were read."""

    events: pd.DataFrame
    catalog: pd.DataFrame | None
    report: DataReport


def _arrow(values: pd.Series) -> pa.Array:
    return pa.array(values, from_pandas=True)


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
    # pyarrow's sort is stable and ~10x faster than pandas' on millions of string keys:
    # equal (user, time) keep their original order
    order = pc.sort_indices(pa.table({"u": _arrow(out["user_id"]), "t": _arrow(out["timestamp"])}),
                            sort_keys=[("u", "ascending"), ("t", "ascending")])
    return out.take(order.to_numpy()).reset_index(drop=True)
