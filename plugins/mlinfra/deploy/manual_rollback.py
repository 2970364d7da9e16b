"""The ``model_rollback`` DAG's own steps: pick a version that once succeeded, re-apply its spec.

A manual rollback is a deploy whose objects come from the record of an earlier successful
deploy (``applied.spec``: exactly what was applied then, its immutable ConfigMap included)
instead of the templates; the rest of the run is the deploy's (rollout, model wait, smoke
predictions, automatic rollback on failure)::

    plan = choose_rollback(conf, fleet=fleet, records=records, client=client, run_id=..., triggered_by=...)
    rendered = recorded_objects(plan, records=records, client=client)
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from mlinfra.config import Fleet
from mlinfra.deploy.kube import ManifestClient, current_replicas, deployed_version, snapshot
from mlinfra.deploy.manifests import diff_objects, needs_apply
from mlinfra.deploy.records import DeploymentRecord, DeploymentRecords
from mlinfra.deploy.steps import model_targets
from mlinfra.exceptions import DeployRequestError

FIELDS = ("model", "version", "reason")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=63)
    # None: the last version whose deploy succeeded, other than the one serving now.
    version: StrictInt | None = Field(default=None, ge=1)
    reason: str = Field(min_length=3, max_length=500)


def _problems(conf: Any, fleet: Fleet) -> tuple[RollbackRequest | None, list[str]]:
    if not isinstance(conf, dict):
        return None, [f"conf must be a JSON object with {', '.join(FIELDS)}, got {conf!r}"]
    problems = []
    unknown = sorted(set(conf) - set(FIELDS))
    if unknown:
        problems.append(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(FIELDS)}"
        )
    request = None
    try:
        request = RollbackRequest.model_validate({k: v for k, v in conf.items() if k in FIELDS})
    except ValidationError as e:
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "conf"
            expected = {
                "model": "a fleet model name",
                "version": "an integer >= 1, or empty for the last successful version",
                "reason": "a text of 3 to 500 characters saying why",
            }.get(field, err["msg"])
            problems.append(
                f"{field}: required ({expected})"
                if err["type"] == "missing"
                else f"{field}: must be {expected}, got {err.get('input')!r}"
            )
    if request is not None and request.model not in fleet.model_names:
        problems.append(f"model: must be one of {', '.join(fleet.model_names)}, got {request.model!r}")
    return request, problems


def pick_target(
    request: RollbackRequest, succeeded: list[DeploymentRecord], serving: int | None
) -> DeploymentRecord:
    """The record to roll back to; :class:`DeployRequestError` for a version that never succeeded."""
    usable = [r for r in succeeded if (r.applied or {}).get("spec")]
    versions = sorted({r.version for r in usable if r.version is not None})
    known = ", ".join(map(str, versions)) or "none recorded"
    if request.version is not None:
        for record in usable:
            if record.version == request.version:
                return record
        raise DeployRequestError(
            [
                f"version: {request.version} of {request.model} never deployed successfully "
                f"(versions with a recorded successful deploy: {known})"
            ]
        )
    for record in usable:
        if record.version != serving:
            return record
    raise DeployRequestError(
        [
            f"version: no earlier successful version of {request.model} to roll back to "
            f"(serving {serving}; versions with a recorded successful deploy: {known})"
        ]
    )


def choose_rollback(
    conf: Any,
    *,
    fleet: Fleet,
    records: DeploymentRecords,
    client: ManifestClient,
    run_id: str,
    triggered_by: str,
) -> dict[str, Any]:
    """Validate the form, pick the version, record the run; the plan the later tasks use."""
    request, problems = _problems(conf, fleet)
    target = None
    if request is not None and not problems:
        model = fleet.model(request.model)
        live = client.read("Deployment", model.kubernetes.namespace, model.kubernetes.deployment)
        try:
            target = pick_target(request, records.succeeded(model.name), deployed_version(live))
        except DeployRequestError as e:
            problems.extend(e.problems)
    if problems or request is None or target is None:
        error = DeployRequestError(problems)
        name = conf.get("model") if isinstance(conf, dict) else None
        records.start(run_id, model=str(name)[:255] if name else "(none)", triggered_by=triggered_by)
        records.finish(run_id, "failed", reason=f"manual rollback refused: {error}")
        raise error
    model = fleet.model(request.model)
    records.start(
        run_id,
        model=model.name,
        version=target.version,
        image=target.image,
        namespace=model.kubernetes.namespace,
        deployment=model.kubernetes.deployment,
        triggered_by=triggered_by,
    )
    return {
        "model": model.name,
        "version": target.version,
        "image": target.image,
        **model_targets(model),
        "run_smoke": True,
        "auto_rollback": True,
        "dry_run": False,
        "run_id": run_id,
        "triggered_by": triggered_by,
        "source_run_id": target.run_id,
        "record_extra": {
            "manual_rollback": {
                "reason": request.reason,
                "to_version": target.version,
                "from_run": target.run_id,
            }
        },
    }


def recorded_objects(
    plan: dict[str, Any],
    *,
    records: DeploymentRecords,
    client: ManifestClient,
    dag_id: str = "model_rollback",
) -> dict[str, Any]:
    """The target's recorded objects, with this run's annotations and today's replica count."""
    source = records.get(plan["source_run_id"])
    spec = (source.applied or {}).get("spec") if source is not None else None
    if not spec:
        raise DeployRequestError([f"run {plan['source_run_id']}: no recorded spec to re-apply"])
    objects = copy.deepcopy(spec)
    live_dep = client.read("Deployment", plan["namespace"], plan["deployment"])
    running = current_replicas(live_dep)
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        if running:
            obj["spec"]["replicas"] = running  # an autoscaler's choice survives a rollback too
        obj["metadata"].setdefault("annotations", {}).update(
            {
                "mlinfra.io/airflow-dag-id": dag_id,
                "mlinfra.io/airflow-run-id": plan["run_id"],
                "mlinfra.io/triggered-by": plan.get("triggered_by") or "",
            }
        )
    live = snapshot(client, objects)
    diff = diff_objects(objects, live)
    records.update(plan["run_id"], replicas=running, diff=diff)
    return {
        "objects": objects,
        "diff": diff,
        "changed": [
            f"{o['kind']}/{o['metadata']['name']}" for o in objects if needs_apply(o, live.get(o["kind"]))
        ],
    }
