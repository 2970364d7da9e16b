"""Post alerts to Alertmanager's API v2, as Prometheus's notifier does.

The Airflow connection ``alertmanager_default`` (type ``alertmanager``; one of type
``http`` works the same) names the server:
host, port, schema (``http``/``https``), optional login/password for basic auth,
and extras ``path_prefix`` (Alertmanager's ``--web.route-prefix``), ``timeout``
(seconds, default 10) and ``verify`` (TLS verification: true, the default, false,
or the path of a CA bundle)::

    hook = AlertmanagerHook()                          # connection alertmanager_default
    hook.post_alerts(result.alerts, generator_url=ti.log_url, at=logical_time, interval=300)
    hook.get_alerts()                                  # what Alertmanager holds now

Each alert goes out with its labels and annotations, ``startsAt`` (when it fired),
``endsAt`` (when it resolved; for a firing alert, 4 x max(resend delay, group
interval) ahead, like Prometheus, so it expires unless re-sent -- the sweep re-sends
it at every evaluation while it is active) and ``generatorURL``. Transport errors
and 5xx answers are retried (tenacity); a 4xx answer raises at once with
Alertmanager's message.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from airflow.sdk import BaseHook

from mlinfra.exceptions import AlertmanagerError
from mlinfra.hooks.extras import http_base_url, timeout_setting, tls_verify_setting
from mlinfra.redaction import redact_url
from mlinfra.settings import SWEEP_INTERVAL

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT = 10.0
RESEND_DELAY = 60.0  # Prometheus's --rules.alert.resend-delay
RETRY_ATTEMPTS = 3


class PostableAlert(Protocol):
    """What an alert must offer to be posted (``mlinfra.rules.evaluate.EvaluatedAlert`` does).

    A protocol, not an import of the rules package: hooks sit below the rule engine.
    """

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def state(self) -> str: ...
    @property
    def active_at(self) -> float: ...
    @property
    def fired_at(self) -> float | None: ...
    @property
    def resolved_at(self) -> float | None: ...


def rfc3339(t: float) -> str:
    """Seconds since the epoch -> ``2026-01-01T12:05:00Z`` (millisecond precision when needed)."""
    dt = datetime.fromtimestamp(t, UTC)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def alert_payload(
    alert: PostableAlert, *, at: float, interval: float, generator_url: str = ""
) -> dict[str, Any]:
    """One alert in Alertmanager's ``postableAlert`` form."""
    starts = alert.fired_at if alert.fired_at is not None else alert.active_at
    if alert.state == "resolved" and alert.resolved_at is not None:
        ends = alert.resolved_at
    else:
        ends = at + 4 * max(RESEND_DELAY, interval)
    body: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


class AlertmanagerHook(BaseHook):
    """Client of one Alertmanager (API v2).

    :param alertmanager_conn_id: Airflow connection (type ``http``).
    :param timeout: seconds per request; beats the connection's ``timeout`` extra.
    """

    conn_name_attr = "alertmanager_conn_id"
    default_conn_name = "alertmanager_default"
    conn_type = "alertmanager"
    hook_name = "Alertmanager"

    def __init__(self, alertmanager_conn_id: str = default_conn_name, *, timeout: float | None = None):
        super().__init__()
        self.alertmanager_conn_id = alertmanager_conn_id
        self._timeout_arg = timeout

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.alertmanager_conn_id)

    @cached_property
    def _extras(self) -> dict[str, Any]:
        return dict(self._connection.extra_dejson or {})

    @cached_property
    def base_url(self) -> str:
        """``scheme://host:port[/prefix]`` from the connection (a host may already carry its scheme)."""
        return http_base_url(
            self._connection, conn_id=self.alertmanager_conn_id, what="Alertmanager", error=AlertmanagerError
        )

    @cached_property
    def where(self) -> str:
        """The base URL as messages and logs show it: without credentials a pasted URL may carry."""
        return redact_url(self.base_url)

    @cached_property
    def timeout(self) -> float:
        return timeout_setting(
            self._timeout_arg,
            self._extras,
            conn_id=self.alertmanager_conn_id,
            default=DEFAULT_TIMEOUT,
            error=AlertmanagerError,
        )

    @cached_property
    def client(self) -> httpx.Client:
        import httpx

        conn = self._connection
        auth = httpx.BasicAuth(conn.login, conn.password or "") if conn.login else None
        return httpx.Client(base_url=self.base_url, auth=auth, timeout=self.timeout, verify=self.verify)

    @cached_property
    def verify(self) -> bool | ssl.SSLContext:
        """TLS verification from the extra ``verify``: true, false, or a CA bundle's path."""
        return tls_verify_setting(self._extras, conn_id=self.alertmanager_conn_id, error=AlertmanagerError)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx
        import tenacity

        def is_retryable(exc: BaseException) -> bool:
            return isinstance(exc, httpx.TransportError) or (
                isinstance(exc, _ServerError) and exc.status >= 500
            )

        @tenacity.retry(
            retry=tenacity.retry_if_exception(is_retryable),
            stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=0.5, max=5),
            reraise=True,
        )
        def call() -> httpx.Response:
            response = self.client.request(method, path, **kwargs)
            if response.status_code >= 500:
                raise _ServerError(response.status_code, response.text)
            return response

        try:
            response = call()
        except httpx.TransportError as e:
            raise AlertmanagerError(
                f"Alertmanager at {self.where} (connection {self.alertmanager_conn_id!r}) "
                f"is unreachable: {type(e).__name__}: {e}"
            ) from e
        except _ServerError as e:
            raise AlertmanagerError(
                f"Alertmanager at {self.where}: {method} {path} answered {e.status}: {e.body.strip()[:500]}"
            ) from None
        if response.status_code >= 400:
            raise AlertmanagerError(
                f"Alertmanager at {self.where}: {method} {path} answered {response.status_code}: "
                f"{response.text.strip()[:500]}"
            )
        return response

    def post_alerts(
        self,
        alerts: Sequence[PostableAlert],
        *,
        generator_url: str = "",
        at: float,
        interval: float = SWEEP_INTERVAL,
    ) -> int:
        """``POST /api/v2/alerts`` with every alert; returns how many were sent."""
        body = [alert_payload(a, at=at, interval=interval, generator_url=generator_url) for a in alerts]
        if not body:
            return 0
        self._request("POST", "/api/v2/alerts", json=body)
        self.log.info("posted %d alert(s) to Alertmanager at %s", len(body), self.where)
        return len(body)

    def get_alerts(self, *, active: bool | None = None) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (all alerts Alertmanager holds, or only active/inactive ones)."""
        params = {} if active is None else {"active": str(active).lower()}
        result: list[dict[str, Any]] = self._request("GET", "/api/v2/alerts", params=params).json()
        return result

    def test_connection(self) -> tuple[bool, str]:
        try:
            self._request("GET", "/api/v2/status")
        except AlertmanagerError as e:
            return False, str(e)
        return True, f"Alertmanager at {self.where} answered"


class _ServerError(Exception):
    def __init__(self, status: int, body: str):
        self.status = status
        self.body = body
        super().__init__(f"{status}: {body}")
