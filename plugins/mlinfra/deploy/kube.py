"""Apply, snapshot and roll back a model's objects through the Kubernetes API.

Plain functions over a small client (:class:`ManifestClient`) that wraps the
``kubernetes`` package's ``ApiClient`` (the provider's ``KubernetesHook().api_client``)::

    client = ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)
    previous = snapshot(client, rendered.objects)      # the spec to roll back to
    result = apply_objects(client, rendered.objects, previous)
    ...
    rollback(client, previous, rendered.objects)

Writes are server-side apply (``PATCH`` ``application/apply-patch+yaml``, field
manager ``mlinfra``, ``force=true``): idempotent, and an object that is already as
desired is not written at all, so deploying the same thing twice changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from mlinfra.deploy.manifests import clean_live, needs_apply

log = logging.getLogger(__name__)

FIELD_MANAGER = "mlinfra"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


class ManifestClient:
    """Read / apply / delete the three kinds a model deployment uses, as plain dicts."""

    def __init__(self, api_client: Any, *, field_manager: str = FIELD_MANAGER, timeout: float = 30.0):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.field_manager = field_manager
        self.timeout = timeout

    def _api(self, kind: str) -> tuple[Any, str]:
        if kind == "Deployment":
            return self.apps, "deployment"
        if kind == "Service":
            return self.core, "service"
        if kind == "ConfigMap":
            return self.core, "config_map"
        raise ValueError(f"mlinfra deploys ConfigMap, Service and Deployment objects, not {kind}")

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object (API JSON), or ``None`` when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        api, noun = self._api(kind)
        try:
            response = getattr(api, f"read_namespaced_{noun}")(
                name, namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        result: dict[str, Any] = json.loads(response.data)
        return result

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj``; returns the object the server stored."""
        api, noun = self._api(obj["kind"])
        meta = obj["metadata"]
        response = getattr(api, f"patch_namespaced_{noun}")(
            meta["name"],
            meta["namespace"],
            obj,
            field_manager=self.field_manager,
            force=True,
            _content_type=APPLY_CONTENT_TYPE,
            _preload_content=False,
            _request_timeout=self.timeout,
        )
        result: dict[str, Any] = json.loads(response.data)
        return result

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        api, noun = self._api(kind)
        try:
            getattr(api, f"delete_namespaced_{noun}")(name, namespace, _request_timeout=self.timeout)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True


def snapshot(client: ManifestClient, objects: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Kind -> the live object (without server-owned fields) for each object, ``None`` if absent."""
    out: dict[str, dict[str, Any] | None] = {}
    for obj in objects:
        meta = obj["metadata"]
        out[obj["kind"]] = clean_live(client.read(obj["kind"], meta["namespace"], meta["name"]))
    return out


@dataclass
class ApplyResult:
    changed: list[str] = field(default_factory=list)  # "Kind/name" written
    unchanged: list[str] = field(default_factory=list)
    generation: int = 0  # the Deployment's metadata.generation after the apply
    pod_labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "unchanged": self.unchanged,
            "generation": self.generation,
            "pod_labels": self.pod_labels,
        }


def apply_objects(
    client: ManifestClient, objects: list[dict[str, Any]], live: dict[str, dict[str, Any] | None]
) -> ApplyResult:
    """Apply each object that differs from ``live`` (in order); leave the others untouched."""
    result = ApplyResult()
    for obj in objects:
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        current = live.get(obj["kind"])
        if not needs_apply(obj, current):
            result.unchanged.append(label)
            log.info("%s: unchanged, not written", label)
            continue
        stored = client.apply(obj)
        result.changed.append(label)
        log.info("%s: applied (resourceVersion %s)", label, stored.get("metadata", {}).get("resourceVersion"))
    dep = next(o for o in objects if o["kind"] == "Deployment")
    stored_dep = client.read("Deployment", dep["metadata"]["namespace"], dep["metadata"]["name"]) or {}
    result.generation = int((stored_dep.get("metadata") or {}).get("generation") or 0)
    result.pod_labels = dict(dep["spec"]["template"]["metadata"]["labels"])
    return result


@dataclass
class RollbackPlan:
    """What a rollback does: re-apply these objects, delete those (created by the failed deploy)."""

    reapply: list[dict[str, Any]]
    delete: list[tuple[str, str, str]]  # (kind, namespace, name)

    @property
    def empty(self) -> bool:
        return not self.reapply and not self.delete


def rollback_plan(previous: dict[str, dict[str, Any] | None], desired: list[dict[str, Any]]) -> RollbackPlan:
    """Re-apply every kept object; delete objects the deploy created where there were none."""
    reapply, delete = [], []
    for obj in desired:
        kept = previous.get(obj["kind"])
        if kept is not None:
            reapply.append(kept)
        else:
            delete.append((obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]))
    return RollbackPlan(reapply, delete)


def execute_rollback(client: ManifestClient, plan: RollbackPlan) -> dict[str, Any]:
    """Carry out ``plan``; returns what was done and the Deployment's generation afterwards."""
    done: dict[str, Any] = {"reapplied": [], "deleted": [], "generation": 0, "pod_labels": {}}
    for kept in plan.reapply:
        # Server-owned fields (a stale resourceVersion above all) would make the apply a 409.
        obj = clean_live(kept) or kept
        stored = client.apply(obj)
        done["reapplied"].append(f"{obj['kind']}/{obj['metadata']['name']}")
        if obj["kind"] == "Deployment":
            done["generation"] = int(stored.get("metadata", {}).get("generation") or 0)
            done["pod_labels"] = dict(obj["spec"]["template"]["metadata"].get("labels") or {})
    # Delete in reverse apply order: pods go before the config they mount.
    for kind, namespace, name in reversed(plan.delete):
        if client.delete(kind, namespace, name):
            done["deleted"].append(f"{kind}/{name}")
    return done


def deployed_version(deployment: dict[str, Any] | None) -> int | None:
    """The model version a Deployment made by mlinfra serves (its pod template's ``version`` label)."""
    if not deployment:
        return None
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    value = labels.get("version")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def current_replicas(deployment: dict[str, Any] | None) -> int | None:
    if not deployment:
        return None
    value = (deployment.get("spec") or {}).get("replicas")
    return int(value) if isinstance(value, int) else None
