"""The fleet view's reads and rules over a real SQLite store (no Airflow, no network)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mlinfra.config import load_fleet
from mlinfra.store import MetricsStore
from mlinfra.ui.fleet import _health, find_report, read_audit, read_fleet_view, rows_of_run
from tests.ui.fleet_data import cluster_samples, fill_store


@pytest.fixture
def filled(sqlite_store: MetricsStore) -> dict[str, Any]:
    return {"store": sqlite_store, **fill_store(sqlite_store, time.time(), hours=2)}


def test_health_names_every_reason() -> None:
    assert _health(3, 3, 1, [], None) == ("healthy", [])
    assert _health(3, 2, 1, [], None) == ("degraded", ["2 of 3 replicas available"])
    assert _health(3, 0, 1, [], None)[0] == "down"
    assert _health(3, 3, 0, [], None) == ("down", ["TF Serving does not answer"])
    assert _health(3, 3, 1, [{"alert": "HighLatency"}], None) == ("degraded", ["alert HighLatency firing"])
    assert _health(3, 3, 1, [], {"outcome": "rolled_back"}) == ("degraded", ["last deploy rolled back"])
    assert _health(None, None, None, [], None)[0] == "unknown"
    health, reasons = _health(3, 3, 1, [], {"outcome": "partial"})
    assert health == "degraded"
    assert reasons == ["CLUSTER PARTIALLY CHANGED by the last deploy; its rollback failed (see the run)"]


def test_the_view_reads_every_section(filled: dict[str, Any]) -> None:
    view = read_fleet_view(filled["store"], load_fleet(), hours=1)

    assert [m["deployed_version"] for m in view["models"]] == [2, None]
    assert view["models"][1]["firing_alerts"] == ["ReplicasUnavailable"]
    assert len(view["gpus"]) == 2
    assert len(view["deployments"]) == 3
    assert len(view["scale_events"]) == 2
    assert view["missing_tables"] == []


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


def test_a_table_no_feature_has_created_is_an_empty_section(sqlite_store: MetricsStore) -> None:
    import sqlalchemy as sa

    sqlite_store.create_schema()
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS mlinfra_scale_events"))
        conn.execute(sa.text("DROP TABLE mlinfra_reports"))

    view = read_fleet_view(sqlite_store, load_fleet())
    audit = read_audit(sqlite_store, load_fleet(), "serving", "half-plus-two")

    assert view["missing_tables"] == ["mlinfra_reports", "mlinfra_scale_events"]
    assert view["scale_events"] == view["reports"] == []
    assert audit["missing_tables"] == ["mlinfra_scale_events"]
    assert find_report(sqlite_store, "2026-11-20") is None


def test_audit_and_report_lookups(filled: dict[str, Any]) -> None:
    store = filled["store"]
    audit = read_audit(store, load_fleet(), "serving", "resnet50-classifier")
    assert audit["models"] == ["resnet50-classifier"]
    assert [e["to_replicas"] for e in audit["scale_events"]] == [4]
    assert audit["deployments"] == []
    assert find_report(store, "not-a-day") is None
    assert find_report(store, "1999-01-01") is None
    assert rows_of_run(store, "mlinfra_no_such_table", "x") == []
    assert rows_of_run(store, "mlinfra_deployments", "manual__2026-11-20T10:00:00+00:00")[0]["version"] == 2
