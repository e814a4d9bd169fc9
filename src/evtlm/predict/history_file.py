"""Reading a history file for `evtlm predict`: the run's data mapping pointed at another file
(`history_data_config`), every user id the file holds as read (`raw_user_ids`, so that users lost to
bad rows can be named) and ``--as-of`` as a time (`parse_as_of`). It reads and parses only: no model,
no prompt, nothing written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evtlm.errors import DataError
from evtlm.recipe import DataConfig


def history_data_config(data: DataConfig, path: str | Path, preset: str | None = None,
                        on_bad_rows: str = "skip") -> DataConfig:
    """The run's data mapping for another file: path replaced, training-only filters removed.

    ``max_users`` (a training subset) and the ``start``/``end`` window (the training data's
    range, also a preset's) do not apply to a new history file.

    >>> history_data_config(DataConfig(), "shop.csv").preset          # trained on the embedded shop
    'evtlm_shop'
    >>> c = history_data_config(DataConfig(preset="taobao", path="a.csv", max_users=9), "b.csv")
    >>> c.preset, c.path, c.max_users, c.start
    ('taobao', 'b.csv', None, None)
    """
    path = str(path)
    if preset is not None:
        return DataConfig(preset=preset, path=path, on_bad_rows=on_bad_rows)
    if data.path is None and data.preset is None:  # the embedded shop: its files come from `evtlm simulate`
        return DataConfig(preset="evtlm_shop", path=path, on_bad_rows=on_bad_rows)
    explicit = data.model_dump(exclude_defaults=True)
    explicit.update(path=path, on_bad_rows=on_bad_rows, max_users=None, start=None, end=None)
    return DataConfig.model_validate(explicit)


def raw_user_ids(cfg: DataConfig) -> np.ndarray | None:
    """Every user id of the file as read (before bad rows and filters), or None when the format's
    reader derives users itself (then lost users cannot be named)."""
    from evtlm.ingest.events import Ingest
    from evtlm.ingest.presets import PRESETS, resolve_data_config
    from evtlm.ingest.values import clean_ids

    resolved = resolve_data_config(cfg)
    preset = PRESETS.get(resolved.preset) if resolved.preset else None
    if preset is not None and preset.reader is not None and preset.name != "evtlm_shop":
        return None
    ingest = Ingest(resolved.model_copy(update={"on_bad_rows": "skip"}))
    col = resolved.columns.user
    table = ingest.read(roles={"data.columns.user": col})
    return np.asarray(clean_ids(table.df[col]).dropna().unique(), dtype=object)


def parse_as_of(as_of: str) -> int:
    """``--as-of`` as UTC nanoseconds (a time without a zone is UTC).

    >>> parse_as_of("2024-01-02")
    1704153600000000000
    >>> parse_as_of("next tuesday")
    Traceback (most recent call last):
    evtlm.errors.DataError: --as-of 'next tuesday' is not a time, evtlm predict, give an ISO time such as 2024-01-31 or 2024-01-31T18:00:00+08:00
    """
    try:
        stamp = pd.Timestamp(as_of)
    except (ValueError, TypeError, OverflowError) as exc:  # pandas' DateParseError is a ValueError
        raise DataError(f"--as-of {as_of!r} is not a time", where="evtlm predict",
                        fix="give an ISO time such as 2024-01-31 or 2024-01-31T18:00:00+08:00") from exc
    if stamp is pd.NaT:
        raise DataError(f"--as-of {as_of!r} is not a time", where="evtlm predict", fix="give an ISO time such as 2024-01-31")
    return int((stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).value)
