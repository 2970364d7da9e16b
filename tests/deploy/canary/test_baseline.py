"""Baseline comparison: canary against stable, by value and by samples (SciPy's Mann-Whitney U)."""

from __future__ import annotations

import json
import math
import random

import pytest

from mlinfra.deploy.canary.baseline import compare_samples, compare_values
from mlinfra.deploy.canary.spec import BaselineCompare

SPEC = BaselineCompare(max_relative_increase=0.2, min_samples=50)


def _latencies(rng: random.Random, n: int, scale: float) -> list[float]:
    # Log-normal request latencies around 10 ms, the shape real services show.
    return [scale * rng.lognormvariate(math.log(0.010), 0.25) for _ in range(n)]


def test_a_canary_30_percent_slower_fails() -> None:
    rng = random.Random(7)
    result = compare_samples(_latencies(rng, 60, 1.3), _latencies(rng, 60, 1.0), SPEC)
    assert result.verdict == "failed"
    assert result.relative_increase is not None
    assert result.relative_increase > 0.2
    assert result.p_value is not None
    assert result.p_value < 0.05
    assert result.n_canary == result.n_stable == 60
    assert "Mann-Whitney" in result.reason


def test_identical_distributions_succeed() -> None:
    rng = random.Random(11)
    result = compare_samples(_latencies(rng, 60, 1.0), _latencies(rng, 60, 1.0), SPEC)
    assert result.verdict == "successful"
    assert result.relative_increase is not None
    assert abs(result.relative_increase) < 0.2


def test_the_same_samples_succeed_with_no_difference() -> None:
    samples = _latencies(random.Random(3), 60, 1.0)
    result = compare_samples(samples, samples, SPEC)
    assert result.verdict == "successful"
    assert result.relative_increase == 0.0
    assert result.p_value is not None
    assert result.p_value > 0.4


def test_too_few_samples_are_inconclusive_never_successful() -> None:
    rng = random.Random(5)
    result = compare_samples(_latencies(rng, 49, 1.0), _latencies(rng, 60, 1.0), SPEC)
    assert result.verdict == "inconclusive"
    assert "too few samples to judge: canary 49, stable 60 (min_samples 50)" in result.reason
    # Non-finite samples (a failed request's latency) do not count as samples.
    padded = [*_latencies(rng, 45, 1.0), *[math.nan] * 10]
    assert compare_samples(padded, _latencies(rng, 60, 1.0), SPEC).verdict == "inconclusive"


def test_a_large_but_not_significant_difference_passes_the_rank_test() -> None:
    # Two tiny, overlapping samples: the median differs by > 20 % but the test cannot tell.
    spec = BaselineCompare(max_relative_increase=0.2, min_samples=3)
    result = compare_samples([1.0, 5.0, 1.3], [1.0, 5.0, 0.9], spec)
    assert result.relative_increase is not None
    assert result.relative_increase > 0.2
    assert result.verdict == "successful"
    without_test = compare_samples([1.0, 5.0, 1.3], [1.0, 5.0, 0.9], spec.model_copy(update={"test": "none"}))
    assert without_test.verdict == "failed"
    assert without_test.p_value is None


def test_higher_is_better_fails_a_lower_canary_and_passes_a_higher_one() -> None:
    spec = BaselineCompare(max_relative_increase=0.1, direction="higher_is_better", min_samples=50)
    rng = random.Random(13)
    throughput = [rng.gauss(100, 5) for _ in range(60)]
    lower = [rng.gauss(70, 5) for _ in range(60)]
    higher = [rng.gauss(130, 5) for _ in range(60)]
    assert compare_samples(lower, throughput, spec).verdict == "failed"
    assert compare_samples(higher, throughput, spec).verdict == "successful"
    assert compare_values(0.80, 1.0, spec).verdict == "failed"
    assert compare_values(0.95, 1.0, spec).verdict == "successful"
    assert compare_values(1.50, 1.0, spec).verdict == "successful"


def test_compare_values() -> None:
    assert compare_values(0.013, 0.010, SPEC).verdict == "failed"
    ok = compare_values(0.011, 0.010, SPEC)
    assert ok.verdict == "successful"
    assert ok.relative_increase == pytest.approx(0.1)
    assert compare_values(0.005, 0.010, SPEC).relative_increase == pytest.approx(-0.5)
    assert compare_values(0.0, 0.0, SPEC).verdict == "successful"


def test_a_stable_at_zero_fails_any_increase_and_json_stays_finite() -> None:
    result = compare_values(0.001, 0.0, SPEC)
    assert result.verdict == "failed"
    assert "infinitely worse" in result.reason
    assert result.relative_increase is None  # infinite: not JSON
    json.dumps(result.to_json(), allow_nan=False)


def test_no_number_on_a_track_is_inconclusive() -> None:
    result = compare_values(math.nan, 0.01, SPEC)
    assert result.verdict == "inconclusive"
    assert "no number to compare" in result.reason
    assert json.loads(json.dumps(result.to_json(), allow_nan=False))["canary"] is None
