"""Prometheus's ``histogram_quantile`` over cumulative bucket counts, shared by the
local rule engine and the daily reports (so both compute latency percentiles alike).

>>> bucket_quantile(0.5, [(100.0, 0.0), (200.0, 10.0), (float("inf"), 10.0)])
150.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus 2.42's ``bucketQuantile`` (promql/quantile.go) over ``(le, count)`` pairs.

    Linear interpolation inside the bucket that holds the rank; the first bucket's lower
    bound is 0 (when its upper bound is positive); a rank in the ``+Inf`` bucket gives the
    highest finite bound; duplicate bounds (``le="1"`` and ``le="1.0"``) are coalesced and
    counts made monotonic first; no observations or no ``+Inf`` bucket gives NaN.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: list[list[float]] = []
    for upper, count in sorted(buckets, key=lambda b: b[0]):
        if merged and merged[-1][0] == upper:
            merged[-1][1] += count
        else:
            merged.append([upper, count])
    if not merged or not (math.isinf(merged[-1][0]) and merged[-1][0] > 0) or len(merged) < 2:
        return math.nan
    # Monotonicity fix: a bucket count lower than a previous one is raised to it.
    highest = -math.inf
    for b in merged:
        if b[1] > highest:
            highest = b[1]
        elif b[1] < highest:
            b[1] = highest
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # sort.Search over all but the +Inf bucket: the first bucket whose count >= rank.
    k = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if k == len(merged) - 1:
        return merged[-2][0]
    if k == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[k][0], merged[k][1]
    if k > 0:
        start = merged[k - 1][0]
        count -= merged[k - 1][1]
        rank -= merged[k - 1][1]
    if count == 0:  # Go's float division: 0/0 is NaN, x/0 is +Inf
        return math.nan if rank == 0 else start + (end - start) * math.inf
    return start + (end - start) * (rank / count)
