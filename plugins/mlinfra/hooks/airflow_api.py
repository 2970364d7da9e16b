"""Airflow's own public REST API (``/api/v2``), for what a task cannot do through the Task SDK.

Airflow 3's Task SDK lets a task read and write its own XComs and state, but not its
DAG run's note, and not the answer an *earlier* try of a human-in-the-loop task got.
Both are in Airflow's public API. The optional connection ``mlinfra_airflow_api``
(type ``http``) names the API server and a user allowed to edit DAG runs::

    host      http://localhost:8080   (the API server; a schema/port/path_prefix work as usual)
    login     admin                   (exchanged for a token at POST /auth/token)
    password  ...

Without a login, a password is taken as a ready bearer token (an auth manager that
issues API tokens). Without the connection, callers skip what needs it and say so:
see :func:`airflow_api_or_none`. ``make demo`` creates it (``scripts/demo_unpause.py``).

    api = airflow_api_or_none()
    if api is not None:
        api.set_dag_run_note("metrics_report", run_id, "Report of 2026-11-29 ...")
        api.earlier_hitl_answer("model_deploy", run_id, "approve_1", try_number=2)

Transport errors and 5xx answers are retried (tenacity); other failures raise
:class:`~mlinfra.exceptions.AirflowApiError` with the URL (credentials removed) and
Airflow's message.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseHook

from mlinfra.exceptions import AirflowApiError
from mlinfra.hooks.extras import http_base_url, timeout_setting, tls_verify_setting
from mlinfra.redaction import redact_url

if TYPE_CHECKING:
    import ssl

    import httpx

DEFAULT_CONN_ID = "mlinfra_airflow_api"
DEFAULT_TIMEOUT = 10.0
RETRY_ATTEMPTS = 3
NOTE_MAX_LENGTH = 1000  # DAGRunPatchBody.note's max_length in Airflow 3
# A try that ended this way acted on its answer: a later try (a clear) asks again.
_ANSWER_USED_STATES = frozenset({"success", "skipped"})


class AirflowApiHook(BaseHook):
    """Client of Airflow's public REST API v2.

    :param airflow_api_conn_id: Airflow connection (type ``http``).
    :param timeout: seconds per request; beats the connection's ``timeout`` extra.
    """

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "http"
    hook_name = "Airflow REST API"

    def __init__(self, airflow_api_conn_id: str = DEFAULT_CONN_ID, *, timeout: float | None = None):
        super().__init__()
        self.airflow_api_conn_id = airflow_api_conn_id
        self._timeout_arg = timeout

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.airflow_api_conn_id)

    @cached_property
    def _extras(self) -> dict[str, Any]:
        return dict(self._connection.extra_dejson or {})

    @cached_property
    def base_url(self) -> str:
        return http_base_url(
            self._connection,
            conn_id=self.airflow_api_conn_id,
            what="the Airflow API server",
            error=AirflowApiError,
        )

    @cached_property
    def where(self) -> str:
        return redact_url(self.base_url)

    @cached_property
    def timeout(self) -> float:
        return timeout_setting(
            self._timeout_arg,
            self._extras,
            conn_id=self.airflow_api_conn_id,
            default=DEFAULT_TIMEOUT,
            error=AirflowApiError,
        )

    @cached_property
    def verify(self) -> bool | ssl.SSLContext:
        return tls_verify_setting(self._extras, conn_id=self.airflow_api_conn_id, error=AirflowApiError)

    @cached_property
    def client(self) -> httpx.Client:
        import httpx

        return httpx.Client(base_url=self.base_url, timeout=self.timeout, verify=self.verify)

    @cached_property
    def token(self) -> str:
        """A bearer token: the login exchanged at ``POST /auth/token``, or the password as is."""
        conn = self._connection
        if not conn.login:
            if not conn.password:
                raise AirflowApiError(
                    f"connection {self.airflow_api_conn_id!r} has neither a login nor a token (password)"
                )
            return str(conn.password)
        body = self._request(
            "POST", "/auth/token", json={"username": conn.login, "password": conn.password or ""}, auth=False
        ).json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise AirflowApiError(
                f"Airflow API at {self.where}: /auth/token answered without an access_token"
            )
        return str(token)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def _request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        import httpx
        import tenacity

        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}

        @tenacity.retry(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, httpx.TransportError | _ServerError)),
            stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=0.5, max=5),
            reraise=True,
        )
        def call() -> httpx.Response:
            response = self.client.request(method, path, headers=headers, **kwargs)
            if response.status_code >= 500:
                raise _ServerError(response.status_code, response.text)
            return response

        try:
            response = call()
        except httpx.TransportError as e:
            raise AirflowApiError(
                f"Airflow API at {self.where} (connection {self.airflow_api_conn_id!r}) is unreachable: "
                f"{type(e).__name__}: {e}"
            ) from e
        except _ServerError as e:
            raise AirflowApiError(
                f"Airflow API at {self.where}: {method} {path} answered {e.status}: {e.body.strip()[:300]}"
            ) from None
        if response.status_code >= 400:
            raise AirflowApiError(
                f"Airflow API at {self.where}: {method} {path} answered {response.status_code}: "
                f"{response.text.strip()[:300]}",
                status=response.status_code,
            )
        return response

    def set_dag_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Replace the note of a DAG run (what the run's *Notes* panel shows); cut to Airflow's limit."""
        if len(note) > NOTE_MAX_LENGTH:
            note = note[: NOTE_MAX_LENGTH - 1] + "…"
        self._request(
            "PATCH",
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
            params={"update_mask": "note"},
            json={"note": note},
        )

    def dag_run_note(self, dag_id: str, run_id: str) -> str | None:
        run = self._request(
            "GET", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        ).json()
        return run.get("note")

    def earlier_hitl_answer(
        self, dag_id: str, run_id: str, task_id: str, *, try_number: int, map_index: int = -1
    ) -> dict[str, Any] | None:
        """The answer an earlier try of a human-in-the-loop task got but never acted on.

        Tries ``try_number - 1`` down to 1, from Airflow's HITL history: the newest try
        that has a response and ended neither in success nor skipped (so it was killed or
        failed before it could act: a retry). None when there is none (a first try, no
        answer yet, or a try that used its answer, i.e. a deliberate clear that asks again).
        The result is shaped as the event Airflow resumes the task with
        (``HITLDetail.as_resume_event_payload``), ``responded_at`` as an ISO string.

        A try can also end without being archived. When the scheduler sees a late
        "success" event for the try that paused (``AWAITING_INPUT``) after the answer
        had already resumed it (state ``queued``), it fails that try without Airflow's
        retry bookkeeping (``TaskInstance.handle_failure`` archives only a ``running``
        try): no history entry, the same task-instance id, and the answer still on the
        task instance's own HITL request, which the new try would clear when it asks.
        So when the previous try has no history entry at all, the task instance's
        current request is that try's, and its answer (if any) was never acted on.

        The task instance's one HITL row follows it from try to try (its id update
        cascades), so the history of a try that ended before asking holds a copy of an
        earlier try's answer: an answer given before its try started belongs to an
        earlier try, which decides (a used answer is not reused after a clear).
        """
        task = (
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
            f"/taskInstances/{quote(task_id, safe='')}/{map_index}"
        )
        for earlier in range(try_number - 1, 0, -1):
            try:
                detail = self._request("GET", f"{task}/hitlDetails/tries/{earlier}").json()
            except AirflowApiError as e:
                if e.status != 404:
                    raise
                if earlier == try_number - 1 and not self._archived(task, earlier):
                    return self._unarchived_answer(task, earlier)
                continue  # that try asked nothing (it never reached the question)
            ti = detail.get("task_instance") or {}
            if (ti.get("state") or "").lower() in _ANSWER_USED_STATES:
                return None
            if detail.get("response_received") and detail.get("chosen_options"):
                if _answered_before(detail, ti.get("start_date")):
                    continue  # a copy inherited from an earlier try: that try decides
                return _resume_event(detail, earlier)
        return None

    def _archived(self, task: str, try_number: int) -> bool:
        """Whether ``try_number`` (an earlier try) is in the task instance's tries: its history entry."""
        tries = self._request("GET", f"{task}/tries").json().get("task_instances") or []
        return any(t.get("try_number") == try_number for t in tries)

    def _unarchived_answer(self, task: str, earlier: int) -> dict[str, Any] | None:
        """The answer on the task instance's own HITL request, left there by try ``earlier``."""
        try:
            detail = self._request("GET", f"{task}/hitlDetails").json()
        except AirflowApiError as e:
            if e.status == 404:  # no request at all: that try never asked
                return None
            raise
        if detail.get("response_received") and detail.get("chosen_options"):
            return _resume_event(detail, earlier)
        return None


def _answered_before(detail: dict[str, Any], started: str | None) -> bool:
    """Whether the HITL detail's answer predates ``started`` (its try's start, ISO 8601)."""
    answered = detail.get("responded_at")
    if not (answered and started):
        return False
    return datetime.fromisoformat(answered) < datetime.fromisoformat(started)


def _resume_event(detail: dict[str, Any], try_number: int) -> dict[str, Any]:
    """A HITL detail's answer as the event Airflow resumes the task with, and the try it was given to."""
    return {
        "chosen_options": list(detail["chosen_options"]),
        "params_input": detail.get("params_input") or {},
        "responded_at": detail.get("responded_at"),
        "responded_by_user": detail.get("responded_by_user"),
        "timedout": False,
        "try_number": try_number,
    }


class _ServerError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(status)
        self.status, self.body = status, body


def airflow_api_or_none(conn_id: str = DEFAULT_CONN_ID) -> AirflowApiHook | None:
    """The hook when the connection ``conn_id`` exists, else None (the caller skips and says so)."""
    from mlinfra.connections import connection_exists

    return AirflowApiHook(conn_id) if connection_exists(conn_id) else None
