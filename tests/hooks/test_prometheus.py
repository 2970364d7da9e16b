"""PrometheusHook: settings from the Airflow connection, the request it sends, its errors.

What a request looks like on the wire (path prefix, basic auth, parameters) is
checked against a recording HTTP server; answers and errors of the real thing are
checked against the real Prometheus (tests/rules/test_prometheus_engine.py and below).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mlinfra.exceptions import PrometheusError, PrometheusUnavailable
from mlinfra.hooks.prometheus import PrometheusConfigError, PrometheusHook
from tests.support.services import ServerHandle

CONN = "prometheus_test"


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str = CONN, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "prometheus", **fields}))


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        self.status = 200
        self.body: bytes = json.dumps(
            {"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}
        ).encode()
        # (status, body) for the next requests, in order; then status/body above.
        self.answers: list[tuple[int, bytes]] = []


@pytest.fixture
def recorder() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            rec.requests.append((parts.path, parse_qs(parts.query), self.headers.get("Authorization")))
            status, body = rec.answers.pop(0) if rec.answers else (rec.status, rec.body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_connection_settings_shape_the_request(
    monkeypatch: pytest.MonkeyPatch, recorder: tuple[str, Recorder]
) -> None:
    address, rec = recorder
    host, port = address.split(":")
    set_connection(
        monkeypatch,
        host=host,
        port=int(port),
        login="ops",
        password="s3cret",
        extra={"timeout": 7, "path_prefix": "/prometheus/"},
    )
    hook = PrometheusHook(CONN)
    assert hook.base_url == f"http://{address}/prometheus"
    assert hook.timeout == 7.0
    assert hook.query("sum(up)", 1_700_000_000.5) == {"resultType": "scalar", "result": [1, "2"]}
    path, params, auth = rec.requests[-1]
    assert path == "/prometheus/api/v1/query"
    assert params == {"query": ["sum(up)"], "time": ["1700000000.500"], "timeout": ["7s"]}
    assert auth == "Basic " + base64.b64encode(b"ops:s3cret").decode()
    hook.close()


def test_explicit_arguments_beat_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="prom", port=9090, schema="https", extra={"timeout": 3})
    hook = PrometheusHook(CONN, timeout=20)
    assert (hook.base_url, hook.timeout) == ("https://prom:9090", 20.0)
    url_only = PrometheusHook("no_such_connection", base_url="http://x:1/")
    assert (url_only.base_url, url_only.timeout) == ("http://x:1", 10.0)  # no connection read


def test_a_host_with_a_scheme_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="https://prom.example:8443/", port=9090)
    assert PrometheusHook(CONN).base_url == "https://prom.example:8443"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": ""}, "has no host"),
        ({"host": "prom", "schema": "ftp"}, "use 'http' or 'https'"),
        ({"host": "prom", "extra": {"timeout": "soon"}}, "'timeout' must be a number"),
        ({"host": "prom", "extra": {"timeout": 0}}, "'timeout' must be a finite number > 0"),
        ({"host": "prom", "extra": {"timeout": "nan"}}, "'timeout' must be a finite number > 0"),
        ({"host": "prom", "extra": {"verify": "/no/such/ca.pem"}}, "extra 'verify' must be true, false"),
    ],
)
def test_bad_connections_are_refused_with_the_field(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], message: str
) -> None:
    set_connection(monkeypatch, **fields)
    hook = PrometheusHook(CONN)
    with pytest.raises(PrometheusConfigError, match=message):
        _ = hook.base_url, hook.timeout, hook.verify


def test_a_non_api_answer_is_an_error_naming_the_server(recorder: tuple[str, Recorder]) -> None:
    address, rec = recorder
    rec.status, rec.body = 502, b"<html>Bad Gateway</html>"
    with pytest.raises(
        PrometheusError, match=rf"http://{address} answered /api/v1/query with HTTP 502"
    ) as err:
        PrometheusHook(base_url=f"http://{address}").query("up", 1)
    assert err.value.status == 502


def test_a_server_side_timeout_is_unavailable(recorder: tuple[str, Recorder]) -> None:
    address, rec = recorder
    rec.status = 503
    rec.body = json.dumps({"status": "error", "errorType": "timeout", "error": "query timed out"}).encode()
    with pytest.raises(PrometheusUnavailable, match="HTTP 503: timeout: query timed out") as err:
        PrometheusHook(base_url=f"http://{address}").query("up", 1)
    assert (err.value.error_type, err.value.error) == ("timeout", "query timed out")


def test_a_proxy_error_is_retried_and_the_answer_returned(recorder: tuple[str, Recorder]) -> None:
    address, rec = recorder
    rec.answers = [(502, b"<html>Bad Gateway</html>"), (503, b"restarting")]
    assert PrometheusHook(base_url=f"http://{address}").query("up", 1) == {
        "resultType": "scalar",
        "result": [1, "2"],
    }
    assert len(rec.requests) == 3


def test_prometheus_own_query_timeout_is_not_retried(recorder: tuple[str, Recorder]) -> None:
    address, rec = recorder
    rec.status = 503
    rec.body = json.dumps({"status": "error", "errorType": "timeout", "error": "query timed out"}).encode()
    with pytest.raises(PrometheusUnavailable):
        PrometheusHook(base_url=f"http://{address}").query("up", 1)
    assert len(rec.requests) == 1


def test_verify_false_and_a_ca_bundle_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    set_connection(monkeypatch, host="prom", extra={"verify": "false"})
    assert PrometheusHook(CONN).verify is False
    set_connection(monkeypatch, host="prom", extra={"verify": ssl.get_default_verify_paths().openssl_cafile})
    assert isinstance(PrometheusHook(CONN).verify, ssl.SSLContext)


def test_credentials_in_the_host_url_stay_out_of_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="http://ops:prom-s3cret@127.0.0.1:9", extra={"timeout": 1})
    with pytest.raises(PrometheusUnavailable) as err:
        PrometheusHook(CONN).query("up", 1)
    assert "prom-s3cret" not in str(err.value)
    assert "prom-s3cret" not in err.value.server
    assert "http://127.0.0.1:9" in str(err.value)


@pytest.mark.integration
def test_real_prometheus_answers_and_errors(prometheus: ServerHandle) -> None:
    with PrometheusHook(base_url=prometheus.url, timeout=10) as hook:
        data = hook.query("vector(2)", time.time())
        assert data["resultType"] == "vector"
        assert data["result"][0]["value"][1] == "2"
        with pytest.raises(PrometheusError) as err:
            hook.query("rate(up)", time.time())
    assert err.value.status == 400
    assert err.value.error_type == "bad_data"
    assert "expected type range vector" in err.value.error
    assert prometheus.url in str(err.value)
