"""Scale one Deployment through its ``scale`` subresource, then wait without a worker slot.

::

    ScaleDeploymentOperator(
        task_id="scale",
        model="half-plus-two", namespace="serving", deployment="half-plus-two",
        replicas=4, reason="launch traffic", trigger="manual",
    )

The sweep maps it over ``plan_scaling``'s output (one task per Deployment that must
change); ``model_scale`` runs it once for a person's request. Either way:

1. refuse if a HorizontalPodAutoscaler or KEDA ScaledObject owns the Deployment
   (a person's request fails; the sweep's is recorded as ``skipped``);
2. ``record_only`` (a dry run): record the event, patch nothing;
3. merge-patch ``spec.replicas`` on the scale subresource with the provider's
   ``KubernetesHook`` (409 conflicts: read again and retry; 403: fail at once with
   the namespace and verb the service account lacks);
4. record the event in ``mlinfra_scale_events`` (trigger, from -> to, reason, the
   decision), then defer to :class:`~mlinfra.triggers.scale.DeploymentScaleTrigger`
   until the new count is available or ``timeout`` passes; the outcome is recorded.

A retry of the task finds the count already set and only waits (idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlinfra.exceptions import MlinfraError, ScaleFailed, ScaleForbidden
from mlinfra.scaling.action import (
    TRIGGERS,
    ScaleRequest,
    hold_verdict,
    ownership_verdict,
    scale_action,
    scale_request,
    wait_outcome,
)
from mlinfra.task_failure import fail_without_retry
from mlinfra.templated import parse_bool, parse_int, parse_optional_float
from mlinfra.triggers.scale import DeploymentScaleTrigger

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.scaling.kube import ScaleClient
    from mlinfra.scaling.records import ScaleRecords

__all__ = ["TRIGGERS", "ScaleDeploymentOperator"]


class ScaleDeploymentOperator(BaseOperator):
    """Set ``namespace/deployment`` to ``replicas`` replicas and wait until they are available.

    :param model: the fleet model (the audit's key).
    :param namespace: the Deployment's namespace.
    :param deployment: the Deployment's name.
    :param replicas: the new replica count.
    :param reason: why (kept in the audit trail).
    :param trigger: ``metric``, ``alert``, ``manual`` or ``bounds``.
    :param from_replicas: the count the decision saw; if the live count differs when the
        task runs, someone else scaled it meanwhile and the task does not (``superseded``).
        None (a person's request): no such check.
    :param decision: the decision (or request) as a dict, stored with the event.
    :param record_only: a dry run: record the event (``dry_run`` set), do not patch.
    :param decided_at: the event's time (the sweep's logical time); default: now.
    :param kubernetes_conn_id: Airflow connection of type ``kubernetes``.
    :param store_conn_id: the store's connection.
    :param timeout: seconds to wait for the new count to be available.
    :param poll_interval: seconds between the trigger's polls.
    :param conflict_retries: how many 409s to retry.
    :param request_timeout: seconds per Kubernetes API request.
    :returns: ``{"model", "namespace", "deployment", "from", "to", "outcome", "message"}``
    """

    template_fields: Sequence[str] = (
        "model",
        "namespace",
        "deployment",
        "replicas",
        "reason",
        "trigger",
        "from_replicas",
        "decision",
        "record_only",
        "decided_at",
        "kubernetes_conn_id",
    )
    ui_color = "#f6e3c5"

    def __init__(
        self,
        *,
        model: str,
        namespace: str,
        deployment: str,
        replicas: int | str,
        reason: str,
        trigger: str = "manual",
        from_replicas: int | str | None = None,
        decision: dict[str, Any] | None = None,
        record_only: bool | str = False,
        decided_at: float | str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        store_conn_id: str = "mlinfra_store",
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        conflict_retries: int = 5,
        request_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.namespace = namespace
        self.deployment = deployment
        self.replicas = replicas
        self.reason = reason
        self.trigger = trigger
        self.from_replicas = from_replicas
        self.decision = decision
        self.record_only = record_only
        self.decided_at = decided_at
        self.kubernetes_conn_id = kubernetes_conn_id
        self.store_conn_id = store_conn_id
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.conflict_retries = conflict_retries
        self.request_timeout = request_timeout

    # ------------------------------------------------------------------ helpers

    def _flag(self) -> bool:
        return parse_bool("record_only", self.record_only, default=False)

    @cached_property
    def records(self) -> ScaleRecords:
        from mlinfra.scaling.records import ScaleRecords

        return ScaleRecords.from_connection(self.store_conn_id)

    @cached_property
    def hook(self) -> KubernetesHook:
        from mlinfra.kube_import import kubernetes_hook_class

        return kubernetes_hook_class()(conn_id=self.kubernetes_conn_id)

    @cached_property
    def client(self) -> ScaleClient:
        from mlinfra.scaling.kube import ScaleClient

        return ScaleClient(
            self.hook.api_client, timeout=self.request_timeout, conflict_retries=self.conflict_retries
        )

    def _record(self, context: Any, outcome: str, *, before: int | None, message: str | None = None) -> None:
        decided_at = parse_optional_float("decided_at", self.decided_at)
        self.records.record_event(
            run_id=context["run_id"],
            model=self.model,
            namespace=self.namespace,
            deployment=self.deployment,
            from_replicas=before,
            to_replicas=self._target,
            reason=self.reason,
            trigger=self.trigger,
            dry_run=self._flag(),
            ts=decided_at if decided_at is not None else time.time(),
            outcome=outcome,
            message=message,
            decision=self.decision if isinstance(self.decision, dict) else None,
        )

    def _result(self, outcome: str, before: int | None, message: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "namespace": self.namespace,
            "deployment": self.deployment,
            "from": before,
            "to": self._target,
            "outcome": outcome,
            "message": message,
        }

    # ------------------------------------------------------------------ execution

    def _request(self) -> ScaleRequest:
        try:
            request = scale_request(
                replicas=self.replicas,
                from_replicas=self.from_replicas,
                trigger=self.trigger,
                reason=self.reason,
            )
            self._flag()
        except MlinfraError as e:
            raise fail_without_retry(e) from e
        self._target = request.replicas
        return request

    def execute(self, context: Any) -> dict[str, Any] | None:
        request = self._request()
        where = f"{self.namespace}/{self.deployment}"
        client = self.client
        landed = False  # the new count is set: from here a failure leaves the row "patched"
        try:
            settled = self._owned_or_held(context, request, where)
            if settled is not None:
                return settled
            live = int(
                (client.read_scale(self.namespace, self.deployment).get("spec") or {}).get("replicas", 0)
            )
            action = scale_action(request, where=where, live=live, dry_run=self._flag())
            before = action.before
            if request.from_replicas is None and live == self._target and action.outcome == "patched":
                before = self._earlier_before(context, before)  # a retry after this run's own patch
            if action.outcome != "patched":
                self._record(context, action.outcome, before=before, message=action.message)
                log = self.log.info if action.outcome == "dry_run" else self.log.warning
                log("%s", action.message)
                return self._result(action.outcome, before, action.message)
            if action.patch:
                previous, _ = client.patch_replicas(self.namespace, self.deployment, self._target)
                if request.from_replicas is None:
                    before = previous
                self.log.info(
                    "patched %s/scale: %s -> %s replicas (%s)", where, before, self._target, self.reason
                )
            else:
                self.log.info("%s", action.message)
            self._record(context, "patched", before=before)
            landed = True
            deployment, pods = client.rollout_objects(self.namespace, self.deployment)
        except ScaleForbidden as e:
            self._record_failure(context, request, landed, str(e))
            raise fail_without_retry(e) from e
        except ScaleFailed as e:
            self._record_failure(context, request, landed, str(e))
            raise

        return self._finish_or_defer(context, deployment, pods, before, where)

    def _record_failure(self, context: Any, request: ScaleRequest, landed: bool, message: str) -> None:
        """``failed`` when the count was not changed; once it was, the row stays ``patched``
        (the cooldown and a manual hold count from it) and says what failed after."""
        if landed:
            self.records.update_outcome(
                context["run_id"], self.model, "patched", f"the new count is set; then: {message}"
            )
        else:
            self._record(context, "failed", before=request.from_replicas, message=message)

    def _earlier_before(self, context: Any, live: int | None) -> int | None:
        """The count an earlier try of this run patched from (a manual request names none)."""
        earlier = self.records.scale_events(run_id=context["run_id"], model=self.model)
        if earlier and earlier[-1].outcome == "patched" and earlier[-1].from_replicas is not None:
            return earlier[-1].from_replicas
        return live

    def _owned_or_held(self, context: Any, request: ScaleRequest, where: str) -> dict[str, Any] | None:
        """The result when another controller owns the Deployment or a manual hold keeps it; else None."""
        refused = ownership_verdict(
            request, where=where, owner=self.client.owners(self.namespace).get(self.deployment)
        )
        if refused is not None:
            self._record(context, refused.outcome, before=refused.before, message=refused.message)
            if refused.refuse:
                raise fail_without_retry(ScaleFailed(f"{refused.message}; {refused.hint}"))
            self.log.warning("%s", refused.message)
            return self._result(refused.outcome, refused.before, refused.message)
        hold = (
            self.records.active_holds([self.model], at=time.time()).get(self.model)
            if request.trigger != "manual"
            else None
        )
        held = hold_verdict(request, where=where, hold=hold)
        if held is not None:
            self._record(context, held.outcome, before=held.before, message=held.message)
            self.log.warning("%s", held.message)
            return self._result(held.outcome, held.before, held.message)
        return None

    def _finish_or_defer(
        self,
        context: Any,
        deployment: dict[str, Any],
        pods: list[dict[str, Any]],
        before: int | None,
        where: str,
    ) -> dict[str, Any] | None:
        """Done when the rollout already settled; otherwise wait for it in the triggerer."""
        from mlinfra.scaling.progress import evaluate_scale

        generation = int((deployment.get("metadata") or {}).get("generation") or 0)
        progress = evaluate_scale(deployment, pods, replicas=self._target, min_generation=generation)
        self._before = before
        if progress.state != "progressing":
            return self.execute_complete(
                context,
                {
                    "status": "success" if progress.state == "complete" else progress.state,
                    "message": progress.message,
                    "progress": progress.to_dict(),
                    "from": before,
                },
            )
        self.log.info("deferring: waiting in the triggerer for %s (%s)", where, progress.message)
        self.defer(
            trigger=DeploymentScaleTrigger(
                self.namespace,
                self.deployment,
                replicas=self._target,
                kubernetes_conn_id=self.kubernetes_conn_id,
                min_generation=generation,
                deadline=time.time() + self.timeout,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            kwargs={"before": before},
            timeout=timedelta(seconds=self.timeout + 60),
        )
        return None  # pragma: no cover - defer() raises

    def execute_complete(
        self, context: Any, event: dict[str, Any], before: int | None = None
    ) -> dict[str, Any]:
        """Back from the triggerer: record the outcome; anything but success fails the task."""
        self._target = parse_int("replicas", self.replicas, minimum=0)
        if before is None:
            before = event.get("from", getattr(self, "_before", None))
        status = event.get("status")
        message = str(event.get("message") or f"scale wait ended with status {status!r}")
        # An API error while waiting: the new count is set all the same, so the row stays
        # "patched" (its cooldown, its hold) until a retry's wait ends.
        outcome = "patched" if status == "error" else wait_outcome(status)
        self.records.update_outcome(context["run_id"], self.model, outcome, message)
        if status == "success":
            self.log.info("%s", message)
            return self._result("available", before, message)
        if status == "superseded":
            self.log.warning("%s", message)
            return self._result("superseded", before, message)
        if status == "error":
            raise ScaleFailed(message)  # an API error: a retry may get through
        # A timeout or failing pods: a retry would wait for the same pods.
        raise fail_without_retry(ScaleFailed(message))
