"""The Kubernetes collector against the API stand-in, through the real client and hook.

Connections come from ``AIRFLOW_CONN_*`` environment variables: Airflow's
environment-variables secrets backend needs no metadata database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlinfra.collectors import kubernetes as k8s_collector
from mlinfra.collectors.kubernetes import collect_kubernetes_samples, run
from mlinfra.config import DEFAULT_FLEET_FILE, PROJECT_ROOT, Fleet
from mlinfra.samples import Sample
from tests.support.connections import kubeconfig_path
from tests.support.k8s_standin import KubeStandIn

CONN_ENV = "AIRFLOW_CONN_KUBERNETES_DEFAULT"


# --------------------------------------------------------------------------- helpers


def make_fleet(*targets: tuple[str, str, str]) -> Fleet:
    """A fleet with one model per ``(conn_id, namespace, deployment)``, cloned from include/fleet.yaml."""
    data = yaml.safe_load(DEFAULT_FLEET_FILE.read_text(encoding="utf-8"))
    template = data["models"][0]
    models = []
    for conn_id, namespace, deployment in targets:
        model = json.loads(json.dumps(template))
        model["name"] = f"{namespace}-{deployment}"
        model["kubernetes"] = {"conn_id": conn_id, "namespace": namespace, "deployment": deployment}
        models.append(model)
    data["models"] = models
    return Fleet.model_validate(data)


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample named ``name`` whose labels are exactly ``labels``."""
    found = [s.value for s in samples if s.name == name and dict(s.labels) == labels]
    assert len(found) == 1, f"expected one {name}{labels}, found {len(found)}: {values(samples, name)}"
    return found[0]


def hook_clients() -> tuple[object, object]:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    hook = KubernetesHook(conn_id="kubernetes_default")
    return hook.core_v1_client, hook.apps_v1_client


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def kube_connection(kube: KubeStandIn, tmp_path: Path) -> Path:
    """The kubeconfig file through which ``kubernetes_default`` reaches the stand-in (tests/conftest.py's ``kube``)."""
    return kubeconfig_path(tmp_path)


@pytest.fixture
def serving(kube: KubeStandIn) -> dict[str, list[str]]:
    """``serving``: half-plus-two at 2/3 available, resnet50 with one crash-looping pod, a bare pod."""
    kube.add_deployment("serving", "half-plus-two", replicas=3, ready_replicas=2)
    kube.add_deployment("serving", "resnet50-classifier", replicas=2, containers=["serving", "metrics"])
    resnet = kube.pod_names("serving", deployment="resnet50-classifier")
    kube.set_pod_status(
        "serving", resnet[0], container="serving", waiting_reason="CrashLoopBackOff", restarts=7
    )
    kube.add_pod("serving", "debug-shell", labels={"app": "debug"})
    return {
        "half-plus-two": kube.pod_names("serving", deployment="half-plus-two"),
        "resnet50-classifier": resnet,
    }


# --------------------------------------------------------------------------- the hook reaches the stand-in


@pytest.mark.integration
def test_connection_from_env_var_needs_no_database(kube_connection: Path) -> None:
    from mlinfra.connections import connection_exists, get_connection

    conn = get_connection("kubernetes_default")
    assert conn is not None
    assert conn.conn_type == "kubernetes"
    assert conn.extra_dejson == {"kube_config_path": str(kube_connection)}
    assert not connection_exists("mlinfra_test_no_such_connection")


@pytest.mark.integration
@pytest.mark.parametrize("inline", [False, True], ids=["kube_config_path", "inline_kube_config"])
def test_kubernetes_hook_lists_pods_of_the_standin(
    kube: KubeStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=2)
    path = None if inline else kube.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv(*kube.airflow_connection_env(kubeconfig_path=path))

    core_v1, apps_v1 = hook_clients()
    pods = core_v1.list_namespaced_pod("serving")  # type: ignore[attr-defined]
    deployment = apps_v1.read_namespaced_deployment("half-plus-two", "serving")  # type: ignore[attr-defined]

    assert sorted(p.metadata.name for p in pods.items) == sorted(kube.pod_names("serving"))
    assert deployment.spec.replicas == 2
    assert deployment.status.available_replicas == 2
    # The hook really used the kubeconfig's token user.
    assert kube.requests[-1].authorization == f"Bearer {kube.token}"


