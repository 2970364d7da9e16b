"""DeploymentRolloutSensor: done at once, or deferred to the trigger; event handling."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from mlinfra.exceptions import RolloutFailed
from mlinfra.sensors.rollout import DeploymentRolloutSensor
from mlinfra.triggers.rollout import DeploymentRolloutTrigger
from tests.support.k8s_standin import KubeStandIn


def sensor(**kwargs: object) -> DeploymentRolloutSensor:
    return DeploymentRolloutSensor(
        task_id="wait_rollout",
        namespace="serving",
        deployment="half-plus-two",
        timeout=60,
        poll_interval=0.5,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.integration
def test_a_finished_rollout_does_not_defer(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=2)
    assert sensor().execute({}) is None


@pytest.mark.integration
def test_an_unfinished_rollout_defers_to_the_trigger(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=2, ready_replicas=1)
    with pytest.raises(TaskDeferred) as e:
        sensor(min_generation="1").execute({})
    trigger = e.value.trigger
    assert isinstance(trigger, DeploymentRolloutTrigger)
    assert (trigger.namespace, trigger.name, trigger.min_generation, trigger.poll_interval) == (
        "serving",
        "half-plus-two",
        1,
        0.5,
    )
    assert e.value.method_name == "execute_complete"


@pytest.mark.integration
def test_a_crash_loop_seen_before_deferring_fails_without_retry(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    pod = kube.pod_names("serving", deployment="half-plus-two")[0]
    kube.set_pod_status("serving", pod, waiting_reason="CrashLoopBackOff", restarts=5)
    with pytest.raises(AirflowFailException, match="CrashLoopBackOff"):
        sensor().execute({})


def test_events() -> None:
    s = sensor()
    assert s.execute_complete({}, {"status": "success", "message": "ok", "rollout": {"updated": 2}}) == {
        "updated": 2
    }
    with pytest.raises(AirflowFailException, match="ImagePullBackOff"):
        s.execute_complete({}, {"status": "failed", "message": "pod x is in ImagePullBackOff"})
    with pytest.raises(AirflowFailException, match="deadline"):
        s.execute_complete({}, {"status": "timeout", "message": "not complete by its deadline"})
    with pytest.raises(RolloutFailed, match="HTTP 403"):  # retried: permissions may be fixed meanwhile
        s.execute_complete({}, {"status": "error", "message": "HTTP 403"})
