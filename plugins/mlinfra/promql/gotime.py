"""Go's ``time`` calendar arithmetic, as PromQL's date functions use it (UTC only).

``minute(v)`` and friends convert each value with Go's ``int64(v)`` (truncation;
NaN and out-of-range values become the smallest int64 on amd64) and then read the
calendar through ``time.Unix(sec, 0).UTC()``, whose arithmetic wraps around like
Go's int64 and uint64. Ported from Go's src/time/time.go (``absDate``) so that the
results match Prometheus for every input, not only for sensible dates::

    >>> date_parts(1_700_000_000.9)    # 2023-11-14 22:13:20 UTC, a Tuesday
    (2023, 11, 14, 318, 22, 13, 2)
"""

from __future__ import annotations

import math

__all__ = ["date_parts", "days_in_month", "go_int64"]

_SECONDS_PER_DAY = 86_400
_DAYS_PER_400_YEARS = 365 * 400 + 97
_DAYS_PER_100_YEARS = 365 * 100 + 24
_DAYS_PER_4_YEARS = 365 * 4 + 1
_ABSOLUTE_ZERO_YEAR = -292277022399
_UNIX_TO_INTERNAL = (1969 * 365 + 1969 // 4 - 1969 // 100 + 1969 // 400) * _SECONDS_PER_DAY
_INTERNAL_TO_ABSOLUTE = 9223371966579724800  # -(absoluteZeroYear * 365.2425 + 0.5) * secondsPerDay
_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)
_U64 = (1 << 64) - 1
_I64_MIN = -(1 << 63)


def go_int64(v: float) -> int:
    """Go's ``int64(v)`` on amd64: truncation; NaN, ±Inf and out-of-range give the smallest int64."""
    if not math.isfinite(v) or not -(2.0**63) <= v < 2.0**63:
        return _I64_MIN
    return int(v)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def date_parts(seconds: float) -> tuple[int, int, int, int, int, int, int]:
    """(year, month, day, day of year, hour, minute, weekday) of ``time.Unix(int64(seconds), 0).UTC()``."""
    sec = go_int64(seconds)
    absolute = (sec + _UNIX_TO_INTERNAL + _INTERNAL_TO_ABSOLUTE) & _U64
    d = absolute // _SECONDS_PER_DAY
    n = d // _DAYS_PER_400_YEARS
    y = 400 * n
    d -= _DAYS_PER_400_YEARS * n
    n = d // _DAYS_PER_100_YEARS
    n -= n >> 2
    y += 100 * n
    d -= _DAYS_PER_100_YEARS * n
    n = d // _DAYS_PER_4_YEARS
    y += 4 * n
    d -= _DAYS_PER_4_YEARS * n
    n = d // 365
    n -= n >> 2
    y += n
    d -= 365 * n
    year = y + _ABSOLUTE_ZERO_YEAR
    yday = d
    month, day = _month_day(year, yday)
    hour = (absolute % _SECONDS_PER_DAY) // 3600
    minute = (absolute % 3600) // 60
    weekday = ((absolute + _SECONDS_PER_DAY) % (7 * _SECONDS_PER_DAY)) // _SECONDS_PER_DAY
    return year, month, day, yday + 1, hour, minute, weekday


def _month_day(year: int, yday: int) -> tuple[int, int]:
    day = yday
    if _is_leap(year):
        if day > 31 + 29 - 1:
            day -= 1
        elif day == 31 + 29 - 1:
            return 2, 29
    month = day // 31
    end = _DAYS_BEFORE[month + 1]
    if day >= end:
        month += 1
        begin = end
    else:
        begin = _DAYS_BEFORE[month]
    return month + 1, day - begin + 1


def days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return _DAYS_BEFORE[month] - _DAYS_BEFORE[month - 1]
