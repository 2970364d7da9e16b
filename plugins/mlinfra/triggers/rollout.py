"""Wait in the triggerer for a Deployment's rollout; no worker slot is held meanwhile.

Modelled on the cncf-kubernetes provider's ``KubernetesJobTrigger``: the operator
defers with this trigger, the triggerer polls the API server with the provider's
``AsyncKubernetesHook`` (``kubernetes_asyncio``, no blocking call on the event loop),
and one :class:`TriggerEvent` comes back::

    DeploymentRolloutTrigger(
        namespace="serving", name="half-plus-two", kubernetes_conn_id="kubernetes_default",
        min_generation=7, pod_labels={"app": "half-plus-two", "version": "2"},
        deadline=time.time() + 900,
    )
    # -> TriggerEvent({"status": "success" | "failed" | "timeout" | "error", "message": ..., "rollout": {...}})

The verdict is :func:`mlinfra.deploy.rollout.evaluate_rollout`'s. ``deadline`` is an
absolute UNIX time, so a trigger re-created on another triggerer (or run twice)
keeps the original deadline. API errors that may pass (5xx, connection refused) are
retried until the deadline; 401/403/404 end the wait at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlinfra.deploy.rollout import evaluate_rollout, label_selector

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

FATAL_STATUS = (401, 403, 404)


class DeploymentRolloutTrigger(BaseTrigger):
    """Poll ``namespace/name`` until its rollout completes, fails or ``deadline`` passes.

    :param namespace: the Deployment's namespace.
    :param name: the Deployment's name.
    :param kubernetes_conn_id: Airflow connection of type ``kubernetes``.
    :param min_generation: the ``metadata.generation`` the apply produced; the rollout is
        not complete before the controller has observed at least this generation.
    :param pod_labels: labels of the pod template being rolled out (to find its pods);
        default: the Deployment's own template labels.
    :param deadline: UNIX time after which the wait ends with status ``timeout``.
    :param poll_interval: seconds between polls.
    :param cluster_context: kubeconfig context (beats the connection's).
    :param config_file: kubeconfig path (beats the connection's).
    :param in_cluster: use the in-cluster service account.
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        kubernetes_conn_id: str | None = "kubernetes_default",
        min_generation: int | None = None,
        pod_labels: dict[str, str] | None = None,
        deadline: float,
        poll_interval: float = 5.0,
        cluster_context: str | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
    ):
        super().__init__()
        self.namespace = namespace
        self.name = name
        self.kubernetes_conn_id = kubernetes_conn_id
        self.min_generation = min_generation
        self.pod_labels = dict(pod_labels) if pod_labels else None
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.in_cluster = in_cluster

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "namespace": self.namespace,
                "name": self.name,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "min_generation": self.min_generation,
                "pod_labels": self.pod_labels,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "cluster_context": self.cluster_context,
                "config_file": self.config_file,
                "in_cluster": self.in_cluster,
            },
        )

    @cached_property
    def hook(self) -> AsyncKubernetesHook:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

        return AsyncKubernetesHook(
            conn_id=self.kubernetes_conn_id,
            in_cluster=self.in_cluster,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
        )

    # What a subclass waiting for something else (a scale) changes; the loop stays here.
    payload_key = "rollout"

    def _judge(self, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> Any:
        """This poll's verdict: an object with ``state``, ``message`` and ``to_dict()``."""
        return evaluate_rollout(deployment, pods, min_generation=self.min_generation)

    def _final_status(self, verdict: Any) -> str | None:
        """The event status that ends the wait, or None to keep polling."""
        return {"complete": "success", "failed": "failed"}.get(verdict.state)

    def _timeout_message(self, where: str, verdict: Any, last_error: str | None) -> str:
        detail = verdict.progress if verdict is not None else f"last error: {last_error}"
        return f"deployment {where}: rollout not complete by its deadline ({detail})"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        where = f"{self.namespace}/{self.name}"
        key = self.payload_key
        last_progress = None
        last_error = None
        verdict = None
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
                            key: None,
                        }
                    )
                    return
                last_error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
                self.log.warning("deployment %s: reading it failed (will retry): %s", where, last_error)
            else:
                verdict = self._judge(deployment, pods)
                final = self._final_status(verdict)
                if final is not None:
                    (self.log.info if final == "success" else self.log.error)("%s", verdict.message)
                    yield TriggerEvent({"status": final, "message": verdict.message, key: verdict.to_dict()})
                    return
                if verdict.message != last_progress:
                    # Progress goes to the task log (x/y updated), so users see the wait move.
                    self.log.info("%s %s", key, verdict.message)
                    last_progress = verdict.message
            remaining = self.deadline - time.time()
            if remaining <= 0:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "message": self._timeout_message(where, verdict, last_error),
                        key: verdict.to_dict() if verdict is not None else None,
                    }
                )
                return
            await asyncio.sleep(min(self.poll_interval, remaining))

    async def _read(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from kubernetes_asyncio import client

        async with self.hook.get_conn() as api_client:
            apps = client.AppsV1Api(api_client)
            core = client.CoreV1Api(api_client)
            dep_obj = await apps.read_namespaced_deployment(self.name, self.namespace)
            deployment = api_client.sanitize_for_serialization(dep_obj)
            labels = (
                self.pod_labels
                or (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
                    "labels"
                )
                or {}
            )
            pod_list = await core.list_namespaced_pod(self.namespace, label_selector=label_selector(labels))
            pods = api_client.sanitize_for_serialization(pod_list).get("items") or []
        return deployment, pods
