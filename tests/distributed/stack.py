"""The compose stack's Airflow, as processes on this machine: what tests/distributed runs against.

docker-compose.yaml starts, with one environment (``x-airflow-common``): the API
server, the scheduler, the dag-processor, the triggerer and Celery workers, on
PostgreSQL and Redis. :class:`DistributedStack` starts the same commands with the same
environment (read from the compose file by :mod:`tests.support.compose_env`), two
workers instead of one, each process named like its container
(``CONTAINER_HOSTNAME``, read by :mod:`tests.distributed.hostname`)::

    stack = DistributedStack.create(home, compose_env)
    stack.migrate()
    stack.launch()
    stack.wait_for_dags(["infra_health_sweep"])
    run_id = stack.trigger("infra_health_sweep", logical_date=...)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("airflow-worker-1", "airflow-worker-2")
# Two task slots per worker: the sweep's four collectors can run two and two, one on each.
WORKER_CONCURRENCY = 2
STOP_TIMEOUT_S = 30.0


@dataclass
class DistributedStack:
    home: Path
    env: dict[str, str]
    api_url: str
    engine: sa.Engine
    admin_password: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # When launch() started the scheduler: it creates no scheduled run before this.
    launched_at: datetime | None = None
    _token: str | None = None

    # ------------------------------------------------------------------ processes

    def _env(self, hostname: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.env, "CONTAINER_HOSTNAME": hostname, **(extra or {})}

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``airflow ARGS`` as a user of the stack runs it (from the scheduler's container, say)."""
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self._env("airflow-cli"),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
        )

    def start(self, service: str, args: Sequence[str], extra: Mapping[str, str] | None = None) -> None:
        log = open(self.home / f"{service}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[service] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self._env(service, extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.home,
            start_new_session=True,
        )

    def migrate(self) -> None:
        done = self.cli("db", "migrate", timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def launch(self) -> None:
        """The compose file's commands: ``api-server``, ``scheduler``, ``dag-processor``,
        ``triggerer`` and ``celery worker`` (twice, each with its own Celery node name)."""
        self.launched_at = datetime.now(UTC)
        self.start("airflow-apiserver", ["api-server", "--workers", "1"])
        self.start("airflow-scheduler", ["scheduler"])
        self.start("airflow-dag-processor", ["dag-processor"])
        self.start("airflow-triggerer", ["triggerer"])
        for name in WORKERS:
            self.start(
                name,
                [
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--concurrency",
                    str(WORKER_CONCURRENCY),
                ],
                # Each container serves its task logs on 8793; here the workers share one host.
                {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
            )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def logs(self, chars: int = 3000) -> str:
        out = []
        for name in self.procs:
            text = (self.home / f"{name}.log").read_text(errors="replace")
            out.append(f"----- {name} (last {chars} chars) -----\n{text[-chars:]}")
        logs = self.home / "logs"
        failed = self.db("SELECT dag_id, task_id, run_id, state FROM task_instance WHERE state != 'success'")
        out.append(f"----- task instances not successful: {failed}")
        task_logs = sorted(logs.rglob("*.log"), key=lambda p: p.stat().st_mtime)[-4:] if logs.exists() else []
        for p in task_logs:
            out.append(f"----- {p.relative_to(self.home)} -----\n{p.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def wait(self, what: str, check: Callable[[], bool], timeout: float, interval: float = 1.0) -> None:
        """Until ``check()``; fails with every process's log tail on a timeout or a process exit."""
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(
                        f"{name} exited with {proc.returncode} while waiting for {what}\n{self.logs()}"
                    )
            if check():
                return
            if time.monotonic() >= deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")
            time.sleep(interval)

    # ------------------------------------------------------------------ the metadata database

    def db(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def wait_for_dags(self, dag_ids: Sequence[str], timeout: float = 300) -> None:
        def parsed() -> bool:
            rows = self.db("SELECT dag_id FROM serialized_dag")
            return set(dag_ids) <= {r[0] for r in rows}

        self.wait(f"DAGs {sorted(dag_ids)} serialized", parsed, timeout)

    def wait_for_workers(self, timeout: float = 300) -> None:
        """Until both Celery workers answer a ping through the broker (they consume tasks then)."""

        def both_up() -> bool:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "--app",
                    "airflow.providers.celery.executors.celery_executor.app",
                    "inspect",
                    "ping",
                    "--timeout",
                    "5",
                ],
                env=self._env("airflow-cli"),
                capture_output=True,
                text=True,
                timeout=120,
                cwd=self.home,
            )
            return all(f"{name}@" in done.stdout for name in WORKERS)

        self.wait("both Celery workers", both_up, timeout, interval=2.0)

    def run_states(self, dag_id: str) -> dict[str, str]:
        return dict(self.db("SELECT run_id, state FROM dag_run WHERE dag_id = :d", d=dag_id))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the REST API (the stack's UI's)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._token is None:
            r = httpx.post(
                f"{self.api_url}/auth/token",
                json={"username": "airflow", "password": self.admin_password},
                timeout=30,
            )
            r.raise_for_status()
            self._token = r.json()["access_token"]
        r = httpx.request(
            method,
            f"{self.api_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=60,
            **kwargs,
        )
        assert r.status_code < 300, f"{method} {path}: HTTP {r.status_code} {r.text[:2000]}"
        return r.json()

    def trigger(
        self, dag_id: str, *, logical_date: datetime | None = None, conf: Mapping[str, Any] | None = None
    ) -> str:
        body: dict[str, Any] = {"logical_date": logical_date.isoformat() if logical_date else None}
        if conf is not None:
            body["conf"] = dict(conf)
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def backfill(
        self, dag_id: str, from_date: datetime, to_date: datetime, *, max_active_runs: int = 1
    ) -> int:
        """A backfill as the UI's backfill dialog creates it (``POST /backfills``); its id.

        The dialog's defaults: no re-processing of days that have a run, oldest day first,
        one run at a time unless asked for more (up to the DAG's ``max_active_runs``).
        """
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "max_active_runs": max_active_runs,
            "reprocess_behavior": "none",
            "run_backwards": False,
        }
        return int(self.api("POST", "/backfills", json=body)["id"])

    def backfill_runs(self, backfill_id: int) -> list[tuple[datetime, str]]:
        """(data interval start, run id) of each run a backfill created, oldest first."""
        rows = self.db(
            "SELECT data_interval_start, run_id FROM dag_run WHERE backfill_id = :b "
            "ORDER BY data_interval_start",
            b=backfill_id,
        )
        return [(start, run_id) for start, run_id in rows]

    def api_up(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/api/v2/version", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


def create_stack(
    home: Path,
    compose_env: Mapping[str, str],
    *,
    airflow_db_url: str,
    broker_url: str,
    replacements: Mapping[str, str | None],
    additions: Mapping[str, str],
) -> DistributedStack:
    """A stack in ``home`` on the given database and broker; nothing started yet.

    ``replacements`` are the stand-ins behind the compose connections, the fleet file
    and the reports folder; ``additions`` what the test adds to speed things up.
    """
    from tests.support.compose_env import local_airflow_environment

    home.mkdir(parents=True, exist_ok=True)
    api_port = free_port()
    admin_password = secrets.token_urlsafe(12)
    passwords = home / "passwords.json"
    # What deploy/airflow/init.sh writes in the compose stack: the users' passwords.
    passwords.write_text(json.dumps({"airflow": admin_password, "prometheus": secrets.token_urlsafe(12)}))
    env = local_airflow_environment(
        compose_env,
        replacements={
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_db_url}",
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            **replacements,
        },
        additions={
            # What the image sets (AIRFLOW_HOME=/opt/airflow and its dags/ and plugins/ mounts).
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            # Ports every container has to itself (8080, 8793, 8794, 8974), free ones here.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            # Containers have host names of their own; these processes share one.
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.hostname.container_hostname",
            # The image installs mlinfra; here it is this checkout (and tests/ for the callable).
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            **additions,
        },
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLINFRA_", "PYTHONPATH"))}
    engine = sa.create_engine(airflow_db_url, poolclass=sa.pool.NullPool)
    return DistributedStack(home, {**base, **env}, f"http://127.0.0.1:{api_port}", engine, admin_password)
