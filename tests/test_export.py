"""Tests of mlinfra.export: the exposition (unit) and pushes to a real Pushgateway scraped by Prometheus."""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlinfra.exceptions import ExportError
from mlinfra.export import (
    SampleCollector,
    push_from_connection,
    push_samples,
    render_exposition,
    sample_registry,
)
from mlinfra.samples import STALE_NAN, Sample
from tests.support.services import (
    ServerHandle,
    free_port,
    wait_for_query,
)

TFS_NAME = ":tensorflow:serving:request_count"
CONN_ENV = "AIRFLOW_CONN_PROMETHEUS_PUSHGATEWAY"


def parse(body: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text -> {(name, sorted labels): value}."""
    text = body.decode() if isinstance(body, bytes) else body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --------------------------------------------------------------------------- exposition (unit)


def test_colon_metric_names_are_exported_unchanged() -> None:
    body = render_exposition([Sample(TFS_NAME, {"model_name": "resnet", "entrypoint": "Predict"}, 7)])

    assert f'{TFS_NAME}{{entrypoint="Predict",model_name="resnet"}} 7.0' in body.decode()
    assert parse(body) == {(TFS_NAME, (("entrypoint", "Predict"), ("model_name", "resnet"))): 7.0}


def test_samples_of_one_name_form_one_untyped_family_even_with_different_label_sets() -> None:
    body = render_exposition(
        [
            Sample("ml_gpu_utilization_percent", {"gpu_id": "0"}, 10),
            Sample("ml_cpu_usage_percent", {}, 5),
            Sample("ml_gpu_utilization_percent", {"gpu_id": "1", "host": "a"}, 20),
        ]
    ).decode()

    assert body.count("# TYPE ml_gpu_utilization_percent untyped") == 1
    assert 'ml_gpu_utilization_percent{gpu_id="0"} 10.0' in body
    assert 'ml_gpu_utilization_percent{gpu_id="1",host="a"} 20.0' in body
    assert "ml_cpu_usage_percent 5.0" in body


def test_labels_clashing_with_the_grouping_key_are_renamed_like_prometheus_does() -> None:
    collector = SampleCollector(
        [
            Sample(
                "kube_pod_info", {"job": "kube-state-metrics", "instance": "10.0.0.1:8080", "pod": "p"}, 1
            ),
            Sample("up_like", {"job": "a", "exported_job": "b"}, 1),
        ]
    )

    labels = [dict(s.labels) for family in collector.collect() for s in family.samples]
    assert labels == [
        {"exported_job": "kube-state-metrics", "exported_instance": "10.0.0.1:8080", "pod": "p"},
        {"exported_exported_job": "a", "exported_job": "b"},
    ]


def test_nan_and_infinite_values_survive_the_text_format() -> None:
    values = parse(
        render_exposition(
            [
                Sample("m", {"k": "nan"}, math.nan),
                Sample("m", {"k": "inf"}, math.inf),
                Sample("m", {"k": "-inf"}, -math.inf),
            ]
        )
    )

    assert math.isnan(values[("m", (("k", "nan"),))])
    assert values[("m", (("k", "inf"),))] == math.inf
    assert values[("m", (("k", "-inf"),))] == -math.inf


def test_invalid_names_are_skipped_with_a_warning_and_the_rest_is_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    samples = [
        Sample("ml_ok", {"gpu_id": "0"}, 1),
        Sample("ml_bad_label", {"gpu-id": "0"}, 2),
        Sample("ml_bad_label", {"gpu-id": "1"}, 3),
        Sample("ml_reserved_label", {"__meta": "x"}, 4),
        Sample("ml_colon_label", {"a:b": "x"}, 5),
        Sample("ml-bad-name", {}, 6),
        Sample("0starts_with_digit", {}, 7),
    ]

    with caplog.at_level(logging.WARNING, logger="mlinfra.export"):
        collector = SampleCollector(samples)
        body = render_exposition(samples)

    assert (collector.exported, collector.skipped) == (1, 6)
    assert parse(body) == {("ml_ok", (("gpu_id", "0"),)): 1.0}
    messages = [r.getMessage() for r in caplog.records if r.name == "mlinfra.export"]
    # one warning per metric name and problem, with the count
    assert any("2 sample(s) of 'ml_bad_label'" in m and "'gpu-id'" in m for m in messages)
    assert any("'ml-bad-name'" in m and "invalid metric name" in m for m in messages)
    assert any("'__meta'" in m and "reserved" in m for m in messages)


def test_duplicate_series_keep_the_last_value() -> None:
    collector = SampleCollector([Sample("m", {"a": "1"}, 1), Sample("m", {"a": "1"}, 2)])

    assert collector.exported == 1
    assert [s.value for f in collector.collect() for s in f.samples] == [2.0]


def test_sample_timestamps_are_not_exported() -> None:
    body = render_exposition([Sample("m", {"a": "1"}, 3, timestamp=1_700_000_000.0)]).decode()

    assert 'm{a="1"} 3.0\n' in body
    assert "1700000000" not in body


def test_registry_holds_only_the_given_samples() -> None:
    registry, collector = sample_registry([Sample("m", {}, 1)])

    assert [f.name for f in registry.collect()] == ["m"]
    assert collector.exported == 1


# --------------------------------------------------------------------------- push protocol (loopback stub)


class _ScriptedGateway:
    """A loopback HTTP server answering pushes with scripted statuses, recording each request."""

    def __init__(self, statuses: list[int]):
        self.statuses = statuses
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                owner.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
                )
                status = owner.statuses.pop(0) if owner.statuses else 200
                payload = b"" if status < 300 else b"scripted failure"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _ScriptedGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_push_uses_put_with_job_and_instance_grouping_key() -> None:
    with _ScriptedGateway([]) as gw:
        pushed = push_samples([Sample("m", {"a": "1"}, 1)], gateway=gw.url, job="sweep", instance="host-1")

    assert pushed == 1
    assert [r["path"] for r in gw.requests] == ["/metrics/job/sweep/instance/host-1"]
    assert parse(gw.requests[0]["body"]) == {("m", (("a", "1"),)): 1.0}


def test_transient_failures_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    with _ScriptedGateway([503, 502]) as gw:
        pushed = push_samples([Sample("m", {}, 1)], gateway=gw.url, instance="h")

    assert pushed == 1
    assert len(gw.requests) == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_a_refused_push_is_not_retried_and_names_gateway_and_status() -> None:
    with _ScriptedGateway([400]) as gw, pytest.raises(ExportError) as excinfo:
        push_samples([Sample("m", {}, 1)], gateway=gw.url, instance="h")

    assert len(gw.requests) == 1
    assert gw.url in str(excinfo.value)
    assert "HTTP 400" in str(excinfo.value)
    assert "scripted failure" in str(excinfo.value)


def test_persistent_server_errors_raise_export_error_after_all_attempts() -> None:
    with _ScriptedGateway([500, 500, 500]) as gw, pytest.raises(ExportError, match="HTTP 500"):
        push_samples([Sample("m", {}, 1)], gateway=gw.url, instance="h", attempts=3)

    assert len(gw.requests) == 3


def test_unreachable_gateway_raises_export_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    with pytest.raises(ExportError, match=f"Pushgateway {url} .*unreachable"):
        push_samples([Sample("m", {}, 1)], gateway=url, timeout=2, attempts=2)


def test_credentials_in_a_gateway_url_are_not_repeated_in_errors() -> None:
    port = free_port()

    with pytest.raises(ExportError) as excinfo:
        push_samples([Sample("m", {}, 1)], gateway=f"http://user:s3cret@127.0.0.1:{port}", attempts=1)

    assert "s3cret" not in str(excinfo.value)
    assert f"http://127.0.0.1:{port}" in str(excinfo.value)


# --------------------------------------------------------------------------- push_from_connection


def test_missing_connection_skips_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONN_ENV, raising=False)

    assert push_from_connection([Sample("m", {}, 1)]) is None


def test_connection_gives_url_basic_auth_and_extras_without_logging_the_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pw-" + uuid.uuid4().hex
    with _ScriptedGateway([503]) as gw, caplog.at_level(logging.DEBUG):
        port = gw.server.server_address[1]
        conn = {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": port,
            "schema": "http",
            "login": "pusher",
            "password": password,
            "extra": {"job": "fleet", "instance": "prod-a"},
        }
        monkeypatch.setenv(CONN_ENV, json.dumps(conn))
        pushed = push_from_connection([Sample("m", {}, 1), Sample("n", {}, 2)])

    assert pushed == 2
    assert gw.requests[-1]["path"] == "/metrics/job/fleet/instance/prod-a"
    expected = "Basic " + base64.b64encode(f"pusher:{password}".encode()).decode()
    assert gw.requests[-1]["headers"]["Authorization"] == expected
    assert all(password not in r.getMessage() for r in caplog.records)
    assert password not in caplog.text


def test_connection_with_a_non_http_schema_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "http", "host": "h", "schema": "ftp"}))

    with pytest.raises(ExportError, match="'prometheus_pushgateway' has schema 'ftp'"):
        push_from_connection([Sample("m", {}, 1)])


def test_the_grouping_key_is_the_same_on_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two Celery workers (different hostnames) must replace one group, not pile up two.
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "http", "host": "127.0.0.1"}))
    paths = []
    for hostname in ("worker-a", "worker-b"):
        monkeypatch.setattr("socket.gethostname", lambda h=hostname: h)
        with _ScriptedGateway([]) as gw:
            port = gw.server.server_address[1]
            monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port}))
            push_from_connection([Sample("m", {}, 1)])
        paths.append(gw.requests[-1]["path"])

    assert paths == ["/metrics/job/mlinfra_sweep/instance/mlinfra"] * 2


def test_credentials_pasted_in_the_host_url_become_basic_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    with _ScriptedGateway([]) as gw:
        port = gw.server.server_address[1]
        monkeypatch.setenv(
            CONN_ENV, json.dumps({"conn_type": "http", "host": f"http://ops:p%40ss@127.0.0.1:{port}"})
        )
        assert push_from_connection([Sample("m", {}, 1)]) == 1

    assert gw.requests[-1]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"ops:p@ss").decode()


@pytest.mark.parametrize("timeout", ["soon", "nan", "inf", "-1", "0"])
def test_a_bad_timeout_extra_is_refused_naming_the_connection(
    monkeypatch: pytest.MonkeyPatch, timeout: str
) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": 9, "extra": {"timeout": timeout}}
    monkeypatch.setenv(CONN_ENV, json.dumps(conn))

    with pytest.raises(ExportError, match=r"'prometheus_pushgateway': extra 'timeout' must be"):
        push_from_connection([Sample("m", {}, 1)])


# --------------------------------------------------------------------------- real Pushgateway + Prometheus
# Session-scoped launchers; to be hoisted into tests/conftest.py.


@pytest.fixture
def instance() -> str:
    """A fresh grouping-key instance per test: tests share one Pushgateway."""
    return f"test-{uuid.uuid4().hex[:10]}"


def gateway_series(gateway: ServerHandle) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{gateway.url}/metrics", timeout=5)
    response.raise_for_status()
    return parse(response.text)


def of_instance(series: dict[Any, float], instance: str, name: str) -> dict[Any, float]:
    return {k: v for k, v in series.items() if k[0] == name and ("instance", instance) in k[1]}


SWEEP = [
    Sample("ml_gpu_utilization_percent", {"gpu_id": "0", "host": "gpu-node-1"}, 87.0),
    Sample("ml_gpu_utilization_percent", {"gpu_id": "1", "host": "gpu-node-1"}, 12.5),
    Sample(TFS_NAME, {"model_name": "resnet", "job": "tf-serving"}, 42.0),
    Sample("ml_gpu_temperature_celsius", {"gpu_id": "0"}, math.nan),
]


@pytest.mark.integration
def test_pushed_sweep_appears_on_the_pushgateway_with_job_and_instance(
    pushgateway: ServerHandle, instance: str
) -> None:
    assert push_samples(SWEEP, gateway=pushgateway.url, instance=instance) == 4

    series = gateway_series(pushgateway)
    group = {("instance", instance), ("job", "mlinfra_sweep")}
    gpu = of_instance(series, instance, "ml_gpu_utilization_percent")
    assert {dict(k[1])["gpu_id"]: v for k, v in gpu.items()} == {"0": 87.0, "1": 12.5}
    assert all(group <= set(k[1]) for k in gpu)
    tfs = of_instance(series, instance, TFS_NAME)
    assert list(tfs.values()) == [42.0]
    assert ("exported_job", "tf-serving") in next(iter(tfs))[1]
    temp = of_instance(series, instance, "ml_gpu_temperature_celsius")
    assert math.isnan(next(iter(temp.values())))


@pytest.mark.integration
def test_prometheus_scraping_the_pushgateway_returns_the_pushed_values(
    pushgateway: ServerHandle, prometheus: ServerHandle, instance: str
) -> None:
    push_samples(SWEEP, gateway=pushgateway.url, instance=instance)

    result = wait_for_query(
        prometheus.url,
        f'ml_gpu_utilization_percent{{job="mlinfra_sweep", instance="{instance}"}}',
        lambda r: len(r) == 2,
    )
    assert {r["metric"]["gpu_id"]: float(r["value"][1]) for r in result} == {"0": 87.0, "1": 12.5}
    # honor_labels: the pushed job/instance, not the Pushgateway's scrape job
    assert {r["metric"]["job"] for r in result} == {"mlinfra_sweep"}
    tfs = wait_for_query(
        prometheus.url, f'{{__name__="{TFS_NAME}", instance="{instance}"}}', lambda r: len(r) == 1
    )
    assert float(tfs[0]["value"][1]) == 42.0
    assert tfs[0]["metric"]["exported_job"] == "tf-serving"


@pytest.mark.integration
def test_a_second_push_replaces_the_group(
    pushgateway: ServerHandle, prometheus: ServerHandle, instance: str
) -> None:
    push_samples(SWEEP, gateway=pushgateway.url, instance=instance)
    second = [Sample("ml_gpu_utilization_percent", {"gpu_id": "0", "host": "gpu-node-1"}, 55.0)]
    push_samples(second, gateway=pushgateway.url, instance=instance)
    push_samples(second, gateway=pushgateway.url, instance=instance)  # idempotent

    series = gateway_series(pushgateway)
    gpu = of_instance(series, instance, "ml_gpu_utilization_percent")
    assert list(gpu.values()) == [55.0]  # gpu 1 is gone, gpu 0 replaced, nothing duplicated
    assert of_instance(series, instance, TFS_NAME) == {}
    result = wait_for_query(
        prometheus.url,
        f'ml_gpu_utilization_percent{{instance="{instance}"}}',
        lambda r: len(r) == 1 and float(r[0]["value"][1]) == 55.0,
    )
    assert result[0]["metric"]["gpu_id"] == "0"


@pytest.mark.integration
def test_other_groups_are_untouched_by_a_push(pushgateway: ServerHandle, instance: str) -> None:
    other = instance + "-other"
    push_samples([Sample("ml_cpu_usage_percent", {}, 1.0)], gateway=pushgateway.url, instance=other)
    push_samples([Sample("ml_cpu_usage_percent", {}, 2.0)], gateway=pushgateway.url, instance=instance)

    series = gateway_series(pushgateway)
    assert list(of_instance(series, other, "ml_cpu_usage_percent").values()) == [1.0]
    assert list(of_instance(series, instance, "ml_cpu_usage_percent").values()) == [2.0]


@pytest.mark.integration
def test_the_real_pushgateway_refusing_a_push_raises_export_error(
    pushgateway: ServerHandle, instance: str
) -> None:
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    # Another client pushed the same name as a gauge; our untyped family is inconsistent with it.
    registry = CollectorRegistry()
    Gauge("ml_conflicting_type", "a gauge", registry=registry).set(1)
    push_to_gateway(
        pushgateway.url, job="other_client", registry=registry, grouping_key={"instance": instance}
    )

    with pytest.raises(ExportError) as excinfo:
        push_samples([Sample("ml_conflicting_type", {}, 2)], gateway=pushgateway.url, instance=instance)

    assert pushgateway.url in str(excinfo.value)
    assert "HTTP 400" in str(excinfo.value)


@pytest.mark.integration
def test_push_from_connection_reaches_the_real_pushgateway(
    pushgateway: ServerHandle, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        CONN_ENV,
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": pushgateway.port,
                "extra": {"instance": instance},
            }
        ),
    )

    assert push_from_connection([Sample("ml_memory_usage_percent", {}, 33.0)]) == 1
    series = gateway_series(pushgateway)
    assert of_instance(series, instance, "ml_memory_usage_percent") == {
        ("ml_memory_usage_percent", (("instance", instance), ("job", "mlinfra_sweep"))): 33.0
    }


def test_a_staleness_marker_is_never_pushed_as_a_value() -> None:
    body = render_exposition(
        [
            Sample("ml_gpu_utilization_percent", {"gpu_id": "0"}, 10),
            Sample("ml_gpu_utilization_percent", {"gpu_id": "2"}, STALE_NAN),
            Sample("ml_gpu_temperature_celsius", {"gpu_id": "2"}, math.nan),  # a plain NaN is a value
        ]
    ).decode()
    assert 'gpu_id="0"' in body
    assert 'ml_gpu_utilization_percent{gpu_id="2"}' not in body
    assert 'ml_gpu_temperature_celsius{gpu_id="2"} NaN' in body
