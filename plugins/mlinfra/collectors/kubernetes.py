"""Kubernetes telemetry under kube-state-metrics names, read through the provider's hook.

The pure part takes API clients and returns samples, so tests hand in clients
pointed at the stand-in (or anything with the same two methods)::

    hook = KubernetesHook(conn_id="kubernetes_default")
    samples = collect_kubernetes_samples(
        ["serving"], core_v1=hook.core_v1_client, apps_v1=hook.apps_v1_client
    )

:func:`run` is what the sweep calls: one result for every Kubernetes connection
of the fleet, where a connection that is not configured is *skipped* and a
namespace that fails (403, timeout) is reported while the others still count::

    result = run(load_fleet())
    result.summary()   # {"collector": "kubernetes", "up": False, "errors": ["kubernetes_default/batch: 403 Forbidden: ..."], ...}

``kubernetes`` and the provider are imported inside functions only: DAG files
import this module at parse time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from mlinfra.collectors.base import CollectorResult, PartialCollection, run_collector
from mlinfra.connections import connection_exists
from mlinfra.samples import Sample

if TYPE_CHECKING:
    from mlinfra.config import Fleet

log = logging.getLogger(__name__)

COLLECTOR = "kubernetes"
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
# Seconds per list call, instead of the provider's 60: urllib3 retries an idempotent
# GET three times on a read timeout, so one silent namespace costs up to 4x this.
DEFAULT_REQUEST_TIMEOUT = 10.0


class KubernetesClients(Protocol):
    """What :func:`run` needs from a hook: the provider's ``KubernetesHook`` has both."""

    @property
    def core_v1_client(self) -> Any: ...

    @property
    def apps_v1_client(self) -> Any: ...


def collect_kubernetes_samples(
    namespaces: Iterable[str],
    *,
    core_v1: Any,
    apps_v1: Any,
    deployments: Collection[str] | None = None,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
) -> list[Sample]:
    """Pods and Deployments of ``namespaces`` as kube-state-metrics samples.

    ``core_v1`` / ``apps_v1`` are ``kubernetes.client.CoreV1Api`` / ``AppsV1Api``
    (or the hook's ``core_v1_client`` / ``apps_v1_client``). With ``deployments``
    only those Deployments and the pods they select are reported; by default,
    everything in the namespaces, as kube-state-metrics does.

    Pod samples carry ``deployment`` when a Deployment's selector picks the pod.
    API errors propagate (``kubernetes.client.ApiException``, urllib3 errors):
    :func:`run` turns them into per-namespace errors.
    """
    samples: list[Sample] = []
    for namespace in namespaces:
        pod_list = core_v1.list_namespaced_pod(namespace, _request_timeout=request_timeout)
        deployment_list = apps_v1.list_namespaced_deployment(namespace, _request_timeout=request_timeout)
        selected = [d for d in deployment_list.items if deployments is None or d.metadata.name in deployments]
        for dep in selected:
            samples.extend(_deployment_samples(namespace, dep))
        for pod in pod_list.items:
            owner = _owning_deployment(pod, selected)
            if deployments is not None and owner is None:
                continue
            samples.extend(_pod_samples(namespace, pod, owner))
    return samples


def _deployment_samples(namespace: str, dep: Any) -> list[Sample]:
    labels = {"namespace": namespace, "deployment": dep.metadata.name}
    spec, status = dep.spec, dep.status
    # The API omits zero counts (and a status the controller has not written yet).
    spec_replicas = spec.replicas if spec and spec.replicas is not None else 1

    def count(attr: str) -> float:
        return float(getattr(status, attr, None) or 0) if status is not None else 0.0

    return [
        Sample("kube_deployment_spec_replicas", labels, spec_replicas),
        Sample("kube_deployment_status_replicas", labels, count("replicas")),
        Sample("kube_deployment_status_replicas_available", labels, count("available_replicas")),
        Sample("kube_deployment_status_replicas_ready", labels, count("ready_replicas")),
        Sample("kube_deployment_status_replicas_updated", labels, count("updated_replicas")),
        Sample("kube_deployment_status_replicas_unavailable", labels, count("unavailable_replicas")),
        Sample("kube_deployment_status_observed_generation", labels, count("observed_generation")),
        Sample("kube_deployment_metadata_generation", labels, dep.metadata.generation or 0),
    ]


