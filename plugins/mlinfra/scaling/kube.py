"""Read and patch replica counts through the Kubernetes API, and find other autoscalers.

A small client over the ``kubernetes`` package's ``ApiClient`` (the provider's
``KubernetesHook().api_client``), returning plain dicts::

    client = ScaleClient(KubernetesHook(conn_id="kubernetes_default").api_client)
    client.replicas("serving")                        # {"half-plus-two": 2, ...}: one list call
    client.owners("serving")                          # {"resnet50-classifier": "HorizontalPodAutoscaler/resnet50"}
    client.patch_replicas("serving", "half-plus-two", 4)   # the scale subresource; 409s retried

Owners are HorizontalPodAutoscalers (``autoscaling/v2``) and KEDA ScaledObjects
(``keda.sh/v1alpha1``) whose ``scaleTargetRef`` names a Deployment. A cluster without
KEDA answers 404 for its group: that is "no ScaledObjects", not an error.

API refusals become project exceptions: 403 is :class:`~mlinfra.exceptions.ScaleForbidden`
naming the verb, resource and namespace the service account lacks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from mlinfra.exceptions import ScaleFailed, ScaleForbidden

log = logging.getLogger(__name__)

KEDA_GROUP, KEDA_VERSION, KEDA_PLURAL = "keda.sh", "v1alpha1", "scaledobjects"
MERGE_PATCH = "application/merge-patch+json"
RBAC_FILE = "include/k8s/rbac.yaml"


def forbidden(error: Any, *, verb: str, resource: str, api_group: str, namespace: str) -> ScaleForbidden:
    """A 403 as a message that says which permission is missing and where to grant it."""
    said = _api_message(error)
    group = api_group or "core"
    return ScaleForbidden(
        f"forbidden: the Airflow service account may not {verb} {resource} (API group {group!r}) "
        f"in namespace {namespace!r}; grant it with {RBAC_FILE}. Kubernetes said: {said}",
        verb=verb,
        resource=resource,
        api_group=api_group,
        namespace=namespace,
    )


def _api_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    return f"{getattr(error, 'status', '')} {getattr(error, 'reason', '') or error}".strip()


def _target_of(obj: dict[str, Any], *, default_kind: str | None) -> str | None:
    ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    kind = ref.get("kind") or default_kind
    return ref.get("name") if kind == "Deployment" else None


class ScaleClient:
    """Replica counts, autoscaler owners and scale patches of Deployments, as plain values.

    :param api_client: a ``kubernetes.client.ApiClient``.
    :param timeout: seconds per API request.
    :param conflict_retries: how many times a 409 on the scale patch is retried
        (re-reading the scale each time).
    :param sleep: waits between conflict retries (tests pass a no-op).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        timeout: float = 30.0,
        conflict_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from kubernetes import client

        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.timeout = timeout
        self.conflict_retries = conflict_retries
        self.sleep = sleep

    @staticmethod
    def _raw(response: Any) -> dict[str, Any]:
        try:
            data = json.loads(response.data)
        except ValueError as e:
            raise ScaleFailed(f"unreadable answer from the API server: {e}") from None
        if not isinstance(data, dict):
            raise ScaleFailed(
                f"unreadable answer from the API server: a {type(data).__name__}, not an object"
            )
        return data

    def _call(
        self, what: tuple[str, str, str, str], fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Run an API call; 403 -> ScaleForbidden naming ``what`` = (verb, resource, group, namespace)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        verb, resource, group, namespace = what
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as e:
            if e.status == 403:
                raise forbidden(
                    e, verb=verb, resource=resource, api_group=group, namespace=namespace
                ) from None
            if e.status is not None and e.status >= 500:
                # A ScaleFailed is recorded in the audit trail by the scale task; a raw
                # client error would fail the task without a trace there.
                raise ScaleFailed(
                    f"{verb} {resource} in {namespace}: the API server answered {e.status} {e.reason}: "
                    f"{_api_message(e)}"
                ) from None
            raise
        except (HTTPError, OSError) as e:
            raise ScaleFailed(f"{verb} {resource} in {namespace}: cannot reach the API server: {e}") from None
        except ValueError as e:  # the client could not read the answer
            raise ScaleFailed(
                f"{verb} {resource} in {namespace}: unreadable answer from the API server: {e}"
            ) from None

    # ------------------------------------------------------------------ reads

    def replicas(self, namespace: str) -> dict[str, int]:
        """Deployment name -> ``spec.replicas`` for every Deployment of ``namespace`` (one list call)."""
        response = self._call(
            ("list", "deployments", "apps", namespace),
            self.apps.list_namespaced_deployment,
            namespace,
            _preload_content=False,
        )
        out = {}
        for item in self._raw(response).get("items") or []:
            spec = item.get("spec") or {}
            out[item["metadata"]["name"]] = int(spec.get("replicas", 1))
        return out

    def owners(self, namespace: str) -> dict[str, str]:
        """Deployment name -> ``Kind/name`` of the HPA or ScaledObject that scales it."""
        from kubernetes.client.exceptions import ApiException

        out: dict[str, str] = {}
        response = self._call(
            ("list", "horizontalpodautoscalers", "autoscaling", namespace),
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            namespace,
            _preload_content=False,
        )
        for hpa in self._raw(response).get("items") or []:
            target = _target_of(hpa, default_kind=None)
            if target:
                out.setdefault(target, f"HorizontalPodAutoscaler/{hpa['metadata']['name']}")
        try:
            objects = self._call(
                ("list", KEDA_PLURAL, KEDA_GROUP, namespace),
                self.custom.list_namespaced_custom_object,
                KEDA_GROUP,
                KEDA_VERSION,
                namespace,
                KEDA_PLURAL,
            )
        except ApiException as e:
            if e.status != 404:
                raise
            objects = {}  # the CRD is not installed: no KEDA in this cluster
        for so in objects.get("items") or []:
            # KEDA's scaleTargetRef.kind defaults to Deployment.
            target = _target_of(so, default_kind="Deployment")
            if target:
                out.setdefault(target, f"ScaledObject/{so['metadata']['name']}")
        return out

    def read_scale(self, namespace: str, name: str) -> dict[str, Any]:
        """The Deployment's ``Scale`` (``spec.replicas``, ``metadata.resourceVersion``)."""
        response = self._call(
            ("get", "deployments/scale", "apps", namespace),
            self.apps.read_namespaced_deployment_scale,
            name,
            namespace,
            _preload_content=False,
        )
        return self._raw(response)

    def rollout_objects(self, namespace: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The Deployment and the pods of its template (what the rollout verdict reads)."""
        from mlinfra.deploy.rollout import label_selector, template_pod_labels

        deployment = self._raw(
            self._call(
                ("get", "deployments", "apps", namespace),
                self.apps.read_namespaced_deployment,
                name,
                namespace,
                _preload_content=False,
            )
        )
        pods = self._raw(
            self._call(
                ("list", "pods", "", namespace),
                self.core.list_namespaced_pod,
                namespace,
                label_selector=label_selector(template_pod_labels(deployment)),
                _preload_content=False,
            )
        )
        return deployment, list(pods.get("items") or [])

    # ------------------------------------------------------------------ the write

    def patch_replicas(self, namespace: str, name: str, replicas: int) -> tuple[int, dict[str, Any]]:
        """Set ``spec.replicas`` through the scale subresource; returns (replicas before, the Scale).

        The patch carries the ``resourceVersion`` just read, so a concurrent change is
        a 409 rather than a lost update; a 409 is retried (read again, patch again) up
        to ``conflict_retries`` times. 403 raises :class:`ScaleForbidden`.
        """
        from kubernetes.client.exceptions import ApiException

        attempts = self.conflict_retries + 1
        for attempt in range(1, attempts + 1):
            scale = self.read_scale(namespace, name)
            before = int((scale.get("spec") or {}).get("replicas", 0))
            body = {
                "metadata": {"resourceVersion": (scale.get("metadata") or {}).get("resourceVersion")},
                "spec": {"replicas": int(replicas)},
            }
            try:
                response = self._call(
                    ("patch", "deployments/scale", "apps", namespace),
                    self.apps.patch_namespaced_deployment_scale,
                    name,
                    namespace,
                    body,
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                )
            except ApiException as e:
                if e.status == 409 and attempt < attempts:
                    log.warning(
                        "scale %s/%s: conflict (attempt %d of %d), reading it again: %s",
                        namespace,
                        name,
                        attempt,
                        attempts,
                        _api_message(e),
                    )
                    self.sleep(min(0.2 * attempt, 2.0))
                    continue
                if e.status == 409:
                    raise ScaleFailed(
                        f"scale {namespace}/{name}: still conflicting after {attempts} attempts: {_api_message(e)}"
                    ) from None
                raise
            return before, self._raw(response)
        raise ScaleFailed(f"scale {namespace}/{name}: no attempt made")  # pragma: no cover - loop returns
