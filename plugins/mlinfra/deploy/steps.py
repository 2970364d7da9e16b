"""The ``model_deploy`` DAG's own steps as plain functions (the DAG file only wires them).

Each takes its dependencies (fleet, records, a :class:`~mlinfra.deploy.kube.ManifestClient`)
as arguments, so tests call them without Airflow::

    plan = validate_and_record(conf, fleet=fleet, records=records, run_id="manual__1", triggered_by="ana")
    rendered = render_plan(plan, fleet=fleet, client=client, records=records)
    ...
    finish(records, "manual__1")        # raises DeployFailed unless the deploy succeeded
"""

from __future__ import annotations

import logging
from typing import Any

from mlinfra.config import Fleet, Model
from mlinfra.deploy.kube import ManifestClient, current_replicas, deployed_version, snapshot
from mlinfra.deploy.manifests import (
    ManifestValues,
    canary_values,
    diff_objects,
    manifest_values,
    needs_apply,
    render_manifests,
)
from mlinfra.deploy.params import replica_bounds, validate_request
from mlinfra.deploy.records import DeploymentRecord, DeploymentRecords
from mlinfra.exceptions import DeployFailed, DeployRequestError

log = logging.getLogger(__name__)


def validate_and_record(
    conf: dict[str, Any] | None,
    *,
    fleet: Fleet,
    records: DeploymentRecords,
    run_id: str,
    triggered_by: str,
) -> dict[str, Any]:
    """Validate the run's conf; record the deploy (a refused one too). Returns the plan."""
    try:
        request = validate_request(conf, fleet)
    except DeployRequestError as e:
        name = conf.get("model") if isinstance(conf, dict) else None
        records.start(
            run_id, model=str(name)[:255] if name is not None else "(none)", triggered_by=triggered_by
        )
        records.finish(run_id, "failed", reason=str(e))
        raise
    model = fleet.model(request.model)
    records.start(
        run_id,
        model=model.name,
        version=request.version,
        image=request.image,
        namespace=model.kubernetes.namespace,
        deployment=model.kubernetes.deployment,
        replicas=request.replicas,
        triggered_by=triggered_by,
    )
    return {**request.model_dump(), "image": request.image, **model_targets(model), "run_id": run_id,
            "triggered_by": triggered_by}  # fmt: skip


def model_targets(model: Model) -> dict[str, Any]:
    """Where a model runs and answers: the plan keys every deploy-like run's tasks read."""
    return {
        "namespace": model.kubernetes.namespace,
        "deployment": model.kubernetes.deployment,
        "kubernetes_conn_id": model.kubernetes.conn_id,
        "serving_conn_id": model.serving.conn_id,
        "model_name": model.serving.model_name,
        "grpc_target": model.serving.grpc_target,
        "rest_url": model.serving.rest_url,
    }


def deploy_strategy(model: Model) -> dict[str, Any] | None:
    """The model's canary strategy (``deploy:`` of the fleet file) as plain data, or None for rolling::

    {"steps": [{"weight": 20}, {"pause": "approval"}, ...], "approval_timeout": 3600.0,
     "canary_service": True}
    """
    strategy = model.deploy
    if not strategy.is_canary:
        return None
    return {
        "steps": [s.model_dump(exclude_none=True) for s in strategy.steps],
        "approval_timeout": strategy.approval_timeout,
        "canary_service": strategy.canary_service,
    }


