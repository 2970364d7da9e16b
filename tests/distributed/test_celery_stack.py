"""The compose stack's configuration for real: CeleryExecutor, two workers, PostgreSQL, Redis.

One test, because the point is that the work runs at once on a shared stack: several
sweeps (triggered through the REST API with their own logical dates), a deploy of
version 2 (whose waits defer to the triggerer), and a manual scale of the other model;
then the checks that only a distributed run can fail: tasks landed on both workers,
every sample every collector staged on whichever worker reached the store exactly
once, the deploy's trigger ran in the triggerer process, and the Pushgateway holds one
group for the sweep job, whichever worker pushed.

At the same time a 7-day backfill of ``metrics_report`` (through the REST API, as the
UI's backfill dialog does) reports on generated history seeded into the store; its
reports must equal, byte for byte, those the embedded default (``make run``: a SQLite
store, the same report code in one process) writes from the same history.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from mlinfra.export import DEFAULT_INSTANCE, DEFAULT_JOB
from mlinfra.store import MetricsStore
from tests.deploy.environment import ensure_version
from tests.distributed.conftest import DAG_IDS, Cluster
from tests.distributed.embedded import backfill_run_id, embedded_reports, report_rows
from tests.distributed.stack import WORKERS, DistributedStack
from tests.reports.conftest import fill, make_history

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEPS = 3
COLLECTORS = {"gpu", "host", "kubernetes", "serving"}
# Written by write_sweep from this sweep and the previous one, not by a collector.
DERIVED = {"ml_cpu_usage_percent"}
LOAD_DELAY_S = 20.0
SWEEP_STEP = timedelta(minutes=5)  # infra_health_sweep's schedule, */5 * * * *
REPORT_DAYS = 7
REPORT_FILES = ("report.csv", "report.html", "report.json")


def _history_start(stack: DistributedStack) -> datetime:
    """Midnight UTC of the seeded history's first day (a baseline day, then the report days).

    The scheduler runs ``metrics_report`` (un-paused, catchup=False) for the day before
    the one it starts on, and each later day as it ends: the backfilled days end before
    the day before the launch, so the backfill never meets a run the scheduler made.
    """
    assert stack.launched_at is not None
    launch_day = stack.launched_at.replace(hour=0, minute=0, second=0, microsecond=0)
    return launch_day - timedelta(days=REPORT_DAYS + 2)


@pytest.fixture
def store(cluster: Cluster) -> Iterator[MetricsStore]:
    """The stack's store (PostgreSQL), as the test reads and seeds it."""
    store = MetricsStore.from_url(cluster.store_url)
    yield store
    store.engine.dispose()


def _wait_runs(
    stack: DistributedStack, runs: dict[str, set[str]], timeout: float, deferred: set[tuple[str, str]]
) -> None:
    """Until every run of ``runs`` (DAG id -> run ids) succeeded; fails at the first failed one.

    Meanwhile records in ``deferred`` each (task id, triggerer host) of a deferred
    ``model_deploy`` task whose trigger a triggerer has picked up.
    """

    def done() -> bool:
        deferred.update(
            stack.db(
                "SELECT ti.task_id, j.hostname FROM task_instance ti "
                "JOIN trigger t ON t.id = ti.trigger_id JOIN job j ON j.id = t.triggerer_id "
                "WHERE ti.dag_id = 'model_deploy' AND ti.state = 'deferred'"
            )  # type: ignore[arg-type]
        )
        finished = True
        for dag_id, run_ids in runs.items():
            states = {r: s for r, s in stack.run_states(dag_id).items() if r in run_ids}
            failed = {r: s for r, s in states.items() if s == "failed"}
            if failed:
                pytest.fail(f"{dag_id} runs failed: {failed}\n{stack.logs()}")
            finished &= len(states) == len(run_ids) and all(s == "success" for s in states.values())
        return finished

    stack.wait(f"runs {runs}", done, timeout, interval=0.5)


