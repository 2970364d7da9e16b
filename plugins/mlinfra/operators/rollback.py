"""Roll a failed deploy back: re-apply the kept spec, wait for its rollout, check the old version.

::

    ModelRollbackOperator(
        task_id="rollback",
        model="half-plus-two",
        deploy_run_id="{{ run_id }}",
        auto_rollback="{{ params.auto_rollback }}",
        trigger_rule="one_failed",
    )

The spec comes from the run's deploy record (saved by
:class:`~mlinfra.operators.apply.ApplyManifestsOperator` before it wrote anything).
Objects the failed deploy created where there were none are deleted. Both waits are
deferred (rollout, then TF Serving reporting the previous version AVAILABLE), so a
rollback holds no worker slot either. The record gets ``outcome`` ``rolled_back``
(or ``failed`` when the rollback's own rollout fails) and a ``rollback`` JSON saying
what was done and whether the previous version answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from mlinfra.exceptions import MlinfraError, RolloutFailed
from mlinfra.task_failure import fail_without_retry
from mlinfra.templated import parse_bool

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.config import Model
    from mlinfra.deploy.records import DeploymentRecords


class ModelRollbackOperator(BaseOperator):
    """Restore the spec a deploy replaced and verify the previous version serves.

    :param model: the fleet model's name (templated).
    :param deploy_run_id: the deploy's run id (templated, ``{{ run_id }}``).
    :param auto_rollback: ``False`` records that the deploy is left as is and skips.
    :param store_conn_id: the store's connection.
    :param rollout_timeout: seconds for the rollback's rollout.
    :param model_timeout: seconds for the previous version to be AVAILABLE.
    :param poll_interval: seconds between the triggers' polls.
    """

    template_fields: Sequence[str] = ("model", "deploy_run_id", "auto_rollback")
    ui_color = "#f4cccc"

    def __init__(
        self,
        *,
        model: str,
        deploy_run_id: str,
        auto_rollback: bool | str = True,
        store_conn_id: str = "mlinfra_store",
        rollout_timeout: float = 900.0,
        model_timeout: float = 600.0,
        poll_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.deploy_run_id = deploy_run_id
        self.auto_rollback = auto_rollback
        self.store_conn_id = store_conn_id
        self.rollout_timeout = rollout_timeout
        self.model_timeout = model_timeout
        self.poll_interval = poll_interval

    @cached_property
    def records(self) -> DeploymentRecords:
        from mlinfra.deploy.records import DeploymentRecords

        return DeploymentRecords.from_connection(self.store_conn_id)

    @cached_property
    def fleet_model(self) -> Model:
        from mlinfra.config import load_fleet

        return load_fleet().model(self.model)

    @cached_property
    def hook(self) -> KubernetesHook:
        """The provider's hook on the model's Kubernetes connection (from the fleet file)."""
        from mlinfra.kube_import import kubernetes_hook_class

        return kubernetes_hook_class()(conn_id=self.fleet_model.kubernetes.conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        from mlinfra.deploy.kube import ManifestClient, deployed_version, execute_rollback, rollback_plan
        from mlinfra.triggers.rollout import DeploymentRolloutTrigger

        try:
            auto_rollback = parse_bool("auto_rollback", self.auto_rollback, default=True)
        except MlinfraError as e:
            raise fail_without_retry(e) from e
        records = self.records
        record = records.get(self.deploy_run_id)
        if record is None or record.previous is None:
            # Validation, rendering or the apply's first read failed: the cluster was never touched.
            raise AirflowSkipException("nothing was applied in this run: nothing to roll back")
        if not auto_rollback:
            records.update(self.deploy_run_id, rollback={"performed": False, "why": "auto_rollback is off"})
            raise AirflowSkipException("auto_rollback is off: the failed deploy is left as it is")
        model = self.fleet_model
        identities = (record.applied or {}).get("objects") or [
            {"kind": kind, "namespace": model.kubernetes.namespace, "name": name}
            for kind, name in (
                ("ConfigMap", f"{model.kubernetes.deployment}-config"),
                ("Service", model.kubernetes.deployment),
                ("Deployment", model.kubernetes.deployment),
            )
        ]
        desired = [
            {"kind": i["kind"], "metadata": {"namespace": i["namespace"], "name": i["name"]}}
            for i in identities
        ]
        plan = rollback_plan(record.previous, desired)
        client = ManifestClient(self.hook.api_client)
        self.log.info(
            "rolling back %s (reason: %s): re-apply %s; delete %s",
            model.name,
            record.reason or "unknown",
            ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in plan.reapply) or "-",
            ", ".join(f"{k}/{n}" for k, _, n in plan.delete) or "-",
        )
        previous_version = deployed_version(record.previous.get("Deployment"))
        try:
            done = execute_rollback(client, plan)
        except Exception as e:
            # Unreachable cluster, 403, 409...: say exactly what the cluster is left with.
            self._record_partial(records, record, plan, e, previous_version)
            raise
        state = {"performed": True, **done, "previous_version": previous_version}
        records.update(self.deploy_run_id, rollback=state)
        if record.previous.get("Deployment") is None:
            # The first deploy of this model: nothing ran before, so nothing is left to wait for.
            records.finish(self.deploy_run_id, "rolled_back", rollback={**state, "rollout": "not needed"})
            return state
        self.defer(
            trigger=DeploymentRolloutTrigger(
                model.kubernetes.namespace,
                model.kubernetes.deployment,
                kubernetes_conn_id=model.kubernetes.conn_id,
                min_generation=done["generation"] or None,
                deadline=time.time() + self.rollout_timeout,
                poll_interval=self.poll_interval,
            ),
            method_name="rollout_complete",
            timeout=timedelta(seconds=self.rollout_timeout + 60),
        )

    def _record_partial(
        self, records: Any, record: Any, plan: Any, error: BaseException, previous_version: int | None
    ) -> None:
        from mlinfra.deploy.kube import describe_api_error
        from mlinfra.exceptions import RollbackFailed

        changed = list((record.applied or {}).get("changed") or [])
        state = {
            "performed": False,
            "attempted": True,
            "error": describe_api_error(error),
            "changed": changed,
            "planned": {
                "reapply": [f"{o['kind']}/{o['metadata']['name']}" for o in plan.reapply],
                "delete": [f"{k}/{n}" for k, _, n in plan.delete],
            },
            "previous_version": previous_version,
        }
        records.finish(self.deploy_run_id, "partial", rollback=state)
        message = (
            f"cluster partially changed ({', '.join(changed) or 'nothing recorded as written'}); "
            f"rollback failed: {state['error']}"
        )
        self.log.error("%s", message)
        raise RollbackFailed(message) from error

    def _state(self) -> dict[str, Any]:
        # The record, not the deferral's kwargs, carries the state between the steps:
        # it survives anything that happens to the task in between.
        record = self.records.get(self.deploy_run_id)
        return dict(record.rollback or {}) if record is not None else {}

    def rollout_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        from mlinfra.triggers.model import ModelVersionAvailableTrigger

        records = self.records
        state = {**self._state(), "rollout": event.get("status"), "rollout_message": event.get("message")}
        if event.get("status") != "success":
            records.finish(self.deploy_run_id, "failed", rollback=state)
            raise RolloutFailed(f"the rollback's rollout did not complete: {event.get('message')}")
        self.log.info("rollback rollout complete: %s", event.get("message"))
        records.update(self.deploy_run_id, rollback=state)
        model = self.fleet_model
        self.defer(
            trigger=ModelVersionAvailableTrigger(
                model.serving.conn_id,
                model.serving.model_name,
                state.get("previous_version"),
                deadline=time.time() + self.model_timeout,
                poll_interval=self.poll_interval,
                default_grpc_target=model.serving.grpc_target,
                default_rest_url=model.serving.rest_url,
            ),
            method_name="model_checked",
            timeout=timedelta(seconds=self.model_timeout + 60),
        )

    def model_checked(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        available = event.get("status") == "success"
        state = {
            **self._state(),
            "previous_version_available": available,
            "model_message": event.get("message"),
        }
        if available:
            self.log.info("rolled back; %s", event.get("message"))
        else:
            # Kubernetes is back on the old spec; say loudly that the old version does not answer.
            self.log.error("rolled back, but the previous version is not AVAILABLE: %s", event.get("message"))
        self.records.finish(self.deploy_run_id, "rolled_back", rollback=state)
        return state
