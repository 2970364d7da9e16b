"""mlinfra_deployments: one row per run, updated by every task, idempotent."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra.deploy.records import DeploymentRecords, deployments_table
from mlinfra.store import MetricsStore


@pytest.fixture
def records(tmp_path: Any) -> DeploymentRecords:
    return DeploymentRecords(MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}"))


def test_a_run_is_one_row_from_start_to_finish(records: DeploymentRecords) -> None:
    records.start(
        "r1", model="half-plus-two", version=2, image="tensorflow/serving:2.14.1", triggered_by="ana"
    )
    records.update("r1", previous={"Deployment": None}, diff="--- x")
    records.set_reason("r1", "smoke_test: wrong")
    records.set_reason("r1", "rollback: later")  # the first reason stays
    records.finish("r1", "rolled_back", rollback={"performed": True})
    record = records.get("r1")
    assert record is not None
    assert (record.model, record.version, record.outcome) == ("half-plus-two", 2, "rolled_back")
    assert record.reason == "smoke_test: wrong"
    assert record.rollback == {"performed": True}
    assert record.previous == {"Deployment": None}
    assert record.started_at.tzinfo is not None
    assert record.ended_at >= record.started_at
    assert record.to_dict()["ended_at"].endswith("+00:00")


def test_starting_a_run_again_resets_it(records: DeploymentRecords) -> None:
    records.start("r1", model="m", version=1)
    records.finish("r1", "failed", reason="x")
    records.start("r1", model="m", version=1)
    with records.store.begin() as conn:
        assert conn.execute(deployments_table.select()).all().__len__() == 1
    record = records.get("r1")
    assert record is not None
    assert (record.outcome, record.reason) == (None, None)


def test_history_is_newest_first_per_model(records: DeploymentRecords) -> None:
    for i, model in enumerate(["a", "b", "a"]):
        records.start(f"r{i}", model=model, version=i)
    assert [r.run_id for r in records.history("a")] == ["r2", "r0"]
    assert len(records.history()) == 3


def test_outcomes_and_columns_are_checked(records: DeploymentRecords) -> None:
    records.start("r1", model="m")
    with pytest.raises(ValueError, match="outcome must be one of"):
        records.finish("r1", "maybe")
    with pytest.raises(ValueError, match="unknown column"):
        records.update("r1", colour="red")
    assert records.get("nope") is None


def test_the_table_is_created_with_the_store_schema(tmp_path: Any) -> None:
    import sqlalchemy as sa

    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 's.db'}")
    store.create_schema()
    assert "mlinfra_deployments" in sa.inspect(store.engine).get_table_names()


def test_the_reports_and_audit_queries(records: DeploymentRecords) -> None:
    from datetime import UTC, datetime

    t = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
    for i, dt in enumerate((-1, 0, 3600, 86399, 86400)):
        records.start(
            f"r{i}",
            model="a" if i % 2 else "b",
            version=i,
            namespace=None if i == 2 else "serving",
            deployment=None if i == 2 else ("a" if i % 2 else "b"),
            started_at=datetime.fromtimestamp(t + dt, UTC),
        )
    records.finish("r1", "succeeded", ended_at=datetime.fromtimestamp(t + 60, UTC))

    got = records.started_between(t, t + 86400)
    assert [(r.run_id, r.started_at.timestamp()) for r in got] == [
        ("r1", t),
        ("r2", t + 3600),
        ("r3", t + 86399),
    ]
    assert got[0].ended_at == datetime.fromtimestamp(t + 60, UTC)  # aware UTC, also on SQLite
    # r2 has no namespace (an older row): matched through the fleet's models of that Deployment.
    assert [r.run_id for r in records.of_deployment("serving", "b", models=["b"])] == ["r4", "r2", "r0"]
    assert [r.run_id for r in records.of_deployment("serving", "b")] == ["r4", "r0"]
