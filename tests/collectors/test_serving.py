"""The serving collector: version states, TF Serving's own metrics, skips and partial failures."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlinfra.collectors.serving import collect_serving_samples, parse_monitoring_metrics, run
from mlinfra.config import Fleet, parse_fleet
from mlinfra.hooks.tf_serving import TFServingHook, TFServingUnavailable
from mlinfra.samples import Sample
from tests.support.saved_model import PROJECT_ROOT
from tests.support.tf_serving_standin import (
    StandinProcess,
    start_tf_serving_standin,
)

MODEL_YAML = """
  - name: {name}
    kubernetes: {{namespace: serving, deployment: {name}}}
    serving:
      conn_id: {conn_id}
      model_name: half_plus_two
      grpc_target: {name}.serving.svc:8500
      rest_url: http://{name}.serving.svc:8501
    image: {{repository: tensorflow/serving}}
    smoke_file: smoke/half_plus_two.json
    slo: {{p99_latency_ms: 50}}
    scaling: {{min_replicas: 1, max_replicas: 2}}
"""


def fleet_yaml(*models: tuple[str, str]) -> str:
    """Fleet YAML of half_plus_two models: (fleet name, connection id) each."""
    return "cost: {gpu_hour: 1, cpu_hour: 0.1}\nmodels:\n" + "".join(
        MODEL_YAML.format(name=name, conn_id=conn_id) for name, conn_id in models
    )


def make_fleet(*models: tuple[str, str]) -> Fleet:
    return parse_fleet(fleet_yaml(*models))


def by_name(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.name == name]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


class FakeCoreV1:
    """``list_namespaced_pod`` over canary pods given as (namespace, app, deleting) triples."""

    def __init__(self, canaries: list[tuple[str, str, bool]] = (), fail: Exception | None = None):  # type: ignore[assignment]
        self.canaries, self.fail, self.calls = list(canaries), fail, []

    def __call__(self, conn_id: str) -> FakeCoreV1:  # core_v1(conn_id)
        return self

    def list_namespaced_pod(self, namespace: str, *, label_selector: str, _request_timeout: float) -> Any:
        from types import SimpleNamespace

        self.calls.append((namespace, label_selector))
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(
            items=[
                SimpleNamespace(
                    metadata=SimpleNamespace(
                        labels={"app": app, "track": "canary"},
                        deletion_timestamp="2026-12-01T00:00:00Z" if deleting else None,
                    )
                )
                for ns, app, deleting in self.canaries
                if ns == namespace
            ]
        )


NO_CANARY = FakeCoreV1()


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, server: StandinProcess) -> None:
    monkeypatch.setenv(*server.connection_env(conn_id))


# ============================================================================ unit


MONITORING_TEXT = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="half_plus_two",status="OK"} 7
:tensorflow:serving:request_count{model_name="other",status="OK"} 99
# TYPE :tensorflow:core:graph_runs counter
:tensorflow:core:graph_runs{model="x"} 3
"""


def test_monitoring_metrics_keep_their_names_and_gain_the_fleet_model_label() -> None:
    samples = parse_monitoring_metrics(MONITORING_TEXT, model="half-plus-two", model_name="half_plus_two")
    assert [(s.name, dict(s.labels), s.value) for s in samples] == [
        (
            ":tensorflow:serving:request_count",
            {"model_name": "half_plus_two", "status": "OK", "model": "half-plus-two"},
            7.0,
        ),
        # server-wide series are kept; a clashing "model" label is renamed as Prometheus does
        (":tensorflow:core:graph_runs", {"exported_model": "x", "model": "half-plus-two"}, 3.0),
    ]


class FakeHook:
    """The two hook calls the collector makes, scripted."""

    def __init__(self, statuses: list[dict[str, Any]] | Exception, metrics: str | Exception = ""):
        self.statuses, self.metrics = statuses, metrics
        self.closed = False

    def get_model_status(self, model_name: str) -> list[dict[str, Any]]:
        if isinstance(self.statuses, Exception):
            raise self.statuses
        return self.statuses

    def monitoring_metrics(self) -> str:
        if isinstance(self.metrics, Exception):
            raise self.metrics
        return self.metrics

    def close(self) -> None:
        self.closed = True


def status(version: int, state: str) -> dict[str, Any]:
    return {"version": version, "state": state, "error_code": "OK", "error_message": ""}


