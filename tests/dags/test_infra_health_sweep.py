"""The whole sweep DAG with dag.test(): every collector against its real client and stand-in."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mlinfra.store import LabelMatcher, MetricsStore
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOGICAL = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
TS = LOGICAL.timestamp()


@pytest.fixture
def kube(kube: KubeStandIn) -> KubeStandIn:
    """The shared stand-in (behind kubernetes_default) with the fleet's two Deployments, one crash-looping."""
    kube.add_deployment("serving", "half-plus-two", replicas=3, ready_replicas=2)
    kube.add_deployment("serving", "resnet50-classifier", replicas=2)
    crashing = kube.pod_names("serving", deployment="resnet50-classifier")[0]
    kube.set_pod_status("serving", crashing, ready=False, restarts=7, waiting_reason="CrashLoopBackOff")
    kube.crashing_pod = crashing  # type: ignore[attr-defined]
    return kube


@pytest.fixture
def sweep_env(monkeypatch, kube, store_env, tf_serving_standin, pushgateway, airflow_db):  # type: ignore[no-untyped-def]
    instance = f"e2e-{uuid.uuid4().hex[:8]}"
    # Only half-plus-two has a TF Serving connection: resnet50 must be reported as skipped.
    monkeypatch.setenv(*tf_serving_standin.connection_env("tf_serving_half_plus_two"))
    monkeypatch.delenv("AIRFLOW_CONN_TF_SERVING_RESNET50", raising=False)
    host, port = pushgateway.url.removeprefix("http://").split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_PROMETHEUS_PUSHGATEWAY",
        json.dumps({"conn_type": "http", "host": host, "port": int(port), "extra": {"instance": instance}}),
    )
    return {"store": store_env, "instance": instance}


def _sweep_dag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "infra_health_sweep.py"))
    assert bag.import_errors == {}
    return bag.dags["infra_health_sweep"]


def _value(store: MetricsStore, name: str, **labels: str) -> float:
    matchers = [LabelMatcher(k, "=", v) for k, v in labels.items()]
    rows = store.query_range(name, matchers, TS, TS)
    assert len(rows) == 1, f"{name}{labels}: {len(rows)} series"
    ((_, points),) = rows
    assert [t for t, _ in points] == [TS]  # stamped with the run's logical time
    return points[0][1]


def test_sweep_collects_everything_into_the_store_and_pushgateway(
    sweep_env, kube, pushgateway, tf_serving_standin
) -> None:
    store: MetricsStore = sweep_env["store"]
    # Traffic first, so that TF Serving's request counter has a series to report.
    r = httpx.post(
        f"{tf_serving_standin.rest_url}/v1/models/half_plus_two:predict",
        json={"instances": [1.0, 2.0]},
        timeout=10,
    )
    assert r.json() == {"predictions": [2.5, 3.0]}
    dag = _sweep_dag()
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"

    (sweep,) = store.sweeps(TS, TS + 1)
    summary = sweep.summary
    assert summary is not None
    collectors = summary["collectors"]
    assert collectors["host"]["up"] is True
    assert collectors["kubernetes"]["up"] is True
    assert collectors["serving"]["up"] is True
    assert summary["skipped"]["serving"] == ["resnet50-classifier: no connection 'tf_serving_resnet50'"]
    assert sweep.samples == summary["samples"] > 50

    # Host: always there. CPU as counters; the first sweep has no previous one to derive a usage from.
    assert _value(store, "ml_cpu_seconds_total", cpu="0", mode="idle") > 0
    assert not store.query_range("ml_cpu_usage_percent", [], TS, TS)
    assert _value(store, "ml_memory_usage_bytes", type="total") > 0
    # Kubernetes, through the real client and the provider's hook.
    assert (
        _value(store, "kube_deployment_spec_replicas", namespace="serving", deployment="half-plus-two") == 3
    )
    assert (
        _value(
            store,
            "kube_deployment_status_replicas_available",
            namespace="serving",
            deployment="half-plus-two",
        )
        == 2
    )
    restarts = _value(
        store,
        "kube_pod_container_status_restarts_total",
        namespace="serving",
        pod=kube.crashing_pod,
        container="resnet50-classifier",
    )
    assert restarts == 7
    # TF Serving, over gRPC (status) and its monitoring endpoint.
    assert _value(store, "mlinfra_serving_model_version_available", model="half-plus-two", version="1") == 1
    requests = store.query_range(
        ":tensorflow:serving:request_count", [LabelMatcher("model", "=", "half-plus-two")], TS, TS
    )
    assert sum(points[0][1] for _, points in requests) >= 1
    # GPU: the real NVML. Without a driver the collector is down and says why; never fatal.
    gpu_up = _value(store, "mlinfra_collector_up", collector="gpu")
    if gpu_up == 0:
        assert any("NVML" in e for e in collectors["gpu"]["errors"])
    else:
        assert _value(store, "ml_gpu_up", gpu_id="0", host=os.uname().nodename) == 1

    # The Pushgateway got the same sweep under job/instance.
    body = httpx.get(f"{pushgateway.url}/metrics", timeout=10).text
    pushed = [
        line
        for line in body.splitlines()
        if line.startswith("kube_deployment_spec_replicas{") and f'instance="{sweep_env["instance"]}"' in line
    ]
    assert any('deployment="half-plus-two"' in line and line.endswith(" 3") for line in pushed), pushed

    # Samples never travel through XCom: every collector staged them in the store, where
    # they stay (a day) so that write_sweep can be re-run and rewrite the same sweep.
    assert set(store.staged(run.run_id)) == {"gpu", "host", "kubernetes", "serving"}


def test_rerunning_the_same_logical_time_replaces_the_sweep(sweep_env, kube) -> None:
    store: MetricsStore = sweep_env["store"]
    dag = _sweep_dag()
    assert dag.test(logical_date=LOGICAL).state == "success"
    first = store.sweeps(TS, TS + 1)[0].samples
    kube.scale_deployment("serving", "half-plus-two", 1)
    assert dag.test(logical_date=LOGICAL).state == "success"
    (again,) = store.sweeps(TS, TS + 1)
    # One sweep at that time, with the new state; the pods that went away are gone from it.
    assert (
        _value(store, "kube_deployment_spec_replicas", namespace="serving", deployment="half-plus-two") == 1
    )
    assert again.samples < first


def test_a_broken_source_never_hides_the_others(sweep_env, kube) -> None:
    store: MetricsStore = sweep_env["store"]
    kube.stop()  # the API server goes away; host and serving samples must still land
    dag = _sweep_dag()
    assert dag.test(logical_date=LOGICAL).state == "success"
    (sweep,) = store.sweeps(TS, TS + 1)
    assert sweep.summary is not None
    assert "kubernetes" in sweep.summary["down"]
    assert _value(store, "mlinfra_collector_up", collector="kubernetes") == 0
    assert _value(store, "mlinfra_collector_up", collector="host") == 1
    assert _value(store, "mlinfra_serving_model_version_available", model="half-plus-two", version="1") == 1
