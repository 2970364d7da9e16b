"""Readers of the tables other features own: absent tables, ms or timestamp columns, extra columns."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from mlinfra.reports.history import as_seconds, read_alert_history, read_deployments, read_scale_events
from mlinfra.store import MetricsStore
from tests.reports.synthetic import insert_shared

T = datetime(2026, 3, 2, tzinfo=UTC).timestamp()


def test_absent_tables_read_as_empty(sqlite_store: MetricsStore) -> None:
    assert read_deployments(sqlite_store, T, T + 86400) == []
    assert read_scale_events(sqlite_store, T, T + 86400) == []
    history = read_alert_history(sqlite_store, T, T + 86400)
    assert (history.before, history.during) == ([], [])


def test_deployments_with_timestamp_columns_are_filtered_to_the_interval(sqlite_store: MetricsStore) -> None:
    rows = [
        {
            "model": "m",
            "version": i,
            "run_id": f"deploy_{i}",
            "outcome": "succeeded",
            "started_at": datetime.fromtimestamp(T + dt, UTC),
        }
        for i, dt in enumerate((-1, 0, 3600, 86399, 86400))
    ]
    insert_shared(sqlite_store, "mlinfra_deployments", rows)
    got = read_deployments(sqlite_store, T, T + 86400)
    assert [(d.version, d.started_at) for d in got] == [("1", T), ("2", T + 3600), ("3", T + 86399)]


def test_deployments_with_millisecond_columns_and_unknown_extra_columns(sqlite_store: MetricsStore) -> None:
    # Laid out before the store creates its schema, so this layout (not the owner's) is what exists.
    with sqlite_store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE mlinfra_deployments (id INTEGER PRIMARY KEY, model TEXT, version INTEGER, "
                "started_at BIGINT, outcome TEXT, something_new TEXT NOT NULL DEFAULT 'x')"
            )
        )
    insert_shared(
        sqlite_store,
        "mlinfra_deployments",
        [{"model": "m", "version": 3, "outcome": "dry_run", "started_at": round((T + 60) * 1000)}],
    )
    (dep,) = read_deployments(sqlite_store, T, T + 86400)
    assert (dep.model, dep.version, dep.outcome, dep.started_at, dep.ended_at, dep.reason) == (
        "m",
        "3",
        "dry_run",
        T + 60,
        None,
        None,
    )


def test_scale_events_and_alert_state_at_start(sqlite_store: MetricsStore) -> None:
    insert_shared(
        sqlite_store,
        "mlinfra_scale_events",
        [
            {
                "ts": round((T + s) * 1000),
                "model": "m",
                "from_replicas": 1,
                "to_replicas": 2,
                "dry_run": s == 5,
            }
            for s in (-5, 5, 86400)
        ],
    )
    (ev,) = read_scale_events(sqlite_store, T, T + 86400)
    assert (ev.ts, ev.dry_run) == (T + 5, True)
    insert_shared(
        sqlite_store,
        "mlinfra_alert_transitions",
        [
            {
                "alert": "A",
                "fingerprint": "f",
                "labels": '{"x": "1"}',
                "from_state": "inactive",
                "to_state": "pending",
                "ts": round((T - 600) * 1000),
            },
            {
                "alert": "A",
                "fingerprint": "f",
                "labels": '{"x": "1"}',
                "from_state": "pending",
                "to_state": "firing",
                "ts": round((T - 300) * 1000),
            },
            {
                "alert": "A",
                "fingerprint": "f",
                "labels": '{"x": "1"}',
                "from_state": "firing",
                "to_state": "inactive",
                "ts": round((T + 300) * 1000),
            },
        ],
    )
    history = read_alert_history(sqlite_store, T, T + 86400)
    assert [(a.to_state, a.ts) for a in history.before] == [("firing", T - 300)]
    assert [(a.to_state, a.labels) for a in history.during] == [("inactive", {"x": "1"})]


def test_as_seconds_accepts_every_stored_form() -> None:
    assert as_seconds(1_700_000_000_000) == 1_700_000_000.0
    assert as_seconds(datetime(2026, 3, 2, tzinfo=UTC)) == T
    assert as_seconds(datetime(2026, 3, 2)) == T  # naive = UTC (SQLite)
    assert as_seconds("2026-03-02T00:00:00+00:00") == T
    assert as_seconds(None) is None