def _pod_samples(namespace: str, pod: Any, deployment: str | None) -> list[Sample]:
    base = {"namespace": namespace, "pod": pod.metadata.name}
    if deployment is not None:
        base["deployment"] = deployment
    phase = (pod.status.phase if pod.status else None) or "Unknown"
    # Like kube-state-metrics: one series per phase, 1 for the current one.
    out = [
        Sample("kube_pod_status_phase", {**base, "phase": p}, 1.0 if p == phase else 0.0) for p in POD_PHASES
    ]
    # kube-state-metrics' info series: the GPU collector finds a process's pod and
    # container by the UID and container id its cgroup names.
    uid = pod.metadata.uid or ""
    if uid:
        out.append(Sample("kube_pod_info", {**base, "uid": uid}, 1.0))
    for cs in (pod.status.container_statuses if pod.status else None) or []:
        labels = {**base, "container": cs.name}
        if uid and cs.container_id:
            out.append(
                Sample(
                    "kube_pod_container_info", {**labels, "uid": uid, "container_id": cs.container_id}, 1.0
                )
            )
        out.append(Sample("kube_pod_container_status_restarts_total", labels, cs.restart_count or 0))
        out.append(Sample("kube_pod_container_status_ready", labels, 1.0 if cs.ready else 0.0))
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason:
            out.append(
                Sample("kube_pod_container_status_waiting_reason", {**labels, "reason": waiting.reason}, 1.0)
            )
    return out


def _owning_deployment(pod: Any, deployments: Iterable[Any]) -> str | None:
    pod_labels = pod.metadata.labels or {}
    for dep in deployments:
        selector = dep.spec.selector if dep.spec else None
        if selector is not None and _selector_matches(selector, pod_labels):
            return str(dep.metadata.name)
    return None


