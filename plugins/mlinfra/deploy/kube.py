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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlinfra.deploy.manifests import (
    clean_live,
    config_map_selector,
    needs_apply,
    template_config_maps,
)

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

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` matching ``label_selector`` (ConfigMaps and ReplicaSets)."""
        from kubernetes import client

        if kind == "ConfigMap":
            call = self.core.list_namespaced_config_map
        elif kind == "ReplicaSet":
            call = client.AppsV1Api(self.apps.api_client).list_namespaced_replica_set
        else:
            raise ValueError(f"mlinfra lists ConfigMap and ReplicaSet objects, not {kind}")
        response = call(
            namespace, label_selector=label_selector, _preload_content=False, _request_timeout=self.timeout
        )
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

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


def describe_api_error(error: BaseException) -> str:
    """One line for an API failure: the status and the API server's message, never headers."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(error, ApiException):
        message = error.reason or ""
        try:
            body = json.loads(error.body or "{}")
            message = body.get("message") or message
        except (TypeError, ValueError):
            pass
        return f"HTTP {error.status}: {message}".strip()
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()


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
    client: ManifestClient,
    objects: list[dict[str, Any]],
    live: dict[str, dict[str, Any] | None],
    *,
    on_written: Callable[[list[str]], None] | None = None,
) -> ApplyResult:
    """Apply each object that differs from ``live`` (in order); leave the others untouched.

    ``on_written(changed so far)`` runs after each write, so a failure part-way leaves a
    record of exactly which objects the cluster already has in their new form.
    """
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
        if on_written is not None:
            on_written(list(result.changed))
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
    """Re-apply every kept object; delete objects the deploy created where there were none.

    A version's ConfigMap is neither: it is immutable and named by its content, so the
    previous version's own ConfigMap is still there for the re-applied pod template, and
    the failed version's is left to :func:`collect_config_maps` (its ReplicaSet may stay
    in the revision history, where ``kubectl rollout undo`` can still use it).
    """
    reapply, delete = [], []
    for obj in desired:
        if obj["kind"] == "ConfigMap":
            continue
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


def collect_config_maps(
    client: ManifestClient,
    namespace: str,
    deployment: str,
    *,
    min_age: float = 600.0,
    now: float | None = None,
) -> dict[str, list[str]]:
    """Delete the per-version ConfigMaps of ``deployment`` that no pod template uses any more.

    Kept: the ones the Deployment's template or any of its ReplicaSets (those the controller
    keeps, up to ``revisionHistoryLimit``) mount, so ``kubectl rollout undo`` still works;
    and any younger than ``min_age`` seconds (a concurrent deploy may have created it and
    not yet written its Deployment). Only ConfigMaps labelled as this deployment's configs
    by mlinfra are ever considered. Returns ``{"deleted": [...], "kept": [...]}``.
    """
    import time
    from datetime import datetime

    now = time.time() if now is None else now
    live = client.read("Deployment", namespace, deployment)
    referenced: set[str] = set()
    if live is not None:
        referenced |= template_config_maps((live.get("spec") or {}).get("template") or {})
        selector = ((live.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        uid = (live.get("metadata") or {}).get("uid")
        for rs in client.list("ReplicaSet", namespace, ",".join(f"{k}={v}" for k, v in selector.items())):
            owners = (rs.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                referenced |= template_config_maps((rs.get("spec") or {}).get("template") or {})
    labels = ",".join(f"{k}={v}" for k, v in config_map_selector(deployment).items())
    out: dict[str, list[str]] = {"deleted": [], "kept": []}
    for cm in client.list("ConfigMap", namespace, labels):
        name = cm["metadata"]["name"]
        created = cm["metadata"].get("creationTimestamp")
        age = now - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else 1e18
        if name in referenced or age < min_age:
            out["kept"].append(name)
        elif client.delete("ConfigMap", namespace, name):
            out["deleted"].append(name)
    log.info(
        "config maps of %s/%s: deleted %s; kept %s",
        namespace,
        deployment,
        ", ".join(out["deleted"]) or "-",
        ", ".join(out["kept"]) or "-",
    )
    return out


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
