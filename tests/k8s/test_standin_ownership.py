"""The Kubernetes stand-in counts and deletes pods by ownership (ControllerRef), as a cluster does.

A canary Deployment (``app=x,track=canary``) overlaps the stable's selector (``app=x``);
each must report, scale and delete only the pods it owns. Pods get loopback addresses
that a per-pod server can bind.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from tests.support.k8s_standin import KubeStandIn

NS = "serving"


def _template(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "serving", "image": "busybox:1.36"}]},
    }


def _deployment(name: str, selector: dict[str, str], replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": _template(selector),
        },
    }


def _wait(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s: {what}")


@pytest.mark.integration
def test_overlapping_deployments_count_only_their_own_pods(kube: KubeStandIn) -> None:
    kube.add_deployment(NS, "x", replicas=3)
    kube.add_deployment(NS, "x-canary", replicas=1, selector={"app": "x", "track": "canary"})

    stable, canary = kube.deployment(NS, "x"), kube.deployment(NS, "x-canary")
    assert stable["status"]["replicas"] == stable["status"]["readyReplicas"] == 3
    assert canary["status"]["replicas"] == canary["status"]["readyReplicas"] == 1
    stable_pods = kube.pod_names(NS, deployment="x")
    canary_pods = kube.pod_names(NS, deployment="x-canary")
    assert len(stable_pods) == 3
    assert len(canary_pods) == 1
    assert not set(stable_pods) & set(canary_pods)
    # The canary's pod carries app=x: the stable's selector matches it, ownership does not.
    assert kube.pod(NS, canary_pods[0])["metadata"]["labels"]["app"] == "x"


@pytest.mark.integration
def test_scaling_and_deleting_one_leaves_the_other_alone(kube: KubeStandIn) -> None:
    kube.add_deployment(NS, "x", replicas=2)
    kube.add_deployment(NS, "x-canary", replicas=2, selector={"app": "x", "track": "canary"})
    canary_pods = kube.pod_names(NS, deployment="x-canary")

    kube.scale_deployment(NS, "x", 1)
    assert kube.pod_names(NS, deployment="x-canary") == canary_pods
    assert kube.deployment(NS, "x")["status"]["replicas"] == 1

    stable_pods = kube.pod_names(NS, deployment="x")
    kube.delete_deployment(NS, "x-canary")
    assert kube.pod_names(NS) == stable_pods
    assert kube.deployment(NS, "x")["status"]["readyReplicas"] == 1
    assert not [
        rs for rs in kube.list_objects("apps/v1", "ReplicaSet", NS) if "canary" in rs["metadata"]["name"]
    ]


@pytest.mark.integration
def test_the_rollout_controller_keeps_overlapping_deployments_apart(kube: KubeStandIn) -> None:
    """Deployments written through the API: the controller converges each to its own replicas."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes import client

    apps = client.AppsV1Api(KubernetesHook(conn_id="kubernetes_default").api_client)
    apps.create_namespaced_deployment(NS, _deployment("x", {"app": "x"}, 3))
    apps.create_namespaced_deployment(NS, _deployment("x-canary", {"app": "x", "track": "canary"}, 1))

    def converged() -> bool:
        s = apps.read_namespaced_deployment("x", NS).status
        c = apps.read_namespaced_deployment("x-canary", NS).status
        return (s.replicas, s.ready_replicas, c.replicas, c.ready_replicas) == (3, 3, 1, 1)

    _wait(converged, "stable 3/3 and canary 1/1")
    assert len(kube.pod_names(NS)) == 4  # nobody deleted the other's pods as surplus

    apps.delete_namespaced_deployment("x-canary", NS)
    _wait(lambda: len(kube.pod_names(NS)) == 3, "the canary's pod gone")
    status = apps.read_namespaced_deployment("x", NS).status
    assert (status.replicas, status.ready_replicas) == (3, 3)


@pytest.mark.integration
def test_pods_get_distinct_loopback_addresses_off_127_0_0(kube: KubeStandIn) -> None:
    kube.add_deployment(NS, "x", replicas=3)
    kube.add_pod(NS, "loose")
    ips = [kube.pod(NS, p)["status"]["podIP"] for p in kube.pod_names(NS)]
    assert len(set(ips)) == 4
    for ip in ips:
        address = ipaddress.ip_address(ip)
        assert address.is_loopback, ip
        assert ip.split(".")[1] == str(kube.pod_ip_instance)
        assert not ip.startswith("127.0.0."), ip
    assert 16 <= kube.pod_ip_instance <= 250


def test_pod_addresses_cover_more_than_254_pods() -> None:
    standin = KubeStandIn()  # not started: addresses only
    ips = {standin._pod_ip(n) for n in range(1, 600)}
    assert len(ips) == 599
    assert all(ip.rsplit(".", 1)[1] not in ("0", "255") for ip in ips)
