"""The report's arithmetic against hand-computed values and NumPy."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest

from mlinfra.reports.figures import (
    counter_deltas,
    cpu_quantity,
    expected_slots,
    histogram_quantile,
    mean,
    missing_ranges,
    percentile,
)

INF = math.inf


def test_counter_deltas_handle_resets_baseline_and_nan() -> None:
    pts = [(300.0, 110.0), (600.0, 130.0), (900.0, math.nan), (1200.0, 5.0), (1500.0, 9.0)]
    assert counter_deltas(pts, baseline=(0.0, 100.0)) == [
        (300.0, 10.0),
        (600.0, 20.0),
        (1200.0, 5.0),
        (1500.0, 4.0),
    ]
    # Without a baseline the first sample is only the starting point.
    assert counter_deltas(pts) == [(600.0, 20.0), (1200.0, 5.0), (1500.0, 4.0)]
    assert counter_deltas([], baseline=(0.0, 1.0)) == []
    assert counter_deltas([(1.0, 3.0)], baseline=(0.0, math.nan)) == []


@pytest.mark.parametrize(
    ("q", "buckets", "want"),
    [
        (0.5, {100.0: 0.0, 200.0: 10.0, INF: 10.0}, 150.0),  # inside the second bucket
        (0.25, {100.0: 10.0, 200.0: 20.0, INF: 20.0}, 50.0),  # first bucket starts at 0
        (0.99, {100.0: 10.0, 200.0: 10.0, INF: 20.0}, 200.0),  # rank in +Inf: highest finite bound
        (0.5, {-10.0: 5.0, 0.0: 8.0, INF: 10.0}, -10.0),  # first bucket with a bound <= 0
        (0.5, {100.0: 6.0, 200.0: 4.0, INF: 10.0}, 100.0 * 5 / 6),  # non-monotonic counts are fixed
        (0.5, {100.0: 0.0, INF: 0.0}, math.nan),  # no observations
        (0.5, {100.0: 3.0, 200.0: 4.0}, math.nan),  # no +Inf bucket
        (-0.1, {100.0: 1.0, INF: 1.0}, -INF),
        (1.1, {100.0: 1.0, INF: 1.0}, INF),
    ],
)
def test_histogram_quantile_follows_prometheus(q: float, buckets: dict[float, float], want: float) -> None:
    got = histogram_quantile(q, buckets)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want)


def test_histogram_quantile_of_uniform_data_approaches_the_true_quantile() -> None:
    rnd = random.Random(3)
    xs = [rnd.uniform(0, 1000) for _ in range(20000)]
    bounds = [*range(50, 1001, 50), INF]
    buckets = {float(b): float(sum(1 for x in xs if x <= b)) for b in bounds}
    for q in (0.5, 0.9, 0.99):
        assert histogram_quantile(q, buckets) == pytest.approx(float(np.quantile(xs, q)), abs=15)


@pytest.mark.parametrize("n", [1, 2, 5, 288])
def test_percentile_matches_numpy(n: int) -> None:
    rnd = random.Random(n)
    xs = [rnd.uniform(0, 100) for _ in range(n)]
    for q in (0.0, 0.5, 0.95, 1.0):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q * 100)))


def test_statistics_leave_nan_out() -> None:
    assert percentile([1.0, math.nan, 3.0], 0.5) == 2.0
    assert mean([math.nan, 2.0, 4.0]) == 3.0
    assert math.isnan(mean([math.nan]))
    assert math.isnan(percentile([], 0.5))


def test_gaps_are_named_as_ranges() -> None:
    assert expected_slots(0, 1500, 300) == [0, 300, 600, 900, 1200]
    assert missing_ranges(0, 1500, 300, [0, 300, 1200]) == [(600, 1200, 2)]
    assert missing_ranges(0, 1500, 300, []) == [(0, 1500, 5)]
    assert missing_ranges(0, 1500, 300, [0, 300, 600, 900, 1200]) == []
    # A sweep written a little late still fills its slot; one outside the interval does not.
    assert missing_ranges(0, 900, 300, [1.5, 310, 2000]) == [(600, 900, 1)]


@pytest.mark.parametrize(
    ("text", "cores"), [("1", 1.0), ("500m", 0.5), ("1.5", 1.5), ("4", 4.0), ("250m", 0.25)]
)
def test_cpu_quantity(text: str, cores: float) -> None:
    assert cpu_quantity(text) == cores


@pytest.mark.parametrize(
    ("text", "cores"),
    [("1Ki", 1024.0), ("2T", 2e12), ("1.5Mi", 1.5 * 2**20), ("1e3", 1000.0), ("2e0", 2.0), ("3P", 3e15)],
)
def test_cpu_quantity_takes_every_form_the_fleet_accepts(text: str, cores: float) -> None:
    from mlinfra.config import K8S_QUANTITY

    assert re.match(K8S_QUANTITY, text)
    assert cpu_quantity(text) == pytest.approx(cores)


def test_cpu_quantity_refuses_what_is_not_a_quantity() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity: '1x'"):
        cpu_quantity("1x")
