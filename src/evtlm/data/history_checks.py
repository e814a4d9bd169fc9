"""The input checks the baselines share, and that `HistoryIndex` runs on the events: timestamps as
int64 nanoseconds (`to_ns`), required columns, example frames, purchase 0/1 labels, the
next_action output order, labels within a label space. Each failure is one `DataError` naming the
fix. These only check and convert inputs: they must not index, slice or rank events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from evtlm.errors import DataError
from evtlm.recipe import ACTIONS


def to_ns(values: pd.Series | Sequence | pd.DatetimeIndex, what: str) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (UTC); NaT is an error naming ``what``."""
    ts = pd.Series(pd.to_datetime(pd.Series(values).reset_index(drop=True), utc=True))
    bad = np.flatnonzero(ts.isna().to_numpy())
    if bad.size:
        raise DataError(
            f"{bad.size} missing timestamps in {what}", where=f"positions {bad[:5].tolist()}",
            fix="every event and example needs a time (examples: label_time)",
        )
    return ts.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view("int64")


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """A :class:`DataError` listing every missing column at once."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} lack the columns {missing}", where=f"{what} columns: {list(frame.columns)}",
            fix=f"pass {what} with {list(columns)} (see docs/internals.md)",
        )


def check_examples(frame: pd.DataFrame, what: str, with_label: bool) -> pd.DataFrame:
    """The examples with a clean index; missing columns or an empty frame are errors."""
    require_columns(frame, ("user_id", "label_time", "label") if with_label else ("user_id", "label_time"), what)
    if with_label and len(frame) == 0:
        raise DataError(f"{what} is empty", fix="a baseline needs training examples to fit on")
    return frame.reset_index(drop=True)


def binary_labels(labels: pd.Series) -> np.ndarray:
    """purchase labels as 0/1 ints; anything else names its rows."""
    raw = pd.Series(labels).astype("object").to_numpy()
    # bools as ints, element by element (pandas 2's replace warns about downcasting); 1 == True, so 1/0 stay
    ints = np.where(raw == True, 1, np.where(raw == False, 0, raw))  # noqa: E712
    values = pd.to_numeric(pd.Series(ints), errors="coerce")
    bad = np.flatnonzero(~values.isin([0, 1]).to_numpy())
    if bad.size:
        shown = pd.Series(labels).iloc[bad[:5]].tolist()
        raise DataError(f"purchase labels must be 0/1, got {shown}", where=f"train_examples rows {bad[:5].tolist()} ({bad.size} rows)",
                        fix="label 1 = buys within the horizon, 0 = does not")
    return values.to_numpy().astype(np.int64)


def action_order(labels: Sequence[str] | None) -> list[str]:
    """The next_action output columns: canonical verbs, each once."""
    order = list(ACTIONS if labels is None else labels)
    unknown = [a for a in order if a not in ACTIONS]
    if unknown or len(set(order)) != len(order) or not order:
        raise DataError(f"bad action order {order}", where=f"unknown: {unknown}" if unknown else "duplicates or empty",
                        fix=f"pass canonical verbs, each once, from {list(ACTIONS)}")
    return order


def check_labels_in(train: pd.DataFrame, allowed: Sequence[str], what: str) -> None:
    bad = np.flatnonzero(~train["label"].astype("string").isin(list(allowed)).fillna(False).to_numpy())
    if bad.size:
        raise DataError(f"{bad.size} training labels are not in {what}: {train['label'].iloc[bad[:5]].tolist()}",
                        where=f"train_examples rows {bad[:5].tolist()}", fix=f"labels must be one of {list(allowed)}")
