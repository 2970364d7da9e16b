"""Wait for a Deployment's rollout without holding a worker slot.

:class:`DeploymentRolloutSensor` checks once (a re-run of an unchanged deploy is
done at once), then defers to :class:`~mlinfra.triggers.rollout.DeploymentRolloutTrigger`;
while the rollout takes its minutes the task instance is ``deferred`` and no worker
runs it::

    DeploymentRolloutSensor(
        task_id="wait_rollout",
        namespace="serving",
        deployment="half-plus-two",
        min_generation="{{ ti.xcom_pull('apply')['generation'] }}",
        timeout=900,
    )

A failed rollout (``ProgressDeadlineExceeded``, ``CrashLoopBackOff``, ``ImagePullBackOff``)
fails the task without retries (retrying would wait for the same broken pods);
a timeout does too. API errors the trigger could not wait out are retried as usual.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from mlinfra.deploy.rollout import RolloutStatus, evaluate_rollout, label_selector, template_pod_labels
from mlinfra.exceptions import RolloutFailed
from mlinfra.task_failure import fail_without_retry
from mlinfra.templated import parse_optional_int
from mlinfra.triggers.rollout import DeploymentRolloutTrigger

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook


class DeploymentRolloutSensor(BaseSensorOperator):
    """Succeed when ``namespace/deployment`` has rolled out; defer while it has not.

    :param namespace: the Deployment's namespace.
    :param deployment: the Deployment's name.
    :param kubernetes_conn_id: Airflow connection of type ``kubernetes``.
    :param min_generation: the generation the apply produced (templated; XCom of the apply).
    :param poll_interval: seconds between the trigger's polls.
    :param deferrable: defer to the triggerer (default); ``False`` pokes in the worker.
    """

    template_fields: Sequence[str] = ("namespace", "deployment", "kubernetes_conn_id", "min_generation")
    ui_color = "#d7e9f7"

    def __init__(
        self,
        *,
        namespace: str,
        deployment: str,
        kubernetes_conn_id: str = "kubernetes_default",
        min_generation: int | str | None = None,
        poll_interval: float = 5.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.namespace = namespace
        self.deployment = deployment
        self.kubernetes_conn_id = kubernetes_conn_id
        self.min_generation = min_generation
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    def _min_generation(self) -> int | None:
        return parse_optional_int("min_generation", self.min_generation, minimum=0)

    @cached_property
    def hook(self) -> KubernetesHook:
        """The provider's sync hook, built once per task (not once per poke)."""
        from mlinfra.kube_import import kubernetes_hook_class

        return kubernetes_hook_class()(conn_id=self.kubernetes_conn_id)

    def check(self) -> RolloutStatus:
        """One synchronous look at the rollout."""
        from mlinfra.kube_import import import_kubernetes

        client = import_kubernetes().client
        api = self.hook.api_client

        dep = api.sanitize_for_serialization(
            client.AppsV1Api(api).read_namespaced_deployment(self.deployment, self.namespace)
        )
        pods = (
            api.sanitize_for_serialization(
                client.CoreV1Api(api).list_namespaced_pod(
                    self.namespace, label_selector=label_selector(template_pod_labels(dep))
                )
            ).get("items")
            or []
        )
        return evaluate_rollout(dep, pods, min_generation=self._min_generation())

    def poke(self, context: Any) -> bool:
        status = self.check()
        self.log.info("rollout %s", status.message)
        if status.state == "failed":
            raise fail_without_retry(RolloutFailed(status.message))
        return status.state == "complete"

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        self.log.info(
            "deferring: waiting for the rollout of %s/%s in the triggerer", self.namespace, self.deployment
        )
        self.defer(
            trigger=DeploymentRolloutTrigger(
                self.namespace,
                self.deployment,
                kubernetes_conn_id=self.kubernetes_conn_id,
                min_generation=self._min_generation(),
                deadline=time.time() + self.timeout,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any] | None:
        """Back from the triggerer: anything but success fails the task, without retries."""
        if event.get("status") == "success":
            self.log.info("%s", event.get("message"))
            return event.get("rollout")
        message = event.get("message") or f"rollout ended with status {event.get('status')!r}"
        if event.get("status") == "error":
            raise RolloutFailed(message)  # an API error: a retry may get through
        raise fail_without_retry(RolloutFailed(message))