@pytest.mark.integration
def test_standin_rejects_a_wrong_token_like_a_cluster(
    kube: KubeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.client.exceptions import ApiException

    config = kube.kubeconfig()
    config["users"][0]["user"]["token"] = "not-the-token"
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": config}}))
    core_v1, _ = hook_clients()
    with pytest.raises(ApiException) as err:
        core_v1.list_namespaced_pod("serving")  # type: ignore[attr-defined]
    assert err.value.status == 401


@pytest.mark.integration
def test_missing_object_is_a_not_found_status(kube: KubeStandIn, kube_connection: Path) -> None:
    from kubernetes.client.exceptions import ApiException

    _, apps_v1 = hook_clients()
    with pytest.raises(ApiException) as err:
        apps_v1.read_namespaced_deployment("nope", "serving")  # type: ignore[attr-defined]
    status = json.loads(err.value.body)
    assert err.value.status == 404
    assert status["kind"] == "Status"
    assert status["reason"] == "NotFound"
    assert status["code"] == 404
    assert status["message"] == 'deployments.apps "nope" not found'


@pytest.mark.integration
def test_lists_carry_kind_and_resource_version(kube: KubeStandIn, kube_connection: Path) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    core_v1, apps_v1 = hook_clients()
    before = int(core_v1.list_namespaced_pod("serving").metadata.resource_version)  # type: ignore[attr-defined]
    kube.add_pod("serving", "extra")
    after = core_v1.list_namespaced_pod("serving")  # type: ignore[attr-defined]
    assert int(after.metadata.resource_version) > before
    assert after.kind == "PodList"
    assert after.api_version == "v1"
    deployments = apps_v1.list_namespaced_deployment("serving")  # type: ignore[attr-defined]
    assert (deployments.kind, deployments.api_version) == ("DeploymentList", "apps/v1")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=half-plus-two", {"a1", "a2"}),
        ("app==half-plus-two", {"a1", "a2"}),
        ("app!=half-plus-two", {"b1", "bare"}),
        ("app=half-plus-two,track!=canary", {"a1"}),
        ("app in (half-plus-two, resnet)", {"a1", "a2", "b1"}),
        ("app notin (half-plus-two)", {"b1", "bare"}),
        ("track", {"a1", "a2"}),
        ("!app", {"bare"}),
        ("", {"a1", "a2", "b1", "bare"}),
    ],
)
def test_label_selectors(kube: KubeStandIn, kube_connection: Path, selector: str, expected: set[str]) -> None:
    kube.add_pod("serving", "a1", labels={"app": "half-plus-two", "track": "stable"})
    kube.add_pod("serving", "a2", labels={"app": "half-plus-two", "track": "canary"})
    kube.add_pod("serving", "b1", labels={"app": "resnet"})
    kube.add_pod("serving", "bare")
    kube.add_pod("other", "elsewhere", labels={"app": "half-plus-two"})
    core_v1, _ = hook_clients()
    got = core_v1.list_namespaced_pod("serving", label_selector=selector)  # type: ignore[attr-defined]
    assert {p.metadata.name for p in got.items} == expected
    assert kube.requests[-1].query.get("labelSelector", "") == selector


@pytest.mark.integration
def test_an_invalid_selector_is_a_bad_request(kube: KubeStandIn, kube_connection: Path) -> None:
    from kubernetes.client.exceptions import ApiException

    core_v1, _ = hook_clients()
    with pytest.raises(ApiException) as err:
        core_v1.list_namespaced_pod("serving", label_selector="app in (a")  # type: ignore[attr-defined]
    assert err.value.status == 400
    assert json.loads(err.value.body)["reason"] == "BadRequest"


# --------------------------------------------------------------------------- samples


