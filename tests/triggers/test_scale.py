"""DeploymentScaleTrigger: serialize round-trip, and one event per outcome against the stand-in."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mlinfra.triggers.scale import DeploymentScaleTrigger
from tests.support.k8s_standin import KubeStandIn


def first_event(trigger: Any) -> dict[str, Any]:
    async def run() -> Any:
        return await anext(trigger.run())

    return asyncio.run(run()).payload


def test_serialize_round_trip() -> None:
    trigger = DeploymentScaleTrigger(
        "serving", "half-plus-two", replicas=4, kubernetes_conn_id="k8s", min_generation=3,
        deadline=1234.5, poll_interval=2, cluster_context="ctx", config_file="/kc", in_cluster=False,
    )  # fmt: skip
    classpath, kwargs = trigger.serialize()
    assert classpath == "mlinfra.triggers.scale.DeploymentScaleTrigger"
    from airflow.sdk._shared.module_loading import import_string

    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs == {
        "namespace": "serving", "name": "half-plus-two", "replicas": 4, "kubernetes_conn_id": "k8s",
        "min_generation": 3, "deadline": 1234.5, "poll_interval": 2.0, "cluster_context": "ctx",
        "config_file": "/kc", "in_cluster": False,
    }  # fmt: skip


def trigger(replicas: int, seconds: float = 20) -> DeploymentScaleTrigger:
    return DeploymentScaleTrigger(
        "serving", "half-plus-two", replicas=replicas, deadline=time.time() + seconds, poll_interval=0.05
    )


@pytest.mark.integration
def test_success_once_the_new_count_is_available(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", step_seconds=0.1)
    from tests.scaling.test_kube import client

    client().patch_replicas("serving", "half-plus-two", 3)
    event = first_event(trigger(3))
    assert event["status"] == "success", event
    assert event["progress"]["available"] == 3


@pytest.mark.integration
def test_timeout_names_the_progress(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", mode="stuck")
    from tests.scaling.test_kube import client

    client().patch_replicas("serving", "half-plus-two", 2)
    event = first_event(trigger(2, seconds=0.3))
    assert event["status"] == "timeout"
    assert (
        "2 replicas not available by the deadline (serving/half-plus-two: 1/2 replicas available"
        in event["message"]
    )


@pytest.mark.integration
def test_superseded_when_the_count_changed(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=5)
    event = first_event(trigger(3))
    assert event["status"] == "superseded"


@pytest.mark.integration
def test_forbidden_ends_the_wait(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.inject_fault("GET", r"/deployments/half-plus-two$", 403, times=None)
    event = first_event(trigger(1))
    assert event["status"] == "error"
    assert "HTTP 403" in event["message"]
