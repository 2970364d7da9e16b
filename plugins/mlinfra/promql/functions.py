"""PromQL's range-vector functions over one series' samples (promql/functions.go of Prometheus 2.42).

Each takes the time-ordered ``(ts ms, value)`` points inside the window, the
window's bounds, its length and the call's other arguments (``(evaluation ms,
*scalar arguments)``), and returns the value or None (no output)::

    RANGE_FUNCTIONS["rate"]([(0, 0.0), (60_000, 60.0)], -240_000, 60_000, 300_000, (60_000,))   # 1.0/s

:data:`RANGE_PARAMS` says how many scalar arguments each takes and where they sit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mlinfra.promql.gomath import go_floor, kahan_inc
from mlinfra.promql.interface import EvalError
from mlinfra.promql.parse import Points

__all__ = ["KEEPS_NAME", "RANGE_FUNCTIONS", "RANGE_PARAMS", "RangeFn", "quantile"]

RangeFn = Callable[[Points, int, int, int, tuple[float, ...]], float | None]


def _extrapolated_rate(is_counter: bool, is_rate: bool) -> RangeFn:
    """Prometheus's ``extrapolatedRate`` (promql/functions.go) for rate, increase and delta."""

    def fn(
        pts: Points, range_start: int, range_end: int, range_ms: int, _: tuple[float, ...]
    ) -> float | None:
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


def _instant_value(is_rate: bool) -> RangeFn:
    """Prometheus's ``instantValue``: irate and idelta from the last two samples."""

    def fn(pts: Points, *_: object) -> float | None:
        if len(pts) < 2:
            return None
        prev_t, prev_v = pts[-2]
        last_t, last_v = pts[-1]
        result = last_v if is_rate and last_v < prev_v else last_v - prev_v
        interval = last_t - prev_t
        if interval == 0:
            return None
        if is_rate:
            result /= interval / 1000
        return result

    return fn


def _avg_over_time(pts: Points, *_: object) -> float:
    """The incremental mean with a Kahan-compensated sum (the Prometheus 2.42 this engine is tested
    against computes it so; the aggregation ``avg`` uses the plain incremental mean)."""
    mean = c = 0.0
    count = 0.0
    for _t, v in pts:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        inc = v / count - mean / count
        t = mean + inc  # kahan_inc, inlined: this loop runs once per sample
        if abs(mean) >= abs(inc):
            c += (mean - t) + inc
        else:
            c += (inc - t) + mean
        mean = t
    return mean if math.isinf(mean) else mean + c


def _min_over_time(pts: Points, *_: object) -> float:
    best = pts[0][1]
    for _t, v in pts:
        if v < best or math.isnan(best):
            best = v
    return best


def _max_over_time(pts: Points, *_: object) -> float:
    best = pts[0][1]
    for _t, v in pts:
        if v > best or math.isnan(best):
            best = v
    return best


def _sum_over_time(pts: Points, *_: object) -> float:
    total = c = 0.0
    for _t, v in pts:
        t = total + v  # kahan_inc, inlined: this loop runs once per sample
        if abs(total) >= abs(v):
            c += (total - t) + v
        else:
            c += (v - t) + total
        total = t
    return total if math.isinf(total) else total + c


def _count_over_time(pts: Points, *_: object) -> float:
    return float(len(pts))


def _last_over_time(pts: Points, *_: object) -> float:
    return pts[-1][1]


def _present_over_time(pts: Points, *_: object) -> float:
    return 1.0


def _variance(pts: Points) -> float:
    """Welford's variance with Kahan-compensated sums (funcStdvarOverTime)."""
    count = 0.0
    mean = c_mean = 0.0
    aux = c_aux = 0.0
    for _t, v in pts:
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _stdvar_over_time(pts: Points, *_: object) -> float:
    return _variance(pts)


def _stddev_over_time(pts: Points, *_: object) -> float:
    return math.sqrt(_variance(pts))


def quantile(q: float, values: list[float]) -> float:
    """Prometheus's ``quantile`` (quantile_over_time, the quantile aggregation): NaN sorts first."""
    if not values:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if math.isnan(q):  # the Prometheus 2.42 this engine is tested against answers NaN
        return math.nan
    ordered = sorted(values, key=lambda v: (not math.isnan(v), v))
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, go_floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - go_floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def _quantile_over_time(pts: Points, lo: int, hi: int, range_ms: int, extra: tuple[float, ...]) -> float:
    return quantile(extra[1], [v for _t, v in pts])


