"""Vectorised parsing of raw column values: ids, numbers, timestamps, action vocabularies.

Every function takes a whole column and returns a whole column **on the same index** (callers
assign results into frames whose index has gaps where earlier checks dropped rows: a fresh
0..n-1 index would shift every value after the first gap); a value that cannot be parsed
becomes missing (NA / NaT / None) so that the caller can name its rows (`evtlm.ingest.readers.BadRows`).

Timestamps are also checked for plausibility (`read_timestamps`): a time before 1990-01-01 or
more than a day in the future is corrupt, not data, and so is a unix number whose magnitude
fits another unit than the column's (seconds among milliseconds read as January 1970).
Numbers and timestamps go through pyarrow's casts first (about 50x faster than
``pd.to_numeric`` on strings) and fall back to pandas only when some value is bad.

>>> parse_timestamps(pd.Series(["1511544070", "1511561733"]), TimestampConfig())[0].tolist()
[Timestamp('2017-11-24 17:21:10+0000', tz='UTC'), Timestamp('2017-11-24 22:15:33+0000', tz='UTC')]
>>> guess_unit(np.array([1.5e12]))        # milliseconds since 1970
'ms'
>>> parse_timestamps(pd.Series(["2010-12-01 08:26"]), TimestampConfig(timezone="Asia/Tokyo"))[0][0]
Timestamp('2010-11-30 23:26:00+0000', tz='UTC')
>>> t = read_timestamps(pd.Series(["1511544070000", "1511544070", "x"], index=[3, 7, 9]), TimestampConfig())
>>> t.unit, t.ts.index.tolist(), [(c.reason, c.mask.tolist()) for c in t.checks]
('ms', [3, 7, 9], [('unparseable timestamp', [False, False, True]), ('timestamp that looks like seconds (column read as milliseconds)', [False, True, False])])
>>> clean_ids(pd.Series([" 17850 ", "", None])).tolist()
['17850', <NA>, <NA>]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.recipe import ACTIONS, TimestampConfig

_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_MAX_NS = np.iinfo(np.int64).max
# plausible event times: e-commerce logs start well after 1990, and nothing is logged more than a
# day ahead of now (the day of slack covers clock skew and time zones)
PLAUSIBLE_FROM = pd.Timestamp("1990-01-01", tz="UTC")
FUTURE_SLACK = pd.Timedelta(days=1)


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
        # `arr.to_pandas()` is a Series on 0..n-1: wrapping it in `pd.Series(..., index=)` would
        # *reindex* it by label (a kept row 7 getting source row 7's value, NaN past n), so the
        # result is relabelled by position instead
        parsed = pd.to_numeric(arr.to_pandas(), errors="coerce").astype("float64")
        return parsed.set_axis(values.index)


def guess_unit(numbers: np.ndarray) -> str:
    """Unix time unit from magnitude: < 1e11 seconds (until year 5138), < 1e14 ms, < 1e17 us."""
    finite = np.abs(numbers[np.isfinite(numbers)])
    if finite.size == 0:
        return "s"
    mid = float(np.median(finite))
    return "s" if mid < 1e11 else "ms" if mid < 1e14 else "us" if mid < 1e17 else "ns"


def numbers_to_utc(numbers: np.ndarray, unit: str, index: pd.Index | None = None) -> pd.Series:
    """Unix times (NaN allowed) in ``unit`` -> UTC timestamps; out-of-range values -> NaT.

    ``index`` labels the result (the index of the column the numbers came from): the caller
    assigns it into a frame by label.
    """
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
    return pd.Series(out, index=index).where(ok)


def _localize(ts: pd.Series, timezone: str) -> pd.Series:
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return ts.dt.tz_convert("UTC")
    # naive wall-clock times: read in `timezone`; a time repeated at a DST change is taken as
    # standard time, one skipped by it moves forward (deterministic, no NaT surprises)
    local = ts.dt.tz_localize(timezone, ambiguous=np.zeros(len(ts), dtype=bool), nonexistent="shift_forward")
    return local.dt.tz_convert("UTC")


@dataclass
class TimeCheck:
    """Rows of a timestamp column failing one check, in the words `evtlm.ingest.readers.BadRows` needs."""

    reason: str  # the report's key, e.g. "timestamp before 1990-01-01"
    mask: np.ndarray  # bool, positional over the column
    expected: str
    fix: str


@dataclass
class ParsedTimes:
    """A parsed timestamp column: UTC times (NaT on every row of a failed check), how it was read."""

    ts: pd.Series
    unit: str  # s / ms / us / ns (unix numbers), iso (strings) or datetimes (already typed)
    expected: str
    checks: list[TimeCheck] = field(default_factory=list)


def plausible_range(now: pd.Timestamp | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[1990-01-01, now + 1 day]: times outside are corrupt values, not events."""
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    return PLAUSIBLE_FROM, now + FUTURE_SLACK


