"""The canary's step machine: from the persisted position, what to do next (pure, no I/O).

A model's steps (``deploy.steps`` of the fleet file) are walked in order; each
``pause: approval`` splits them into *segments*, one Airflow task each, with an
approval gate between (the ``model_deploy`` DAG has :data:`MAX_APPROVAL_GATES` gates, so
segments 0..3)::

    >>> steps = parse_steps([{"weight": 20}, {"analysis": "errors"}, {"pause": "approval"},
    ...                      {"weight": 50}, {"pause": "30s"}])
    >>> segment_bounds(steps)
    [(0, 2), (3, 5)]
    >>> state = CanaryState(step=0, stable_replicas=4)
    >>> next_action(steps, state, segment=0, now=0.0)
    ScaleCanary(step=0, weight=20, replicas=1)
    >>> next_action(steps, CanaryState(step=2, stable_replicas=4), segment=0, now=0.0)
    AwaitApproval(step=2, gate=1)
    >>> next_action(steps, CanaryState(step=2, stable_replicas=4), segment=1, now=0.0)  # the gate let it through
    Advance(step=2)
    >>> next_action(steps, CanaryState(step=4, entered=True, pause_until=30.0, stable_replicas=4), segment=1, now=10.0)
    Wait(step=4, until=30.0)
    >>> next_action(steps, CanaryState(step=5, stable_replicas=4), segment=1, now=40.0)
    Promote()

The operator (:mod:`mlinfra.operators.canary`) carries out the action, saves the new
position (:mod:`mlinfra.deploy.canary.records`) *before* it waits, and asks again, so a
retried task never sets a weight twice, never restarts a pause, and never loses a
measurement. Argo Rollouts' canary steps are the model (``setWeight``, ``pause``,
inline analysis; docs/features/canary.md); the weight is realised as replicas, as
Argo does without a traffic router.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from mlinfra.deploy.canary import MAX_APPROVAL_GATES
from mlinfra.deploy.canary.replicas import canary_replicas
from mlinfra.durations import parse_duration

StepKind = Literal["weight", "pause", "approval", "analysis"]


@dataclass(frozen=True, slots=True)
class Step:
    """One canary step, reduced to what the machine needs."""

    kind: StepKind
    weight: int | None = None
    pause_seconds: float | None = None
    analysis: str | None = None

    def describe(self) -> str:
        if self.kind == "weight":
            return f"weight {self.weight}%"
        if self.kind == "pause":
            return f"pause {self.pause_seconds:g}s"
        if self.kind == "analysis":
            return f"analysis {self.analysis}"
        return "approval"


def parse_step(raw: Any) -> Step:
    """A step from the fleet file's form (``{"weight": 20}``, ``{"pause": "30s" | "approval"}``,
    ``{"analysis": "name"}``) or from an object with those attributes (``spec.CanaryStep``)."""
    if not isinstance(raw, dict):
        # spec.CanaryStep (helper A's pydantic model): dump it to the same shape.
        dump = getattr(raw, "model_dump", None)
        raw = dump(exclude_none=True) if dump is not None else dict(vars(raw))
    present = {k: v for k, v in raw.items() if k in ("weight", "pause", "analysis") and v is not None}
    if len(present) != 1:
        raise ValueError(f"a canary step has exactly one of weight, pause, analysis; got {raw!r}")
    ((key, value),) = present.items()
    if key == "weight":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
            raise ValueError(
                f"weight must be an integer percent in 1..99 (promotion is the last step), got {value!r}"
            )
        return Step("weight", weight=value)
    if key == "analysis":
        return Step("analysis", analysis=str(value))
    if value == "approval":
        return Step("approval")
    seconds = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if seconds is None:
        seconds = parse_duration(str(value))
    if not seconds >= 0:
        raise ValueError(f"pause must be a duration >= 0 or 'approval', got {value!r}")
    return Step("pause", pause_seconds=seconds)


def parse_steps(raw: list[Any]) -> list[Step]:
    steps = [parse_step(s) for s in raw]
    gates = sum(s.kind == "approval" for s in steps)
    if gates > MAX_APPROVAL_GATES:
        raise ValueError(f"at most {MAX_APPROVAL_GATES} 'pause: approval' steps, got {gates}")
    return steps


def segment_bounds(steps: list[Step]) -> list[tuple[int, int]]:
    """``[(start, end), ...]``: segment i walks steps ``start..end-1``; ``end`` is its approval
    step (or ``len(steps)``: the last segment, which promotes)."""
    bounds, start = [], 0
    for i, step in enumerate(steps):
        if step.kind == "approval":
            bounds.append((start, i))
            start = i + 1
    bounds.append((start, len(steps)))
    return bounds


@dataclass(frozen=True, slots=True)
class CanaryState:
    """The persisted position: the current step and whether its action was started."""

    step: int = 0
    entered: bool = False
    pause_until: float | None = None  # epoch seconds: end of a pause / next analysis round
    weight: int = 0
    canary_replicas: int = 0
    stable_replicas: int = 1
    phase: str = "running"

    @classmethod
    def of(cls, run: Any) -> CanaryState:
        """From a :class:`~mlinfra.deploy.canary.records.CanaryRun`."""
        return cls(
            step=run.step,
            entered=run.entered,
            pause_until=run.pause_until,
            weight=run.weight,
            canary_replicas=run.canary_replicas,
            stable_replicas=run.stable_replicas or 1,
            phase=run.phase,
        )


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class ScaleCanary:
    """Apply the canary Deployment with ``replicas``, then wait for its rollout."""

    step: int
    weight: int
    replicas: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Defer until ``until`` (a pause, or the next analysis round)."""

    step: int
    until: float


