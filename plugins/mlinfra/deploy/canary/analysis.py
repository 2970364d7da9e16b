"""Analysis verdicts: one measurement (:func:`judge`) and a metric's run over its measurements (:func:`assess`).

Argo Rollouts' documented AnalysisRun semantics
(argoproj.github.io/argo-rollouts/features/analysis/, and its evaluator
``utils/evaluate.EvaluateResult`` / ``analysis.assessMetricStatus``):

* a measurement is **failed** when the failure condition holds (it wins over a success
  condition that holds too), **successful** when the success condition holds, and
  **inconclusive** when both are given and neither holds; with only a success condition,
  false means failed; with only a failure condition, false means successful;
* a measurement that could not be taken (the query failed, no pod answered) is an
  **error**;
* a metric's run is **failed** once failed measurements > ``failure_limit``,
  **inconclusive** once inconclusive ones > ``inconclusive_limit``, **error** once
  consecutive errors > ``consecutive_error_limit`` (default 4, Argo's), and
  **successful** once ``count`` measurements were taken without reaching any of these.

Where mlinfra departs from Argo, on purpose and on the safe side:

* a query with no number (an empty vector, NaN from ``0/0`` when a track has no
  traffic) is **inconclusive** without evaluating the conditions: a NaN makes every
  comparison false, so ``failure: result > 0.01`` would pass a canary nobody called;
* errors do not count towards ``count``: a run is successful only on measurements
  actually taken;
* a baseline comparison (``compare``) and a golden agreement each give a verdict of
  their own; the measurement's verdict is the worst of those and the conditions'
  (failed > inconclusive > successful);
* where one measurement exceeds several limits at once, the worst phase wins, in the
  order Argo uses to combine metrics (failed > error > inconclusive).

>>> from mlinfra.deploy.canary.spec import AnalysisMetric
>>> metric = AnalysisMetric(name="errors", query="x", failure="result > 0.01", count=2)
>>> judge(metric, 0.002, at=0).verdict, judge(metric, 0.05, at=0).verdict
('successful', 'failed')
>>> assess(metric, [judge(metric, 0.002, at=0)]).phase
'running'
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mlinfra.deploy.canary.baseline import Comparison, compare_samples, compare_values
from mlinfra.deploy.canary.conditions import Result, is_number_result
from mlinfra.deploy.canary.golden import GoldenReport
from mlinfra.deploy.canary.spec import AnalysisMetric
from mlinfra.exceptions import ConditionError

Verdict = Literal["successful", "failed", "inconclusive", "error"]
VERDICTS: tuple[Verdict, ...] = ("successful", "failed", "inconclusive", "error")
Phase = Literal["running", "successful", "failed", "inconclusive", "error"]
# Phases that end the canary: the rollout aborts (Argo aborts on Failed and on Error).
ABORTING_PHASES: tuple[Phase, ...] = ("failed", "error")
# Argo's order of badness, used to combine verdicts and the phases of several metrics.
_RANK = {"successful": 0, "running": 1, "inconclusive": 2, "error": 3, "failed": 4}


@dataclass(frozen=True)
class Measurement:
    """One measurement of one metric: its verdict, the canary's value, the stable's, why.

    ``value`` is the ``result`` the conditions saw: a number, a list of numbers, or None
    (an error); ``detail`` holds the reason and, where there is one, the comparison or
    the golden report (all JSON-safe). ``at`` is a Unix timestamp.
    """

    metric: str
    verdict: Verdict
    value: float | list[float | None] | None
    stable_value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0

    @property
    def reason(self) -> str:
        return str(self.detail.get("reason", ""))

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (floats finite or None): for XCom and the measurements table."""
        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "value": _safe(self.value),
            "stable_value": _safe(self.stable_value),
            "detail": _safe(self.detail),
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        verdict = data["verdict"]
        if verdict not in VERDICTS:
            raise ValueError(f"a measurement's verdict is one of {', '.join(VERDICTS)}, got {verdict!r}")
        value = data.get("value")
        return cls(
            metric=str(data["metric"]),
            verdict=verdict,
            value=list(value) if isinstance(value, list) else value,
            stable_value=data.get("stable_value"),
            detail=dict(data.get("detail") or {}),
            at=float(data.get("at") or 0.0),
        )


