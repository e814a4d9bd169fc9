"""Vectorised parsing of raw column values: ids, numbers, timestamps, action vocabularies.

Every function takes a whole column and returns a whole column; a value that cannot be parsed
becomes missing (NA / NaT / None) so that the caller can name its rows (`evtlm.readers.BadRows`).
Numbers and timestamps go through pyarrow's casts first (about 50x faster than
``pd.to_numeric`` on strings) and fall back to pandas only when some value is bad.

>>> parse_timestamps(pd.Series(["1511544070", "1511561733"]), TimestampConfig())[0].tolist()
[Timestamp('2017-11-24 17:21:10+0000', tz='UTC'), Timestamp('2017-11-24 22:15:33+0000', tz='UTC')]
>>> guess_unit(np.array([1.5e12]))        # milliseconds since 1970
'ms'
>>> parse_timestamps(pd.Series(["2010-12-01 08:26"]), TimestampConfig(timezone="Asia/Tokyo"))[0][0]
Timestamp('2010-11-30 23:26:00+0000', tz='UTC')
>>> clean_ids(pd.Series([" 17850 ", "", None])).tolist()
['17850', <NA>, <NA>]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.recipe import ACTIONS, TimestampConfig

_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_MAX_NS = np.iinfo(np.int64).max


def clean_ids(values: pd.Series) -> pd.Series:
    """Ids as strings, surrounding blanks removed, empty -> NA. Integral floats lose '.0'."""
    if pd.api.types.is_float_dtype(values.dtype):
        # a float id column (Parquet/JSON, or NaN-holding ints): 17850.0 -> "17850"
        as_int = values.round().astype("Int64") if np.all(np.isnan(values) | (values == np.round(values))) else None
        values = as_int if as_int is not None else values
    if not pd.api.types.is_string_dtype(values.dtype):
        values = values.astype("string")
    arr = pc.utf8_trim_whitespace(pa.array(values, type=pa.large_string(), from_pandas=True))
    arr = pc.if_else(pc.equal(pc.utf8_length(arr), 0), None, arr)
    return pd.Series(pd.arrays.ArrowStringArray(arr), index=values.index, dtype="string")


def to_number(values: pd.Series) -> pd.Series:
    """Floats; empty and unparseable values -> NaN (the caller tells the two apart)."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    arr = pc.utf8_trim_whitespace(pa.array(values.astype("string"), type=pa.large_string(), from_pandas=True))
    try:
        out = pc.cast(arr, pa.float64())  # fast path: every value parses
        return pd.Series(out.to_numpy(zero_copy_only=False), index=values.index)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(pd.Series(arr.to_pandas(), index=values.index), errors="coerce").astype("float64")


def guess_unit(numbers: np.ndarray) -> str:
    """Unix time unit from magnitude: < 1e11 seconds (until year 5138), < 1e14 ms, < 1e17 us."""
    finite = np.abs(numbers[np.isfinite(numbers)])
    if finite.size == 0:
        return "s"
    mid = float(np.median(finite))
    return "s" if mid < 1e11 else "ms" if mid < 1e14 else "us" if mid < 1e17 else "ns"


def numbers_to_utc(numbers: np.ndarray, unit: str) -> pd.Series:
    """Unix times (NaN allowed) in ``unit`` -> UTC timestamps; out-of-range values -> NaT."""
    scaled = numbers.astype("float64") * _NS[unit]
    ok = np.isfinite(scaled) & (np.abs(scaled) < _MAX_NS)
    # fractional unix times (yoochoose's 1396860669.277 s): round at the microsecond, where
    # float64 is still exact (1.4e15 us < 2**53), so no 01:02:21.719000064 artefacts
    per_us = _NS[unit] / 1_000
    us = np.round(np.where(ok, numbers.astype("float64"), 0) * per_us) if per_us >= 1 else np.where(ok, scaled, 0)
    ns = (us.astype(np.int64) * 1_000) if per_us >= 1 else np.round(us).astype(np.int64)
    if np.issubdtype(numbers.dtype, np.integer):  # exact integer arithmetic where it can be
        ns = numbers.astype(np.int64) * _NS[unit]
    out = pd.to_datetime(ns, unit="ns", utc=True)
    return pd.Series(out).where(ok)


