"""
### Daily metrics report

One report per UTC day, covering exactly the run's data interval `[start, end)`:
per model (requests, error rate, p50/p95/p99 latency, availability, replicas,
deployments, scale events), per GPU (utilization, memory, temperature, throttling,
power, energy), per host (CPU, memory), alerts (times fired, time firing, top label
sets), cost (GPU- and CPU-hours x the fleet's prices, cost per 1,000 predictions) and
data completeness (sweeps expected vs found, gaps named, never averaged over).

**Output**: `report.json` (machine-readable, identical bytes for identical data),
`report.csv` and `report.html` (charts) in `<base>/<YYYY-MM-DD>/`, plus a summary row
in the store table `mlinfra_reports`. `<base>` is the Airflow Variable
`mlinfra_reports_base` (any ObjectStoragePath URL, e.g. `s3://bucket/reports`, with
the Variable `mlinfra_reports_conn_id` for its connection), else the environment
variable `MLINFRA_REPORTS_BASE`, else `file://$AIRFLOW_HOME/reports`.

**Schedule**: an explicit `CronDataIntervalTimetable("0 0 * * *", UTC)`. Airflow 3's
default for a cron string is `CronTriggerTimetable`, whose runs have
`data_interval_start == data_interval_end`; a report needs a real day, so the run
for 2026-11-20 has the interval `[2026-11-20 00:00, 2026-11-21 00:00)` and starts
just after it ends.

**catchup=False**, deliberately: a fresh install (`make run` un-pauses DAGs) computes
only the most recent day instead of one report per day since `start_date`, most of
them empty. Past days are computed on request, from the UI (DAG page -> *Trigger* ->
*Backfill*, pick the date range; *Reprocess behavior: All runs* regenerates reports
that exist) or the CLI:

    airflow backfill create --dag-id metrics_report \\
        --from-date 2026-11-01 --to-date 2026-11-07 [--reprocess-behavior completed]

Each day is one run, re-running a day replaces that day's report and nothing else.
A run is named after its logical date, which for this timetable is the *end* of the
day it reports: `backfill__2026-11-30T00:00:00+00:00` writes the report of 2026-11-29,
and a manual trigger at date D writes D-1. Every report prints its data interval and
the run that wrote it, and so does the task log and, when the connection
`mlinfra_airflow_api` (Airflow's REST API) is defined, the run's note. Today so far: `mlinfra report --day
today`, or "Today so far" on the ML Fleet page.
A store that cannot be reached fails the task with the connection named (retried).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task


@dag(
    dag_id="metrics_report",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # A backfill of a month runs two days at a time: each run reads the store
    # for one day; more in parallel only contend for the store and the CPU.
    max_active_runs=2,
    dagrun_timeout=timedelta(hours=1),
    doc_md=__doc__,
    tags=["mlinfra", "reports"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=30),
    },
)
def metrics_report() -> None:
    @task
    def build_report() -> dict[str, Any]:
        from mlinfra.config import load_fleet
        from mlinfra.reports.publish import publish_report, report_run_note, reports_base
        from mlinfra.run_notes import note_run
        from mlinfra.store import MetricsStore

        context = get_current_context()
        start, end = context["data_interval_start"], context["data_interval_end"]
        if start is None or end is None or end <= start:
            raise ValueError(
                f"run {context['run_id']} has no data interval ({start} -> {end}); "
                "trigger a day with a logical date, or use a backfill"
            )
        result = publish_report(
            MetricsStore.from_connection(),
            load_fleet(),
            start,
            end,
            base=reports_base(),
            run_id=context["run_id"],
        )
        # Which day this run reported, on the run itself (the run is named after the day's end).
        note_run(context["dag"].dag_id, context["run_id"], report_run_note(result, context["run_id"]))
        return result

    build_report()


metrics_report()
