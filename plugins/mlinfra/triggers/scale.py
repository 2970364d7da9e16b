"""Wait in the triggerer until a scaled Deployment runs its new replica count.

The rollout trigger's machinery (the provider's ``AsyncKubernetesHook``, the same
reads), with the scale verdict of :func:`mlinfra.scaling.progress.evaluate_scale`::

    DeploymentScaleTrigger(
        namespace="serving", name="half-plus-two", replicas=4,
        kubernetes_conn_id="kubernetes_default", min_generation=8, deadline=time.time() + 600,
    )
    # -> TriggerEvent({"status": "success" | "failed" | "superseded" | "timeout" | "error",
    #                  "message": ..., "progress": {...}})

``deadline`` is absolute, so a trigger that moves to another triggerer (or runs
twice) keeps it. Transient API errors are retried until the deadline; 401, 403 and
404 end the wait at once.
"""

from __future__ import annotations

from typing import Any

from mlinfra.scaling.progress import evaluate_scale
from mlinfra.triggers.rollout import DeploymentRolloutTrigger


class DeploymentScaleTrigger(DeploymentRolloutTrigger):
    """Poll ``namespace/name`` until ``replicas`` replicas are available, or ``deadline`` passes.

    :param replicas: the count the Deployment was scaled to.
    :param min_generation: the ``metadata.generation`` after the scale patch.
    Other parameters: as :class:`~mlinfra.triggers.rollout.DeploymentRolloutTrigger`.
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int,
        kubernetes_conn_id: str | None = "kubernetes_default",
        min_generation: int | None = None,
        deadline: float,
        poll_interval: float = 5.0,
        cluster_context: str | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
    ):
        super().__init__(
            namespace,
            name,
            kubernetes_conn_id=kubernetes_conn_id,
            min_generation=min_generation,
            deadline=deadline,
            poll_interval=poll_interval,
            cluster_context=cluster_context,
            config_file=config_file,
            in_cluster=in_cluster,
        )
        self.replicas = int(replicas)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        kwargs.pop("pod_labels", None)  # the scale wait always reads the template's own pods
        return f"{type(self).__module__}.{type(self).__qualname__}", {**kwargs, "replicas": self.replicas}

    payload_key = "progress"

    def _judge(self, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> Any:
        return evaluate_scale(deployment, pods, replicas=self.replicas, min_generation=self.min_generation)

    def _final_status(self, verdict: Any) -> str | None:
        if verdict.state == "progressing":
            return None
        return "success" if verdict.state == "complete" else str(verdict.state)

    def _timeout_message(self, where: str, verdict: Any, last_error: str | None) -> str:
        detail = verdict.message if verdict is not None else f"last error: {last_error}"
        return f"deployment {where}: {self.replicas} replicas not available by the deadline ({detail})"
