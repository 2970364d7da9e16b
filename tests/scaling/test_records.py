"""mlinfra_scale_events and mlinfra_scale_recommendations: idempotent writes, windows, cooldown input."""

from __future__ import annotations

import json

import pytest

from mlinfra.config import ScalingPolicy
from mlinfra.scaling.decision import Recommendation, decide
from mlinfra.scaling.records import ScaleRecords
from mlinfra.store import MetricsStore

T = 1_800_000_000.0
POLICY = ScalingPolicy.model_validate(
    {"min_replicas": 1, "max_replicas": 8, "target": {"expr": "m", "value": 100}}
)


def event(records: ScaleRecords, run_id: str, ts: float, outcome: str, **kw: object) -> None:
    args = {
        "run_id": run_id, "model": "m", "namespace": "serving", "deployment": "m", "from_replicas": 1, "to_replicas": 2,
        "reason": "r", "trigger": "metric", "dry_run": False, "ts": ts, "outcome": outcome,
    }  # fmt: skip
    args.update(kw)
    records.record_event(**args)  # type: ignore[arg-type]


def test_decisions_are_kept_and_replaced_by_a_rerun(sqlite_store: MetricsStore) -> None:
    records = ScaleRecords(sqlite_store)
    first = decide(POLICY, model="m", at=T, current=2, metric=400)
    records.save_decisions([first], run_id="r1")
    again = decide(POLICY, model="m", at=T, current=2, metric=300)
    records.save_decisions([again], run_id="r1b")
    rows = records.decisions("m")
    assert len(rows) == 1
    assert rows[0]["to_replicas"] == 6
    assert rows[0]["run_id"] == "r1b"
    assert rows[0]["steps"] == again.steps
    assert records.history(["m", "x"], since=T - 300, until=T + 1) == {"m": [Recommendation(T, 6)], "x": []}
    assert records.history(["m"], since=T - 300, until=T) == {"m": []}  # until is exclusive


def test_no_signal_is_kept_but_not_a_recommendation(sqlite_store: MetricsStore) -> None:
    records = ScaleRecords(sqlite_store)
    records.save_decisions([decide(POLICY, model="m", at=T, current=2, metric=None)])
    assert records.decisions("m")[0]["action"] == "none"
    assert records.history(["m"], since=T - 1, until=T + 1) == {"m": []}


def test_events_upsert_by_run_and_model(sqlite_store: MetricsStore) -> None:
    records = ScaleRecords(sqlite_store)
    event(records, "run-1", T, "patched", decision={"reason": "r"})
    assert records.update_outcome("run-1", "m", "available", "2/2 available")
    event(records, "run-1", T, "patched")  # a retry of the task
    (row,) = records.events("m")
    assert (row["ts"], row["outcome"], row["from_replicas"], row["to_replicas"]) == (T, "patched", 1, 2)
    assert records.update_outcome("nope", "m", "available") is False
    with pytest.raises(ValueError, match="outcome must be one of"):
        records.update_outcome("run-1", "m", "exploded")


def test_last_actions_count_real_actions_and_sweep_dry_runs(sqlite_store: MetricsStore) -> None:
    records = ScaleRecords(sqlite_store)
    event(records, "a", T - 600, "available")
    event(records, "b", T - 300, "failed")  # nothing changed
    event(records, "c", T - 200, "dry_run", trigger="manual")  # a person's preview
    event(records, "d", T, "patched")  # not strictly before T
    assert records.last_actions(["m", "other"], before=T) == {"m": T - 600}
    event(records, "e", T - 100, "dry_run", trigger="metric")  # the sweep's dry-run policy
    assert records.last_actions(["m"], before=T) == {"m": T - 100}


def test_scale_events_of_a_run_a_deployment_and_the_newest(sqlite_store: MetricsStore) -> None:
    records = ScaleRecords(sqlite_store)
    event(records, "scheduled__1", 100.0, "available", decision={"desired": 2})
    event(records, "scheduled__2", 200.0, "dry_run", dry_run=True)
    event(records, "manual__3", 300.0, "patched", model="x", namespace=None, deployment=None)

    (one,) = records.scale_events(run_id="scheduled__1")
    assert (one.ts, one.model, one.decision, one.dry_run) == (100.0, "m", {"desired": 2}, False)
    assert [e.run_id for e in records.scale_events(newest_first=True, limit=2)] == [
        "manual__3",
        "scheduled__2",
    ]
    assert [e.run_id for e in records.scale_events(namespace="serving", deployment="m")] == [
        "scheduled__1",
        "scheduled__2",
    ]
    assert len(records.scale_events(namespace="serving", deployment="m", models=["x"])) == 3
    assert records.scale_events(since=150, until=300)[0].run_id == "scheduled__2"
    assert records.events("m")[0]["decision"] == {"desired": 2}


def test_recommendations_older_than_the_retention_are_pruned(sqlite_store: MetricsStore) -> None:
    records = ScaleRecords(sqlite_store)
    for k in range(4):  # four sweeps, five minutes apart
        records.save_decisions([decide(POLICY, model="m", at=T + 300 * k, current=2, metric=400)])
    event(records, "run-old", T, "patched")
    assert records.prune_recommendations(T + 600) == 2  # before, not at, the cutoff
    assert [d["at"] for d in records.decisions("m")] == [T + 600, T + 900]
    assert records.prune_recommendations(T + 600) == 0  # a retry deletes nothing more
    assert len(records.events("m")) == 1  # the actions' audit trail is kept


def test_a_policy_is_stored_once_and_pruned_with_the_last_recommendation_naming_it(
    sqlite_store: MetricsStore,
) -> None:
    records = ScaleRecords(sqlite_store)
    wider = POLICY.model_copy(update={"max_replicas": 12})
    for k in range(4):  # the policy changes after the second sweep
        policy = POLICY if k < 2 else wider
        records.save_decisions([decide(policy, model="m", at=T + 300 * k, current=2, metric=400)])

    def stored() -> list[int]:
        with sqlite_store.begin() as conn:
            rows = conn.exec_driver_sql("SELECT policy FROM mlinfra_scale_policies").scalars()
            return sorted(json.loads(r)["max_replicas"] for r in rows)

    assert stored() == [8, 12]  # four rows, two policies
    assert [d["policy"]["max_replicas"] for d in records.decisions("m")] == [8, 8, 12, 12]
    assert records.prune_recommendations(T + 600) == 2
    assert stored() == [12]  # the old policy went with its last recommendation
    assert [d["policy"]["max_replicas"] for d in records.decisions("m")] == [12, 12]
    records.save_decisions([decide(POLICY, model="m", at=T + 1200, current=2, metric=400)])
    assert stored() == [8, 12]  # back in use: stored again
    assert records.prune_recommendations(T + 1200) == 2
    assert stored() == [8]


def test_a_rerun_leaves_no_policy_only_its_first_attempt_named(sqlite_store: MetricsStore) -> None:
    """A failed attempt's skipped decisions name the empty policy; the retry replaces those rows,
    and the store ends as if only the retry had run."""
    from mlinfra.scaling.decision import skipped

    records = ScaleRecords(sqlite_store)
    records.save_decisions([skipped("m", T, "cannot read namespace serving")], run_id="r")
    records.save_decisions([decide(POLICY, model="m", at=T, current=2, metric=400)], run_id="r")
    with sqlite_store.begin() as conn:
        rows = conn.exec_driver_sql("SELECT policy FROM mlinfra_scale_policies").scalars().all()
    assert [json.loads(r)["max_replicas"] for r in rows] == [8]
    assert [d["action"] for d in records.decisions("m")] == ["scale"]
