"""The alert state machine (pure) and its persistence in the store (mlinfra.rules.state)."""

from __future__ import annotations

import pytest

from mlinfra.rules.alerts import (
    RESOLVED_RETENTION,
    ActiveAlert,
    AlertInstance,
    DuplicateLabelSetError,
    advance,
    fingerprint,
)
from mlinfra.rules.state import MemoryAlertStates, StoreAlertStates

T0 = 1_800_000_000.0
LABELS = {"alertname": "HighCPUUsage", "host": "node-1", "severity": "warning"}
FP = fingerprint(LABELS)


def hit(value: float = 90.0, labels: dict[str, str] | None = None) -> AlertInstance:
    return AlertInstance(labels=labels or LABELS, annotations={"summary": f"at {value}"}, value=value)


def run(
    present: list[bool], *, hold: float, keep: float = 0.0, step: float = 60.0
) -> list[tuple[str, list[tuple[str, str]]]]:
    """Evaluate a sequence (True = the label set is returned); per step: (state, transitions)."""
    states: dict[str, ActiveAlert] = {}
    out = []
    for i, here in enumerate(present):
        states, transitions = advance(
            states, [hit()] if here else [], at=T0 + i * step, hold=hold, keep_firing_for=keep
        )
        state = states[FP].state if FP in states else "inactive"
        out.append((state, [(t.from_state, t.to_state) for t in transitions]))
    return out


def test_pending_then_firing_after_for_then_resolved() -> None:
    # for 3m, evaluated each minute: active at 0, pending at 1m and 2m, firing at 3m.
    got = run([True, True, True, True, True, False], hold=180)
    assert got == [
        ("pending", [("inactive", "pending")]),
        ("pending", []),
        ("pending", []),
        ("firing", [("pending", "firing")]),
        ("firing", []),
        ("resolved", [("firing", "resolved")]),
    ]


def test_for_boundary_is_inclusive() -> None:
    # Exactly `for` after active_at fires (Prometheus: ts - activeAt >= holdDuration).
    assert run([True, True], hold=60)[1][0] == "firing"
    assert run([True, True], hold=60.001)[1][0] == "pending"


def test_for_zero_fires_at_once_with_one_transition() -> None:
    assert run([True], hold=0) == [("firing", [("inactive", "firing")])]


def test_pending_that_clears_goes_back_to_inactive_and_restarts_its_clock() -> None:
    got = run([True, True, False, True, True, True], hold=120)
    assert [s for s, _ in got] == ["pending", "pending", "inactive", "pending", "pending", "firing"]
    assert got[2][1] == [("pending", "inactive")]


def test_keep_firing_for_holds_a_firing_alert_then_resolves() -> None:
    # Fires at 0 (for 0), gone from 1m; keep_firing_for 2m: firing at 1m and 2m, resolved at 3m.
    got = run([True, False, False, False], hold=0, keep=120)
    assert [s for s, _ in got] == ["firing", "firing", "firing", "resolved"]
    assert got[3][1] == [("firing", "resolved")]


def test_keep_firing_for_restarts_when_the_label_set_comes_back() -> None:
    got = run([True, False, True, False, False, False], hold=0, keep=120)
    assert [s for s, _ in got] == ["firing", "firing", "firing", "firing", "firing", "resolved"]


def test_keep_firing_for_does_not_apply_to_pending_alerts() -> None:
    assert [s for s, _ in run([True, False], hold=300, keep=600)] == ["pending", "inactive"]


def test_a_resolved_alert_that_returns_starts_over_with_a_new_active_at() -> None:
    states: dict[str, ActiveAlert] = {}
    states, _ = advance(states, [hit()], at=T0, hold=0)
    states, _ = advance(states, [], at=T0 + 60, hold=0)
    assert states[FP].state == "resolved"
    assert states[FP].resolved_at == T0 + 60
    states, transitions = advance(states, [hit()], at=T0 + 120, hold=60)
    assert states[FP].state == "pending"
    assert states[FP].active_at == T0 + 120
    assert [(t.from_state, t.to_state) for t in transitions] == [("resolved", "pending")]


def test_resolved_alerts_are_kept_for_the_retention_then_forgotten_silently() -> None:
    states: dict[str, ActiveAlert] = {}
    states, _ = advance(states, [hit()], at=T0, hold=0)
    states, _ = advance(states, [], at=T0 + 60, hold=0)
    states, transitions = advance(states, [], at=T0 + 60 + RESOLVED_RETENTION, hold=0)
    assert FP in states
    assert transitions == []
    states, transitions = advance(states, [], at=T0 + 61 + RESOLVED_RETENTION, hold=0)
    assert states == {}
    assert transitions == []


def test_value_and_annotations_follow_the_latest_evaluation_active_at_does_not() -> None:
    states, _ = advance({}, [hit(90)], at=T0, hold=600)
    states, _ = advance(states, [hit(95)], at=T0 + 60, hold=600)
    a = states[FP]
    assert (a.value, a.annotations["summary"], a.active_at) == (95, "at 95", T0)


def test_label_sets_are_independent() -> None:
    other = {**LABELS, "host": "node-2"}
    states, _ = advance({}, [hit(labels=LABELS)], at=T0, hold=60)
    states, transitions = advance(states, [hit(labels=LABELS), hit(labels=other)], at=T0 + 60, hold=60)
    assert states[FP].state == "firing"
    assert states[fingerprint(other)].state == "pending"
    assert sorted((t.labels["host"], t.to_state) for t in transitions) == [
        ("node-1", "firing"),
        ("node-2", "pending"),
    ]


