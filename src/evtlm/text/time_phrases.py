"""Time in words: the relative gaps (`RELATIVE_BUCKETS`) and the absolute timestamps of the text.

Owns the phrase table every relative gap maps into ("3 minutes later", "the next day"), the
code of each gap in it, and the one-strftime-per-distinct-value table of ``time: absolute``
(`evtlm.text.verbalize` gathers both per event). Pure functions of gaps and timestamps: must
not touch items, verbs, the catalog or the order of events.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from evtlm.errors import RecipeError
from evtlm.recipe import VerbalizeConfig
from evtlm.timeunits import SECONDS_PER_DAY, SECONDS_PER_HOUR, SECONDS_PER_MINUTE

MINUTE, HOUR, DAY = SECONDS_PER_MINUTE, SECONDS_PER_HOUR, SECONDS_PER_DAY
# Gaps in words: (upper bound in seconds, exclusive; unit in seconds or None; phrase). A gap
# falls in the first bucket whose bound exceeds it; with a unit, n = round(gap / unit), kept
# within the bucket (so always >= 2: the plural is always right).
RELATIVE_BUCKETS: tuple[tuple[float, int | None, str], ...] = (
    (60, None, "seconds later"),
    (90, None, "a minute later"),
    (59.5 * MINUTE, MINUTE, "{n} minutes later"),
    (90 * MINUTE, None, "an hour later"),
    (23.5 * HOUR, HOUR, "{n} hours later"),
    (2 * DAY, None, "the next day"),
    (13.5 * DAY, DAY, "{n} days later"),
    (59.5 * DAY, 7 * DAY, "{n} weeks later"),
    (730 * DAY, 30 * DAY, "{n} months later"),
    (float("inf"), 365 * DAY, "{n} years later"),
)
MAX_YEARS = 99


def relative_phrases() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Every phrase `RELATIVE_BUCKETS` can produce, with per-bucket (offset, n_min, n_max).

    >>> phrases, offset, lo, hi = relative_phrases()
    >>> phrases[:4], phrases[offset[2]], phrases[offset[2] + hi[2] - lo[2]]
    (['seconds later', 'a minute later', '2 minutes later', '3 minutes later'], '2 minutes later', '59 minutes later')
    """
    phrases: list[str] = []
    offset, lo, hi = [], [], []
    lower = 0.0
    for upper, unit, text in RELATIVE_BUCKETS:
        offset.append(len(phrases))
        if unit is None:
            lo.append(0), hi.append(0), phrases.append(text)
        else:
            n_lo = max(2, int(np.floor(lower / unit + 0.5)))
            # the bound is exclusive: the largest n is the rounding of a gap just below it
            n_hi = MAX_YEARS if upper == float("inf") else int(np.floor(np.nextafter(upper / unit + 0.5, 0)))
            lo.append(n_lo), hi.append(n_hi)
            phrases.extend(text.format(n=n) for n in range(n_lo, n_hi + 1))
        lower = upper
    return phrases, np.array(offset), np.array(lo), np.array(hi)


_PHRASES, _OFFSET, _LO, _HI = relative_phrases()
_BOUNDS = np.array([b[0] for b in RELATIVE_BUCKETS])
_UNITS = np.array([b[1] or 1 for b in RELATIVE_BUCKETS], dtype=float)


def _relative_codes(gap_s: np.ndarray) -> np.ndarray:
    """Index into ``_PHRASES`` for each gap in seconds (negative gaps count as 0)."""
    gap = np.maximum(gap_s, 0.0)
    b = np.searchsorted(_BOUNDS, gap, side="right")
    n = np.clip(np.floor(gap / _UNITS[b] + 0.5).astype(np.int64), _LO[b], _HI[b])
    return _OFFSET[b] + n - _LO[b]


def _time_code_table(timestamps: pd.Series, cfg: VerbalizeConfig) -> tuple[np.ndarray, list[str]]:
    """Absolute times: one strftime per distinct value at the format's resolution (fast)."""
    fmt = cfg.absolute_format
    directives = set(re.findall(r"%-?([A-Za-z])", fmt))
    if directives & {"f"}:
        unit = None
    elif directives & {"S", "T", "X", "c", "s", "r"}:
        unit = "s"
    elif directives & {"M", "R"}:
        unit = "min"
    elif directives & {"H", "I", "p", "k", "l"}:
        unit = "h"
    else:
        unit = "D"
    try:
        local = timestamps.dt.tz_convert(cfg.timezone)
    except Exception as err:  # zoneinfo raises several types
        raise RecipeError(f"unknown time zone {cfg.timezone!r} ({err})", where="verbalize.timezone",
                          fix="use an IANA name such as 'UTC' or 'Asia/Shanghai'") from None
    local = local.dt.floor(unit) if unit else local
    codes, uniques = pd.factorize(local)
    return codes, list(pd.DatetimeIndex(uniques).strftime(fmt))


def _cap(words: np.ndarray) -> np.ndarray:
    return np.array([w[:1].upper() + w[1:] for w in words], dtype=object)