def _safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def error(metric: AnalysisMetric, message: str, *, at: float | None = None) -> Measurement:
    """A measurement that could not be taken (query failed, no pod answered): verdict ``error``."""
    return Measurement(metric.name, "error", None, None, {"reason": message}, _now(at))


def _now(at: float | None) -> float:
    return time.time() if at is None else float(at)


def judge(
    metric: AnalysisMetric,
    value: Result | None,
    stable_value: float | None = None,
    samples: tuple[Sequence[float], Sequence[float]] | None = None,
    *,
    golden: GoldenReport | None = None,
    at: float | None = None,
) -> Measurement:
    """The verdict of one measurement of ``metric`` (see the module docstring for the rules).

    ``value`` is the canary's ``result`` (a one-element list, a query's single series, is
    taken as its number; an empty or longer list stays a list); ``stable_value`` the stable's (needed by a
    ``compare`` on a query); ``samples`` the (canary, stable) samples of a latency probe
    (``value`` may then be None: the canary's median is used); ``golden`` the agreement
    report of a golden metric (``value`` defaults to its agreement rate).
    """
    if isinstance(value, list | tuple) and len(value) == 1:
        value = float(value[0])  # one series: ``result`` is its number, as ``result < 0.01`` expects
    if golden is not None and metric.golden is not None:
        # The metric's threshold is the one that counts, whatever check built the report.
        golden = replace(golden, min_agreement=metric.golden.min_agreement)
    if golden is not None and value is None:
        value = golden.agreement_rate
    if samples is not None and value is None:
        finite = [v for v in samples[0] if math.isfinite(v)]
        value = statistics.median(finite) if finite else math.nan
    if samples is not None and stable_value is None:
        finite = [v for v in samples[1] if math.isfinite(v)]
        stable_value = statistics.median(finite) if finite else None
    detail: dict[str, Any] = {}
    verdicts: list[Verdict] = []
    reasons: list[str] = []
    if golden is not None:
        detail["golden"] = golden.to_json()
        verdicts.append(golden.verdict)
        reasons.append(f"golden: {golden.summary}")
    if metric.compare is not None:
        comparison = _compare(metric, value, stable_value, samples)
        detail["comparison"] = comparison.to_json()
        verdicts.append(comparison.verdict)
        reasons.append(f"baseline: {comparison.reason}")
    try:
        verdict, why = _conditions(metric, value)
    except ConditionError as e:
        return Measurement(
            metric.name, "error", _as_value(value), stable_value, {**detail, "reason": str(e)}, _now(at)
        )
    if why:
        verdicts.append(verdict)
        reasons.append(why)
    final = max(verdicts, key=_RANK.__getitem__) if verdicts else "successful"
    detail["reason"] = "; ".join(reasons)
    return Measurement(metric.name, final, _as_value(value), stable_value, detail, _now(at))


def _as_value(value: Result | None) -> float | list[float | None] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [float(v) for v in value]
    return float(value)


def _compare(
    metric: AnalysisMetric,
    value: Result | None,
    stable_value: float | None,
    samples: tuple[Sequence[float], Sequence[float]] | None,
) -> Comparison:
    spec = metric.compare
    if spec is None:
        raise ValueError(f"metric {metric.name!r} has no compare")
    if samples is not None:
        return compare_samples(samples[0], samples[1], spec)
    canary = _single(value)
    if canary is None or stable_value is None:
        return Comparison(
            "inconclusive", canary, stable_value, None,
            f"compare needs one number per track, got canary {value!r}, stable {stable_value!r}",
        )  # fmt: skip
    return compare_values(canary, stable_value, spec)


def _single(value: Result | None) -> float | None:
    """A scalar, or the only element of a one-series result."""
    if isinstance(value, list | tuple):
        return float(value[0]) if len(value) == 1 else None
    return None if value is None else float(value)


