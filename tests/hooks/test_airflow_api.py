"""AirflowApiHook against Airflow's real public API: the core app served by uvicorn on loopback,
the real SimpleAuthManager (a login exchanged at /auth/token) and the test metadata DB.

A metrics_report run (``dag.test()``) notes its day on itself through that API, and a
task instance taken through Airflow's own retry path (``prepare_db_for_next_try``) has
its earlier try's HITL answer read back, or not when that try used it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlinfra.exceptions import AirflowApiError
from mlinfra.hooks.airflow_api import AirflowApiHook, airflow_api_or_none
from mlinfra.store import MetricsStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(airflow_db: Path) -> Iterator[str]:
    """Airflow's core API (``create_app("core")``, as ``airflow api-server`` serves it) on a free port."""
    import uvicorn
    from airflow.api_fastapi.app import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app("core"), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the API server stopped while starting"
        assert time.monotonic() < deadline, "the API server did not start in 60s"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
def api_conn(api_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``mlinfra_airflow_api`` as the demo defines it: the admin's login and generated password."""
    passwords = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text())["admin"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLINFRA_AIRFLOW_API",
        json.dumps({"conn_type": "http", "host": api_server, "login": "admin", "password": password}),
    )
    return api_server


def _report_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, day: int) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MLINFRA_REPORTS_BASE", (tmp_path / "reports").as_uri())
    bag = DagBag(dag_folder=str(ROOT / "dags" / "metrics_report.py"))
    assert bag.import_errors == {}
    run = bag.dags["metrics_report"].test(logical_date=datetime(2026, 10, day, tzinfo=UTC))
    assert str(run.state) == "success"
    return run


