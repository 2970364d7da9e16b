"""Go's calendar arithmetic for the date functions: every input gives what time.Unix(int64(v), 0).UTC() gives."""

from __future__ import annotations

import datetime
import math
import random

from mlinfra.promql.gotime import date_parts, days_in_month, go_int64


def test_dates_agree_with_the_proleptic_gregorian_calendar() -> None:
    rng = random.Random(1)
    for _ in range(20_000):
        s = rng.randint(-62_135_596_800 + 86_400, 253_402_300_799 - 86_400)
        d = datetime.datetime.fromtimestamp(s, datetime.UTC)
        weekday = (d.weekday() + 1) % 7  # Go: Sunday is 0
        assert date_parts(s) == (d.year, d.month, d.day, d.timetuple().tm_yday, d.hour, d.minute, weekday)


def test_leap_days_fractions_and_times_before_1970() -> None:
    assert date_parts(951_782_400.0)[:4] == (2000, 2, 29, 60)
    assert date_parts(-0.5) == date_parts(0.0)  # int64() truncates toward zero
    assert date_parts(-1.0)[:2] == (1969, 12)
    assert days_in_month(2000, 2) == 29
    assert days_in_month(1900, 2) == 28
    assert days_in_month(2023, 4) == 30


def test_nan_and_out_of_range_values_become_go_s_smallest_int64() -> None:
    assert go_int64(math.nan) == go_int64(math.inf) == go_int64(1e300) == -(2**63)
    # Go wraps around in its int64/uint64 arithmetic (tests/rules/test_differential.py compares
    # minute(epoch) and the others, NaN included, with Prometheus).
    assert date_parts(math.nan) == date_parts(-(2.0**63))
