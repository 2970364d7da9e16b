"""The mlinfra_reports table: one row per interval, replaced on re-run."""

from __future__ import annotations

from mlinfra.reports.records import report_records, upsert_report_record
from mlinfra.store import MetricsStore


def test_upsert_replaces_only_its_interval(sqlite_store: MetricsStore) -> None:
    upsert_report_record(sqlite_store, 0, 86400, "file:///r/a", {"status": "empty"}, run_id="r1")
    upsert_report_record(sqlite_store, 86400, 172800, "file:///r/b", {"status": "complete"}, run_id="r2")
    upsert_report_record(
        sqlite_store, 0, 86400, "file:///r/a", {"status": "partial", "cost": 1.5}, run_id="r3"
    )
    rows = report_records(sqlite_store)
    assert [(r["interval_start"], r["status"], r["summary"], r["run_id"]) for r in rows] == [
        (0.0, "partial", {"status": "partial", "cost": 1.5}, "r3"),
        (86400.0, "complete", {"status": "complete"}, "r2"),
    ]
    assert [r["path"] for r in report_records(sqlite_store, 86400, 172800)] == ["file:///r/b"]
