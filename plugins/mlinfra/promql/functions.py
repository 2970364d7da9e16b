"""PromQL's range-vector functions over one series' samples (promql/functions.go of Prometheus 2.42).

Each takes the time-ordered ``(ts ms, value)`` points inside the window, the
window's bounds and its length, and returns the value or None (no output)::

    RANGE_FUNCTIONS["rate"]([(0, 0.0), (60_000, 60.0)], -240_000, 60_000, 300_000)   # 1.0 per second
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mlinfra.promql.storage import Points

__all__ = ["RANGE_FUNCTIONS", "RangeFn"]

RangeFn = Callable[[Points, int, int, int], float | None]


def _extrapolated_rate(is_counter: bool, is_rate: bool) -> RangeFn:
    """Prometheus's ``extrapolatedRate`` (promql/functions.go) for rate, increase and delta."""

    def fn(pts: Points, range_start: int, range_end: int, range_ms: int) -> float | None:
        n = len(pts)
        if n < 2:
            return None
        first_t, first_v = pts[0]
        last_t, last_v = pts[-1]
        result = last_v - first_v
        if is_counter:
            prev = first_v
            for i in range(1, n):
                v = pts[i][1]
                if v < prev:
                    result += prev
                prev = v
        duration_to_start = (first_t - range_start) / 1000
        duration_to_end = (range_end - last_t) / 1000
        sampled = (last_t - first_t) / 1000
        average = sampled / (n - 1)
        if is_counter and result > 0 and first_v >= 0:
            duration_to_zero = sampled * (first_v / result)
            if duration_to_zero < duration_to_start:
                duration_to_start = duration_to_zero
        threshold = average * 1.1
        extrapolate_to = sampled
        extrapolate_to += duration_to_start if duration_to_start < threshold else average / 2
        extrapolate_to += duration_to_end if duration_to_end < threshold else average / 2
        factor = extrapolate_to / sampled
        if is_rate:
            factor /= range_ms / 1000
        return result * factor

    return fn


def _irate(pts: Points, range_start: int, range_end: int, range_ms: int) -> float | None:
    if len(pts) < 2:
        return None
    prev_t, prev_v = pts[-2]
    last_t, last_v = pts[-1]
    result = last_v if last_v < prev_v else last_v - prev_v
    interval = last_t - prev_t
    if interval == 0:
        return None
    return result / (interval / 1000)


def _avg_over_time(pts: Points, *_: int) -> float:
    mean = 0.0
    count = 0.0
    for _t, v in pts:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean += v / count - mean / count
    return mean


def _min_over_time(pts: Points, *_: int) -> float:
    best = pts[0][1]
    for _t, v in pts:
        if v < best or math.isnan(best):
            best = v
    return best


def _max_over_time(pts: Points, *_: int) -> float:
    best = pts[0][1]
    for _t, v in pts:
        if v > best or math.isnan(best):
            best = v
    return best


def _sum_over_time(pts: Points, *_: int) -> float:
    total = 0.0
    for _t, v in pts:
        total += v
    return total


def _count_over_time(pts: Points, *_: int) -> float:
    return float(len(pts))


RANGE_FUNCTIONS: dict[str, RangeFn] = {
    "rate": _extrapolated_rate(is_counter=True, is_rate=True),
    "increase": _extrapolated_rate(is_counter=True, is_rate=False),
    "delta": _extrapolated_rate(is_counter=False, is_rate=False),
    "irate": _irate,
    "avg_over_time": _avg_over_time,
    "min_over_time": _min_over_time,
    "max_over_time": _max_over_time,
    "sum_over_time": _sum_over_time,
    "count_over_time": _count_over_time,
}
