"""Has a Deployment reached the replica count it was scaled to? A pure function of API objects.

Shared by :class:`~mlinfra.triggers.scale.DeploymentScaleTrigger` (in the triggerer)
and :class:`~mlinfra.operators.scale.ScaleDeploymentOperator`'s first synchronous look::

    >>> deployment = {
    ...     "metadata": {"namespace": "serving", "name": "half-plus-two", "generation": 3},
    ...     "spec": {"replicas": 4, "template": {"spec": {"containers": [{"image": "tensorflow/serving:2.14.1"}]}}},
    ...     "status": {"observedGeneration": 3, "replicas": 4, "updatedReplicas": 4, "availableReplicas": 3},
    ... }
    >>> evaluate_scale(deployment, pods=[], replicas=4)
    ScaleProgress(state='progressing', message='serving/half-plus-two: 3/4 replicas available, ...', ...)

It is the rollout verdict (:func:`mlinfra.deploy.rollout.evaluate_rollout`: the
controller observed the change, updated = available = total = desired) plus one rule:
when ``spec.replicas`` is no longer the count we set, someone else changed it
(``superseded``), and waiting longer would be waiting for the wrong number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mlinfra.deploy.rollout import evaluate_rollout


@dataclass(frozen=True)
class ScaleProgress:
    state: str  # "progressing" | "complete" | "failed" | "superseded"
    message: str
    replicas: int
    desired: int
    available: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_scale(
    deployment: dict[str, Any],
    pods: list[dict[str, Any]],
    *,
    replicas: int,
    min_generation: int | None = None,
) -> ScaleProgress:
    """Where scaling ``deployment`` to ``replicas`` stands (``pods``: those of its template)."""
    meta = deployment.get("metadata") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    rollout = evaluate_rollout(deployment, pods, min_generation=min_generation)

    def progress(state: str, message: str) -> ScaleProgress:
        return ScaleProgress(state, message, replicas, rollout.desired, rollout.available, rollout.total)

    if rollout.desired != replicas:
        return progress(
            "superseded",
            f"{where}: spec.replicas is now {rollout.desired}, not the {replicas} it was scaled to "
            "(changed by someone else)",
        )
    if rollout.state == "complete":
        return progress("complete", f"{where}: {replicas}/{replicas} replicas available")
    if rollout.state == "failed":
        return progress("failed", rollout.message)
    return progress(
        "progressing",
        f"{where}: {rollout.available}/{replicas} replicas available, {rollout.total} total "
        f"({rollout.message.split(': ', 1)[-1]})",
    )