def test_version_states_are_one_series_per_state() -> None:
    model = make_fleet(("half-plus-two", "c")).models[0]
    hook = FakeHook([status(1, "END"), status(2, "AVAILABLE")], MONITORING_TEXT)
    samples = collect_serving_samples(model, hook)  # type: ignore[arg-type]
    states = {
        (s.labels["version"], s.labels["state"]): s.value
        for s in by_name(samples, "mlinfra_serving_model_version_state")
    }
    assert len(states) == 10
    assert {k for k, v in states.items() if v == 1.0} == {("1", "END"), ("2", "AVAILABLE")}
    assert value(samples, "mlinfra_serving_model_version_available", version="1") == 0.0
    assert (
        value(samples, "mlinfra_serving_model_version_available", version="2", model="half-plus-two") == 1.0
    )
    assert value(samples, "mlinfra_serving_up", model="half-plus-two") == 1.0
    assert value(samples, "mlinfra_serving_status_latency_seconds", model="half-plus-two") >= 0.0


def test_models_without_a_connection_are_skipped_not_failed() -> None:
    fleet = make_fleet(("a", "conn_a"), ("b", "conn_b"))
    result = run(fleet, connection_exists=lambda conn_id: False, hook_factory=pytest.fail)
    assert result.up
    assert result.errors == []
    assert result.skipped == ["a: no connection 'conn_a'", "b: no connection 'conn_b'"]
    assert [s.name for s in result.samples] == ["mlinfra_collector_up", "mlinfra_collector_duration_seconds"]


def test_one_failing_model_does_not_hide_the_other() -> None:
    fleet = make_fleet(("good", "conn_good"), ("down", "conn_down"))
    hooks = {
        "good": FakeHook([status(1, "AVAILABLE")], MONITORING_TEXT),
        "down": FakeHook(TFServingUnavailable("TF Serving down:8500: GetModelStatus(m) failed: UNAVAILABLE")),
    }
    result = run(
        fleet, connection_exists=lambda c: True, hook_factory=lambda m: hooks[m.name], core_v1=NO_CANARY
    )  # type: ignore[arg-type,return-value]
    assert not result.up
    assert result.errors == ["model down: TF Serving down:8500: GetModelStatus(m) failed: UNAVAILABLE"]
    assert value(result.samples, "mlinfra_serving_up", model="good") == 1.0
    assert value(result.samples, "mlinfra_serving_up", model="down") == 0.0
    assert value(result.samples, ":tensorflow:serving:request_count", model="good", status="OK") == 7.0
    assert value(result.samples, "mlinfra_collector_up", collector="serving") == 0.0
    assert all(h.closed for h in hooks.values())


def test_a_broken_monitoring_endpoint_keeps_the_status_samples() -> None:
    fleet = make_fleet(("m", "c"))
    hook = FakeHook(
        [status(1, "AVAILABLE")], TFServingUnavailable("GET /monitoring/prometheus/metrics failed")
    )
    result = run(
        fleet, connection_exists=lambda c: True, hook_factory=lambda m: hook, core_v1=NO_CANARY, canaries=set
    )  # type: ignore[arg-type,return-value]
    assert result.errors == ["model m: monitoring metrics: GET /monitoring/prometheus/metrics failed"]
    assert value(result.samples, "mlinfra_serving_model_version_available", model="m", version="1") == 1.0


def test_canaries_are_found_with_one_pod_list_per_namespace() -> None:
    from mlinfra.collectors.serving_tracks import models_with_canary

    fleet = make_fleet(("a", "c"), ("b", "c"), ("going", "c"))
    kube = FakeCoreV1([("serving", "a", False), ("serving", "going", True), ("other", "b", False)])

    def running() -> set[str]:
        return {"a", "b", "going"}

    found, notes = models_with_canary(fleet.models, lambda conn_id: True, kube, running)
    assert (found, notes) == ({"a"}, [])  # b's canary is in another namespace; going's is being deleted
    assert kube.calls == [("serving", "track=canary")]
    assert models_with_canary(fleet.models, lambda conn_id: False, kube, running) == (set(), [])
    assert models_with_canary(fleet.models, lambda conn_id: True, kube, set) == (set(), [])
    assert len(kube.calls) == 1  # no connection, or no canary run in progress: no call


def test_unreadable_canary_runs_are_reported_and_nothing_is_listed() -> None:
    from mlinfra.collectors.serving_tracks import models_with_canary

    def broken() -> set[str]:
        raise OSError("store down")

    kube = FakeCoreV1([("serving", "a", False)])
    assert models_with_canary(make_fleet(("a", "c")).models, lambda c: True, kube, broken) == (
        set(),
        ["canary runs not read (OSError: store down)"],
    )
    assert kube.calls == []


