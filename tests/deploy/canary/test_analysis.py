"""Measurement verdicts and run phases (Argo Rollouts' AnalysisRun semantics)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from mlinfra.deploy.canary.analysis import (
    ABORTING_PHASES,
    Measurement,
    assess,
    error,
    judge,
    phase,
    run_phase,
)
from mlinfra.deploy.canary.golden import agreement
from mlinfra.deploy.canary.spec import AnalysisMetric, GoldenCheck


def _metric(**fields: Any) -> AnalysisMetric:
    fields.setdefault("query", "up")
    return AnalysisMetric.model_validate({"name": "m", **fields})


BOTH = _metric(success="result >= 0.9", failure="result < 0.5")


@pytest.mark.parametrize(
    ("metric", "value", "verdict"),
    [
        # Both conditions: failure wins, success, neither -> inconclusive.
        (BOTH, 0.4, "failed"),
        (BOTH, 0.95, "successful"),
        (BOTH, 0.7, "inconclusive"),
        (_metric(success="result > 0", failure="result > 0.5"), 0.6, "failed"),  # both hold: failure wins
        # Only a success condition: false means failed.
        (_metric(success="result >= 0.9"), 0.95, "successful"),
        (_metric(success="result >= 0.9"), 0.7, "failed"),
        # Only a failure condition: false means successful.
        (_metric(failure="result > 0.01"), 0.002, "successful"),
        (_metric(failure="result > 0.01"), 0.05, "failed"),
        # A list result (several series) with a condition over it.
        (_metric(failure="max(result) > 0.01"), [0.001, 0.02], "failed"),
        # No number: inconclusive, never judged by conditions a NaN would make false.
        (_metric(failure="result > 0.01"), math.nan, "inconclusive"),
        (_metric(failure="len(result) > 3"), [], "inconclusive"),
        (_metric(failure="result > 0.01"), None, "inconclusive"),
    ],
)
def test_measurement_verdicts(metric: AnalysisMetric, value: Any, verdict: str) -> None:
    assert judge(metric, value, at=1.0).verdict == verdict


def test_a_condition_that_cannot_be_evaluated_is_an_error_measurement() -> None:
    m = judge(_metric(failure="result > 0.01"), [0.1, 0.2], at=5.0)
    assert m.verdict == "error"
    assert "result is a list, not a number" in m.reason
    assert m.value == [0.1, 0.2]
    assert m.at == 5.0


def test_a_baseline_comparison_adds_its_verdict_the_worst_wins() -> None:
    metric = _metric(failure="result > 0.05", compare={"max_relative_increase": 0.2})
    good = judge(metric, 0.011, stable_value=0.010, at=0)
    assert good.verdict == "successful"
    assert good.stable_value == 0.010
    assert good.detail["comparison"]["verdict"] == "successful"
    # Every fixed threshold passes, the comparison with the stable fails.
    worse = judge(metric, 0.02, stable_value=0.010, at=0)
    assert worse.verdict == "failed"
    assert "baseline:" in worse.reason
    # A two-series result cannot be compared (and `result > 0.05` cannot judge a list).
    assert judge(metric, [0.01, 0.02], stable_value=0.01, at=0).verdict == "error"
    compare_only = _metric(compare={"max_relative_increase": 0.2})
    missing = judge(compare_only, [0.01, 0.02], stable_value=0.01, at=0)
    assert missing.verdict == "inconclusive"
    assert "compare needs one number per track" in missing.reason
    assert judge(compare_only, 0.01, stable_value=None, at=0).verdict == "inconclusive"
    one_series = judge(metric, [0.011], stable_value=0.010, at=0)
    assert one_series.verdict == "successful"
    assert one_series.value == 0.011


def test_a_latency_probe_is_judged_by_its_samples() -> None:
    rng = random.Random(1)
    metric = AnalysisMetric.model_validate(
        {
            "name": "lat",
            "latency": {"requests": 60},
            "compare": {"max_relative_increase": 0.2, "min_samples": 50},
        }
    )
    stable = [rng.lognormvariate(math.log(0.01), 0.2) for _ in range(60)]
    slow = [1.3 * rng.lognormvariate(math.log(0.01), 0.2) for _ in range(60)]
    m = judge(metric, None, samples=(slow, stable), at=0)
    assert m.verdict == "failed"
    assert isinstance(m.value, float)
    assert m.stable_value is not None
    assert m.value > m.stable_value
    assert judge(metric, None, samples=(slow[:10], stable), at=0).verdict == "inconclusive"


def test_a_golden_measurement_carries_its_report() -> None:
    metric = AnalysisMetric.model_validate({"name": "g", "golden": {"min_agreement": 1.0}})
    report = agreement(
        {"a": {"y": [1.0]}, "b": {"y": [2.0]}}, {"a": {"y": [1.0]}, "b": {"y": [9.0]}}, check=GoldenCheck()
    )
    m = judge(metric, None, golden=report, at=0)
    assert m.verdict == "failed"
    assert m.value == 0.5
    assert m.detail["golden"]["agreement_rate"] == 0.5
    # Conditions on a golden metric judge the agreement rate as well.
    strict = AnalysisMetric.model_validate(
        {"name": "g", "golden": {"min_agreement": 0.5}, "success": "result >= 0.9"}
    )
    assert judge(strict, None, golden=report, at=0).verdict == "failed"
    lenient = AnalysisMetric.model_validate({"name": "g", "golden": {"min_agreement": 0.5}})
    assert judge(lenient, None, golden=report, at=0).verdict == "successful"


def test_measurements_round_trip_through_json_with_finite_floats_only() -> None:
    metric = _metric(failure="max(result) > 0.01", compare={"max_relative_increase": 0.2})
    m = judge(metric, [0.001], stable_value=0.0, at=1700000000.5)
    text = json.dumps(m.to_json(), allow_nan=False)
    back = Measurement.from_json(json.loads(text))
    assert back == Measurement.from_json(m.to_json())
    assert back.verdict == m.verdict == "failed"
    assert back.value == 0.001
    assert back.at == 1700000000.5
    several = judge(metric, [0.001, math.inf], stable_value=0.0, at=0)
    assert json.loads(json.dumps(several.to_json(), allow_nan=False))["value"] == [0.001, None]
    nan = judge(_metric(failure="result > 1"), math.nan, at=0)
    assert json.loads(json.dumps(nan.to_json(), allow_nan=False))["value"] is None
    with pytest.raises(ValueError, match="verdict is one of"):
        Measurement.from_json({**m.to_json(), "verdict": "great"})


def _series(metric: AnalysisMetric, verdicts: str) -> list[Measurement]:
    """Measurements from a string of verdict letters: s, f, i, e."""
    names = {"s": "successful", "f": "failed", "i": "inconclusive", "e": "error"}
    return [Measurement(metric.name, names[v], None, at=float(t)) for t, v in enumerate(verdicts)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "verdicts", "expected"),
    [
        ({"count": 3}, "", "running"),
        ({"count": 3}, "ss", "running"),
        ({"count": 3}, "sss", "successful"),
        ({"count": 3}, "sf", "failed"),  # failure_limit 0: the first failure ends it
        ({"count": 3, "failure_limit": 1}, "sfs", "successful"),
        ({"count": 5, "failure_limit": 1}, "sfsf", "failed"),  # failed (2) > failure_limit (1)
        ({"count": 3}, "si", "inconclusive"),
        ({"count": 3, "inconclusive_limit": 1}, "sis", "successful"),
        ({"count": 2}, "eeee", "running"),  # 4 consecutive errors: not more than the limit
        ({"count": 2}, "eeeee", "error"),  # 5 > consecutive_error_limit (4)
        ({"count": 2, "consecutive_error_limit": 0}, "e", "error"),
        ({"count": 3}, "eeeeseeees", "running"),  # errors reset by a measurement; not counted
        ({"count": 3}, "eeeeseeeess", "successful"),
        ({"count": 1}, "fs", "failed"),  # the first limit reached ends the run
    ],
)
def test_run_phases(fields: dict[str, Any], verdicts: str, expected: str) -> None:
    metric = _metric(failure="result > 1", **fields)
    assert phase(metric, _series(metric, verdicts)) == expected


def test_assess_counts_and_says_why() -> None:
    metric = _metric(failure="result > 1", count=5, failure_limit=1)
    run = assess(metric, _series(metric, "sefsf"))
    assert (run.phase, run.taken, run.successful, run.failed, run.errors) == ("failed", 4, 2, 2, 1)
    assert run.message == "failed (2) > failure_limit (1)"
    assert run.done
    errors = assess(metric, [error(metric, "query failed: connection refused", at=t) for t in range(5)])
    assert errors.phase == "error"
    assert errors.message == "consecutive errors (5) > consecutive_error_limit (4)"


def test_template_phase_is_running_until_every_metric_ends_then_the_worst() -> None:
    assert run_phase(["successful", "running"]) == "running"
    assert run_phase([]) == "running"
    assert run_phase(["successful", "inconclusive"]) == "inconclusive"
    assert run_phase(["inconclusive", "error", "successful"]) == "error"
    assert run_phase(["error", "failed"]) == "failed"
    assert run_phase(["successful", "successful"]) == "successful"
    assert set(ABORTING_PHASES) == {"failed", "error"}
