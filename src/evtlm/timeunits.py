"""Time units, defined once for every stage: nanoseconds for event times, seconds for gaps.

Event times travel as int64 nanoseconds since 1970-01-01 UTC (``datetime64[ns]`` viewed as
integers), so durations are integer arithmetic on them:

>>> (NS_PER_DAY // NS_PER_HOUR, NS_PER_HOUR // NS_PER_MINUTE, NS_PER_MINUTE // NS_PER_SECOND)
(24, 60, 60)
>>> SECONDS_PER_DAY == NS_PER_DAY // NS_PER_SECOND
True
"""

from __future__ import annotations

__all__ = ["NS_PER_SECOND", "NS_PER_MINUTE", "NS_PER_HOUR", "NS_PER_DAY", "SECONDS_PER_MINUTE", "SECONDS_PER_HOUR",
           "SECONDS_PER_DAY"]

NS_PER_SECOND = 10**9
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_HOUR = 60 * NS_PER_MINUTE
NS_PER_DAY = 24 * NS_PER_HOUR

# gaps between events in seconds (the time phrases, the synthetic shop's clock, the features)
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 60 * SECONDS_PER_MINUTE
SECONDS_PER_DAY = 24 * SECONDS_PER_HOUR
