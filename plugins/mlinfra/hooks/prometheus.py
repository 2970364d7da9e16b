"""Query a Prometheus server's HTTP API (``/api/v1/query``).

The Airflow connection (default ``prometheus_default``, type ``prometheus``) is an
HTTP address: schema (``http``/``https``, default ``http``), host, port, optional
login/password (basic auth), and extras ``timeout`` (seconds, default 10),
``path_prefix`` (for a Prometheus served under a path, ``--web.route-prefix``) and
``verify`` (TLS verification: true, the default, false, or the path of a CA bundle)::

    AIRFLOW_CONN_PROMETHEUS_DEFAULT='{"conn_type": "prometheus", "host": "prometheus",
        "port": 9090, "extra": {"timeout": 5}}'

    hook = PrometheusHook()
    hook.query('sum(up)', at=1_800_000_000.0)
    # {'resultType': 'vector', 'result': [{'metric': {}, 'value': [1800000000, '3']}]}

An explicit ``base_url`` (or ``timeout``) beats the connection; with ``base_url``
no connection is needed at all. Every failure raises :class:`PrometheusError`
naming the server (never its credentials), the HTTP status and Prometheus's
``errorType``/``error``; refused connections and timeouts raise
:class:`PrometheusUnavailable`. Transport errors and 502/503/504 answers are retried
(``RETRY_ATTEMPTS`` in all, short backoff), except Prometheus's own query timeout:
the same query would only time out again.
"""

from __future__ import annotations

import ssl
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from mlinfra.exceptions import MlinfraError, PrometheusError, PrometheusUnavailable
from mlinfra.hooks.extras import http_base_url, timeout_setting, tls_verify_setting
from mlinfra.provider import field_behaviour
from mlinfra.redaction import redact_url

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_TIMEOUT", "RETRY_ATTEMPTS", "PrometheusConfigError", "PrometheusHook"]

DEFAULT_TIMEOUT = 10.0
RETRY_ATTEMPTS = 3
_RETRY_STATUSES = (502, 503, 504)  # a proxy in front, or a server restarting


class PrometheusConfigError(MlinfraError):
    """The connection does not describe a usable Prometheus address."""


class PrometheusHook(BaseHook):
    """Client of one Prometheus server's HTTP API.

    :param prometheus_conn_id: Airflow connection (type ``prometheus``; any HTTP-like type works).
    :param base_url: ``http(s)://host:port[/prefix]``; beats the connection (which is then not read).
    :param timeout: seconds per request; beats the connection's ``timeout`` extra.
    """

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "prometheus_default"
    conn_type = "prometheus"
    hook_name = "Prometheus"

    def __init__(
        self,
        prometheus_conn_id: str = default_conn_name,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self._base_url_arg = base_url
        if timeout is not None and timeout <= 0:
            raise PrometheusConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
        self._timeout_arg = timeout

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's behaviour, as declared in :mod:`mlinfra.provider` (one source)."""
        return field_behaviour(cls.conn_type)

    # ------------------------------------------------------------------ settings

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.prometheus_conn_id)

    @cached_property
    def _extras(self) -> dict[str, Any]:
        if self._base_url_arg is not None:
            return {}
        extras = self._connection.extra_dejson
        return extras if isinstance(extras, dict) else {}

    @cached_property
    def base_url(self) -> str:
        """The server's base URL, without a trailing slash."""
        if self._base_url_arg:
            return self._base_url_arg.rstrip("/")
        return http_base_url(
            self._connection,
            conn_id=self.prometheus_conn_id,
            what="the Prometheus server",
            error=PrometheusConfigError,
        )

    @cached_property
    def where(self) -> str:
        """The base URL as messages show it: without credentials a pasted URL may carry."""
        return redact_url(self.base_url)

    @cached_property
    def verify(self) -> bool | ssl.SSLContext:
        return tls_verify_setting(self._extras, conn_id=self.prometheus_conn_id, error=PrometheusConfigError)

    @cached_property
    def timeout(self) -> float:
        return timeout_setting(
            self._timeout_arg,
            self._extras,
            conn_id=self.prometheus_conn_id,
            default=DEFAULT_TIMEOUT,
            error=PrometheusConfigError,
        )

    @cached_property
    def _auth(self) -> tuple[str, str] | None:
        if self._base_url_arg is not None:
            return None
        conn = self._connection
        return (conn.login, conn.password or "") if conn.login else None

    @cached_property
    def http(self) -> httpx.Client:
        import httpx

        return httpx.Client(timeout=self.timeout, auth=self._auth, verify=self.verify)

    def get_conn(self) -> httpx.Client:
        return self.http

    def close(self) -> None:
        if "http" in self.__dict__:
            self.http.close()
            del self.__dict__["http"]

    def __enter__(self) -> PrometheusHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ API

    def query(self, expr: str, at: float) -> dict[str, Any]:
        """The ``data`` of ``GET /api/v1/query?query=expr&time=at``: ``resultType`` and ``result``."""
        params = {"query": expr, "time": _format_time(at), "timeout": f"{self.timeout:g}s"}
        return self._get("/api/v1/query", params)

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        import tenacity

        def transient(exc: BaseException) -> bool:
            if not isinstance(exc, PrometheusError) or exc.error_type == "timeout":
                return False
            return exc.status == 0 or exc.status in _RETRY_STATUSES

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2),
            reraise=True,
            before_sleep=lambda state: self.log.warning(
                "Prometheus request failed (attempt %d of %d): %s; retrying",
                state.attempt_number,
                RETRY_ATTEMPTS,
                state.outcome.exception() if state.outcome else "?",
            ),
        )
        result: dict[str, Any] = retrying(self._get_once, path, params)
        return result

    def _get_once(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        import httpx

        url = self.base_url + path
        try:
            response = self.http.get(url, params=params)
        except httpx.TimeoutException as e:
            raise PrometheusUnavailable(
                f"Prometheus at {self.where} did not answer {path} within {self.timeout:g} s "
                f"({type(e).__name__})",
                server=self.where,
            ) from e
        except httpx.HTTPError as e:
            raise PrometheusUnavailable(
                f"Prometheus at {self.where} is unreachable: {type(e).__name__}: {_no_url(e)}",
                server=self.where,
            ) from e
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PrometheusError(
                f"Prometheus at {self.where} answered {path} with HTTP {response.status_code} and no "
                f"API response: {response.text[:200]!r}",
                server=self.where,
                status=response.status_code,
            )
        if body.get("status") != "success" or response.status_code >= 400:
            error_type = str(body.get("errorType") or "")
            error = str(body.get("error") or "")
            # Prometheus reports its own query timeout as errorType "timeout" (HTTP 503).
            cls = PrometheusUnavailable if error_type == "timeout" else PrometheusError
            raise cls(
                f"Prometheus at {self.where} answered {path} with HTTP {response.status_code}: "
                f"{error_type or 'error'}: {error or repr(body)[:200]}",
                server=self.where,
                status=response.status_code,
                error_type=error_type,
                error=error,
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(
                f"Prometheus at {self.where} answered {path} without a data object",
                server=self.where,
                status=response.status_code,
            )
        return data


def _no_url(exc: Exception) -> str:
    """An httpx error's text; some name the request URL, which may carry credentials."""
    text = str(exc)
    request = getattr(exc, "_request", None)
    if request is not None:
        text = text.replace(str(request.url), redact_url(str(request.url)))
    return text


def _format_time(at: float) -> str:
    # Milliseconds are Prometheus's resolution; a fixed format keeps URLs stable.
    return f"{float(at):.3f}"