def test_a_report_run_notes_its_day_on_itself(
    api_conn: str, store_env: MetricsStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _report_run(tmp_path, monkeypatch, 3)
    day = run.data_interval_start.strftime("%Y-%m-%d")
    note = AirflowApiHook().dag_run_note("metrics_report", run.run_id)
    assert note is not None
    assert note.startswith(f"Report of **{day}**: "), note
    assert f"run {run.run_id} is named after the interval's end" in note
    assert (tmp_path / "reports" / day / "report.json").exists()


def test_without_the_connection_the_run_succeeds_without_a_note(
    airflow_db: Path, store_env: MetricsStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLINFRA_AIRFLOW_API", raising=False)
    assert airflow_api_or_none() is None
    run = _report_run(tmp_path, monkeypatch, 4)
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        assert DagRun.find(dag_id=run.dag_id, run_id=run.run_id, session=session)[0].note is None


def test_a_wrong_password_is_a_clear_error(api_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLINFRA_AIRFLOW_API",
        json.dumps({"conn_type": "http", "host": api_server, "login": "admin", "password": "not-it"}),
    )
    with pytest.raises(AirflowApiError, match=r"POST /auth/token answered 401") as e:
        AirflowApiHook().dag_run_note("metrics_report", "nope")
    assert "not-it" not in str(e.value)


def _build_report_ti(session: Any, run: Any) -> Any:
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    return session.scalar(
        select(TaskInstance).where(
            TaskInstance.dag_id == run.dag_id,
            TaskInstance.run_id == run.run_id,
            TaskInstance.task_id == "build_report",
        )
    )


def _retry_after_answer(run: Any, *, chosen: list[str] | None, state: str, archived: bool = True) -> int:
    """Give the run's build_report task a HITL request (answered with ``chosen`` a minute after the
    try started), end its try in ``state`` and take it to its next try as Airflow's retry path does;
    returns the new try number.

    ``archived=False``: as the scheduler's late-executor-event path does (``handle_failure`` on a
    ``queued`` task instance): no history entry, the same id, the new try running.
    """
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = _build_report_ti(session, run)
        answered = chosen is not None
        session.add(
            HITLDetail(
                ti_id=ti.id,
                options=["Approve", "Reject"],
                subject="Canary approval gate 1",
                params={},
                responded_at=ti.start_date + timedelta(minutes=1) if answered else None,
                responded_by={"id": "ana", "name": "ana"} if answered else None,
                chosen_options=chosen,
                params_input={},
            )
        )
        ti.state = state
        session.flush()
        if archived:
            ti.prepare_db_for_next_try(session)
        ti.try_number += 1
        ti.state = None if archived else "running"
        return int(ti.try_number)


@pytest.mark.parametrize(
    ("day", "chosen", "state", "archived", "expected"),
    [
        (10, ["Reject"], "up_for_retry", True, ["Reject"]),  # the resumed try was killed: reuse
        (11, ["Approve"], "failed", True, ["Approve"]),
        (12, ["Reject"], "success", True, None),  # that try acted on it: a clear asks again
        (13, ["Reject"], "skipped", True, None),
        (14, None, "up_for_retry", True, None),  # asked, never answered
        # The late executor event (seen in CI): the answered try failed while queued, unarchived.
        (15, ["Reject"], "queued", False, ["Reject"]),
        (16, None, "queued", False, None),
    ],
    ids=[
        "killed-reject",
        "failed-approve",
        "used-success",
        "used-skipped",
        "unanswered",
        "unarchived-reject",
        "unarchived-unanswered",
    ],
)
def test_an_earlier_tries_answer_is_read_back_unless_it_was_used(
    api_conn: str,
    store_env: MetricsStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    day: int,
    chosen: list[str] | None,
    state: str,
    archived: bool,
    expected: list[str] | None,
) -> None:
    run = _report_run(tmp_path, monkeypatch, day)
    try_number = _retry_after_answer(run, chosen=chosen, state=state, archived=archived)
    answer = AirflowApiHook().earlier_hitl_answer(
        run.dag_id, run.run_id, "build_report", try_number=try_number
    )
    if expected is None:
        assert answer is None
        return
    assert answer is not None
    assert answer["chosen_options"] == expected
    assert answer["responded_by_user"] == {"id": "ana", "name": "ana"}
    assert answer["try_number"] == try_number - 1
    assert datetime.fromisoformat(answer["responded_at"]) == _started(run, try_number - 1) + timedelta(
        minutes=1
    )


def _started(run: Any, try_number: int) -> datetime:
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        started = session.scalar(
            select(TaskInstanceHistory.start_date).where(
                TaskInstanceHistory.run_id == run.run_id,
                TaskInstanceHistory.task_id == "build_report",
                TaskInstanceHistory.try_number == try_number,
            )
        )
    return started or run.get_task_instance("build_report").start_date


def _fail_before_asking(run: Any) -> int:
    """End the current try of build_report as failed before it asked anything (archived); the next try."""
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = _build_report_ti(session, run)
        ti.start_date = ti.start_date + timedelta(hours=1)  # it started after the answer
        ti.state = "failed"
        session.flush()
        ti.prepare_db_for_next_try(session)
        ti.try_number += 1
        ti.state = None
        return int(ti.try_number)


@pytest.mark.parametrize(("used", "expected"), [("success", None), ("up_for_retry", ["Reject"])])
def test_an_answer_a_later_try_inherited_is_judged_by_the_try_it_was_given_to(
    api_conn: str,
    store_env: MetricsStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    used: str,
    expected: list[str] | None,
) -> None:
    """A task instance keeps one HITL row, which follows it to its next try (the id update
    cascades), so the history of a try that failed before asking holds a copy of an earlier try's
    answer. A gate that acted on its answer and was cleared must ask again, even then."""
    run = _report_run(tmp_path, monkeypatch, 17 if used == "success" else 18)
    _retry_after_answer(run, chosen=["Reject"], state=used)
    try_number = _fail_before_asking(run)
    answer = AirflowApiHook().earlier_hitl_answer(
        run.dag_id, run.run_id, "build_report", try_number=try_number
    )
    assert (answer or {}).get("chosen_options") == expected, answer
    if answer is not None:
        assert answer["try_number"] == 1


def test_a_first_try_and_a_try_that_never_asked_have_no_earlier_answer(
    api_conn: str, store_env: MetricsStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _report_run(tmp_path, monkeypatch, 7)
    hook = AirflowApiHook()
    assert hook.earlier_hitl_answer(run.dag_id, run.run_id, "build_report", try_number=1) is None
    # try 1 had no HITL request at all: its history entry answers 404, which means "nothing"
    assert hook.earlier_hitl_answer(run.dag_id, run.run_id, "build_report", try_number=2) is None