def render_plan(
    plan: dict[str, Any],
    *,
    fleet: Fleet,
    client: ManifestClient,
    records: DeploymentRecords,
    dag_id: str = "model_deploy",
    progress_deadline_seconds: int = 600,
) -> dict[str, Any]:
    """Render and check the manifests, diff them against the cluster (reads only).

    Replicas: the request's, else what runs now (an autoscaler's choice survives a
    deploy), else the model's ``min_replicas`` (at least 1). A dry run ends here,
    recorded with outcome ``dry_run`` and the diff.

    A model with ``deploy.strategy: canary`` also gets its canary objects (``canary``:
    objects, steps, stable version and replicas; ``strategy: "canary"``), unless nothing
    runs yet: as Argo Rollouts does for a Rollout's first deploy, the first version goes
    out at once (``strategy: "rolling"``), there being no stable to compare it with.
    """
    from mlinfra.deploy.params import DeployRequest

    model = fleet.model(plan["model"])
    request = DeployRequest.model_validate(
        {
            k: plan[k]
            for k in ("model", "version", "image_tag", "replicas", "run_smoke", "auto_rollback", "dry_run")
        }
    ).model_copy(update={"image_repository": model.image.repository})
    # The running Deployment decides the replicas; the rest is read once rendered (the
    # ConfigMap's name derives from its content).
    running_dep = client.read("Deployment", model.kubernetes.namespace, model.kubernetes.deployment)
    low, high = replica_bounds(model)
    running = current_replicas(running_dep)
    replicas = request.replicas or (min(max(running, low), high) if running else low)
    values = manifest_values(
        model,
        request,
        run_id=plan["run_id"],
        replicas=replicas,
        dag_id=dag_id,
        triggered_by=plan.get("triggered_by") or "",
        progress_deadline_seconds=progress_deadline_seconds,
        kubernetes_version=fleet.kubernetes_version,
    )
    rendered = render_manifests(values)
    live = snapshot(client, rendered.objects)
    diff = diff_objects(rendered.objects, live)
    changed = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in rendered.objects
        if needs_apply(o, live.get(o["kind"]))
    ]
    strategy, canary, canary_diff = canary_plan(
        model, values, running_dep, running or replicas, records, plan
    )
    diff += canary_diff
    records.update(plan["run_id"], replicas=replicas, diff=diff)
    if plan.get("dry_run"):
        records.finish(plan["run_id"], "dry_run")
    return {
        "objects": rendered.objects,
        "text": rendered.text,
        "diff": diff,
        "changed": changed,
        "replicas": replicas,
        "strategy": strategy,
        "canary": canary,
    }


def canary_plan(
    model: Model,
    values: ManifestValues,
    running_dep: dict[str, Any] | None,
    stable_replicas: int,
    records: DeploymentRecords,
    plan: dict[str, Any],
) -> tuple[str, dict[str, Any] | None, str]:
    """``(strategy, canary, diff)`` of :func:`render_plan`: the canary objects next to the running stable.

    Rolling when the model's strategy is not canary, or when nothing runs yet (Argo
    Rollouts likewise sends a Rollout's first version out at once: there is no stable to
    compare with). A canary that is not a higher version than the stable is refused and
    recorded as the deploy's failure.
    """
    from mlinfra.exceptions import ManifestError

    wanted = deploy_strategy(model)
    stable_version = deployed_version(running_dep)
    if wanted is None:
        return "rolling", None, ""
    if stable_version is None:
        log.info(
            "%s: nothing runs yet, so the first version goes out at once (no stable to compare with)",
            model.name,
        )
        return "rolling", None, ""
    try:
        manifests = render_manifests(
            # Replicas are the steps'; 0 until the first weight step sets them.
            canary_values(values, stable_version=stable_version, replicas=0, service=wanted["canary_service"])
        )
    except ManifestError as e:
        records.finish(plan["run_id"], "failed", reason=f"render_manifests: {e}")
        raise
    canary = {
        **wanted,
        "objects": manifests.objects,
        "stable_version": stable_version,
        "stable_replicas": stable_replicas,
    }
    diff = "# canary (the stable objects above are applied at promotion)\n" + diff_objects(
        manifests.objects, {o["kind"]: None for o in manifests.objects}
    )
    return "canary", canary, diff


def preflight_artifact(
    plan: dict[str, Any], *, fleet: Fleet, records: DeploymentRecords, run_id: str
) -> dict[str, Any]:
    """Check the requested version's artifact (:func:`mlinfra.deploy.artifacts.check_artifact`).

    A missing version or an unusable store is recorded as the deploy's failure, before
    any write to the cluster; an unreachable store raises for a retry.
    """
    from mlinfra.deploy.artifacts import check_artifact
    from mlinfra.exceptions import ArtifactStoreError

    model = fleet.model(plan["model"])
    try:
        result = check_artifact(model, int(plan["version"]))
    except (DeployRequestError, ArtifactStoreError) as e:
        records.finish(run_id, "failed", reason=f"preflight: {e}")
        raise
    log.info("%s", result.message)
    return result.to_dict()


def record_failure(records: DeploymentRecords, run_id: str, task_id: str, error: BaseException | str) -> None:
    """Keep the first failure of a run as its reason (the one that started a rollback)."""
    records.set_reason(run_id, f"{task_id}: {error}")


