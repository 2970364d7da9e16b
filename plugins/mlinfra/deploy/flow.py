"""The tasks every change of a model's serving spec runs once the objects are known.

``model_deploy`` (a new version from the templates) and ``model_rollback`` (a version's
recorded spec) share them, so a rollback by hand is proven exactly as a deploy is::

    apply = rollout_and_verify(plan, objects, settings=SETTINGS, plan_task_id="validate_request")
    # apply -> wait_rollout -> wait_model -> smoke_test -> promote -> collect_configs -> finish
    #   (any failure)      -> rollback (re-apply the spec kept before, verify it) --^

``plan`` is the XCom of the first task (model, version, namespace, connections...);
``objects`` the Kubernetes objects to apply. Task ids are fixed: the ML Fleet page and
the tests read them.

``model_deploy`` branches on the model's strategy first (:func:`deploy_by_strategy`)::

    choose_strategy -> apply -> ... (rolling, as above)
                    -> canary_segment_0 -> approve_1 -> canary_segment_1 -> approve_2
                       -> canary_segment_2 -> approve_3 -> canary_segment_3
                       -> canary_conclude -> collect_configs -> finish

A segment or gate the model's steps do not use is skipped; ``canary_conclude``
(``all_done``) aborts a canary that a rejected or timed-out gate, or a failed segment,
left behind.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, AssetAlias, get_current_context, task

from mlinfra.deploy.settings import DeploySettings
from mlinfra.operators.apply import ApplyManifestsOperator
from mlinfra.operators.canary import (
    DEFAULT_MEASURE_STEP,
    CanaryConcludeOperator,
    CanaryRolloutOperator,
)
from mlinfra.operators.canary_approval import CanaryApprovalOperator
from mlinfra.operators.rollback import ModelRollbackOperator
from mlinfra.operators.smoke import TFServingSmokeTestOperator
from mlinfra.sensors.model import TFServingModelVersionSensor
from mlinfra.sensors.rollout import DeploymentRolloutSensor
from mlinfra.task_failure import fail_without_retry

# One asset per model (mlinfra://models/<name>), attached at run time through this alias.
MODEL_DEPLOYS = AssetAlias("mlinfra-model-deploys")


def record_failure_callback(context: Any) -> None:
    """on_failure_callback: keep the first failure of the run as the deploy's reason."""
    from mlinfra.deploy.records import DeploymentRecords
    from mlinfra.deploy.steps import record_failure

    error = context.get("exception")
    try:
        record_failure(DeploymentRecords.from_connection(), context["run_id"], context["ti"].task_id, error)
    except Exception:  # a callback must never hide the task's own failure
        import logging

        logging.getLogger(__name__).exception("could not record the failure of the deploy")


def rollout_and_verify(
    plan: Any,
    objects: Any,
    *,
    settings: DeploySettings,
    plan_task_id: str,
    auto_rollback: bool | str = "{{ params.auto_rollback }}",
    record_extra: Any = None,
) -> ApplyManifestsOperator:
    """Wire apply -> waits -> smoke -> promote | rollback -> collect_configs -> finish; returns apply."""
    apply, _ = _rolling(plan, objects, settings, plan_task_id, auto_rollback, record_extra)
    return apply


def deploy_by_strategy(
    plan: Any,
    rendered: Any,
    *,
    settings: DeploySettings,
    plan_task_id: str,
    measure_step: str = DEFAULT_MEASURE_STEP,
) -> Any:
    """Branch on ``rendered["strategy"]``: the rolling tasks, or the canary's; returns the branch task."""
    apply, cleaned = _rolling(
        plan, rendered["objects"], settings, plan_task_id, "{{ params.auto_rollback }}", None
    )
    first, conclude = _canary(plan, rendered, settings, measure_step)
    choose = _choose_strategy_task()(rendered)
    choose >> [apply, first]
    conclude >> cleaned
    return choose


def _choose_strategy_task() -> Any:
    @task.branch(execution_timeout=timedelta(minutes=1))
    def choose_strategy(rendered: dict[str, Any]) -> str:
        return "canary_segment_0" if rendered.get("strategy") == "canary" else "apply"

    return choose_strategy


def _canary(plan: Any, rendered: Any, settings: DeploySettings, measure_step: str) -> tuple[Any, Any]:
    """segment 0 -> gate 1 -> segment 1 -> ... -> segment 3; every segment -> canary_conclude."""
    from mlinfra.deploy.canary import MAX_APPROVAL_GATES

    common: dict[str, Any] = {
        "plan": plan,
        "rendered": rendered,
        "rollout_timeout": settings.rollout_timeout,
        "poll_interval": settings.poll_interval,
    }
    segments = [
        CanaryRolloutOperator(task_id=f"canary_segment_{i}", segment=i, measure_step=measure_step, **common)
        for i in range(MAX_APPROVAL_GATES + 1)
    ]
    for gate in range(1, MAX_APPROVAL_GATES + 1):
        approval = CanaryApprovalOperator(
            task_id=f"approve_{gate}",
            gate=gate,
            segment_task_id=f"canary_segment_{gate - 1}",
            canary=rendered["canary"],
        )
        segments[gate - 1] >> approval >> segments[gate]
    # Not downstream of the gates: a rejecting gate skips its direct downstream tasks.
    conclude = CanaryConcludeOperator(task_id="canary_conclude", trigger_rule="all_done", **common)
    segments >> conclude
    return segments[0], conclude