def test_duplicate_label_sets_are_an_error_and_change_nothing() -> None:
    with pytest.raises(DuplicateLabelSetError, match="same labelset"):
        advance({}, [hit(1), hit(2)], at=T0, hold=0)


def test_same_time_again_is_idempotent_in_memory() -> None:
    mem = MemoryAlertStates()
    for _ in range(2):
        prev = mem.load("f.yaml", "g", before=T0)
        states, transitions = advance(prev, [hit()], at=T0, hold=0)
        mem.save("f.yaml", "g", T0, states, transitions)
    assert [(t.from_state, t.to_state) for _, _, t in mem.transitions] == [("inactive", "firing")]


# ---------------------------------------------------------------------- persistence in the store


def _evaluate(
    states: StoreAlertStates, at: float, present: bool, hold: float = 120, run_id: str = "r"
) -> None:
    prev = states.load("host.yaml", "host", before=at)
    new, transitions = advance(prev, [hit()] if present else [], at=at, hold=hold)
    states.save("host.yaml", "host", at, new, transitions, run_id=run_id)


def test_state_persists_across_runs(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    # Each "run" builds a fresh StoreAlertStates, as each Airflow task does.
    _evaluate(StoreAlertStates(sqlite_store), T0, True)
    _evaluate(StoreAlertStates(sqlite_store), T0 + 60, True)
    assert StoreAlertStates(sqlite_store).current()[0]["state"] == "pending"
    _evaluate(StoreAlertStates(sqlite_store), T0 + 120, True)
    (row,) = StoreAlertStates(sqlite_store).current()
    assert row["state"] == "firing"
    assert row["active_at"] == T0
    assert row["fired_at"] == T0 + 120
    assert row["labels"] == LABELS
    assert row["alert"] == "HighCPUUsage"
    history = StoreAlertStates(sqlite_store).history(T0, T0 + 3600)
    assert [(h["from_state"], h["to_state"], h["ts"]) for h in history] == [
        ("inactive", "pending", T0),
        ("pending", "firing", T0 + 120),
    ]


def test_rerunning_the_same_logical_time_writes_no_duplicates(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    states = StoreAlertStates(sqlite_store)
    for at in (T0, T0 + 60, T0 + 120):
        _evaluate(states, at, True)
    before = states.history(T0, T0 + 3600)
    _evaluate(states, T0 + 120, True, run_id="retry")
    _evaluate(states, T0 + 120, True, run_id="retry")
    after = states.history(T0, T0 + 3600)
    assert [(h["from_state"], h["to_state"], h["ts"]) for h in after] == [
        (h["from_state"], h["to_state"], h["ts"]) for h in before
    ]
    (row,) = states.current()
    assert (row["state"], row["fired_at"], row["run_id"]) == ("firing", T0 + 120, "retry")


def test_a_backfill_recomputes_from_the_evaluation_before_it_and_keeps_the_present(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    states = StoreAlertStates(sqlite_store)
    for at in (T0, T0 + 60, T0 + 120, T0 + 180):
        _evaluate(states, at, True)
    assert states.current()[0]["state"] == "firing"
    # Re-evaluate the past at T0+60 with data that no longer has the alert (e.g. repaired history).
    _evaluate(states, T0 + 60, False, run_id="backfill")
    history = states.history(T0, T0 + 3600)
    assert ("pending", "inactive", T0 + 60) in [(h["from_state"], h["to_state"], h["ts"]) for h in history]
    # The present is the latest evaluation's, untouched by a backfill of an earlier time.
    (row,) = states.current()
    assert (row["state"], row["eval_ts"]) == ("firing", T0 + 180)
    # The next evaluation after T0+60 continues from the backfilled state: pending again from T0+120.
    _evaluate(states, T0 + 120, True, run_id="backfill")
    assert states.load("host.yaml", "host", before=T0 + 121)[FP].active_at == T0 + 120


def test_resolution_is_persisted_and_current_keeps_resolved_alerts(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    states = StoreAlertStates(sqlite_store)
    _evaluate(states, T0, True, hold=0)
    _evaluate(states, T0 + 60, False, hold=0)
    (row,) = states.current()
    assert (row["state"], row["resolved_at"]) == ("resolved", T0 + 60)
    assert states.current(state="firing") == []


def test_prune_keeps_each_groups_latest_snapshot(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    states = StoreAlertStates(sqlite_store)
    for at in (T0, T0 + 60, T0 + 120):
        _evaluate(states, at, True)
    assert states.prune(T0 + 3600) == 2
    assert states.load("host.yaml", "host", before=T0 + 3600)[FP].state == "firing"


def test_transition_history_gives_each_label_sets_state_at_the_start(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    from mlinfra.rules.alerts import Transition

    states = StoreAlertStates(sqlite_store)

    def at(t: float, frm: str, to: str, fp: str = "f") -> None:
        labels = {"alertname": "A", "x": fp}
        states.save("a.yaml", "g", t, {}, [Transition(fp, labels, frm, to, t, 1.0, t)])  # type: ignore[arg-type]

    at(T0 - 600, "inactive", "pending")
    at(T0 - 300, "pending", "firing")
    at(T0 - 200, "inactive", "pending", fp="other")
    at(T0 + 300, "firing", "inactive")
    at(T0 + 7200, "inactive", "pending")  # after the window

    history = states.transition_history(T0, T0 + 3600)
    assert [(a.fingerprint, a.to_state, a.ts) for a in history.before] == [
        ("f", "firing", T0 - 300),
        ("other", "pending", T0 - 200),
    ]
    assert [(a.alert, a.to_state, a.labels) for a in history.during] == [
        ("A", "inactive", {"alertname": "A", "x": "f"})
    ]
