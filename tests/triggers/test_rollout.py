"""DeploymentRolloutTrigger: serialize round-trip, and one event per outcome against the stand-in."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from mlinfra.triggers.rollout import DeploymentRolloutTrigger
from tests.support.k8s_standin import KubeStandIn


def first_event(trigger: Any) -> dict[str, Any]:
    async def run() -> Any:
        return await anext(trigger.run())

    return asyncio.run(run()).payload


def test_serialize_round_trip() -> None:
    trigger = DeploymentRolloutTrigger(
        "serving",
        "half-plus-two",
        kubernetes_conn_id="k8s",
        min_generation=3,
        pod_labels={"app": "half-plus-two"},
        deadline=1234.5,
        poll_interval=2,
        cluster_context="ctx",
        config_file="/kc",
        in_cluster=False,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "mlinfra.triggers.rollout.DeploymentRolloutTrigger"
    from airflow.sdk._shared.module_loading import import_string

    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs == {
        "namespace": "serving",
        "name": "half-plus-two",
        "kubernetes_conn_id": "k8s",
        "min_generation": 3,
        "pod_labels": {"app": "half-plus-two"},
        "deadline": 1234.5,
        "poll_interval": 2.0,
        "cluster_context": "ctx",
        "config_file": "/kc",
        "in_cluster": False,
    }


def new_template(kube: KubeStandIn, image: str) -> int:
    """Change the pod template through the API path the controller follows; returns the generation."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes import client

    apps = client.AppsV1Api(KubernetesHook(conn_id="kubernetes_default").api_client)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "half-plus-two", "image": image}]}}}}
    dep = apps.patch_namespaced_deployment("half-plus-two", "serving", patch)
    return int(dep.metadata.generation)


def trigger(generation: int | None, seconds: float = 30) -> DeploymentRolloutTrigger:
    return DeploymentRolloutTrigger(
        "serving",
        "half-plus-two",
        min_generation=generation,
        deadline=time.time() + seconds,
        poll_interval=0.1,
    )


@pytest.mark.integration
def test_success_once_the_rollout_completes_with_progress_in_the_log(
    kube: KubeStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=2)
    kube.set_rollout("serving", "half-plus-two", step_seconds=0.3)
    generation = new_template(kube, "tensorflow/serving:2.15.0")
    t = trigger(generation)
    t._log = logging.getLogger("test.rollout")  # a stdlib logger caplog can see (Airflow's is structlog)
    with caplog.at_level(logging.INFO, logger="test.rollout"):
        event = first_event(t)
    assert event["status"] == "success", event
    assert event["rollout"]["updated"] == event["rollout"]["available"] == 2
    assert any("replicas updated" in r.getMessage() for r in caplog.records)


@pytest.mark.integration
def test_an_image_pull_error_fails_the_wait(kube: KubeStandIn) -> None:
    kube.fail_images(r":nope$")
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    event = first_event(trigger(new_template(kube, "tensorflow/serving:nope")))
    assert event["status"] == "failed"
    # The kubelet's first failed pull is ErrImagePull; ImagePullBackOff follows during back-off.
    assert "ErrImagePull" in event["message"] or "ImagePullBackOff" in event["message"]
    assert "tensorflow/serving:nope" in event["message"]


@pytest.mark.integration
def test_a_crash_loop_fails_the_wait(kube: KubeStandIn) -> None:
    kube.fail_images(r":crash$", "CrashLoopBackOff")
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    event = first_event(trigger(new_template(kube, "tensorflow/serving:crash")))
    assert event["status"] == "failed"
    assert "CrashLoopBackOff after 1 restarts" in event["message"]


@pytest.mark.integration
def test_progress_deadline_exceeded_fails_the_wait(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", mode="stuck", progress_deadline=0.5)
    event = first_event(trigger(new_template(kube, "tensorflow/serving:2.15.0")))
    assert event["status"] == "failed"
    assert "ProgressDeadlineExceeded" in event["message"]


@pytest.mark.integration
def test_a_slow_rollout_times_out(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", mode="stuck")
    event = first_event(trigger(new_template(kube, "tensorflow/serving:2.15.0"), seconds=0.5))
    assert event["status"] == "timeout"
    assert "not complete by its deadline (0/1 updated" in event["message"]


@pytest.mark.integration
def test_a_missing_deployment_is_an_error_at_once(kube: KubeStandIn) -> None:
    event = first_event(trigger(None))
    assert event["status"] == "error"
    assert "HTTP 404" in event["message"]


@pytest.mark.integration
def test_transient_api_errors_are_waited_out(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.inject_fault("GET", r"/deployments/half-plus-two$", 503, times=3)
    event = first_event(trigger(None))
    assert event["status"] == "success"
