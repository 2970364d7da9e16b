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
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from mlinfra.exceptions import ScaleFailed, ScaleForbidden
from mlinfra.timestamps import rfc3339
from mlinfra.triggers.scale import DeploymentScaleTrigger

if TYPE_CHECKING:
    from mlinfra.scaling.kube import ScaleClient
    from mlinfra.scaling.records import ScaleRecords

TRIGGERS = ("metric", "alert", "manual", "bounds")


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

    @staticmethod
    def _int(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}") from None
        if number < 0 or str(number) != str(value).strip():
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        return number

    def _flag(self) -> bool:
        return self.record_only is True or str(self.record_only).strip().lower() in ("true", "1", "yes")

    def _records(self) -> ScaleRecords:
        from mlinfra.scaling.records import ScaleRecords

        return ScaleRecords.from_connection(self.store_conn_id)

    def _client(self) -> ScaleClient:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from mlinfra.scaling.kube import ScaleClient

        hook = KubernetesHook(conn_id=self.kubernetes_conn_id)
        return ScaleClient(
            hook.api_client, timeout=self.request_timeout, conflict_retries=self.conflict_retries
        )

    def _record(self, context: Any, outcome: str, *, before: int | None, message: str | None = None) -> None:
        self._records().record_event(
            run_id=context["run_id"],
            model=self.model,
            namespace=self.namespace,
            deployment=self.deployment,
            from_replicas=before,
            to_replicas=self._target,
            reason=self.reason,
            trigger=self.trigger,
            dry_run=self._flag(),
            ts=float(self.decided_at) if self.decided_at not in (None, "", "None") else time.time(),
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

    def execute(self, context: Any) -> dict[str, Any] | None:
        if self.trigger not in TRIGGERS:
            raise AirflowFailException(f"trigger must be one of {', '.join(TRIGGERS)}, got {self.trigger!r}")
        try:
            self._target = self._int("replicas", self.replicas)
            planned = (
                None
                if self.from_replicas in (None, "", "None")
                else self._int("from_replicas", self.from_replicas)
            )
        except ValueError as e:
            raise AirflowFailException(str(e)) from e
        if not str(self.reason or "").strip():
            raise AirflowFailException("reason is required: say why (it goes to the audit trail)")
        where = f"{self.namespace}/{self.deployment}"
        client = self._client()
        try:
            owner = client.owners(self.namespace).get(self.deployment)
            if owner:
                message = f"{where} is owned by {owner}: mlinfra does not scale it"
                self._record(context, "skipped", before=planned, message=message)
                if self.trigger == "manual":
                    raise AirflowFailException(
                        f"{message}; change the {owner.split('/')[0]}'s bounds instead, or remove it"
                    )
                self.log.warning("%s", message)
                return self._result("skipped", planned, message)
            if self.trigger != "manual":
                # A manual scale with a hold placed after this decision was planned (the sweep
                # that planned it was still running) wins: the autoscaler must not undo it.
                hold = self._records().active_holds([self.model], at=time.time()).get(self.model)
                if hold:
                    message = (
                        f"{where} is held at {hold['replicas']} replicas by a manual scale until "
                        f"{rfc3339(hold['until'])} (run {hold['run_id']}): left alone"
                    )
                    self._record(context, "superseded", before=planned, message=message)
                    self.log.warning("%s", message)
                    return self._result("superseded", planned, message)
            live = int(
                (client.read_scale(self.namespace, self.deployment).get("spec") or {}).get("replicas", 0)
            )
            if planned is not None and live not in (planned, self._target):
                message = f"{where} has {live} replicas, not the {planned} the decision saw: left alone"
                self._record(context, "superseded", before=live, message=message)
                self.log.warning("%s", message)
                return self._result("superseded", live, message)
            before = planned if planned is not None and live == self._target else live
            if self._flag():
                message = f"dry run: would scale {where} {before} -> {self._target} ({self.reason})"
                self._record(context, "dry_run", before=before, message=message)
                self.log.info("%s", message)
                return self._result("dry_run", before, message)
            if live != self._target:
                previous, _ = client.patch_replicas(self.namespace, self.deployment, self._target)
                if planned is None:
                    before = previous
                self.log.info(
                    "patched %s/scale: %s -> %s replicas (%s)", where, before, self._target, self.reason
                )
            else:
                self.log.info("%s already has %s replicas (a retry?): only waiting", where, self._target)
            self._record(context, "patched", before=before)
            deployment, pods = client.rollout_objects(self.namespace, self.deployment)
        except ScaleForbidden as e:
            self._record(context, "failed", before=planned, message=str(e))
            raise AirflowFailException(str(e)) from e
        except ScaleFailed as e:
            self._record(context, "failed", before=planned, message=str(e))
            raise

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
        self._target = self._int("replicas", self.replicas)
        if before is None:
            before = event.get("from", getattr(self, "_before", None))
        status = event.get("status")
        message = str(event.get("message") or f"scale wait ended with status {status!r}")
        outcome = {"success": "available", "superseded": "superseded", "timeout": "timeout"}.get(
            str(status), "failed"
        )
        self._records().update_outcome(context["run_id"], self.model, outcome, message)
        if status == "success":
            self.log.info("%s", message)
            return self._result("available", before, message)
        if status == "superseded":
            self.log.warning("%s", message)
            return self._result("superseded", before, message)
        if status == "error":
            raise ScaleFailed(message)  # an API error: a retry may get through
        # A timeout or failing pods: a retry would wait for the same pods.
        raise AirflowFailException(str(ScaleFailed(message)))