@pytest.mark.timeout(1500)
def test_the_compose_stack_runs_sweeps_on_both_workers_without_losing_a_sample(
    stack: DistributedStack, cluster: Cluster, store: MetricsStore, tmp_path: Path
) -> None:
    started = time.monotonic()
    # The history the backfill reports on: day 0 is the counters' baseline, the report days
    # follow it. The embedded default's reports of it are written in a process of their own
    # meanwhile: they need nothing from the stack, so they run while it boots, not while
    # the runs it is timed on share its CPU.
    history_start = _history_start(stack)
    days = [history_start + timedelta(days=i) for i in range(1, REPORT_DAYS + 1)]
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    embedded = pool.submit(
        embedded_reports, history_start, days, cluster.deploy.fleet_file, tmp_path / "embedded"
    )
    pool.shutdown(wait=False)
    # In the stack's store before any run can read it (while the stack boots: its own
    # sweeps write today's samples, never these days').
    fill(store, make_history(history_start.timestamp(), days=REPORT_DAYS + 1))
    seeded = time.monotonic() - started

    stack.wait("the API server", stack.api_up, timeout=300, interval=2.0)
    stack.wait_for_dags(DAG_IDS)
    stack.wait_for_workers()

    # Logical dates the scheduler never creates. The DAG is un-paused (as in the compose
    # stack) with catchup=False: the scheduler runs the latest 5-minute tick when it first
    # sees the DAG, then every tick after, and dag_run is unique on (dag_id, logical_date):
    # a manual run at one of those ticks is refused with 409. Counted back from "now", the
    # newest of these dates was that first scheduled tick whenever a tick passed between
    # the scheduler's first run and "now" (a rehearsal's crossed midnight); counted back
    # from the tick before the launch, they all precede every run the scheduler makes.
    assert stack.launched_at is not None
    launched = stack.launched_at.replace(second=0, microsecond=0)
    first_tick = launched - timedelta(minutes=launched.minute % 5)
    sweep_times = [first_tick - k * SWEEP_STEP for k in range(1, SWEEPS + 1)]
    ensure_version(cluster.deploy.base_path, 2)
    # The new pod loads version 2 for a while (not Ready meanwhile), so the deploy's waits
    # find the rollout still progressing when Celery hands them out, and defer.
    cluster.deploy.serving.set_faults(load_delay=LOAD_DELAY_S)
    sweeps = {stack.trigger("infra_health_sweep", logical_date=t): t for t in sweep_times}
    deploy = stack.trigger(
        "model_deploy", conf={"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}
    )
    scale = stack.trigger(
        "model_scale", conf={"model": "resnet50-classifier", "replicas": 3, "reason": "distributed test"}
    )
    # Two days at a time, the most the backfill dialog allows (the DAG's max_active_runs).
    backfill = stack.backfill("metrics_report", days[0], days[-1], max_active_runs=2)
    report_runs = stack.backfill_runs(backfill)
    # One run per day, named as the embedded default's backfill names it.
    assert report_runs == [(day, backfill_run_id(day)) for day in days], report_runs

    deferred: set[tuple[str, str]] = set()
    runs_started = time.monotonic()
    _wait_runs(
        stack,
        {
            "infra_health_sweep": set(sweeps),
            "model_deploy": {deploy},
            "model_scale": {scale},
            "metrics_report": {run_id for _, run_id in report_runs},
        },
        timeout=900,
        deferred=deferred,
    )
    runs_s = time.monotonic() - runs_started
    # What the dates above rely on: every run the scheduler made is at the launch's tick or later.
    scheduled = stack.db(
        "SELECT logical_date FROM dag_run WHERE dag_id = 'infra_health_sweep' AND run_type = 'scheduled'"
    )
    assert all(d >= first_tick for (d,) in scheduled), (first_tick, scheduled)

    # Both workers ran sweep tasks (a task instance records the host that ran it).
    hosts = stack.db(
        "SELECT DISTINCT hostname FROM task_instance WHERE dag_id = 'infra_health_sweep' "
        "AND run_id = ANY(:runs) AND state = 'success'",
        runs=list(sweeps),
    )
    assert {h for (h,) in hosts} >= set(WORKERS), hosts
    # Every report run's task ran, and on a Celery worker.
    report_tis = stack.db(
        "SELECT run_id, hostname, state FROM task_instance WHERE dag_id = 'metrics_report' "
        "AND run_id = ANY(:runs)",
        runs=[run_id for _, run_id in report_runs],
    )
    assert {r for r, _, _ in report_tis} == {run_id for _, run_id in report_runs}, report_tis
    assert {(h, s) for _, h, s in report_tis} <= {(w, "success") for w in WORKERS}, report_tis

    # Every sample each collector staged (on whichever worker) is in the store once.
    for run_id, at in sweeps.items():
        ts = at.timestamp()
        (sweep,) = store.sweeps(ts, ts + 1)
        assert sweep.run_id == run_id
        staged = store.staged(run_id)
        assert set(staged) == COLLECTORS, run_id
        keys = {s.series_key for samples in staged.values() for s in samples}
        stored = [s.series_key for s in store.sweep_samples(ts)]
        assert len(stored) == len(set(stored)) == sweep.samples, run_id
        # Nothing lost; the only samples not staged are those derived at write time.
        assert keys <= set(stored), sorted(keys - set(stored))[:5]
        assert {name for name, _ in set(stored) - keys} <= DERIVED, run_id
        assert len(keys) > 50

    # The deploy: version 2 serves, and its waits ran as triggers in the triggerer.
    cluster.deploy.wait_serving(2, 1)
    assert deferred, "no model_deploy task was seen deferred on a triggerer"
    assert {host for _, host in deferred} == {"airflow-triggerer"}, deferred
    from mlinfra.deploy.records import DeploymentRecords

    record = DeploymentRecords(store).get(deploy)
    assert record is not None
    assert record.outcome == "succeeded", record

    # The manual scale: patched, waited for, audited.
    from mlinfra.scaling.records import ScaleRecords

    (event,) = [e for e in ScaleRecords(store).events("resnet50-classifier") if e["run_id"] == scale]
    assert (event["from_replicas"], event["to_replicas"], event["outcome"]) == (2, 3, "available")

    embedded_rows, embedded_s = embedded.result(timeout=600)
    # The reports: the same files as the embedded default's, byte for byte (the JSON is
    # compared parsed first, for a readable difference), and the same rows in the store.
    statuses = []
    for day in days:
        name = day.strftime("%Y-%m-%d")
        ours, theirs = cluster.reports / name, tmp_path / "embedded" / "reports" / name
        assert sorted(p.name for p in ours.iterdir()) == list(REPORT_FILES), name
        report = json.loads((ours / "report.json").read_bytes())
        assert report == json.loads((theirs / "report.json").read_bytes()), name
        for file in REPORT_FILES:
            assert (ours / file).read_bytes() == (theirs / file).read_bytes(), f"{name}/{file}"
        statuses.append(report["status"])
    # Reports with data in them (day 1 has a gap, so it is partial): equal is not "both empty".
    assert statuses == ["partial"] + ["complete"] * (REPORT_DAYS - 1), statuses
    rows = report_rows(store, days)
    assert rows == embedded_rows
    assert [r["run_id"] for r in rows] == [run_id for _, run_id in report_runs]

    # One Pushgateway group for the sweep job, whichever worker pushed each sweep.
    groups = httpx.get(f"{cluster.pushgateway.url}/api/v1/metrics", timeout=10).json()["data"]
    assert [g["labels"] for g in groups] == [{"job": DEFAULT_JOB, "instance": DEFAULT_INSTANCE}], groups
    print(
        f"distributed stack: {time.monotonic() - started:.0f}s from launch to the last check "
        f"(seeding the store {seeded:.0f}s, the embedded default's reports {embedded_s:.0f}s "
        "in a process of their own meanwhile, "
        f"then waiting for the runs {runs_s:.0f}s)"
    )