def parse_timestamps(values: pd.Series, cfg: TimestampConfig) -> tuple[pd.Series, str]:
    """Parse a timestamp column -> (UTC timestamps on ``values.index``, what was expected).

    NaT marks every row that failed a check of `read_timestamps` (unparseable or implausible).
    """
    parsed = read_timestamps(values, cfg)
    return parsed.ts, parsed.expected


def read_timestamps(values: pd.Series, cfg: TimestampConfig, now: pd.Timestamp | None = None,
                    unit_seen: str | None = None) -> ParsedTimes:
    """Parse a timestamp column and check every value is a plausible time (see `plausible_range`).

    ``cfg.unit`` ``auto`` reads a mostly-numeric column as unix time (unit from the median
    magnitude) and anything else as ISO-8601 (or ``cfg.format``) strings; naive times are in
    ``cfg.timezone``. The checks come in the order a reader should drop them: unparseable, a
    unix number in another unit than the column's, before 1990, in the future.
    """
    lo, hi = plausible_range(now)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _check_times(_localize(values, cfg.timezone), "datetimes", "datetimes", lo, hi, "fix the values")
    unit = cfg.unit
    if unit == "auto" and cfg.format is None:
        numbers = to_number(values)
        present = values.notna().to_numpy().copy()
        if pd.api.types.is_string_dtype(values.dtype):
            present &= (values.astype("string").str.strip().str.len() > 0).fillna(False).to_numpy()
        numeric = numbers.notna().sum() * 2 >= max(1, present.sum())
        if unit_seen is not None:
            numeric = unit_seen in _NS
        if numeric:
            unit = unit_seen or guess_unit(numbers.to_numpy())
            expected = f"unix time numbers (read as {_UNIT_WORDS[unit]} by magnitude; set data.timestamp.unit)"
            return _check_numbers(values, numbers.to_numpy(), unit, expected, lo, hi, explicit=False)
        unit = "iso"
    if unit in _NS:
        return _check_numbers(values, to_number(values).to_numpy(), unit, f"unix time in {_UNIT_WORDS[unit]}",
                              lo, hi, explicit=True)
    fmt = cfg.format or "ISO8601"
    expected = (f"times in the format {cfg.format!r} (data.timestamp.format)" if cfg.format
                else "ISO-8601 times such as '2017-11-25 08:30:00' (or set data.timestamp.format)")
    strings = values.astype("string").str.strip()
    try:
        with warnings.catch_warnings():  # pandas 2 warns about several offsets, and returns objects
            warnings.simplefilter("ignore", FutureWarning)
            parsed = pd.to_datetime(strings, format=fmt, errors="coerce")
        mixed = not pd.api.types.is_datetime64_any_dtype(parsed.dtype)
    except ValueError:  # pandas 3 raises
        mixed = True
    if mixed:  # several offsets, or offsets mixed with naive times: parse each kind apart
        aware = strings.str.contains(_ZONE_SUFFIX, regex=True).fillna(False)
        ts = pd.Series(pd.NaT, index=strings.index, dtype="datetime64[ns, UTC]")
        ts[aware] = pd.to_datetime(strings[aware], format=fmt, errors="coerce", utc=True)
        ts[~aware] = _localize(pd.to_datetime(strings[~aware], format=fmt, errors="coerce"), cfg.timezone)
    else:
        ts = _localize(parsed, cfg.timezone)
    return _check_times(ts, "iso", expected, lo, hi,
                        "fix the values or set data.timestamp.unit / data.timestamp.format")


