"""PrometheusEngine against a real Prometheus (error responses included), a silent server, a closed port.

Also ``engine_for_fleet`` (mlinfra/rules/engines.py), which picks it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mlinfra.config import parse_fleet
from mlinfra.exceptions import PrometheusError, PrometheusUnavailable
from mlinfra.hooks.prometheus import PrometheusHook
from mlinfra.promql.engine import LocalEngine
from mlinfra.promql.interface import InstantSample, QueryEngine, QueryEvaluationError, QuerySyntaxError
from mlinfra.rules.engines import engine_for_fleet, evaluate_many, make_engine
from mlinfra.rules.prometheus_engine import PrometheusEngine
from mlinfra.store import MetricsStore
from tests.support.services import ServerHandle, free_port


@pytest.fixture
def engine(prometheus: ServerHandle) -> Iterator[PrometheusEngine]:
    e = PrometheusEngine(prometheus.url, timeout=10)
    yield e
    e.close()


@pytest.mark.integration
def test_vectors_and_scalars_from_a_real_prometheus(engine: PrometheusEngine) -> None:
    now = time.time()
    assert engine.instant("1 + 1", now) == 2.0
    assert engine.instant('label_replace(vector(3), "job", "x", "", "")', now) == [
        InstantSample({"job": "x"}, 3.0)
    ]
    assert engine.instant("vector(1) > 2", now) == []
    nan = engine.instant("0 / 0", now)
    assert isinstance(nan, float)
    assert nan != nan
    assert engine.instant("1 / 0", now) == float("inf")


@pytest.mark.integration
def test_error_responses_become_evaluation_errors_naming_the_expression(
    engine: PrometheusEngine, prometheus: ServerHandle
) -> None:
    now = time.time()
    with pytest.raises(QueryEvaluationError) as err:
        engine.instant("sum(", now)
    message = str(err.value)
    assert "'sum('" in message
    assert prometheus.url in message
    assert "HTTP 400" in message
    assert "bad_data" in message
    cause = err.value.__cause__
    assert isinstance(cause, PrometheusError)
    assert (cause.status, cause.error_type) == (400, "bad_data")

    many_to_many = 'vector(1) + on() (vector(1) or label_replace(vector(2), "a", "b", "", ""))'
    with pytest.raises(
        QueryEvaluationError, match=r"HTTP 422: execution: .*many-to-many matching not allowed"
    ):
        engine.instant(many_to_many, now)


@pytest.mark.integration
def test_evaluate_many_keeps_errors_in_place(engine: PrometheusEngine) -> None:
    out = evaluate_many(engine, ["vector(1)", "sum(", "2"], time.time())
    assert out[0] == [InstantSample({}, 1.0)]
    assert isinstance(out[1], QueryEvaluationError)
    assert out[2] == 2.0


@pytest.mark.integration
def test_a_range_vector_result_is_refused(engine: PrometheusEngine) -> None:
    with pytest.raises(QueryEvaluationError, match="matrix result"):
        engine.instant("up[5m]", time.time())


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a hung Prometheus)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(sock.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        sock.close()


def test_a_timeout_is_an_evaluation_error_not_silence() -> None:
    with silent_server() as url:
        engine = PrometheusEngine(url, timeout=0.3)
        with pytest.raises(QueryEvaluationError, match=r"did not answer /api/v1/query within 0.3 s") as err:
            engine.instant("up", 1_700_000_000)
        assert isinstance(err.value.__cause__, PrometheusUnavailable)
        assert "'up'" in str(err.value)


def test_a_closed_port_is_an_evaluation_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(QueryEvaluationError, match="is unreachable") as err:
        PrometheusEngine(url, timeout=2).instant("up", 1_700_000_000)
    assert isinstance(err.value.__cause__, PrometheusUnavailable)
    assert err.value.__cause__.server == url


def test_check_is_syntax_only() -> None:
    engine = PrometheusEngine("http://127.0.0.1:1")
    assert isinstance(engine, QueryEngine)
    assert engine.name == "prometheus"
    engine.check("topk(3, max_over_time(rate(x[5m])[30m:1m] @ start()))")  # the local engine refuses this
    with pytest.raises(QuerySyntaxError, match="invalid PromQL 'sum\\('"):
        engine.check("sum(")


FLEET = """
cost: {gpu_hour: 1, cpu_hour: 0.1}
models:
  - name: m
    kubernetes: {namespace: serving, deployment: m}
    serving: {conn_id: tf_m, model_name: m, grpc_target: "m:8500", rest_url: "http://m:8501"}
    image: {repository: tensorflow/serving}
    smoke_file: smoke/m.json
    slo: {p99_latency_ms: 200}
    scaling: {min_replicas: 1, max_replicas: 2}
"""


def test_engine_for_fleet_follows_the_rules_settings() -> None:
    store = MetricsStore.from_url("sqlite:///:memory:")
    assert isinstance(engine_for_fleet(parse_fleet(FLEET), store), LocalEngine)
    fleet = parse_fleet(FLEET + "rules: {engine: prometheus, prometheus_conn_id: prom_ops}\n")
    chosen = engine_for_fleet(fleet, store)
    assert isinstance(chosen, PrometheusEngine)
    assert isinstance(chosen.hook, PrometheusHook)
    assert chosen.hook.prometheus_conn_id == "prom_ops"
    with pytest.raises(ValueError, match="unknown query engine 'thanos'"):
        make_engine("thanos", store)
