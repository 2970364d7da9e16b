"""evaluate_scale: the rollout verdict plus "someone else changed the count"."""

from __future__ import annotations

from typing import Any

from mlinfra.scaling.progress import evaluate_scale


def deployment(
    replicas: int, available: int, total: int, generation: int = 2, observed: int = 2
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "serving", "name": "hpt", "generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": "i"}]}}},
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": total,
            "availableReplicas": available,
        },
    }


def test_complete_when_the_count_is_available() -> None:
    p = evaluate_scale(deployment(4, 4, 4), [], replicas=4)
    assert (p.state, p.message) == ("complete", "serving/hpt: 4/4 replicas available")


def test_progressing_until_then() -> None:
    p = evaluate_scale(deployment(4, 2, 3), [], replicas=4)
    assert p.state == "progressing"
    assert p.message.startswith("serving/hpt: 2/4 replicas available, 3 total")
    assert (
        evaluate_scale(deployment(4, 4, 4, generation=3, observed=2), [], replicas=4).state == "progressing"
    )
    # scaling down: the extra pods must be gone
    assert evaluate_scale(deployment(2, 2, 3), [], replicas=2).state == "progressing"


def test_superseded_when_someone_else_changed_it() -> None:
    p = evaluate_scale(deployment(6, 6, 6), [], replicas=4)
    assert p.state == "superseded"
    assert "spec.replicas is now 6, not the 4 it was scaled to" in p.message


def test_failed_pods_fail_it() -> None:
    pod = {
        "metadata": {"name": "hpt-1"},
        "spec": {"containers": [{"image": "i"}]},
        "status": {
            "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]
        },
    }
    assert evaluate_scale(deployment(4, 3, 4), [pod], replicas=4).state == "failed"
