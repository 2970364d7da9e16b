"""The ``mlinfra_reports`` table: one summary row per report interval.

The fleet page and anyone with SQL can list which days have a report, where it
lies and its headline figures without opening the files::

    >>> from mlinfra.store import MetricsStore
    >>> store = MetricsStore.from_url("sqlite:///:memory:")
    >>> upsert_report_record(store, 1_700_000_000, 1_700_086_400, "file:///r/2023-11-14", {"status": "empty"})
    >>> [r["summary"] for r in report_records(store)]
    [{'status': 'empty'}]

Keyed by the interval: re-running an interval replaces its row, never another's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlinfra.store import MetricsStore, metadata
from mlinfra.store_engine import dialect_insert
from mlinfra.store_values import as_utc, to_ms

reports_table = sa.Table(
    "mlinfra_reports",
    metadata,
    sa.Column("interval_start", sa.BigInteger, primary_key=True, autoincrement=False),  # ms
    sa.Column("interval_end", sa.BigInteger, primary_key=True, autoincrement=False),  # ms
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(250), nullable=True),
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
)


def upsert_report_record(
    store: MetricsStore,
    start: float | datetime,
    end: float | datetime,
    path: str,
    summary: dict[str, Any],
    *,
    run_id: str | None = None,
) -> None:
    """Insert or replace the row of the interval ``[start, end)``."""
    row = {
        "interval_start": to_ms(start),
        "interval_end": to_ms(end),
        "path": path,
        "status": str(summary.get("status", "unknown")),
        "summary": json.dumps(summary, sort_keys=True),
        "run_id": run_id,
        "written_at": datetime.now(UTC),
    }
    with store.begin() as conn:
        stmt = dialect_insert(conn)(reports_table).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["interval_start", "interval_end"],
            set_={k: v for k, v in row.items() if k not in ("interval_start", "interval_end")},
        )
        conn.execute(stmt)


def report_records(
    store: MetricsStore,
    start: float | datetime | None = None,
    end: float | datetime | None = None,
    *,
    run_id: str | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Rows whose interval starts in ``[start, end)`` (all by default), oldest first
    (or the newest ``limit``); ``run_id`` picks the rows one DAG run wrote."""
    t = reports_table
    order = (t.c.interval_start, t.c.interval_end)
    stmt = sa.select(t).order_by(*(c.desc() for c in order) if newest_first else order)
    if limit is not None:
        stmt = stmt.limit(limit)
    if run_id is not None:
        stmt = stmt.where(t.c.run_id == run_id)
    if start is not None:
        stmt = stmt.where(reports_table.c.interval_start >= to_ms(start))
    if end is not None:
        stmt = stmt.where(reports_table.c.interval_start < to_ms(end))
    with store.begin() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [
        {
            "interval_start": r["interval_start"] / 1000.0,
            "interval_end": r["interval_end"] / 1000.0,
            "path": r["path"],
            "status": r["status"],
            "summary": json.loads(r["summary"]),
            "run_id": r["run_id"],
            "written_at": as_utc(r["written_at"]),
        }
        for r in rows
    ]


def report_record_of_day(store: MetricsStore, start: float) -> dict[str, Any] | None:
    """The row of the interval starting at ``start`` (the newest, if re-run with another end), or None."""
    rows = report_records(store, start, start + 0.001, newest_first=True, limit=1)
    return rows[0] if rows else None