def _localize(ts: pd.Series, timezone: str) -> pd.Series:
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return ts.dt.tz_convert("UTC")
    # naive wall-clock times: read in `timezone`; a time repeated at a DST change is taken as
    # standard time, one skipped by it moves forward (deterministic, no NaT surprises)
    local = ts.dt.tz_localize(timezone, ambiguous=np.zeros(len(ts), dtype=bool), nonexistent="shift_forward")
    return local.dt.tz_convert("UTC")


def parse_timestamps(values: pd.Series, cfg: TimestampConfig) -> tuple[pd.Series, str]:
    """Parse a timestamp column -> (UTC timestamps with NaT where unparseable, what was expected).

    ``cfg.unit`` ``auto`` reads a mostly-numeric column as unix time (unit from the magnitude)
    and anything else as ISO-8601 (or ``cfg.format``) strings; naive times are in
    ``cfg.timezone``.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _localize(values, cfg.timezone), "datetimes"
    unit = cfg.unit
    if unit == "auto" and cfg.format is None:
        numbers = to_number(values)
        present = values.notna().to_numpy().copy()
        if pd.api.types.is_string_dtype(values.dtype):
            present &= (values.astype("string").str.strip().str.len() > 0).fillna(False).to_numpy()
        if numbers.notna().sum() * 2 >= max(1, present.sum()):
            unit = guess_unit(numbers.to_numpy())
            expected = f"unix time numbers (read as {_UNIT_WORDS[unit]} by magnitude; set data.timestamp.unit)"
            return numbers_to_utc(numbers.to_numpy(), unit), expected
        unit = "iso"
    if unit in _NS:
        return numbers_to_utc(to_number(values).to_numpy(), unit), f"unix time in {_UNIT_WORDS[unit]}"
    fmt = cfg.format or "ISO8601"
    expected = (f"times in the format {cfg.format!r} (data.timestamp.format)" if cfg.format
                else "ISO-8601 times such as '2017-11-25 08:30:00' (or set data.timestamp.format)")
    strings = values.astype("string").str.strip()
    try:
        ts = pd.to_datetime(strings, format=fmt, errors="coerce")
    except ValueError:  # several offsets, or offsets mixed with naive times: parse each kind apart
        aware = strings.str.contains(_ZONE_SUFFIX, regex=True).fillna(False)
        ts = pd.Series(pd.NaT, index=strings.index, dtype="datetime64[ns, UTC]")
        ts[aware] = pd.to_datetime(strings[aware], format=fmt, errors="coerce", utc=True)
        ts[~aware] = _localize(pd.to_datetime(strings[~aware], format=fmt, errors="coerce"), cfg.timezone)
        return ts, expected
    return _localize(ts, cfg.timezone), expected


_ZONE_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT|[A-Z]{3,4})$"


_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def map_actions(raw: pd.Series, mapping: dict[str, str], drop: list[str]
                ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Raw action values -> (canonical values or None, dropped-by-recipe mask, raw value counts).

    Only the distinct values are looked up (a factorize, then one take), so a 5-million-row
    column costs one hash pass. An empty ``mapping`` means the values are already canonical.

    >>> canon, dropped, counts = map_actions(pd.Series(["pv", "buy", "pv", "clik", "x"]),
    ...                                      {"pv": "view", "buy": "purchase"}, drop=["x"])
    >>> canon.tolist(), dropped.tolist(), counts
    (['view', 'purchase', 'view', None, None], [False, False, False, False, True], {'pv': 2, 'buy': 1, 'clik': 1, 'x': 1})
    """
    table = dict(mapping) if mapping else {a: a for a in ACTIONS}
    codes, uniques = pd.factorize(raw.astype("string").str.strip(), use_na_sentinel=True)
    uniq = [str(u) for u in uniques]
    canon_u = np.array([table.get(u) for u in uniq] + [None], dtype=object)  # last: NA sentinel
    drop_u = np.array([u in set(drop) for u in uniq] + [False])
    counts = np.bincount(codes[codes >= 0], minlength=len(uniq))
    raw_counts = {u: int(c) for u, c in zip(uniq, counts)}
    if (codes < 0).any():
        raw_counts[""] = int((codes < 0).sum())
    return canon_u[codes], drop_u[codes], raw_counts