@pytest.mark.integration
def test_samples_follow_the_standin_state(
    kube: KubeStandIn, kube_connection: Path, serving: dict[str, list[str]]
) -> None:
    core_v1, apps_v1 = hook_clients()
    samples = collect_kubernetes_samples(["serving"], core_v1=core_v1, apps_v1=apps_v1)

    hpt = {"namespace": "serving", "deployment": "half-plus-two"}
    assert value(samples, "kube_deployment_spec_replicas", **hpt) == 3
    assert value(samples, "kube_deployment_status_replicas_available", **hpt) == 2
    assert value(samples, "kube_deployment_status_replicas_ready", **hpt) == 2
    assert value(samples, "kube_deployment_status_replicas_updated", **hpt) == 3
    assert value(samples, "kube_deployment_status_replicas_unavailable", **hpt) == 1
    assert value(samples, "kube_deployment_status_observed_generation", **hpt) == 1
    assert value(samples, "kube_deployment_metadata_generation", **hpt) == 1
    resnet = {"namespace": "serving", "deployment": "resnet50-classifier"}
    assert value(samples, "kube_deployment_status_replicas_available", **resnet) == 1
    assert value(samples, "kube_deployment_status_replicas_unavailable", **resnet) == 1

    # The third half-plus-two pod is not ready yet: Pending, waiting in ContainerCreating.
    pending = serving["half-plus-two"][2]
    pod = {"namespace": "serving", "pod": pending, "deployment": "half-plus-two"}
    phases = {p: value(samples, "kube_pod_status_phase", **pod, phase=p) for p in k8s_collector.POD_PHASES}
    assert phases == {"Pending": 1, "Running": 0, "Succeeded": 0, "Failed": 0, "Unknown": 0}
    container = {**pod, "container": "half-plus-two"}
    assert value(samples, "kube_pod_container_status_ready", **container) == 0
    assert (
        value(samples, "kube_pod_container_status_waiting_reason", **container, reason="ContainerCreating")
        == 1
    )

    # The crash-looping container: Running pod, not ready, restarts counted, reason exposed.
    crashing = {
        "namespace": "serving",
        "pod": serving["resnet50-classifier"][0],
        "deployment": "resnet50-classifier",
    }
    assert value(samples, "kube_pod_status_phase", **crashing, phase="Running") == 1
    serving_c = {**crashing, "container": "serving"}
    assert value(samples, "kube_pod_container_status_restarts_total", **serving_c) == 7
    assert value(samples, "kube_pod_container_status_ready", **serving_c) == 0
    assert (
        value(samples, "kube_pod_container_status_waiting_reason", **serving_c, reason="CrashLoopBackOff")
        == 1
    )
    # Its sidecar is fine: ready, no restarts, no waiting reason.
    metrics_c = {**crashing, "container": "metrics"}
    assert value(samples, "kube_pod_container_status_ready", **metrics_c) == 1
    assert value(samples, "kube_pod_container_status_restarts_total", **metrics_c) == 0
    waiting = values(samples, "kube_pod_container_status_waiting_reason")
    assert [dict(k)["reason"] for k in waiting if dict(k)["pod"] == crashing["pod"]] == ["CrashLoopBackOff"]

    # A pod no deployment selects has no deployment label.
    assert (
        value(samples, "kube_pod_status_phase", namespace="serving", pod="debug-shell", phase="Running") == 1
    )
    pods_with_phase = {dict(k)["pod"] for k in values(samples, "kube_pod_status_phase")}
    assert pods_with_phase == set(kube.pod_names("serving"))


@pytest.mark.integration
def test_zero_counts_omitted_by_the_api_read_as_zero(kube: KubeStandIn, kube_connection: Path) -> None:
    dep = kube.add_deployment("serving", "scaled-to-zero", replicas=0)
    assert "availableReplicas" not in dep["status"]  # the premise: the API omits zeros
    core_v1, apps_v1 = hook_clients()
    samples = collect_kubernetes_samples(["serving"], core_v1=core_v1, apps_v1=apps_v1)
    labels = {"namespace": "serving", "deployment": "scaled-to-zero"}
    assert value(samples, "kube_deployment_spec_replicas", **labels) == 0
    for name in ("available", "ready", "updated", "unavailable"):
        assert value(samples, f"kube_deployment_status_replicas_{name}", **labels) == 0


@pytest.mark.integration
def test_lagging_controller_shows_in_generations(kube: KubeStandIn, kube_connection: Path) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.scale_deployment("serving", "half-plus-two", 2)  # a spec change: generation 2
    kube.set_deployment_status("serving", "half-plus-two", observedGeneration=1)
    core_v1, apps_v1 = hook_clients()
    samples = collect_kubernetes_samples(["serving"], core_v1=core_v1, apps_v1=apps_v1)
    labels = {"namespace": "serving", "deployment": "half-plus-two"}
    assert value(samples, "kube_deployment_metadata_generation", **labels) == 2
    assert value(samples, "kube_deployment_status_observed_generation", **labels) == 1
    assert value(samples, "kube_deployment_spec_replicas", **labels) == 2


@pytest.mark.integration
def test_deployments_filter_keeps_their_pods_only(
    kube: KubeStandIn, kube_connection: Path, serving: dict[str, list[str]]
) -> None:
    core_v1, apps_v1 = hook_clients()
    samples = collect_kubernetes_samples(
        ["serving"], core_v1=core_v1, apps_v1=apps_v1, deployments={"half-plus-two"}
    )
    assert {s.labels["deployment"] for s in samples} == {"half-plus-two"}
    assert {s.labels["pod"] for s in samples if "pod" in s.labels} == set(serving["half-plus-two"])