def _selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    match_labels = selector.match_labels or {}
    expressions = selector.match_expressions or []
    if not match_labels and not expressions:
        return False  # an empty selector would claim every pod; the API rejects it for Deployments
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in expressions:
        present, value, values = expr.key in labels, labels.get(expr.key), expr.values or []
        ok = {
            "In": present and value in values,
            "NotIn": not present or value not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(expr.operator, False)
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------- the sweep's entry point


def kubernetes_hook(conn_id: str) -> KubernetesClients:
    """The provider's ``KubernetesHook`` for ``conn_id`` (its clients load the connection lazily)."""
    from mlinfra.kube_import import kubernetes_hook_class

    # No private client_configuration: the hook's in_cluster branch ignores it.
    # Each hook's ApiClient copies the process-wide default right after loading
    # its kubeconfig, so connections used one after another do not mix.
    return kubernetes_hook_class()(conn_id=conn_id)


def run(
    fleet: Fleet,
    *,
    connection_exists: Callable[[str], bool] = connection_exists,
    hook_factory: Callable[[str], KubernetesClients] = kubernetes_hook,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
) -> CollectorResult:
    """Collect every namespace of the fleet, per Kubernetes connection; never raises.

    Emits ``mlinfra_collector_target_up{collector="kubernetes",target="<conn_id>/<namespace>"}``
    for each namespace tried. A connection id with no Airflow connection is
    skipped, not failed; a failing namespace becomes an error naming the
    connection, the namespace and the API's answer, and the rest still count.
    """
    skipped: list[str] = []
    targets: dict[str, list[str]] = {}
    lookup_errors: dict[str, str] = {}
    for conn_id, namespaces in fleet.namespaces.items():
        try:
            exists = connection_exists(conn_id)
        except Exception as e:
            # A broken secrets backend is this connection's failure, not a crash of the sweep.
            lookup_errors[conn_id] = f"{conn_id}: cannot look up the Airflow connection: {e}"
            targets[conn_id] = namespaces
            continue
        if exists:
            targets[conn_id] = namespaces
        else:
            skipped.append(f"{conn_id}: no Airflow connection")

    def collect() -> list[Sample]:
        from mlinfra.kube_import import import_kubernetes

        import_kubernetes()  # before the first kubernetes import: its client then loads name by name
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        samples: list[Sample] = []
        errors: list[str] = []
        for conn_id, namespaces in targets.items():
            clients: tuple[Any, Any] | None
            failure: str | None
            if conn_id in lookup_errors:
                clients, failure = None, lookup_errors[conn_id]
            else:
                clients, failure = _clients(conn_id, hook_factory)
            if clients is None:
                errors.append(failure or f"{conn_id}: unusable connection")
                samples.extend(_target_up(conn_id, ns, False) for ns in namespaces)
                continue
            core_v1, apps_v1 = clients
            for namespace in namespaces:
                try:
                    found = collect_kubernetes_samples(
                        [namespace], core_v1=core_v1, apps_v1=apps_v1, request_timeout=request_timeout
                    )
                # ValueError: the client could not read the answer (not the API's JSON).
                except (ApiException, HTTPError, OSError, ValueError) as e:
                    errors.append(f"{conn_id}/{namespace}: {_describe_api_error(e, core_v1)}")
                    samples.append(_target_up(conn_id, namespace, False))
                else:
                    samples.extend(found)
                    samples.append(_target_up(conn_id, namespace, True))
        if errors:
            raise PartialCollection(samples, errors)
        return samples

    return run_collector(COLLECTOR, collect, skipped=skipped)


def _target_up(conn_id: str, namespace: str, up: bool) -> Sample:
    return Sample(
        "mlinfra_collector_target_up",
        {"collector": COLLECTOR, "target": f"{conn_id}/{namespace}"},
        1.0 if up else 0.0,
    )


def _clients(
    conn_id: str, hook_factory: Callable[[str], KubernetesClients]
) -> tuple[tuple[Any, Any] | None, str | None]:
    """``((core_v1, apps_v1), None)``, or ``(None, reason)`` when the connection cannot be used."""
    from airflow.providers.common.compat.sdk import AirflowException
    from kubernetes.config import ConfigException

    try:
        hook = hook_factory(conn_id)
        return (hook.core_v1_client, hook.apps_v1_client), None
    except (ConfigException, AirflowException, OSError, ValueError) as e:
        # A kubeconfig that is missing, unreadable or contradicts the connection's other options.
        return None, f"{conn_id}: cannot configure the Kubernetes client: {e}"


def _describe_api_error(error: Exception, core_v1: Any) -> str:
    """``"403 Forbidden: <the API's message>"``, or why the API server could not be reached."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(error, ApiException):
        text = f"{error.status} {error.reason}"
        message = _status_message(error.body)
        return f"{text}: {message}" if message else text
    host = getattr(getattr(getattr(core_v1, "api_client", None), "configuration", None), "host", None)
    where = f" at {host}" if host else ""
    if isinstance(error, ValueError):
        return f"unreadable answer from the API server{where}: {error}"
    cause = _root_cause(error)
    if isinstance(cause, TimeoutError) or _is_read_timeout(error):
        return f"no answer in time from the API server{where}: {_describe_cause(cause)}"
    return f"cannot reach the API server{where}: {_describe_cause(cause)}"


def _status_message(body: Any) -> str | None:
    # Error bodies are meta/v1 Status objects; their message says what was refused.
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return None
    try:
        status = json.loads(body)
    except ValueError:
        return body[:200]
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else None


def _root_cause(error: BaseException) -> BaseException:
    # urllib3 wraps "connection refused" or a timeout several layers deep
    # (MaxRetryError -> NewConnectionError -> ConnectionRefusedError).
    node = error
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        node = reason
    while (nxt := node.__cause__ or node.__context__) is not None:
        node = nxt
    return node


def _is_read_timeout(error: BaseException) -> bool:
    from urllib3.exceptions import ReadTimeoutError

    return isinstance(error, ReadTimeoutError) or isinstance(getattr(error, "reason", None), ReadTimeoutError)


def _describe_cause(cause: BaseException) -> str:
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    text = str(cause) or type(cause).__name__
    # urllib3 prefixes its connection object's repr: "<...HTTPConnection object at 0x..>: msg".
    return text.split(">: ", 1)[-1] if text.startswith("<") else text
