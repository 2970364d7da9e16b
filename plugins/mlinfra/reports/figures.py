"""The arithmetic of a report: counter increases, histogram quantiles, percentiles, gaps.

Pure functions over plain lists of ``(timestamp seconds, value)`` points, so each
figure can be checked against a hand-computed value::

    >>> counter_deltas([(0, 10.0), (300, 25.0), (600, 4.0)])   # a reset before t=600
    [(300, 15.0), (600, 4.0)]
    >>> histogram_quantile(0.5, {100.0: 0.0, 200.0: 10.0, math.inf: 10.0})
    150.0
    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    >>> missing_ranges(0, 1500, 300, [0, 300, 1200])
    [(600, 1200, 2)]

NaN stands for "no value" everywhere (the store keeps NaN as NULL): it is left
out of every statistic rather than turned into a zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from mlinfra.promql.quantile import bucket_quantile

Point = tuple[float, float]


def finite(values: Iterable[float]) -> list[float]:
    """The values that are numbers (NaN and infinities left out)."""
    return [v for v in values if math.isfinite(v)]


def counter_deltas(points: Sequence[Point], *, baseline: Point | None = None) -> list[Point]:
    """Increase of a counter between consecutive samples, stamped with the later sample's time.

    A value lower than the one before is a counter reset (the process restarted):
    the new value is all that was counted since, as Prometheus's ``increase()``
    treats it. ``baseline`` is the sample just before the window; without it the
    first sample in the window only serves as the starting point. NaN samples are
    skipped.
    """
    out: list[Point] = []
    prev = baseline[1] if baseline is not None and math.isfinite(baseline[1]) else None
    for t, v in points:
        if not math.isfinite(v):
            continue
        if prev is not None:
            out.append((t, v - prev if v >= prev else v))
        prev = v
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's ``histogram_quantile(q, ...)`` over cumulative bucket counts ``{le: count}``."""
    return bucket_quantile(q, buckets.items())


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between order statistics.

    NumPy's default (Hyndman and Fan type 7); NaN when there are no values.
    """
    xs = sorted(finite(values))
    if not xs:
        return math.nan
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    xs = finite(values)
    return math.fsum(xs) / len(xs) if xs else math.nan


def maximum(values: Sequence[float]) -> float:
    xs = finite(values)
    return max(xs) if xs else math.nan


def minimum(values: Sequence[float]) -> float:
    xs = finite(values)
    return min(xs) if xs else math.nan


def expected_slots(start: float, end: float, step: float) -> list[float]:
    """Sweep times a complete interval has: ``start``, ``start + step``, ... before ``end``."""
    n = math.ceil((end - start) / step - 1e-9)
    return [start + k * step for k in range(max(n, 0))]


def missing_ranges(
    start: float, end: float, step: float, found: Iterable[float]
) -> list[tuple[float, float, int]]:
    """Runs of expected sweep slots with no sweep: ``(from, to, missing sweeps)``, ``to`` exclusive.

    A sweep counts for the slot it falls in (``[slot, slot + step)``), so a sweep
    written a little late is not reported as a gap.
    """
    have = {math.floor((t - start) / step + 1e-9) for t in found if start <= t < end}
    gaps: list[tuple[float, float, int]] = []
    run_start: int | None = None
    slots = expected_slots(start, end, step)
    for k in range(len(slots) + 1):
        missing = k < len(slots) and k not in have
        if missing and run_start is None:
            run_start = k
        elif not missing and run_start is not None:
            gaps.append((start + run_start * step, min(start + k * step, end), k - run_start))
            run_start = None
    return gaps


_QUANTITY_SUFFIXES = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
# Every form the fleet file accepts (config.K8S_QUANTITY): a report must never refuse
# a quantity the fleet let through, or metrics_report fails on a valid fleet.
_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$")


def cpu_quantity(text: str) -> float:
    """A Kubernetes quantity (``"500m"``, ``"2"``, ``"1.5"``, ``"1Ki"``, ``"1e3"``) as a number of cores."""
    m = _QUANTITY_RE.match(text.strip())
    if m is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, suffix = float(m.group(1)), m.group(2)
    if not suffix:
        return number
    if suffix.startswith("e"):
        return number * 10.0 ** int(suffix[1:])
    return number * _QUANTITY_SUFFIXES[suffix]