def test_a_failed_canary_lookup_is_reported_and_the_service_scrape_still_counts() -> None:
    fleet = make_fleet(("m", "c"))
    hook = FakeHook([status(1, "AVAILABLE")], MONITORING_TEXT)
    kube = FakeCoreV1(fail=OSError("connection refused"))
    result = run(
        fleet,
        connection_exists=lambda c: True,
        hook_factory=lambda m: hook,  # type: ignore[arg-type,return-value]
        core_v1=kube,
        canaries=lambda: {"m"},
    )
    assert result.up
    assert result.skipped == [
        "canary pods in kubernetes_default/serving not listed (OSError: connection refused)"
    ]
    assert value(result.samples, ":tensorflow:serving:request_count", model="m", status="OK") == 7.0


def test_a_model_with_a_canary_has_its_metrics_read_per_pod_not_through_the_service() -> None:
    from unittest import mock

    fleet = make_fleet(("m", "c"), ("n", "c"))
    hooks = {m: FakeHook([status(1, "AVAILABLE")], MONITORING_TEXT) for m in ("m", "n")}
    per_pod = [Sample(":tensorflow:serving:request_count", {"model": "m", "track": "canary"}, 1.0)]
    with mock.patch("mlinfra.collectors.serving_tracks.track_samples", return_value=per_pod) as tracks:
        result = run(
            fleet,
            connection_exists=lambda c: True,
            hook_factory=lambda m: hooks[m.name],  # type: ignore[arg-type,return-value]
            core_v1=FakeCoreV1([("serving", "m", False), ("serving", "n", False)]),
            canaries=lambda: {"m"},  # n's canary pods belong to no run in progress
        )
    assert [call.args[0].name for call in tracks.call_args_list] == ["m"]
    request_counts = [
        (s.labels["model"], s.labels.get("track"), s.value)
        for s in by_name(result.samples, ":tensorflow:serving:request_count")
    ]
    assert sorted(request_counts, key=str) == [("m", "canary", 1.0), ("n", None, 7.0)]
    assert value(result.samples, "mlinfra_serving_up", model="m") == 1.0  # status through the Service


# ============================================================================ against the stand-in


@pytest.mark.integration
def test_collects_states_and_server_metrics_from_the_standin(
    monkeypatch: pytest.MonkeyPatch,
    tf_serving_standin: StandinProcess,
) -> None:
    set_connection(monkeypatch, "tf_serving_half_plus_two", tf_serving_standin)
    fleet = make_fleet(
        ("half-plus-two", "tf_serving_half_plus_two"), ("no-conn", "tf_serving_not_configured")
    )

    first = run(fleet)
    assert first.up, first.errors
    assert first.skipped == ["no-conn: no connection 'tf_serving_not_configured'"]
    samples = first.samples
    labels = {"model": "half-plus-two", "model_name": "half_plus_two", "version": "1"}
    assert value(samples, "mlinfra_serving_model_version_state", **labels, state="AVAILABLE") == 1.0
    assert value(samples, "mlinfra_serving_model_version_state", **labels, state="LOADING") == 0.0
    assert value(samples, "mlinfra_serving_model_version_available", **labels) == 1.0
    assert value(samples, "mlinfra_serving_up", model="half-plus-two") == 1.0
    assert 0.0 < value(samples, "mlinfra_serving_status_latency_seconds", model="half-plus-two") < 5.0
    assert not [s for s in samples if s.labels.get("model") == "no-conn"]

    def ok_requests(result_samples: list[Sample]) -> float:
        found = [
            s.value
            for s in result_samples
            if s.name == ":tensorflow:serving:request_count"
            and s.labels == {"model": "half-plus-two", "model_name": "half_plus_two", "status": "OK"}
        ]
        return found[0] if found else 0.0

    before = ok_requests(samples)
    with TFServingHook.for_model(fleet.model("half-plus-two")) as hook:
        for x in range(3):
            assert hook.predict("half_plus_two", {"x": [float(x)]}) == {"y": [0.5 * x + 2]}
        hook.rest_predict("half_plus_two", instances=[1.0])
    after = run(fleet).samples
    assert ok_requests(after) == before + 4
    histogram = {s.name for s in after if s.name.startswith(":tensorflow:serving:request_latency")}
    assert histogram == {
        ":tensorflow:serving:request_latency_bucket",
        ":tensorflow:serving:request_latency_sum",
        ":tensorflow:serving:request_latency_count",
    }
    assert all(s.labels["model"] == "half-plus-two" for s in after if s.name.startswith(":tensorflow:"))


