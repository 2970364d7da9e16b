"""The metrics_report DAG: its schedule, and a real backfill by the real scheduler.

The integration test starts Airflow's scheduler, dag-processor and api-server (the
execution API the LocalExecutor's task processes talk to) in a private
AIRFLOW_HOME (SQLite metadata DB, as `make run` has it), fills a
store with 10 days of generated history, runs
``airflow backfill create`` over 8 days and checks every report figure by figure
against values computed from the history's ground truth; then
``--reprocess-behavior completed`` must regenerate byte-identical JSON.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "metrics_report.py"
DAY = 86400.0


def _dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags["metrics_report"]


def test_schedule_has_real_day_intervals_and_no_catchup() -> None:
    from airflow.sdk import CronDataIntervalTimetable

    dag = _dag()
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.catchup is False
    assert dag.start_date == datetime(2026, 1, 1, tzinfo=UTC)
    ser = dag.timetable
    from airflow.serialization.serialized_objects import DagSerialization

    infos = list(
        DagSerialization.from_dict(DagSerialization.to_dict(dag)).iter_dagrun_infos_between(
            datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
        )
    )
    assert [(i.data_interval.start, i.data_interval.end) for i in infos] == [
        (datetime(2026, 3, d, tzinfo=UTC), datetime(2026, 3, d + 1, tzinfo=UTC)) for d in (1, 2, 3)
    ], ser
    (task,) = dag.tasks
    assert task.retries >= 2
    assert task.owner == "ml-platform"
    assert "backfill" in (dag.doc_md or "")


# ---------------------------------------------------------------------- the real backfill


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AirflowStack:
    home: Path
    env: dict[str, str]
    port: int
    engine: Any
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
        )

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
            start_new_session=True,
        )

    def launch(self) -> None:
        """api-server (execution API only: what task processes need), dag-processor, scheduler."""
        self.start(
            "api-server",
            "api-server",
            "--apps",
            "execution",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        )
        self.start("dag-processor", "dag-processor")
        self.start("scheduler", "scheduler")

    def backfill(self, *args: str) -> None:
        """``airflow backfill create ARGS`` while the scheduler runs, as a user would."""
        done = self.cli("backfill", "create", "--dag-id", "metrics_report", *args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def logs(self) -> str:
        out = []
        for name in self.procs:
            text = (self.home / f"{name}.log").read_text(errors="replace")
            out.append(f"----- {name} (last 4000 chars) -----\n{text[-4000:]}")
        task_logs = sorted((self.home / "logs").rglob("*.log"))[-3:] if (self.home / "logs").exists() else []
        for p in task_logs:
            out.append(f"----- {p.relative_to(self.home)} -----\n{p.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def db(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(
                        f"airflow {name} exited with {proc.returncode} while waiting for {what}\n{self.logs()}"
                    )
            if check():
                return
            time.sleep(2)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")


@pytest.fixture
def airflow_stack(tmp_path: Path, postgres) -> Iterator[AirflowStack]:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    home = tmp_path / "airflow"
    # Airflow's metadata on the real PostgreSQL, as in the compose stack: with SQLite,
    # `backfill create` racing the dag-processor and api-server for the write lock failed
    # with "database is locked" (a rollback-journal deadlock that no busy timeout waits out).
    database = f"airflow_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    db_url = sa.make_url(postgres.url).set(database=database)
    dags = home / "dags"
    dags.mkdir(parents=True)
    (home / "plugins").mkdir()
    # Only this DAG: the sweep DAG would start sweeping this machine every 5 minutes.
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url.render_as_string(hide_password=False),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    stack = AirflowStack(home, env, port, sa.create_engine(db_url, poolclass=sa.pool.NullPool))
    migrated = stack.cli("db", "migrate", timeout=600)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    try:
        yield stack
    finally:
        stack.stop()
        stack.engine.dispose()


def _runs(stack: AirflowStack, backfill_id: int) -> list[tuple[str, str]]:
    return stack.db(
        "SELECT logical_date, state FROM dag_run WHERE backfill_id = :b ORDER BY logical_date", b=backfill_id
    )


@pytest.mark.integration
@pytest.mark.timeout(2400)
def test_backfill_makes_one_report_per_day_and_reprocessing_is_identical(
    airflow_stack: AirflowStack, tmp_path: Path
) -> None:
    from mlinfra.config import load_fleet
    from mlinfra.reports.records import report_records
    from mlinfra.store import MetricsStore
    from tests.reports.conftest import fill
    from tests.reports.expected import check_report, expected_day
    from tests.reports.synthetic import SyntheticHistory
    from tests.support.connections import store_connection_env

    stack = airflow_stack
    fleet = load_fleet()
    # Ten days that ended before today (a backfill only runs intervals that are over).
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=12)
    start = first.timestamp()
    history = SyntheticHistory(
        start=start,
        days=10,
        models=[(m.name, m.kubernetes.namespace, m.kubernetes.deployment) for m in fleet.models],
        gaps=[(start + 3 * DAY + 7200, start + 3 * DAY + 9000)],
        resets=[("half-plus-two", start + 5 * DAY + 40000 - 40000 % 300)],
        gpu_absent=[("gpu-node-1", "1", start + 6 * DAY + 3600, start + 6 * DAY + 7200)],
        nan_util=[start + 2 * DAY + 600],
    )
    store_path = tmp_path / "store.db"
    store = MetricsStore.from_url(f"sqlite:///{store_path}")
    slots = fill(store, history)
    reports = tmp_path / "reports"
    stack.env.update([store_connection_env(store_path)])
    stack.env["AIRFLOW_VAR_MLINFRA_REPORTS_BASE"] = reports.as_uri()
    stack.env["MLINFRA_FLEET_FILE"] = str(ROOT / "include" / "fleet.yaml")
    # Task processes inherit the scheduler's environment, so it starts after these are set.
    stack.launch()

    stack.wait(
        "the DAG to be serialized",
        lambda: bool(stack.db("SELECT 1 FROM serialized_dag WHERE dag_id = 'metrics_report'")),
        timeout=300,
    )
    unpaused = stack.cli("dags", "unpause", "metrics_report")
    assert unpaused.returncode == 0, unpaused.stderr[-2000:]

    days = [first + timedelta(days=i) for i in range(1, 9)]  # day 0 is the counters' baseline
    frm, to = days[0].strftime("%Y-%m-%d"), days[-1].strftime("%Y-%m-%d")
    stack.backfill("--from-date", frm, "--to-date", to)

    def backfill_done(backfill_id: int) -> bool:
        runs = _runs(stack, backfill_id)
        if any(state == "failed" for _, state in runs):
            pytest.fail(f"backfill run failed: {runs}\n{stack.logs()}")
        done = stack.db("SELECT completed_at FROM backfill WHERE id = :b", b=backfill_id)
        return len(runs) == len(days) and all(s == "success" for _, s in runs) and bool(done and done[0][0])

    stack.wait("the backfill's 8 runs", lambda: backfill_done(1), timeout=1200)

    folders = {d.strftime("%Y-%m-%d") for d in days}
    written = {p.name for p in reports.iterdir() if p.is_dir()}
    # Unpausing also starts the latest scheduled day (catchup=False): that one, and nothing else.
    latest = (today - timedelta(days=1)).strftime("%Y-%m-%d")
    assert folders <= written, written
    assert written - folders <= {latest}, written
    first_bytes: dict[str, bytes] = {}
    problems: list[str] = []
    for d in days:
        folder = reports / d.strftime("%Y-%m-%d")
        assert sorted(p.name for p in folder.iterdir()) == ["report.csv", "report.html", "report.json"]
        raw = (folder / "report.json").read_bytes()
        first_bytes[folder.name] = raw
        data = json.loads(raw)
        assert data["interval"]["start"] == d.isoformat().replace("+00:00", "Z")
        exp = expected_day(slots, fleet, d.timestamp(), d.timestamp() + DAY)
        problems += [f"{folder.name}: {p}" for p in check_report(data, exp)]
    assert problems == []
    rows = report_records(store, days[0], days[-1] + timedelta(days=1))
    assert [r["interval_start"] for r in rows] == [d.timestamp() for d in days]
    assert {r["status"] for r in rows} == {"complete", "partial"}

    stack.backfill("--from-date", frm, "--to-date", to, "--reprocess-behavior", "completed")
    stack.wait("the reprocessing backfill", lambda: backfill_done(2), timeout=1200)
    for name, raw in first_bytes.items():
        assert (reports / name / "report.json").read_bytes() == raw, name
    assert len(report_records(store, days[0], days[-1] + timedelta(days=1))) == len(days)