def _range_checks(before: np.ndarray, future: np.ndarray, lo: pd.Timestamp, hi: pd.Timestamp,
                  fix: str) -> list[TimeCheck]:
    expected = f"a time from {lo:%Y-%m-%d} to {hi:%Y-%m-%d}; earlier or later times are taken as corrupt"
    return [TimeCheck(f"timestamp before {lo:%Y-%m-%d}", before, expected, fix),
            TimeCheck("timestamp in the future", future, expected, fix)]


def _finish(ts: pd.Series, unit: str, expected: str, checks: list[TimeCheck]) -> ParsedTimes:
    checks = [c for c in checks if c.mask.any()]
    bad = np.logical_or.reduce([c.mask for c in checks]) if checks else np.zeros(len(ts), dtype=bool)
    return ParsedTimes(ts.where(~bad), unit, expected, checks)


def _check_times(ts: pd.Series, unit: str, expected: str, lo: pd.Timestamp, hi: pd.Timestamp,
                 fix: str) -> ParsedTimes:
    """Typed or parsed-string times: unparseable (NaT), before ``lo``, after ``hi``."""
    nat = ts.isna().to_numpy()
    before = (ts < lo).fillna(False).to_numpy(dtype=bool)
    future = (ts > hi).fillna(False).to_numpy(dtype=bool)
    checks = [TimeCheck("unparseable timestamp", nat, expected, fix)]
    return _finish(ts, unit, expected, checks + _range_checks(before, future, lo, hi, fix))


def _check_numbers(values: pd.Series, numbers: np.ndarray, unit: str, expected: str, lo: pd.Timestamp,
                   hi: pd.Timestamp, *, explicit: bool) -> ParsedTimes:
    """Unix numbers in ``unit``: unparseable, in another unit, before ``lo``, after ``hi``.

    The plausible range spans a factor < 3 (6.3e8 .. 1.8e9 seconds), far less than the factor
    1000 between units, so a number is plausible in at most one unit: that unit names the
    reason ("looks like seconds") and, when most of the column fits it, the fix.
    """
    ts = numbers_to_utc(numbers, unit, index=values.index)
    present = ~np.isnan(numbers)
    ns_lo, ns_hi = float(lo.value), float(hi.value)
    with np.errstate(invalid="ignore", over="ignore"):
        fits = {u: present & (numbers * k >= ns_lo) & (numbers * k <= ns_hi) for u, k in _NS.items()}
    implausible = present & ~fits[unit]
    words = _UNIT_WORDS
    best = max(_NS, key=lambda u: int(fits[u].sum()))
    fix = "fix the values or set data.timestamp.unit / data.timestamp.format"
    if explicit and (~present).any():
        strings = values[~present].iloc[:1000].astype("string").str.strip()  # a sample: only the hint needs it
        as_dates = pd.to_datetime(strings, format="ISO8601", errors="coerce")
        if as_dates.notna().sum() * 2 > len(strings):
            fix = "the values look like date strings: set data.timestamp.unit: iso (validate-data: --time-unit iso)"
    checks = [TimeCheck("unparseable timestamp", ~present, expected, fix)]
    range_text = f"unix time in {words[unit]} from {lo:%Y-%m-%d} to {hi:%Y-%m-%d}"
    for other in _NS:
        mask = implausible & fits[other]
        if other == unit or not mask.any():
            continue
        if best == other:
            fix = (f"the column looks like {words[other]}: set data.timestamp.unit: {other} "
                   f"(validate-data: --time-unit {other})")
        else:
            fix = f"the column mixes units: convert these values to {words[unit]}"
        checks.append(TimeCheck(f"timestamp that looks like {words[other]} (column read as {words[unit]})",
                                mask, range_text, fix))
    anywhere = np.logical_or.reduce(list(fits.values()))
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = numbers * _NS[unit]
    stray = implausible & ~anywhere
    checks += _range_checks(stray & (scaled < ns_lo), stray & (scaled > ns_hi), lo, hi,
                            f"fix the values or check data.timestamp.unit (read as {words[unit]})")
    return _finish(ts, unit, expected, checks)


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
