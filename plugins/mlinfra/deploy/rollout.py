"""Is a Deployment's rollout done, still going, or failed? A pure function of API objects.

Shared by :class:`~mlinfra.triggers.rollout.DeploymentRolloutTrigger` (async, in the
triggerer) and the sensor's first synchronous check. Objects are the API's JSON
(camelCase, zero counters omitted, as ``ApiClient.sanitize_for_serialization`` or
the raw response gives them)::

    >>> deployment = {
    ...     "metadata": {"namespace": "serving", "name": "half-plus-two", "generation": 2},
    ...     "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "tensorflow/serving:2.14.1"}]}}},
    ...     "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2},
    ... }
    >>> evaluate_rollout(deployment, pods=[])
    RolloutStatus(state='progressing', message='serving/half-plus-two: 1/2 replicas updated, ...', ...)

The rules are ``kubectl rollout status``'s, plus pod-level failure detection:

* complete: ``observedGeneration`` caught up with ``generation`` (and with the
  generation the apply returned), and updated = available = total = desired replicas;
* failed: the ``Progressing`` condition says ``ProgressDeadlineExceeded``, or a pod of
  the template being rolled out waits in ``CrashLoopBackOff``, ``ImagePullBackOff``
  (and the other reasons in :data:`FAILING_REASONS`).

A pod belongs to the rollout when it has the template's labels and runs the
template's images, so a rollback is not failed by the crash-looping pods of the
version it replaces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass(frozen=True)
class RolloutStatus:
    state: str  # "progressing" | "complete" | "failed"
    message: str
    desired: int
    updated: int
    available: int
    total: int

    @property
    def progress(self) -> str:
        return f"{self.updated}/{self.desired} updated, {self.available} available, {self.total} total"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def template_pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(
        (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    )


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def evaluate_rollout(
    deployment: dict[str, Any], pods: list[dict[str, Any]], *, min_generation: int | None = None
) -> RolloutStatus:
    """The state of ``deployment``'s rollout; ``pods`` are those matching its template labels."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)

    def result(state: str, message: str) -> RolloutStatus:
        return RolloutStatus(state, message, desired, updated, available, total)

    images = [
        c.get("image") for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    ]
    for pod in pods:
        if sorted(c.get("image") for c in (pod.get("spec") or {}).get("containers") or []) != sorted(images):
            continue  # a pod of another template (the version this rollout replaces)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in FAILING_REASONS:
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                restarts = f" after {cs.get('restartCount')} restarts" if cs.get("restartCount") else ""
                return result(
                    "failed",
                    f"{where}: pod {(pod.get('metadata') or {}).get('name')} container {cs.get('name')} "
                    f"is in {reason}{restarts}{detail}",
                )
    wanted_generation = max(generation, min_generation or 0)
    if observed < wanted_generation:
        return result(
            "progressing",
            f"{where}: waiting for the controller (generation {wanted_generation}, observed {observed})",
        )
    # Conditions describe the generation the controller observed: until it has seen this one,
    # a ProgressDeadlineExceeded is the previous rollout's (a rollback right after a deadline
    # failure re-applies while it is still there). kubectl rollout status checks in this order.
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return result(
                "failed",
                f"{where}: ProgressDeadlineExceeded: {condition.get('message') or 'the rollout made no progress'}",
            )
    if updated == desired and available >= desired and total == desired:
        return result("complete", f"{where}: rolled out, {desired}/{desired} replicas updated and available")
    return result(
        "progressing",
        f"{where}: {updated}/{desired} replicas updated, {available} available, {total} total",
    )
