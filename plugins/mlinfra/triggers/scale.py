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

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from mlinfra.scaling.progress import evaluate_scale
from mlinfra.triggers.rollout import FATAL_STATUS, DeploymentRolloutTrigger


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

    async def run(self) -> AsyncIterator[TriggerEvent]:
        where = f"{self.namespace}/{self.name}"
        last_message = None
        last_error = None
        progress = None
        while True:
            try:
                deployment, pods = await self._read()
            except Exception as e:  # classified below: transient ones are retried
                api_status = getattr(e, "status", None)
                if api_status in FATAL_STATUS:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "message": f"deployment {where}: HTTP {api_status}: {getattr(e, 'reason', '') or e}",
                            "progress": None,
                        }
                    )
                    return
                last_error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
                self.log.warning("deployment %s: reading it failed (will retry): %s", where, last_error)
            else:
                progress = evaluate_scale(
                    deployment, pods, replicas=self.replicas, min_generation=self.min_generation
                )
                if progress.state != "progressing":
                    status = "success" if progress.state == "complete" else progress.state
                    yield TriggerEvent(
                        {"status": status, "message": progress.message, "progress": progress.to_dict()}
                    )
                    return
                if progress.message != last_message:
                    self.log.info("scale %s", progress.message)
                    last_message = progress.message
            remaining = self.deadline - time.time()
            if remaining <= 0:
                detail = progress.message if progress is not None else f"last error: {last_error}"
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "message": f"deployment {where}: {self.replicas} replicas not available by the "
                        f"deadline ({detail})",
                        "progress": progress.to_dict() if progress is not None else None,
                    }
                )
                return
            await asyncio.sleep(min(self.poll_interval, remaining))