@dataclass(frozen=True, slots=True)
class Analyse:
    """Take the next measurement round of the analysis template ``template``."""

    step: int
    template: str


@dataclass(frozen=True, slots=True)
class Advance:
    """The step is done (a pause ran out, an approval was given): move to ``step + 1``."""

    step: int


@dataclass(frozen=True, slots=True)
class AwaitApproval:
    """This segment ends: approval gate ``gate`` (1-based) decides whether the next one runs."""

    step: int
    gate: int


@dataclass(frozen=True, slots=True)
class Promote:
    """Every step passed: re-apply the stable at the new version, then remove the canary."""


@dataclass(frozen=True, slots=True)
class Done:
    """Nothing left for this task (the run was already promoted or aborted)."""

    phase: str


Action = ScaleCanary | Wait | Analyse | Advance | AwaitApproval | Promote | Done


class SegmentOrderError(ValueError):
    """A segment task ran before the steps of the segments before it were done."""


def next_action(steps: list[Step], state: CanaryState, *, segment: int, now: float) -> Action:
    """What segment ``segment``'s task does next from ``state`` at time ``now``."""
    if state.phase in ("promoted", "aborted"):
        return Done(state.phase)
    bounds = segment_bounds(steps)
    if not 0 <= segment < len(bounds):
        raise SegmentOrderError(f"segment {segment}: the strategy has only {len(bounds)} segment(s)")
    start, end = bounds[segment]
    if state.phase == "promoting":
        return Promote()
    if segment > 0 and state.step == start - 1:
        # Standing on the approval step that ended the previous segment: this task runs only
        # when its gate approved (a rejected or timed-out gate skips or fails it).
        return Advance(state.step)
    if state.step < start:
        raise SegmentOrderError(
            f"segment {segment} starts at step {start}, but the run is at step {state.step} "
            f"({steps[state.step].describe()}): an earlier segment has not finished"
        )
    if state.step >= end:
        if end == len(steps):
            return Promote()
        if state.step == end:
            return AwaitApproval(end, gate=segment + 1)
        raise SegmentOrderError(
            f"segment {segment} ended at step {end}; the run is already at step {state.step}"
        )
    step = steps[state.step]
    if step.kind == "weight":
        weight = int(step.weight or 0)  # parse_step guarantees 1..99
        return ScaleCanary(state.step, weight, canary_replicas(state.stable_replicas, weight))
    if step.kind == "pause":
        if state.entered and state.pause_until is not None:
            return Advance(state.step) if now >= state.pause_until else Wait(state.step, state.pause_until)
        return Wait(state.step, now + (step.pause_seconds or 0.0))
    if step.kind == "analysis":
        if state.entered and state.pause_until is not None and now < state.pause_until:
            return Wait(state.step, state.pause_until)
        return Analyse(state.step, step.analysis or "")
    raise SegmentOrderError(
        f"step {state.step}: an approval step inside segment {segment}"
    )  # pragma: no cover


def used_gates(steps: list[Step]) -> int:
    """How many approval gates the strategy uses (the DAG skips the others)."""
    return sum(s.kind == "approval" for s in steps)


def analysis_summary(measurements: list[Any], *, limit: int = 20) -> str:
    """Markdown for an approval's body: the latest measurements with their verdicts."""
    if not measurements:
        return "No analysis measurements yet."
    rows = ["| step | metric | # | verdict | canary | stable |", "|---|---|---|---|---|---|"]
    for m in measurements[-limit:]:
        rows.append(
            f"| {m.step} | {m.metric} | {m.seq} | **{m.verdict}** | {_fmt(m.value)} | {_fmt(m.stable_value)} |"
        )
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}" if math.isfinite(value) else str(value)


# --------------------------------------------------------------------------- the analysis seam


@dataclass(frozen=True)
class MeasureRequest:
    """What :data:`MeasureStep` gets for one analysis round of step ``step``.

    ``plan`` is the deploy plan (model, version, namespace, deployment, connections...);
    ``previous`` the measurements this step already has (``CanaryMeasurement`` rows,
    oldest first), so the seam can judge the metric run (count, limits) and tell
    which metrics are due again.
    """

    plan: dict[str, Any]
    run_id: str
    step: int
    template: str
    weight: int
    canary_replicas: int
    stable_replicas: int
    stable_version: int | None
    previous: list[Any]
    now: float


@dataclass(frozen=True)
class AnalysisRound:
    """What one round produced.

    ``measurements``: dicts ``{"metric", "verdict", "value", "stable_value", "detail", "at"}``
    (``analysis.Measurement.to_json()``'s shape); ``phase``: ``running`` (measure again in
    ``next_in_seconds``), ``successful``, ``failed``, ``inconclusive`` or ``error``;
    ``message``: why, in one line (the abort reason on failure).
    """

    measurements: list[dict[str, Any]]
    phase: str
    next_in_seconds: float = 0.0
    message: str = ""

    @classmethod
    def of(cls, value: Any) -> AnalysisRound:
        """From an :class:`AnalysisRound` or a mapping with the same keys."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict) or "phase" not in value:
            raise TypeError(
                f"measure_step must return an AnalysisRound or a dict with 'phase', got {value!r}"
            )
        return cls(
            measurements=list(value.get("measurements") or []),
            phase=str(value["phase"]),
            next_in_seconds=float(value.get("next_in_seconds") or 0.0),
            message=str(value.get("message") or ""),
        )


ROUND_PHASES = ("running", "successful", "failed", "inconclusive", "error")