def test_pure_function_on_client_models_without_status() -> None:
    # No server: the client's own model objects, as a freshly created deployment returns them.
    from kubernetes import client

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="fresh", namespace="serving", generation=1),
        spec=client.V1DeploymentSpec(
            replicas=None,
            selector=client.V1LabelSelector(match_labels={"app": "fresh"}),
            template=client.V1PodTemplateSpec(),
        ),
        status=None,
    )
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="fresh-abc", labels={"app": "fresh"}), status=None)

    class Core:
        def list_namespaced_pod(self, namespace: str, **_: object) -> client.V1PodList:
            return client.V1PodList(items=[pod])

    class Apps:
        def list_namespaced_deployment(self, namespace: str, **_: object) -> client.V1DeploymentList:
            return client.V1DeploymentList(items=[dep])

    samples = collect_kubernetes_samples(["serving"], core_v1=Core(), apps_v1=Apps())
    labels = {"namespace": "serving", "deployment": "fresh"}
    assert value(samples, "kube_deployment_spec_replicas", **labels) == 1  # the API default
    assert value(samples, "kube_deployment_status_replicas_available", **labels) == 0
    assert value(samples, "kube_pod_status_phase", **labels, pod="fresh-abc", phase="Unknown") == 1
    assert values(samples, "kube_pod_container_status_ready") == {}


# --------------------------------------------------------------------------- run(): the sweep's entry point


def target_up(result_samples: list[Sample], target: str) -> float:
    return value(result_samples, "mlinfra_collector_target_up", collector="kubernetes", target=target)


@pytest.mark.integration
def test_run_collects_every_namespace(
    kube: KubeStandIn, kube_connection: Path, serving: dict[str, list[str]]
) -> None:
    kube.add_deployment("batch", "nightly-embeddings", replicas=1)
    fleet = make_fleet(
        ("kubernetes_default", "serving", "half-plus-two"),
        ("kubernetes_default", "batch", "nightly-embeddings"),
    )
    result = run(fleet)
    assert (result.up, result.errors, result.skipped) == (True, [], [])
    assert target_up(result.samples, "kubernetes_default/serving") == 1
    assert target_up(result.samples, "kubernetes_default/batch") == 1
    assert value(result.samples, "mlinfra_collector_up", collector="kubernetes") == 1
    batch = {"namespace": "batch", "deployment": "nightly-embeddings"}
    assert value(result.samples, "kube_deployment_status_replicas_available", **batch) == 1
    # The whole namespace, like kube-state-metrics: resnet50 is not in this fleet but is reported.
    resnet = {"namespace": "serving", "deployment": "resnet50-classifier"}
    assert value(result.samples, "kube_deployment_spec_replicas", **resnet) == 2


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (
            403,
            "403 Forbidden: pods is forbidden: "
            'User "system:serviceaccount:airflow:mlinfra" cannot list resource "pods" '
            'in API group "" in the namespace "batch"',
        ),
        (
            500,
            "500 Internal Server Error: GET /api/v1/namespaces/batch/pods: InternalError (injected by the stand-in)",
        ),
    ],
    ids=["forbidden", "internal-error"],
)
def test_one_failing_namespace_keeps_the_others(
    kube: KubeStandIn, kube_connection: Path, serving: dict[str, list[str]], status: int, error: str
) -> None:
    kube.add_deployment("batch", "nightly-embeddings", replicas=1)
    kube.inject_fault("GET", r"^/api/v1/namespaces/batch/pods$", status, times=None)
    fleet = make_fleet(
        ("kubernetes_default", "batch", "nightly-embeddings"),
        ("kubernetes_default", "serving", "half-plus-two"),
    )
    result = run(fleet)

    assert result.up is False
    assert result.errors == [f"kubernetes_default/batch: {error}"]
    assert target_up(result.samples, "kubernetes_default/batch") == 0
    assert target_up(result.samples, "kubernetes_default/serving") == 1
    assert not [s for s in result.samples if s.labels.get("namespace") == "batch"]
    hpt = {"namespace": "serving", "deployment": "half-plus-two"}
    assert value(result.samples, "kube_deployment_status_replicas_available", **hpt) == 2
    assert value(result.samples, "mlinfra_collector_up", collector="kubernetes") == 0