@pytest.mark.integration
def test_a_down_server_fails_only_its_model(
    monkeypatch: pytest.MonkeyPatch,
    tf_serving_standin: StandinProcess,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    set_connection(monkeypatch, "tf_serving_up", tf_serving_standin)
    monkeypatch.setenv(
        "AIRFLOW_CONN_TF_SERVING_DOWN",
        json.dumps(
            {
                "conn_type": "tf_serving",
                "host": "127.0.0.1",
                "port": closed_port,
                "extra": {"rest_url": f"http://127.0.0.1:{closed_port}", "timeout": 2},
            }
        ),
    )
    result = run(make_fleet(("up", "tf_serving_up"), ("down", "tf_serving_down")))
    assert not result.up
    assert len(result.errors) == 1
    assert result.errors[0].startswith(
        f"model down: TF Serving 127.0.0.1:{closed_port} (connection 'tf_serving_down')"
    )
    assert "UNAVAILABLE" in result.errors[0]
    assert value(result.samples, "mlinfra_serving_up", model="down") == 0.0
    assert value(result.samples, "mlinfra_serving_up", model="up") == 1.0
    assert value(result.samples, "mlinfra_serving_model_version_available", model="up", version="1") == 1.0


@pytest.mark.integration
def test_a_failed_load_of_a_new_version_keeps_the_old_one_serving(
    monkeypatch: pytest.MonkeyPatch,
    tf_serving_standin: StandinProcess,  # its cached model is copied
    tmp_path: Path,
) -> None:
    base = tmp_path / "half_plus_two"
    shutil.copytree(tf_serving_standin.model_base_path / "1", base / "1")
    fleet = make_fleet(("half-plus-two", "tf_serving_half_plus_two"))
    with start_tf_serving_standin(
        base,
        build_versions=None,
        extra_args=["--poll-seconds", "0", "--fail-load-version", "2"],
        log_dir=tmp_path,
    ) as server:
        set_connection(monkeypatch, "tf_serving_half_plus_two", server)
        assert value(run(fleet).samples, "mlinfra_serving_model_version_available", version="1") == 1.0

        shutil.copytree(base / "1", base / "2")  # "deploy" version 2, whose load fails
        server.poll()

        with TFServingHook.for_model(fleet.model("half-plus-two")) as hook:
            statuses = hook.get_model_status("half_plus_two")
            assert [(s["version"], s["state"], s["error_code"]) for s in statuses] == [
                (1, "AVAILABLE", "OK"),
                (2, "END", "UNKNOWN"),
            ]
            assert "simulated load failure" in statuses[1]["error_message"]
            assert hook.predict("half_plus_two", {"x": [4.0]}) == {"y": [4.0]}  # still version 1

        samples = run(fleet).samples
        assert value(samples, "mlinfra_serving_model_version_state", version="2", state="END") == 1.0
        assert value(samples, "mlinfra_serving_model_version_available", version="2") == 0.0
        assert value(samples, "mlinfra_serving_model_version_available", version="1") == 1.0
        assert value(samples, ":tensorflow:cc:saved_model:load_attempt_count", status="fail") == 1.0


# ============================================================================ TensorFlow-free


@pytest.mark.integration
def test_the_collector_never_imports_tensorflow(
    tf_serving_standin: StandinProcess,
    tmp_path: Path,
) -> None:
    """Import and run the collector in a fresh interpreter; real TensorFlow must stay out."""
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(fleet_yaml(("half-plus-two", "tf_serving_half_plus_two")))
    env_name, env_value = tf_serving_standin.connection_env("tf_serving_half_plus_two")
    script = textwrap.dedent(
        """
        import json, resource, sys, time
        start = time.perf_counter()
        import mlinfra.collectors.serving as serving
        import_seconds = time.perf_counter() - start
        heavy_at_import = sorted(m for m in ("grpc", "tensorflow", "tensorflow_serving") if m in sys.modules)
        from mlinfra.config import load_fleet
        start = time.perf_counter()
        result = serving.run(load_fleet())
        print(json.dumps({
            "import_seconds": import_seconds,
            "run_seconds": time.perf_counter() - start,
            "heavy_at_import": heavy_at_import,
            "tensorflow_loaded": "tensorflow" in sys.modules,
            "tensor_pb2_loaded": "tensorflow.core.framework.tensor_pb2" in sys.modules,
            "up": result.up,
            "errors": result.errors,
            "samples": len(result.samples),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }))
        """
    )
    env = {
        **os.environ,
        env_name: env_value,
        "MLINFRA_FLEET_FILE": str(PROJECT_ROOT / "include" / "fleet.yaml"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print("collector subprocess:", report)
    assert report["heavy_at_import"] == []
    assert report["tensorflow_loaded"] is False
    assert report["tensor_pb2_loaded"] is True  # the generated protos are expected
    assert report["up"] is True, report["errors"]
    assert report["samples"] > 10  # states and the server's metrics, not just mlinfra_collector_up


# ============================================================================ a fleet of endpoints


@pytest.fixture(scope="module")
def serving_fleet() -> Any:
    """12 TF Serving endpoints (one per model) in one stand-in process."""
    from tests.support.fleet_scale import GeneratedFleet
    from tests.support.serving_fleet import start_serving_fleet
    from tests.support.tf_serving_standin import require_tensorflow

    require_tensorflow()
    fleet = GeneratedFleet(12)
    with start_serving_fleet(fleet.served_names) as serving:
        yield fleet, serving


def fleet_up(samples: list[Sample]) -> dict[str, float]:
    return {s.labels["model"]: s.value for s in by_name(samples, "mlinfra_serving_up")}


@pytest.mark.integration
def test_a_slow_endpoint_holds_up_no_other_endpoint(
    serving_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first model's endpoint answers only once every other endpoint has answered.

    It succeeds only if the collector asked the others while its call was still open:
    a collector that waited for it first would see it time out instead.
    """
    fleet, serving = serving_fleet
    for name, value in fleet.connection_env(serving, timeout=60).items():
        monkeypatch.setenv(name, value)
    slow = fleet.served_name(0)
    serving.set_status_fault(slow, "wait_for_others")
    try:
        result = run(parse_fleet(fleet.yaml()), max_parallel=4)
        stats = serving.stats()
    finally:
        serving.set_status_fault(slow, None)

    assert result.errors == []
    assert fleet_up(result.samples) == dict.fromkeys(fleet.names, 1.0)
    assert stats["answered"][-1] == slow
    assert sorted(stats["answered"]) == sorted(fleet.served_names)
    # Bounded: never more calls open at once than the collector's slots, and more than one.
    assert 1 < stats["max_in_flight"] <= 4


@pytest.mark.integration
def test_an_endpoint_that_never_answers_costs_only_its_own_timeout(
    serving_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A silent endpoint is down after its connection's timeout; every other model is collected."""
    fleet, serving = serving_fleet
    for name, value in fleet.connection_env(serving, timeout=60).items():
        monkeypatch.setenv(name, value)
    silent = 0
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{fleet.conn_id(silent).upper()}",
        serving.connection(fleet.served_name(silent), timeout=1),
    )
    serving.set_status_fault(fleet.served_name(silent), "hang")
    try:
        result = run(parse_fleet(fleet.yaml()), max_parallel=4)
    finally:
        serving.set_status_fault(fleet.served_name(silent), None)

    up = fleet_up(result.samples)
    assert up.pop(fleet.name(silent)) == 0.0
    assert up == dict.fromkeys(fleet.names[1:], 1.0)
    assert len(result.errors) == 1
    assert fleet.name(silent) in result.errors[0]
    assert "DEADLINE_EXCEEDED" in result.errors[0]
    # The others' monitoring pages were read too: their request counters are there.
    counted = {s.labels["model"] for s in by_name(result.samples, ":tensorflow:serving:request_count")}
    assert counted == set(fleet.names[1:])


def test_a_failed_track_pod_list_loses_only_that_model_s_metrics() -> None:
    """A Kubernetes error while listing a track's pods is that model's partial failure, not the collector's."""
    fleet = make_fleet(("m", "c"), ("n", "c"))
    hooks = {m: FakeHook([status(1, "AVAILABLE")], MONITORING_TEXT) for m in ("m", "n")}

    class ListFails(FakeCoreV1):
        def list_namespaced_pod(
            self, namespace: str, *, label_selector: str, _request_timeout: float = 0
        ) -> Any:
            if label_selector.startswith("app="):  # the per-track list, not the canary lookup
                raise OSError("connection reset")
            return super().list_namespaced_pod(
                namespace, label_selector=label_selector, _request_timeout=_request_timeout
            )

    result = run(
        fleet,
        connection_exists=lambda c: True,
        hook_factory=lambda m: hooks[m.name],  # type: ignore[arg-type,return-value]
        core_v1=ListFails([("serving", "m", False)]),
        canaries=lambda: {"m"},
    )
    assert result.errors == [
        "model m: monitoring metrics: stable pods not listed (OSError: connection reset)"
    ]
    assert value(result.samples, "mlinfra_serving_up", model="m") == 1.0
    assert value(result.samples, ":tensorflow:serving:request_count", model="n", status="OK") == 7.0