def _conditions(metric: AnalysisMetric, value: Result | None) -> tuple[Verdict, str]:
    """The success/failure conditions' verdict and why ('' when the metric has no condition)."""
    success, failure = metric.success_condition, metric.failure_condition
    if success is None and failure is None:
        return "successful", ""
    if value is None or not is_number_result(value if not isinstance(value, tuple) else list(value)):
        return "inconclusive", f"no number to judge (result {value!r}): no traffic on the canary?"
    if isinstance(value, list) and not value:
        return "inconclusive", "the query returned no series: no traffic on the canary?"
    failed = failure.holds(value) if failure is not None else False
    succeeded = success.holds(value) if success is not None else False
    if failure is not None and failed:
        return "failed", f"failure condition {failure.text!r} holds for result {value!r}"
    if success is not None and succeeded:
        return "successful", f"success condition {success.text!r} holds for result {value!r}"
    if success is not None and failure is None:
        return "failed", f"success condition {success.text!r} does not hold for result {value!r}"
    if success is None and failure is not None:
        return "successful", f"failure condition {failure.text!r} does not hold for result {value!r}"
    texts = " nor ".join(repr(c.text) for c in (success, failure) if c is not None)
    return "inconclusive", f"neither {texts} holds for result {value!r}"


@dataclass(frozen=True)
class MetricRun:
    """Where a metric's run stands after its measurements so far."""

    metric: str
    phase: Phase
    taken: int
    successful: int
    failed: int
    inconclusive: int
    errors: int
    consecutive_errors: int
    message: str

    @property
    def done(self) -> bool:
        return self.phase != "running"


def assess(metric: AnalysisMetric, measurements: Iterable[Measurement]) -> MetricRun:
    """The run's phase, walking the measurements in order: the first limit reached ends it."""
    counts = {"successful": 0, "failed": 0, "inconclusive": 0, "error": 0}
    consecutive = 0
    for m in measurements:
        counts[m.verdict] += 1
        consecutive = consecutive + 1 if m.verdict == "error" else 0
        taken = counts["successful"] + counts["failed"] + counts["inconclusive"]
        ended = _limit_reached(metric, counts, consecutive)
        if ended is None and taken >= metric.count:
            ended = ("successful", f"{taken} of {metric.count} measurements taken within the limits")
        if ended is not None:
            return _run(metric, ended[0], counts, consecutive, ended[1])
    return _run(metric, "running", counts, consecutive, "")


def _limit_reached(
    metric: AnalysisMetric, counts: dict[str, int], consecutive: int
) -> tuple[Phase, str] | None:
    # Checked worst first: where one measurement exceeds two limits, the worse phase wins.
    if counts["failed"] > metric.failure_limit:
        return "failed", f"failed ({counts['failed']}) > failure_limit ({metric.failure_limit})"
    if consecutive > metric.consecutive_error_limit:
        return (
            "error",
            f"consecutive errors ({consecutive}) > consecutive_error_limit ({metric.consecutive_error_limit})",
        )
    if counts["inconclusive"] > metric.inconclusive_limit:
        return "inconclusive", (
            f"inconclusive ({counts['inconclusive']}) > inconclusive_limit ({metric.inconclusive_limit})"
        )
    return None


def _run(
    metric: AnalysisMetric, phase: Phase, counts: dict[str, int], consecutive: int, message: str
) -> MetricRun:
    taken = counts["successful"] + counts["failed"] + counts["inconclusive"]
    return MetricRun(
        metric.name, phase, taken, counts["successful"], counts["failed"], counts["inconclusive"],
        counts["error"], consecutive, message,
    )  # fmt: skip


def phase(metric: AnalysisMetric, measurements: Iterable[Measurement]) -> Phase:
    """The phase of one metric's run: ``running`` until a limit or ``count`` is reached."""
    return assess(metric, measurements).phase


def run_phase(phases: Iterable[Phase]) -> Phase:
    """A template's phase from its metrics' phases: running while any runs, then the worst (Argo's rule)."""
    seen = list(phases)
    if not seen or "running" in seen:
        return "running"
    return max(seen, key=_RANK.__getitem__)
