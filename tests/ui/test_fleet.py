"""The fleet view's reads and rules over a real SQLite store (no Airflow, no network)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from mlinfra.config import load_fleet
from mlinfra.reports.records import report_records
from mlinfra.samples import STALE_NAN, Sample
from mlinfra.store import MetricsStore
from mlinfra.ui.fleet import _health, find_report, read_audit, read_fleet_view
from tests.ui.fleet_data import cluster_samples, fill_store


@pytest.fixture
def filled(sqlite_store: MetricsStore) -> dict[str, Any]:
    return {"store": sqlite_store, **fill_store(sqlite_store, time.time(), hours=2)}


def test_health_is_serving_health_and_not_monitored_is_not_healthy() -> None:
    assert _health(3, 3, 1, []) == ("healthy", [])
    assert _health(3, 2, 1, []) == ("degraded", ["2 of 3 replicas available"])
    assert _health(3, 0, 1, [])[0] == "down"
    assert _health(3, 3, 0, []) == ("down", ["TF Serving does not answer"])
    assert _health(3, 3, 1, [{"alert": "HighLatency"}]) == ("degraded", ["alert HighLatency firing"])
    assert _health(None, None, None, [])[0] == "unknown"
    # Replicas up but nobody asks TF Serving: not a claim of health.
    assert _health(3, 3, None, [], serving_conn_id="tf_serving_x") == (
        "not monitored",
        [
            "TF Serving is not checked (Airflow connection 'tf_serving_x'): replicas alone do not show it serves"
        ],
    )


def test_a_rollback_that_restored_service_is_healthy_with_its_own_deploy_badge(
    filled: dict[str, Any],
) -> None:
    from mlinfra.ui.fleet import _model_view

    model = load_fleet().model("half-plus-two")
    samples = cluster_samples()  # half-plus-two: 3 / 3, serving v2
    rolled_back = {"model": "half-plus-two", "version": 3, "outcome": "rolled_back", "smoke": None,
                   "run_id": "manual__2", "started_at": 10.0, "ended_at": 20.0}  # fmt: skip
    view = _model_view(model, samples, [rolled_back], [], [], snapshot_ts=30.0)
    assert (view["health"], view["health_reasons"]) == ("healthy", [])
    assert view["deploy_badge"] == {"outcome": "rolled_back", "version": 3}
    assert view["deployed_version"] == 2


def test_what_happened_after_the_sweep_is_listed_and_a_newer_deploy_sets_the_version() -> None:
    from mlinfra.ui.fleet import _model_view

    model = load_fleet().model("half-plus-two")
    samples = cluster_samples()  # half-plus-two: 3 / 3, serving v2
    deploy = {"model": "half-plus-two", "version": 3, "outcome": "succeeded", "smoke": None,
              "run_id": "manual__d", "started_at": 90.0, "ended_at": 120.0}  # fmt: skip
    scale = {"model": "half-plus-two", "ts": 150.0, "from_replicas": 3, "to_replicas": 1,
             "outcome": "available", "run_id": "manual__s", "dag_id": "model_scale", "dry_run": False}  # fmt: skip
    view = _model_view(model, samples, [deploy], [], [scale], snapshot_ts=100.0)
    assert (view["deployed_version"], view["version_source"]) == (3, "deploy")
    assert view["replicas"]["desired"] == 3  # the sweep's figure, not mixed with later events
    assert [e["what"] for e in view["since_snapshot"]] == [
        "deploy of v3: succeeded",
        "scale 3 -> 1: available",
    ]
    before = _model_view(model, samples, [deploy], [], [scale], snapshot_ts=200.0)
    assert (before["deployed_version"], before["since_snapshot"]) == (2, [])


def test_a_partially_changed_cluster_is_never_healthy() -> None:
    health, reasons = _health(3, 3, 1, [], partial_deploy=True)
    assert health == "degraded"
    assert reasons == ["CLUSTER PARTIALLY CHANGED by the last deploy; its rollback failed (see the run)"]


def test_the_view_reads_every_section(filled: dict[str, Any]) -> None:
    view = read_fleet_view(filled["store"], load_fleet(), hours=1)

    assert [m["deployed_version"] for m in view["models"]] == [2, None]
    assert view["models"][1]["firing_alerts"] == ["ReplicasUnavailable"]
    assert len(view["gpus"]) == 2
    assert len(view["deployments"]) == 3
    assert len(view["scale_events"]) == 2


def test_a_store_with_only_old_data_shows_that_data(sqlite_store: MetricsStore) -> None:
    week_ago = time.time() - 7 * 86400
    fill_store(sqlite_store, week_ago, hours=1)

    view = read_fleet_view(sqlite_store, load_fleet(), hours=6)

    assert view["window"]["end"] == view["sweep"]["ts"]
    assert all(g["utilization"]["points"] for g in view["gpus"])


def test_current_values_come_from_the_latest_sweep(sqlite_store: MetricsStore) -> None:
    now = time.time()
    sqlite_store.write_sweep(now - 600, cluster_samples(half_plus_two=(3, 1)))
    sqlite_store.write_sweep(now - 300, cluster_samples(half_plus_two=(2, 2)))

    model = read_fleet_view(sqlite_store, load_fleet())["models"][0]

    assert model["replicas"]["desired"] == 2
    assert model["replicas"]["available"] == 2
    assert model["health"] == "healthy"


def test_a_deployment_whose_series_went_stale_has_no_current_values(sqlite_store: MetricsStore) -> None:
    now = time.time()
    sqlite_store.write_sweep(now - 600, cluster_samples())
    # The next sweep found resnet50-classifier's deployment deleted: its series are marked stale.
    gone = [
        Sample(s.name, s.labels, STALE_NAN) if s.labels.get("deployment") == "resnet50-classifier" else s
        for s in cluster_samples()
    ]
    sqlite_store.write_sweep(now - 300, gone)

    models = {m["name"]: m for m in read_fleet_view(sqlite_store, load_fleet())["models"]}

    assert models["half-plus-two"]["replicas"]["desired"] == 3
    assert models["resnet50-classifier"]["replicas"]["desired"] is None


def test_a_store_nothing_has_written_to_yet_has_empty_sections(sqlite_store: MetricsStore) -> None:
    view = read_fleet_view(sqlite_store, load_fleet())
    audit = read_audit(sqlite_store, load_fleet(), "serving", "half-plus-two")

    assert view["sweep"] is None
    assert view["alerts"] == view["deployments"] == view["scale_events"] == view["reports"] == []
    assert audit["deployments"] == audit["scale_events"] == []
    assert find_report(sqlite_store, "2026-11-20") is None


def test_audit_and_report_lookups(filled: dict[str, Any]) -> None:
    store = filled["store"]
    audit = read_audit(store, load_fleet(), "serving", "resnet50-classifier")
    assert audit["models"] == ["resnet50-classifier"]
    assert [e["to_replicas"] for e in audit["scale_events"]] == [4]
    assert audit["deployments"] == []
    assert find_report(store, "not-a-day") is None
    assert find_report(store, "1999-01-01") is None
    newest = report_records(store)[-1]
    day = datetime.fromtimestamp(newest["interval_start"], UTC).strftime("%Y-%m-%d")
    assert find_report(store, day) == {
        "path": newest["path"],
        "status": "complete",
        "run_id": newest["run_id"],
    }


def test_the_sample_index_finds_what_a_scan_of_the_samples_finds() -> None:
    from mlinfra.ui.fleet import SampleIndex, _matching

    samples = [
        *cluster_samples(),
        Sample("kube_deployment_spec_replicas", {"namespace": "b", "deployment": "x"}, 1),
        Sample("kube_deployment_spec_replicas", {"namespace": "a", "deployment": "x"}, 2),
        Sample("kube_deployment_spec_replicas", {"namespace": "a", "deployment": "y", "extra": "1"}, 3),
        Sample("mlinfra_serving_up", {"model": "x"}, 1),
    ]
    index = SampleIndex(samples)
    lookups = [
        ("kube_deployment_spec_replicas", {"namespace": "a", "deployment": "x"}),
        ("kube_deployment_spec_replicas", {"deployment": "x"}),
        ("kube_deployment_spec_replicas", {"namespace": "a"}),
        ("kube_deployment_spec_replicas", {"namespace": "a", "deployment": "y"}),
        ("kube_deployment_spec_replicas", {"extra": "1"}),
        ("kube_deployment_spec_replicas", {}),
        ("mlinfra_serving_up", {"model": "x"}),
        ("mlinfra_serving_up", {"model": "none"}),
        ("no_such_metric", {"model": "x"}),
    ]
    for name, labels in lookups:
        assert _matching(index, name, **labels) == _matching(samples, name, **labels), (name, labels)
    assert [s.value for s in _matching(index, "kube_deployment_spec_replicas", deployment="x")] == [1, 2]


def test_alerts_are_grouped_by_rule_with_the_rest_counted() -> None:
    from mlinfra.ui.alert_groups import group_alerts

    rows = [{"alert": "Slow", "state": "firing", "labels": {"model": "m0"}}]
    rows += [{"alert": "Slow", "state": "pending", "labels": {"model": f"m{i}"}} for i in range(1, 25)]
    rows += [{"alert": "Down", "state": "pending", "labels": {"model": "m3"}}]

    slow, down = group_alerts(rows, 10)
    assert (slow["alert"], slow["firing"], slow["pending"], slow["hidden"]) == ("Slow", 1, 24, 15)
    # The first ten in the view's order: the firing one first.
    assert [a["labels"]["model"] for a in slow["alerts"]] == [f"m{i}" for i in range(10)]
    assert (down["alert"], down["pending"], down["hidden"], len(down["alerts"])) == ("Down", 1, 0, 1)
    every = group_alerts(rows, None)
    assert [len(g["alerts"]) for g in every] == [25, 1]
    assert all(g["hidden"] == 0 for g in every)