def _changes(pts: Points, *_: object) -> float:
    changes = 0
    prev = pts[0][1]
    for _t, current in pts[1:]:
        if current != prev and not (math.isnan(current) and math.isnan(prev)):
            changes += 1
        prev = current
    return float(changes)


def _resets(pts: Points, *_: object) -> float:
    resets = 0
    prev = pts[0][1]
    for _t, current in pts[1:]:
        if current < prev:
            resets += 1
        prev = current
    return float(resets)


def linear_regression(pts: Points, intercept_ms: int) -> tuple[float, float]:
    """Prometheus's ``linearRegression``: least squares with Kahan sums, x in seconds from ``intercept_ms``."""
    n = 0.0
    sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    init_y = pts[0][1]
    const_y = True
    for i, (t, v) in enumerate(pts):
        if const_y and i > 0 and v != init_y:
            const_y = False
        n += 1.0
        x = (t - intercept_ms) / 1e3
        sum_x, c_x = kahan_inc(x, sum_x, c_x)
        sum_y, c_y = kahan_inc(v, sum_y, c_y)
        sum_xy, c_xy = kahan_inc(x * v, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_inc(x * x, sum_x2, c_x2)
    if const_y:
        if math.isinf(init_y):
            return math.nan, math.nan
        return 0.0, init_y
    sum_x += c_x
    sum_y += c_y
    sum_xy += c_xy
    sum_x2 += c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = cov_xy / var_x if var_x != 0 else _go_div0(cov_xy)
    intercept = sum_y / n - slope * sum_x / n
    return slope, intercept


def _go_div0(a: float) -> float:
    return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)


def _deriv(pts: Points, *_: object) -> float | None:
    if len(pts) < 2:
        return None
    # Relative to the first sample's time, to keep the sums small (prometheus#2674).
    return linear_regression(pts, pts[0][0])[0]


def _predict_linear(pts: Points, lo: int, hi: int, range_ms: int, extra: tuple[float, ...]) -> float | None:
    if len(pts) < 2:
        return None
    slope, intercept = linear_regression(pts, int(extra[0]))
    return slope * extra[1] + intercept


def _holt_winters(pts: Points, lo: int, hi: int, range_ms: int, extra: tuple[float, ...]) -> float | None:
    sf, tf = extra[1], extra[2]
    if sf <= 0 or sf >= 1:
        raise EvalError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:f}")
    if tf <= 0 or tf >= 1:
        raise EvalError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf:f}")
    n = len(pts)
    if n < 2:
        return None
    s0 = 0.0
    s1 = pts[0][1]
    b = pts[1][1] - pts[0][1]
    for i in range(1, n):
        x = sf * pts[i][1]
        if i > 1:  # calcTrendValue(i-1, ...): the first trend is the initial one
            b = tf * (s1 - s0) + (1 - tf) * b
        y = (1 - sf) * (s1 + b)
        s0, s1 = s1, x + y
    return s1


RANGE_FUNCTIONS: dict[str, RangeFn] = {
    "rate": _extrapolated_rate(is_counter=True, is_rate=True),
    "increase": _extrapolated_rate(is_counter=True, is_rate=False),
    "delta": _extrapolated_rate(is_counter=False, is_rate=False),
    "irate": _instant_value(is_rate=True),
    "idelta": _instant_value(is_rate=False),
    "avg_over_time": _avg_over_time,
    "min_over_time": _min_over_time,
    "max_over_time": _max_over_time,
    "sum_over_time": _sum_over_time,
    "count_over_time": _count_over_time,
    "last_over_time": _last_over_time,
    "present_over_time": _present_over_time,
    "stddev_over_time": _stddev_over_time,
    "stdvar_over_time": _stdvar_over_time,
    "quantile_over_time": _quantile_over_time,
    "changes": _changes,
    "resets": _resets,
    "deriv": _deriv,
    "predict_linear": _predict_linear,
    "holt_winters": _holt_winters,
}
# Position of the range argument and number of scalar arguments (the others).
RANGE_PARAMS: dict[str, int] = {"quantile_over_time": 1}  # the range vector is argument 1, not 0
KEEPS_NAME = frozenset({"last_over_time"})