def _rolling(
    plan: Any,
    objects: Any,
    settings: DeploySettings,
    plan_task_id: str,
    auto_rollback: bool | str,
    record_extra: Any,
) -> tuple[ApplyManifestsOperator, Any]:
    apply = _apply(plan, objects, record_extra)
    wait_rollout = _wait_rollout(plan, settings)
    wait_model = _wait_model(plan, settings)
    smoke_test = _smoke_test(plan)
    rollback = _rollback(settings, auto_rollback)
    promoted = _promote_task(plan_task_id)()
    cleaned = _collect_configs_task(settings, plan_task_id)()
    done = _finish_task()()

    apply >> wait_rollout >> wait_model >> smoke_test >> promoted >> cleaned >> done
    # wait_model too: with smoke predictions off (smoke_test skipped) promote still runs, while
    # on the canary branch (everything here skipped) it does not.
    wait_model >> promoted
    [apply, wait_rollout, wait_model, smoke_test] >> rollback >> cleaned
    return apply, cleaned


def _apply(plan: Any, objects: Any, record_extra: Any) -> ApplyManifestsOperator:
    return ApplyManifestsOperator(
        task_id="apply",
        manifests=objects,
        kubernetes_conn_id=plan["kubernetes_conn_id"],
        # Rendered as native objects: `tojson` keeps a run id that looks like a number a string.
        deploy_run_id="{{ run_id | tojson }}",
        record_extra=record_extra,
        execution_timeout=timedelta(minutes=5),
    )


def _wait_rollout(plan: Any, settings: DeploySettings) -> DeploymentRolloutSensor:
    return DeploymentRolloutSensor(
        task_id="wait_rollout",
        namespace=plan["namespace"],
        deployment=plan["deployment"],
        kubernetes_conn_id=plan["kubernetes_conn_id"],
        min_generation="{{ ti.xcom_pull(task_ids='apply')['generation'] }}",
        timeout=settings.rollout_timeout,
        poll_interval=settings.poll_interval,
    )


def _wait_model(plan: Any, settings: DeploySettings) -> TFServingModelVersionSensor:
    return TFServingModelVersionSensor(
        task_id="wait_model",
        tf_serving_conn_id=plan["serving_conn_id"],
        model_name=plan["model_name"],
        version=plan["version"],
        default_grpc_target=plan["grpc_target"],
        default_rest_url=plan["rest_url"],
        timeout=settings.model_timeout,
        poll_interval=settings.poll_interval,
    )


def _smoke_test(plan: Any) -> TFServingSmokeTestOperator:
    return TFServingSmokeTestOperator(
        task_id="smoke_test",
        model=plan["model"],
        version=plan["version"],
        run_smoke=plan["run_smoke"],
        # A smoke test that failed must not pass on a second try: no request starts after 8
        # minutes (the unsent fail the test), and the timeout fails it without retry too.
        execution_timeout=timedelta(minutes=10),
    )


def _rollback(settings: DeploySettings, auto_rollback: bool | str) -> ModelRollbackOperator:
    # Templates, not XCom arguments: the rollback also runs when earlier tasks failed.
    # `tojson`: a model name that looks like a number ("2024", "1e5") stays a string.
    return ModelRollbackOperator(
        task_id="rollback",
        model="{{ params.model | tojson }}",
        deploy_run_id="{{ run_id | tojson }}",
        auto_rollback=auto_rollback,
        trigger_rule="one_failed",
        rollout_timeout=settings.rollout_timeout,
        model_timeout=settings.model_timeout,
        poll_interval=settings.poll_interval,
    )


def _promote_task(plan_task_id: str) -> Any:
    """The ``promote`` task: record the success and announce the model's asset.

    The plan is pulled, not passed: an XCom argument would make the first task an upstream,
    whose success would let promote run when model_deploy takes the canary branch.
    """

    @task(
        trigger_rule="none_failed_min_one_success",
        outlets=[MODEL_DEPLOYS],
        execution_timeout=timedelta(minutes=2),
    )
    def promote() -> dict[str, Any]:
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.deploy.steps import record_success

        context = get_current_context()
        plan = context["ti"].xcom_pull(task_ids=plan_task_id)
        smoke = context["ti"].xcom_pull(task_ids="smoke_test", key="smoke_report")
        record_success(DeploymentRecords.from_connection(), context["run_id"], smoke)
        context["outlet_events"][MODEL_DEPLOYS].add(
            Asset(f"mlinfra://models/{plan['model']}"),
            extra={"version": plan["version"], "image": plan["image"], "run_id": context["run_id"]},
        )
        return {"model": plan["model"], "version": plan["version"], "image": plan["image"]}

    return promote


def _collect_configs_task(settings: DeploySettings, plan_task_id: str) -> Any:
    """The ``collect_configs`` task.

    Once the rollout settled either way: delete the versions' ConfigMaps no kept
    ReplicaSet mounts. Best effort: a failure here never changes the deploy's outcome
    (the next run collects them).
    """

    @task(trigger_rule="all_done", execution_timeout=timedelta(minutes=2))
    def collect_configs() -> dict[str, Any]:
        from mlinfra.deploy.steps import collect_configs as collect

        # Pulled, not passed: this also runs when the first task failed (no plan then).
        plan = get_current_context()["ti"].xcom_pull(task_ids=plan_task_id)
        return collect(plan or {}, min_age=settings.config_gc_min_age)

    return collect_configs


def _finish_task() -> Any:
    """The ``finish`` task: close the deploy's record; a failed deploy fails the run, without retry."""

    @task(trigger_rule="all_done", execution_timeout=timedelta(minutes=2))
    def finish() -> dict[str, Any]:
        from mlinfra.deploy.records import DeploymentRecords
        from mlinfra.deploy.steps import finish as close
        from mlinfra.exceptions import DeployFailed

        context = get_current_context()
        smoke = context["ti"].xcom_pull(task_ids="smoke_test", key="smoke_report")
        try:
            return close(DeploymentRecords.from_connection(), context["run_id"], smoke=smoke)
        except DeployFailed as e:
            raise fail_without_retry(e) from e

    return finish