def record_canary_outcome(records: DeploymentRecords, run_id: str, phase: str, reason: str | None) -> None:
    """A canary's end as the deploy's outcome: promoted -> ``succeeded``, aborted -> ``aborted``."""
    if phase == "promoted":
        records.finish(run_id, "succeeded")
    elif phase == "aborted":
        records.finish(run_id, "aborted", reason=f"canary aborted: {reason or 'unknown reason'}")
    else:
        raise ValueError(f"a canary ends promoted or aborted, not {phase!r}")


def stable_after_abort(record: DeploymentRecord | None) -> str:
    """What an aborted canary left of the stable Deployment, for the failure's message."""
    rollback = (record.rollback if record is not None else None) or {}
    if rollback.get("performed"):
        return " (the stable Deployment is back at its previous spec)"
    if "performed" in rollback:
        return (
            " (the promotion changed the stable Deployment and restoring its previous spec FAILED: "
            f"{rollback.get('error') or 'unknown error'})"
        )
    return " (the stable Deployment was not changed)"


def record_success(records: DeploymentRecords, run_id: str, smoke: dict[str, Any] | None) -> None:
    records.finish(run_id, "succeeded", smoke=smoke)


def finish(records: DeploymentRecords, run_id: str, *, smoke: dict[str, Any] | None = None) -> dict[str, Any]:
    """Close the run's record; :class:`DeployFailed` with the reason unless the deploy succeeded."""
    record = records.get(run_id)
    if record is None:
        raise DeployFailed(f"run {run_id}: no deploy record (the request was never validated)")
    if smoke is not None and record.smoke is None:
        records.update(run_id, smoke=smoke)
    if record.outcome is None:
        # Nothing set an outcome: the run failed where no rollback could help (or was not allowed).
        reason = "the deploy did not complete"
        if smoke is not None and smoke.get("passed") and not record.rollback:
            # Everything up to promote passed and nothing was rolled back: promote failed (the
            # store down past its retries). The version serves: say so, and how to finish.
            reason = (
                f"version {record.version} is serving (its smoke test passed), but promote did not "
                "record it or announce its asset: clear promote with its downstream tasks to finish the deploy"
            )
        records.finish(run_id, "failed", reason=reason)
        record = records.get(run_id)
        if record is None:  # pragma: no cover - deleted concurrently
            raise DeployFailed(f"run {run_id}: the deploy record disappeared")
    if record.outcome in ("succeeded", "dry_run"):
        return record.to_dict()
    rollback = record.rollback or {}
    if record.outcome == "partial":
        changed = ", ".join((record.applied or {}).get("changed") or []) or "nothing recorded as written"
        raise DeployFailed(
            f"deploy of {record.model} version {record.version}: cluster partially changed ({changed}); "
            f"rollback failed: {rollback.get('error') or 'unknown error'} "
            f"(first failure: {record.reason or 'unknown'})"
        )
    detail = ""
    if record.outcome == "aborted":
        detail = stable_after_abort(record)
    if record.outcome == "rolled_back":
        detail = " (rolled back"
        if rollback.get("previous_version_available") is False:
            detail += "; the previous version is NOT available: " + str(rollback.get("model_message"))
        detail += ")"
    raise DeployFailed(
        f"deploy of {record.model} version {record.version} {record.outcome}{detail}: {record.reason or 'unknown reason'}"
    )


def collect_configs(plan: dict[str, Any], *, min_age: float = 600.0) -> dict[str, Any]:
    """Garbage-collect the model's unused per-version ConfigMaps; never raises.

    A deploy that never got past validation or rendering changed nothing to collect.
    """
    from mlinfra.deploy.kube import collect_config_maps, describe_api_error

    if not plan or plan.get("dry_run"):
        return {"deleted": [], "kept": [], "skipped": "nothing was applied"}
    try:
        from mlinfra.kube_import import kubernetes_hook_class

        client = ManifestClient(kubernetes_hook_class()(conn_id=plan["kubernetes_conn_id"]).api_client)
        out = collect_config_maps(client, plan["namespace"], plan["deployment"], min_age=min_age)
        # A canary's ConfigMaps (its own Deployment is gone after promotion or abort).
        canary = collect_config_maps(
            client, plan["namespace"], f"{plan['deployment']}-canary", min_age=min_age
        )
        return {key: out[key] + canary[key] for key in ("deleted", "kept")}
    except Exception as e:  # best effort: the next deploy collects what this one could not
        log.warning(
            "could not collect the unused ConfigMaps of %s: %s", plan.get("model"), describe_api_error(e)
        )
        return {"deleted": [], "kept": [], "error": describe_api_error(e)}
