"""evaluate_rollout: kubectl rollout status's rules plus failing pods."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra.deploy.rollout import evaluate_rollout, label_selector, template_pod_labels

IMAGE = "tensorflow/serving:2.14.1"


def deployment(
    *, desired: int = 2, generation: int = 2, observed: int = 2, conditions: Any = (), **counts: int
) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "serving", "generation": generation},
        "spec": {
            "replicas": desired,
            "template": {
                "metadata": {"labels": {"app": "m", "version": "2"}},
                "spec": {"containers": [{"name": "tf-serving", "image": IMAGE}]},
            },
        },
        "status": {"observedGeneration": observed, "conditions": list(conditions), **counts},
    }


def pod(reason: str | None = None, image: str = IMAGE, message: str | None = None) -> dict[str, Any]:
    state = (
        {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if reason
        else {"running": {}}
    )
    return {
        "metadata": {"name": "m-abc"},
        "spec": {"containers": [{"name": "tf-serving", "image": image}]},
        "status": {"containerStatuses": [{"name": "tf-serving", "state": state, "restartCount": 4}]},
    }


def test_complete_when_everything_caught_up() -> None:
    status = evaluate_rollout(deployment(updatedReplicas=2, availableReplicas=2, replicas=2), [pod()])
    assert status.state == "complete"
    assert status.progress == "2/2 updated, 2 available, 2 total"


@pytest.mark.parametrize(
    ("kwargs", "min_generation", "fragment"),
    [
        (
            {"observed": 1, "updatedReplicas": 2, "availableReplicas": 2, "replicas": 2},
            None,
            "waiting for the controller",
        ),
        ({"updatedReplicas": 2, "availableReplicas": 2, "replicas": 2}, 3, "generation 3, observed 2"),
        (
            {"updatedReplicas": 1, "availableReplicas": 2, "replicas": 3},
            None,
            "1/2 replicas updated, 2 available, 3 total",
        ),
        (
            {"updatedReplicas": 2, "availableReplicas": 1, "replicas": 2},
            None,
            "2/2 replicas updated, 1 available",
        ),
        ({}, None, "0/2 replicas updated"),  # zero counters are omitted by the API
    ],
)
def test_progressing(kwargs: dict[str, int], min_generation: int | None, fragment: str) -> None:
    status = evaluate_rollout(deployment(**kwargs), [], min_generation=min_generation)
    assert status.state == "progressing"
    assert fragment in status.message


def test_progress_deadline_exceeded_fails() -> None:
    condition = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "m-1" has timed out progressing.',
    }
    status = evaluate_rollout(deployment(conditions=[condition]), [])
    assert status.state == "failed"
    assert "ProgressDeadlineExceeded" in status.message
    assert "timed out progressing" in status.message


@pytest.mark.parametrize(("observed", "min_generation"), [(1, None), (2, 3)])
def test_a_deadline_of_a_generation_before_this_one_is_not_this_rollouts(
    observed: int, min_generation: int | None
) -> None:
    """Right after a rollback's write the status is still the failed rollout's, deadline included."""
    stale = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "m-2" has timed out progressing.',
    }
    status = evaluate_rollout(
        deployment(observed=observed, conditions=[stale], updatedReplicas=1, replicas=3),
        [],
        min_generation=min_generation,
    )
    assert status.state == "progressing"
    assert "waiting for the controller" in status.message


@pytest.mark.parametrize(
    "reason", ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"]
)
def test_failing_pods_of_the_template_fail(reason: str) -> None:
    status = evaluate_rollout(deployment(updatedReplicas=1), [pod(reason, message="back-off")])
    assert status.state == "failed"
    assert f"container tf-serving is in {reason} after 4 restarts: back-off" in status.message


def test_failing_pods_of_another_image_do_not_fail_a_rollback() -> None:
    status = evaluate_rollout(deployment(updatedReplicas=1), [pod("ImagePullBackOff", image="x:broken")])
    assert status.state == "progressing"


def test_container_creating_is_not_a_failure() -> None:
    assert evaluate_rollout(deployment(), [pod("ContainerCreating")]).state == "progressing"


def test_selector_helpers() -> None:
    assert template_pod_labels(deployment()) == {"app": "m", "version": "2"}
    assert label_selector({"version": "2", "app": "m"}) == "app=m,version=2"
