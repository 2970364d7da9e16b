"""The canary step machine: segments, resumption from a saved position, the replica formula."""

from __future__ import annotations

import pytest

from mlinfra.deploy.canary.replicas import canary_replicas, canary_share
from mlinfra.deploy.canary.rollout import (
    Advance,
    Analyse,
    AnalysisRound,
    AwaitApproval,
    CanaryState,
    Done,
    Promote,
    ScaleCanary,
    SegmentOrderError,
    Step,
    Wait,
    next_action,
    parse_step,
    parse_steps,
    segment_bounds,
    used_gates,
)

STEPS = parse_steps(
    [
        {"weight": 20},
        {"pause": "30s"},
        {"analysis": "errors"},
        {"pause": "approval"},
        {"weight": 50},
        {"pause": "approval"},
        {"pause": 0},
    ]
)


def test_parse_step_forms() -> None:
    assert parse_step({"weight": 20}) == Step("weight", weight=20)
    assert parse_step({"pause": "1m30s"}) == Step("pause", pause_seconds=90.0)
    assert parse_step({"pause": 5}) == Step("pause", pause_seconds=5.0)
    assert parse_step({"pause": "approval"}) == Step("approval")
    assert parse_step({"analysis": "golden", "weight": None}) == Step("analysis", analysis="golden")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"weight": 100}, "promotion is the last step"),
        ({"weight": 0}, "1..99"),
        ({"weight": True}, "1..99"),
        ({"weight": 20, "pause": "1s"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"pause": "soon"}, "not a Prometheus duration"),
    ],
)
def test_bad_steps_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_step(raw)


def test_more_gates_than_the_dag_has_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 3"):
        parse_steps([{"pause": "approval"}] * 4)


def test_segments_split_at_approval_steps() -> None:
    assert segment_bounds(STEPS) == [(0, 3), (4, 5), (6, 7)]
    assert used_gates(STEPS) == 2
    assert segment_bounds(parse_steps([{"weight": 10}])) == [(0, 1)]
    # An approval first: segment 0 is empty and ends at once at gate 1.
    first = parse_steps([{"pause": "approval"}, {"weight": 10}])
    assert segment_bounds(first) == [(0, 0), (1, 2)]
    assert next_action(first, CanaryState(), segment=0, now=0) == AwaitApproval(0, gate=1)


@pytest.mark.parametrize(
    ("stable", "weight", "expected"),
    [(4, 20, 1), (4, 50, 4), (1, 10, 1), (3, 75, 9), (10, 33, 5), (1, 99, 99), (0, 50, 1)],
)
def test_canary_replicas_give_at_least_the_weight(stable: int, weight: int, expected: int) -> None:
    got = canary_replicas(stable, weight)
    assert got == expected
    # The smallest such count: one fewer would fall short of the weight (unless it is the floor of 1).
    assert canary_share(max(stable, 1), got) >= weight / 100
    if got > 1:
        assert canary_share(max(stable, 1), got - 1) < weight / 100


def test_walk_of_segment_zero() -> None:
    state = CanaryState(stable_replicas=4)
    assert next_action(STEPS, state, segment=0, now=100) == ScaleCanary(0, 20, 1)
    # A retry after the apply: the same weight, the same replicas (the apply writes nothing new).
    assert next_action(STEPS, CanaryState(step=0, entered=True, stable_replicas=4), segment=0, now=100) == (
        ScaleCanary(0, 20, 1)
    )
    # A pause not yet entered ends 30 s from now; once entered, its saved end holds.
    assert next_action(STEPS, CanaryState(step=1, stable_replicas=4), segment=0, now=100) == Wait(1, 130)
    entered = CanaryState(step=1, entered=True, pause_until=130, stable_replicas=4)
    assert next_action(STEPS, entered, segment=0, now=500) == Advance(1)
    assert next_action(STEPS, entered, segment=0, now=120) == Wait(1, 130)
    # Analysis: measure, and between rounds wait until the next one is due.
    assert next_action(STEPS, CanaryState(step=2), segment=0, now=0) == Analyse(2, "errors")
    between = CanaryState(step=2, entered=True, pause_until=60)
    assert next_action(STEPS, between, segment=0, now=30) == Wait(2, 60)
    assert next_action(STEPS, between, segment=0, now=60) == Analyse(2, "errors")
    assert next_action(STEPS, CanaryState(step=3), segment=0, now=0) == AwaitApproval(3, gate=1)


def test_later_segments_pass_their_gate_and_the_last_promotes() -> None:
    assert next_action(STEPS, CanaryState(step=3, phase="paused"), segment=1, now=0) == Advance(3)
    assert next_action(STEPS, CanaryState(step=4, stable_replicas=2), segment=1, now=0) == ScaleCanary(
        4, 50, 2
    )
    assert next_action(STEPS, CanaryState(step=5), segment=1, now=0) == AwaitApproval(5, gate=2)
    assert next_action(STEPS, CanaryState(step=5), segment=2, now=0) == Advance(5)
    assert next_action(STEPS, CanaryState(step=7), segment=2, now=0) == Promote()
    assert next_action(STEPS, CanaryState(step=6, phase="promoting"), segment=2, now=0) == Promote()


def test_final_phases_leave_nothing_to_do() -> None:
    for phase in ("promoted", "aborted"):
        assert next_action(STEPS, CanaryState(step=1, phase=phase), segment=0, now=0) == Done(phase)


def test_segments_out_of_order_are_refused() -> None:
    with pytest.raises(SegmentOrderError, match="an earlier segment has not finished"):
        next_action(STEPS, CanaryState(step=1), segment=1, now=0)
    with pytest.raises(SegmentOrderError, match="only 3 segment"):
        next_action(STEPS, CanaryState(step=0), segment=3, now=0)
    with pytest.raises(SegmentOrderError, match="already at step 5"):
        next_action(STEPS, CanaryState(step=5), segment=0, now=0)


def test_analysis_round_from_a_mapping() -> None:
    got = AnalysisRound.of({"phase": "running", "measurements": [{"metric": "m"}], "next_in_seconds": 30})
    assert got == AnalysisRound([{"metric": "m"}], "running", 30.0, "")
    with pytest.raises(TypeError, match="AnalysisRound or a dict"):
        AnalysisRound.of(["running"])
