"""The embedded default's reports (``make run``: a SQLite store, LocalExecutor), for comparison.

The distributed test backfills ``metrics_report`` on the compose stack and compares its
reports with these: the same generated history in a SQLite store, each day published by
what the DAG's task calls, in one process. It runs in a process of its own
(:func:`embedded_reports`), at the same time as the stack boots and works::

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(embedded_reports, history_start, days, fleet_file, folder)
        ...
        rows, seconds = future.result()
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mlinfra.store import MetricsStore

DAY = timedelta(days=1)


def backfill_run_id(day: datetime) -> str:
    """The run id a backfill gives the report of ``day`` (midnight UTC), in any deployment.

    Airflow names a run after its type and ``run_after`` (``Timetable.generate_run_id``),
    for this DAG's ``CronDataIntervalTimetable`` the end of the day reported, as
    ``metrics_report``'s documentation says: ``backfill__2026-11-30T00:00:00+00:00``
    writes the report of 2026-11-29.
    """
    return f"backfill__{(day + DAY).isoformat()}"


def report_rows(store: MetricsStore, days: list[datetime]) -> list[dict[str, Any]]:
    """The store's report rows of ``days``, less where the files went (two folders) and when
    the row was written (two clocks): the two things that differ by design."""
    from mlinfra.reports.records import report_records

    rows = report_records(store, days[0], days[-1] + DAY)
    return [{k: v for k, v in r.items() if k not in ("path", "written_at")} for r in rows]


def embedded_reports(
    history_start: datetime, days: list[datetime], fleet_file: Path, folder: Path
) -> tuple[list[dict[str, Any]], float]:
    """Seed ``folder/store.db`` with the history of ``tests.reports`` from ``history_start``
    (a baseline day, then ``days``) and publish each day's report into ``folder/reports``
    as a backfill run would; returns the store's report rows and the seconds it took."""
    from airflow.sdk import ObjectStoragePath

    from mlinfra.config import load_fleet
    from mlinfra.reports.publish import publish_report
    from tests.reports.conftest import fill, make_history

    started = time.monotonic()
    store = MetricsStore.from_url(f"sqlite:///{folder / 'store.db'}")
    try:
        fill(store, make_history(history_start.timestamp(), days=len(days) + 1))
        fleet = load_fleet(fleet_file)
        base = ObjectStoragePath((folder / "reports").as_uri())
        for day in days:
            publish_report(store, fleet, day, day + DAY, base=base, run_id=backfill_run_id(day))
        return report_rows(store, days), time.monotonic() - started
    finally:
        store.engine.dispose()