def test_run_skips_a_connection_that_is_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLINFRA_TEST_ABSENT_K8S", raising=False)
    fleet = make_fleet(("mlinfra_test_absent_k8s", "serving", "half-plus-two"))

    def no_hook(conn_id: str) -> k8s_collector.KubernetesClients:
        raise AssertionError(f"a hook was built for {conn_id} although it has no connection")

    result = run(fleet, hook_factory=no_hook)  # the real connection lookup
    assert result.up is True
    assert result.errors == []
    assert result.skipped == ["mlinfra_test_absent_k8s: no Airflow connection"]
    assert [s.name for s in result.samples] == ["mlinfra_collector_up", "mlinfra_collector_duration_seconds"]
    assert value(result.samples, "mlinfra_collector_up", collector="kubernetes") == 1


@pytest.mark.integration
def test_run_mixes_skipped_and_collected_connections(
    kube: KubeStandIn, kube_connection: Path, serving: dict[str, list[str]]
) -> None:
    fleet = make_fleet(
        ("kubernetes_default", "serving", "half-plus-two"),
        ("mlinfra_test_absent_k8s", "edge", "half-plus-two"),
    )
    result = run(fleet, connection_exists=lambda conn_id: conn_id == "kubernetes_default")
    assert result.up is True
    assert result.skipped == ["mlinfra_test_absent_k8s: no Airflow connection"]
    assert target_up(result.samples, "kubernetes_default/serving") == 1
    assert not [s for s in result.samples if "mlinfra_test_absent_k8s" in s.labels.get("target", "")]


@pytest.mark.integration
def test_unreachable_api_server_is_down_with_a_clear_error(kube: KubeStandIn, kube_connection: Path) -> None:
    url = kube.url
    kube.stop()
    fleet = make_fleet(("kubernetes_default", "serving", "half-plus-two"))

    started = time.monotonic()
    result = run(fleet)

    assert time.monotonic() - started < 15
    assert result.up is False
    assert result.errors == [
        f"kubernetes_default/serving: cannot reach the API server at {url}: Connection refused"
    ]
    assert target_up(result.samples, "kubernetes_default/serving") == 0
    assert value(result.samples, "mlinfra_collector_up", collector="kubernetes") == 0


@pytest.mark.integration
def test_a_broken_kubeconfig_names_the_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    monkeypatch.setenv(
        CONN_ENV, json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(missing)}})
    )
    fleet = make_fleet(("kubernetes_default", "serving", "a"), ("kubernetes_default", "batch", "b"))
    result = run(fleet)
    assert result.up is False
    assert len(result.errors) == 1
    assert result.errors[0].startswith("kubernetes_default: cannot configure the Kubernetes client: ")
    assert target_up(result.samples, "kubernetes_default/serving") == 0
    assert target_up(result.samples, "kubernetes_default/batch") == 0


@pytest.mark.integration
def test_slow_api_server_times_out_per_namespace(
    kube: KubeStandIn, kube_connection: Path, serving: dict[str, list[str]]
) -> None:
    kube.inject_fault("GET", r"/namespaces/batch/", None, times=None, delay=3.0)
    fleet = make_fleet(
        ("kubernetes_default", "batch", "a"), ("kubernetes_default", "serving", "half-plus-two")
    )
    result = run(fleet, request_timeout=0.5)
    assert len(result.errors) == 1
    assert result.errors[0].startswith(
        f"kubernetes_default/batch: no answer in time from the API server at {kube.url}: "
    )
    assert result.errors[0].endswith("timed out"), result.errors[0]
    assert target_up(result.samples, "kubernetes_default/serving") == 1


# --------------------------------------------------------------------------- the stand-in as a process


@pytest.mark.integration
def test_standin_process_seeds_the_fleet(tmp_path: Path) -> None:
    from kubernetes import client, config

    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.k8s_standin",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--seed-fleet",
            str(DEFAULT_FLEET_FILE),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        assert proc.stdout is not None
        url_line = proc.stdout.readline().strip()
        conn_line = proc.stdout.readline().strip()
        assert url_line.startswith("MLINFRA_K8S_STANDIN_URL=http://127.0.0.1:")
        assert conn_line.startswith("AIRFLOW_CONN_KUBERNETES_DEFAULT=")
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        assert cfg.host == url_line.split("=", 1)[1]
        apps_v1 = client.AppsV1Api(client.ApiClient(cfg))
        deployments = apps_v1.list_namespaced_deployment("serving").items
        by_name = {d.metadata.name: d for d in deployments}
        assert set(by_name) == {"half-plus-two", "resnet50-classifier"}
        assert by_name["resnet50-classifier"].spec.replicas == 2  # min_replicas in include/fleet.yaml
        assert by_name["resnet50-classifier"].status.available_replicas == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
