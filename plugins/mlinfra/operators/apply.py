"""Apply a model's rendered manifests through the provider's ``KubernetesHook``.

::

    ApplyManifestsOperator(
        task_id="apply",
        manifests=render["objects"],              # checked objects from mlinfra.deploy.manifests
        deploy_run_id="{{ run_id }}",             # keep the previous spec in mlinfra_deployments
    )

Server-side apply with field manager ``mlinfra``; objects already as rendered are
not written. Before the first write the live objects are kept in the run's deploy
record (``previous``): that is what a rollback re-applies. A retry of the task keeps
the spec the *first* attempt saw, not the half-applied one, and counts as changed every
object that differed from it, including one whose write landed but whose answer was lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlinfra.exceptions import ManifestError
from mlinfra.task_failure import fail_without_retry

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook


class ApplyManifestsOperator(BaseOperator):
    """Server-side apply ``manifests`` (ConfigMap, Service, Deployment) in order.

    :param manifests: the objects, as dicts (templated: an XCom of the render task).
    :param kubernetes_conn_id: Airflow connection of type ``kubernetes``.
    :param field_manager: the server-side apply field manager (default ``mlinfra``).
    :param deploy_run_id: when set, the previous objects and the result are written to
        ``mlinfra_deployments`` for this run (templated, usually ``{{ run_id }}``).
    :param store_conn_id: the store's connection.
    :param record_extra: more keys for the record's ``applied`` JSON (templated), e.g. what a
        manual rollback was asked for.
    :returns: ``{"changed": [...], "unchanged": [...], "generation": n, "pod_labels": {...},
        "previous_version": n | None}``
    """

    template_fields: Sequence[str] = ("manifests", "kubernetes_conn_id", "deploy_run_id", "record_extra")
    ui_color = "#c9e4c5"

    def __init__(
        self,
        *,
        manifests: list[dict[str, Any]] | Any,
        kubernetes_conn_id: str = "kubernetes_default",
        field_manager: str | None = None,
        deploy_run_id: str | None = None,
        store_conn_id: str = "mlinfra_store",
        record_extra: dict[str, Any] | Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifests = manifests
        self.record_extra = record_extra
        self.kubernetes_conn_id = kubernetes_conn_id
        self.field_manager = field_manager
        self.deploy_run_id = deploy_run_id
        self.store_conn_id = store_conn_id

    @cached_property
    def hook(self) -> KubernetesHook:
        from mlinfra.kube_import import kubernetes_hook_class

        return kubernetes_hook_class()(conn_id=self.kubernetes_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        objects = list(self.manifests or ())
        if not objects or any(not isinstance(o, dict) or "kind" not in o for o in objects):
            # A retry would get the same manifests: fail now, before any hook or cluster call.
            raise fail_without_retry(
                ManifestError("manifests must be a non-empty list of Kubernetes objects (dicts with 'kind')")
            )
        # Imported here: DAG files import this module at parse time.
        from mlinfra.deploy.kube import (
            FIELD_MANAGER,
            ManifestClient,
            apply_objects,
            deployed_version,
            snapshot,
        )

        client = ManifestClient(self.hook.api_client, field_manager=self.field_manager or FIELD_MANAGER)
        live = snapshot(client, objects)
        previous = live
        records = None
        record = None
        if self.deploy_run_id:
            from mlinfra.deploy.records import DeploymentRecords

            records = DeploymentRecords.from_connection(self.store_conn_id)
            record = records.get(self.deploy_run_id)
            if record is not None and record.previous is not None:
                previous = record.previous  # a retry: the first attempt saw the real "before"
                self.log.info("keeping the previous spec saved by the first attempt")
            else:
                records.update(self.deploy_run_id, previous=live)
        extra = dict(self.record_extra or {})
        identities = [
            {"kind": o["kind"], "namespace": o["metadata"]["namespace"], "name": o["metadata"]["name"]}
            for o in objects
        ]
        # A retry after a failure part-way: what the earlier attempts wrote counts as changed too.
        earlier = list(
            ((record.applied or {}).get("changed") or []) if records is not None and record else []
        )

        def progress(changed: list[str]) -> None:
            if records is not None and self.deploy_run_id:
                records.update(
                    self.deploy_run_id,
                    applied={
                        "changed": _union(earlier, changed),
                        "objects": identities,
                        "complete": False,
                        **extra,
                    },
                )

        result = apply_objects(client, objects, live, on_written=progress)
        out = {**result.to_dict(), "previous_version": deployed_version(previous.get("Deployment"))}
        # On a first attempt previous is live, so nothing unchanged differs from it.
        written_earlier = _written_earlier(objects, result.unchanged, previous)
        if records is not None and self.deploy_run_id:
            records.update(
                self.deploy_run_id,
                applied={
                    **out,
                    "changed": _union(_union(earlier, written_earlier), result.changed),
                    "objects": identities,
                    "complete": True,
                    # The exact objects: what a manual rollback to this version re-applies.
                    "spec": objects,
                    **extra,
                },
            )
        if result.changed:
            self.log.info(
                "applied %s; unchanged %s", ", ".join(result.changed), ", ".join(result.unchanged) or "-"
            )
        else:
            self.log.info("nothing to apply: every object is already as rendered")
        return out


def _union(first: list[str], second: list[str]) -> list[str]:
    return first + [x for x in second if x not in first]


def _written_earlier(
    objects: list[dict[str, Any]], unchanged: list[str], previous: dict[str, dict[str, Any] | None]
) -> list[str]:
    """On a retry: the objects an earlier attempt wrote, though this attempt found them as rendered.

    An object the first attempt saw differ from its rendered form (``previous``) and that
    is as rendered now was written by this run, whether or not the answer to that write
    arrived (a connection reset after the server applied it).
    """
    from mlinfra.deploy.kube import needs_apply

    return [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if f"{o['kind']}/{o['metadata']['name']}" in unchanged and needs_apply(o, previous.get(o["kind"]))
    ]
