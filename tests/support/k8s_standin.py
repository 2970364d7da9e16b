"""A local stand-in for the Kubernetes API server that speaks the real HTTP API.

Tests reach it through the real ``kubernetes`` client and the cncf-kubernetes
provider's ``KubernetesHook``, so what passes here is what a real cluster sees:
the same paths, query parameters, JSON shapes, ``Status`` errors and bearer token.

>>> standin = KubeStandIn().start()
>>> dep = standin.add_deployment("serving", "half-plus-two", replicas=3, ready_replicas=2)
>>> dep["status"]["availableReplicas"], dep["status"]["unavailableReplicas"]
(2, 1)
>>> pod = standin.pod_names("serving", deployment="half-plus-two")[0]
>>> _ = standin.set_pod_status("serving", pod, waiting_reason="CrashLoopBackOff", restarts=7)
>>> _ = standin.inject_fault("GET", r"/namespaces/batch/pods$", 403)
>>> path = standin.write_kubeconfig("/tmp/kubeconfig")         # doctest: +SKIP
>>> env = standin.airflow_connection_env(kubeconfig_path=path)  # doctest: +SKIP
>>> standin.stop()

What it keeps: namespaces, Deployments and ReplicaSets (``apps/v1``) and Pods
(``v1``) as plain dicts shaped like the API's objects. A Deployment's status is
derived from its pods the way the deployment controller would, so tests change a
pod (:meth:`KubeStandIn.set_pod_status`) and the Deployment follows.

Writes behave as on a cluster: ``POST`` (409 ``AlreadyExists``), ``PUT`` (409 on a
stale ``resourceVersion``), ``PATCH`` as merge, strategic merge (named lists merge
by name), JSON patch and server-side apply (``application/apply-patch+yaml`` with a
``fieldManager``; a no-op apply changes nothing, not even ``resourceVersion``),
``DELETE``; ConfigMaps and Services are stored too. A Deployment written through
the API is rolled out by a controller thread one pod per step, with failure modes
chosen by the test: :meth:`KubeStandIn.fail_images` (pods of matching images wait in
``ImagePullBackOff`` or ``CrashLoopBackOff``), :meth:`KubeStandIn.set_rollout` (stuck
or slow, a short progress deadline -> ``ProgressDeadlineExceeded``), and
:meth:`KubeStandIn.on_rollout` hooks (the new template's first ready pod) that tests
use to link the TF Serving stand-in. :meth:`KubeStandIn.writes` lists the write
requests received.

Scaling: the ``scale`` subresource of Deployments (``GET``/``PATCH``/``PUT``
``.../deployments/{name}/scale``, an ``autoscaling/v1`` ``Scale``; merge patches; a
stale ``metadata.resourceVersion`` is a 409) sets ``spec.replicas`` and the controller
then converges the pods one per step. HorizontalPodAutoscalers (``autoscaling/v2``)
are served like any kind (:meth:`KubeStandIn.add_hpa`); KEDA's ScaledObjects exist only
after :meth:`KubeStandIn.install_keda` (before it, their group answers 404, as a
cluster without the CRD does). :meth:`KubeStandIn.rbac_requests` lists what was asked
as RBAC sees it (verb, API group, resource, namespace), for least-privilege checks.

Built to grow: resources are registered in one table (:meth:`register_resource`,
then :meth:`put_object` / :meth:`get_object`), routes in another
(:meth:`add_route`), and every request passes the fault injector first
(:meth:`inject_fault`), so PATCH/apply, the ``scale`` subresource, watches, HPA or
ScaledObject objects are additions, not rewrites.

Run as a process (``make demo``)::

    python -m tests.support.k8s_standin --port 0 --kubeconfig .demo/kubeconfig \\
        --seed-fleet include/fleet.yaml

It prints shell-evaluable ``MLINFRA_K8S_STANDIN_URL=...`` and
``AIRFLOW_CONN_KUBERNETES_DEFAULT=...`` lines and serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import re
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.support.kubelet import DEFAULT_SYNC_DELAY_S, ContainerRuntime, Kubelet

log = logging.getLogger(__name__)

Obj = dict[str, Any]

POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
# Only the anonymous health/version endpoints of a real API server skip authentication.
UNAUTHENTICATED_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_RESOURCE_PATH = re.compile(
    r"/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?"
)
# The alphabet Kubernetes uses for generated name suffixes and pod-template-hash.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class LabelSelectorError(ValueError):
    """A ``labelSelector`` / ``fieldSelector`` the API server would reject (400)."""


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: ``key op values``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" match objects without the label, as in Kubernetes.
        return not present or value not in self.values


_TERM = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[^\s=!,()]+)"
    r"|(?P<skey>[^\s=!,()]+)\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\)"
    r"|(?P<key>[^\s=!,()]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s=!,()]*)"
    r"|(?P<xkey>[^\s=!,()]+))\s*$"
)


def _split_terms(selector: str) -> list[str]:
    # Commas inside "in (a,b)" do not separate terms.
    terms, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in (t.strip() for t in terms) if t]


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse the string form of a label selector, as ``kubectl -l`` accepts it.

    >>> [r.op for r in parse_label_selector("app=a,tier!=db,env in (prod, stage),!legacy,canary")]
    ['=', '!=', 'in', '!exists', 'exists']
    """
    out: list[Requirement] = []
    for term in _split_terms(selector or ""):
        m = _TERM.match(term)
        if not m:
            raise LabelSelectorError(f"unable to parse requirement: {term!r}")
        if m["nkey"]:
            out.append(Requirement(m["nkey"], "!exists"))
        elif m["skey"]:
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            out.append(Requirement(m["skey"], m["setop"], values))
        elif m["key"]:
            out.append(Requirement(m["key"], "!=" if m["op"] == "!=" else "=", (m["value"],)))
        else:
            out.append(Requirement(m["xkey"], "exists"))
    return out


def selector_from_label_selector(selector: Mapping[str, Any]) -> list[Requirement]:
    """A ``spec.selector`` object (matchLabels + matchExpressions) as requirements."""
    reqs = [Requirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ())))
    return reqs


def labels_match(requirements: Iterable[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in requirements)


def _field_value(obj: Obj, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def _field_matches(obj: Obj, selector: str | None) -> bool:
    for term in _split_terms(selector or ""):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)$", term)
        if not m:
            raise LabelSelectorError(f"invalid field selector: {term!r}")
        key, op, value = m.groups()
        if not key.startswith(("metadata.", "spec.", "status.")):
            raise LabelSelectorError(f'field label not supported: "{key}"')
        if (_field_value(obj, key) == value) == (op == "!="):
            return False
    return True


# --------------------------------------------------------------------------- HTTP plumbing


@dataclass(frozen=True)
class ResourceType:
    """A kind the stand-in stores: where its URLs live and what its lists are called."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = ("get", "list")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased: HTTP header names are case-insensitive
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: Any
    content_type: str = "application/json"


@dataclass
class Fault:
    """An injected failure; ``times=None`` fires until :meth:`KubeStandIn.clear_faults`."""

    method: str
    path_regex: re.Pattern[str]
    status: int | None
    times: int | None
    reason: str | None = None
    message: str | None = None
    delay: float = 0.0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        return self.method in ("*", method) and bool(self.path_regex.search(path))


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


Handler = Callable[[Request], Response]


def status_object(code: int, message: str, *, reason: str | None = None, details: Obj | None = None) -> Obj:
    """A ``meta/v1 Status`` failure, exactly as the API server returns it."""
    out: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        out["details"] = details
    return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short_hash(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:length])


def _omit_zero(values: Mapping[str, int]) -> Obj:
    # The API server omits zero-valued counters (omitempty), and clients must cope.
    return {k: v for k, v in values.items() if v}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: KubeStandIn):
        self.standin = standin
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests, a stopped stand-in) is not an error of the server.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("k8s stand-in: client %s went away", client_address)
            return
        super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        # Keep-alive connections outlive shutdown(); a stopped API server must
        # look unreachable to clients holding pooled connections too.
        with self.sockets_lock:
            for sock in list(self.open_sockets):
                # Already closed by the client: nothing left to cut.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.open_sockets.clear()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
    # algorithm and the client's delayed ACK add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        super().finish()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        request = Request(
            self.command,
            split.path.rstrip("/") or "/",
            query,
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        response = self.server.standin.handle(request)
        payload = (
            response.body
            if isinstance(response.body, bytes)
            else json.dumps(response.body, separators=(",", ":")).encode()
        )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            line = format % args
            log.debug("k8s stand-in: %s", line)


# --------------------------------------------------------------------------- the stand-in


WRITE_VERBS = ("get", "list", "create", "update", "patch", "delete")
CORE_RESOURCES = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
    ResourceType("", "v1", "pods", "Pod"),
    ResourceType("apps", "v1", "deployments", "Deployment", verbs=WRITE_VERBS),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet"),
    ResourceType("", "v1", "services", "Service", verbs=WRITE_VERBS),
    ResourceType("", "v1", "configmaps", "ConfigMap", verbs=WRITE_VERBS),
    # Built into every cluster; KEDA's ScaledObject is a CRD: see KubeStandIn.install_keda().
    ResourceType(
        "autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", verbs=WRITE_VERBS
    ),
)
KEDA_SCALED_OBJECTS = ResourceType("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject", verbs=WRITE_VERBS)
# Waiting reasons a pod of a broken image shows (kubelet's names).
IMAGE_FAULT_REASONS = ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError")
ROLLOUT_MODES = ("progress", "stuck")


class KubeStandIn:
    """An in-memory Kubernetes API server on ``127.0.0.1:<ephemeral port>``.

    Use it as a context manager in tests::

        with KubeStandIn() as kube:
            kube.add_deployment("serving", "resnet50-classifier", replicas=2)
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
            monkeypatch.setenv(*kube.airflow_connection_env(kubeconfig_path=kubeconfig))
            ...  # KubernetesHook(conn_id="kubernetes_default") now talks to it

    ``token`` is the bearer token the kubeconfig carries; requests without it get
    401 like a real cluster (``token=None`` turns authentication off).
    """

    git_version = "v1.31.0-mlinfra-standin"
    user = "system:serviceaccount:airflow:mlinfra"  # who the token authenticates as (RBAC messages)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = "mlinfra-standin-token",
        time_scale: float = 0.02,
        kubelet_sync_delay: float = DEFAULT_SYNC_DELAY_S,
    ):
        """``time_scale`` multiplies a node's durations (back-offs, probe periods, the
        kubelet's ConfigMap sync delay of ``kubelet_sync_delay`` seconds): 0.02 runs the
        node 50 times faster than a real one, so a test sees a minute of cluster time in
        1.2 s. API-level durations (``progressDeadlineSeconds``) are not scaled."""
        self.host = host
        self.token = token
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._resource_version = 0
        self._resources: dict[tuple[str, str, str], ResourceType] = {}
        self._objects: dict[tuple[str, str, str], dict[tuple[str, str], Obj]] = {}
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[Fault] = []
        self._frozen_status: set[tuple[str, str]] = set()
        self._pod_counter = 0
        # Pods get loopback addresses 127.<pod_ip_instance>.<hi>.<lo>: all of 127.0.0.0/8 is
        # local on Linux, so a TF Serving stand-in can bind each pod's servers to its pod IP
        # (tests/support/serving_runtime.py). Random per stand-in (from the OS, not from
        # ``random``, which pytest-randomly reseeds identically in every test process) so two
        # stand-ins, in one process or in parallel runs, do not hand out the same addresses;
        # never 127.0.0.x, where the host's own servers listen.
        self.pod_ip_instance = secrets.SystemRandom().randint(16, 250)
        self.requests: deque[RecordedRequest] = deque(maxlen=2000)
        # The rollout controller (see "writes and the rollout controller" below).
        self._controlled: set[tuple[str, str]] = set()
        self._rollouts: dict[tuple[str, str], _Rollout] = {}
        self._rollout_settings: dict[tuple[str, str], RolloutSettings] = {}
        self._image_faults: list[tuple[re.Pattern[str], str, str | None]] = []
        self._rollout_hooks: list[Callable[[Obj], None]] = []
        self._applied: dict[tuple[str, str, str, str], Obj] = {}
        self._controller: threading.Thread | None = None
        self._controller_stop = threading.Event()
        self.controller_interval = 0.05
        self.kubelet = Kubelet(self, time_scale=time_scale, sync_delay=kubelet_sync_delay)
        for resource in CORE_RESOURCES:
            self.register_resource(resource)
        self._install_default_routes()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> KubeStandIn:
        """Serve in a background thread; after :meth:`stop`, restarts on the same port."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self._requested_port), self)
        self._requested_port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"k8s-standin-{self.port}", daemon=True
        )
        self._thread.start()
        self._controller_stop.clear()
        self._controller = threading.Thread(
            target=self._run_controller, name=f"k8s-standin-controller-{self.port}", daemon=True
        )
        self._controller.start()
        log.info("k8s stand-in serving on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._controller_stop.set()
        if self._controller is not None:
            self._controller.join(timeout=5)
            self._controller = None
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._requested_port == 0:
            raise RuntimeError("the stand-in has not been started yet; call start() first")
        return self._requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ client configuration

    def kubeconfig(self, *, namespace: str = "default", context: str = "mlinfra-standin") -> Obj:
        """A kubeconfig (as a dict) with one cluster, one token user and one context."""
        user: Obj = {"token": self.token} if self.token else {}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin-user", "user": user}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": "standin", "user": "standin-user", "namespace": namespace},
                }
            ],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write :meth:`kubeconfig` as YAML to ``path`` and return the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(self.kubeconfig(namespace=namespace), sort_keys=False), encoding="utf-8")
        return p

    def connection_json(
        self, kubeconfig_path: str | Path | None = None, *, namespace: str | None = None
    ) -> str:
        """The Airflow connection (JSON form) that makes ``KubernetesHook`` use the stand-in.

        With ``kubeconfig_path`` the hook reads that file (extra ``kube_config_path``);
        without it the kubeconfig travels inline (extra ``kube_config``).
        """
        extra: Obj = (
            {"kube_config_path": str(kubeconfig_path)}
            if kubeconfig_path is not None
            else {"kube_config": self.kubeconfig()}
        )
        if namespace:
            extra["namespace"] = namespace
        return json.dumps({"conn_type": "kubernetes", "extra": extra})

    def airflow_connection_env(
        self,
        conn_id: str = "kubernetes_default",
        *,
        kubeconfig_path: str | Path | None = None,
        namespace: str | None = None,
    ) -> tuple[str, str]:
        """``(AIRFLOW_CONN_<ID>, value)``, ready for ``monkeypatch.setenv(*...)``."""
        return f"AIRFLOW_CONN_{conn_id.upper()}", self.connection_json(kubeconfig_path, namespace=namespace)

    # ------------------------------------------------------------------ generic object store

    def register_resource(self, resource: ResourceType) -> None:
        """Make a kind storable and servable (list/get routes are generic)."""
        key = (resource.group, resource.version, resource.plural)
        with self._lock:
            self._resources[key] = resource
            self._objects.setdefault(key, {})

    def resource_for(self, api_version: str, kind: str) -> ResourceType:
        for r in self._resources.values():
            if r.api_version == api_version and r.kind == kind:
                return r
        raise KeyError(f"the stand-in does not know {api_version} {kind}; register_resource() it first")

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def put_object(self, obj: Obj) -> Obj:
        """Create or replace ``obj`` (keyed by apiVersion/kind/namespace/name); returns a copy.

        Fills what the API server fills: uid, creationTimestamp, resourceVersion,
        and generation (bumped when ``spec`` changes).
        """
        obj = copy.deepcopy(obj)  # the caller's dict must not alias the stored object
        with self._lock:
            resource = self.resource_for(obj["apiVersion"], obj["kind"])
            meta = obj.setdefault("metadata", {})
            namespace = meta.get("namespace", "") if resource.namespaced else ""
            if resource.namespaced:
                meta["namespace"] = namespace = namespace or "default"
                self._ensure_namespace(namespace)
            store = self._objects[(resource.group, resource.version, resource.plural)]
            old = store.get((namespace, meta["name"]))
            if old is None:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                meta.setdefault("generation", 1)
            else:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
                generation = old["metadata"].get("generation", 1)
                meta["generation"] = generation + 1 if obj.get("spec") != old.get("spec") else generation
            meta["resourceVersion"] = self._next_resource_version()
            store[(namespace, meta["name"])] = obj
            return copy.deepcopy(obj)

    def get_object(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        """A copy of the stored object, or ``None``."""
        with self._lock:
            r = self.resource_for(api_version, kind)
            found = self._objects[(r.group, r.version, r.plural)].get(
                (namespace if r.namespaced else "", name)
            )
            return copy.deepcopy(found) if found is not None else None

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        with self._lock:
            r = self.resource_for(api_version, kind)
            found = self._objects[(r.group, r.version, r.plural)].pop(
                (namespace if r.namespaced else "", name), None
            )
            if found is not None:
                self._next_resource_version()
            return found is not None

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        """Copies of the stored objects of a kind (``namespace=None``: all namespaces)."""
        with self._lock:
            r = self.resource_for(api_version, kind)
            return self._list(r, namespace, label_selector, field_selector)

    def _list(
        self, r: ResourceType, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> list[Obj]:
        reqs = parse_label_selector(label_selector)
        items = sorted(self._objects[(r.group, r.version, r.plural)].items())
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in items
            if (namespace is None or ns == namespace)
            and labels_match(reqs, obj["metadata"].get("labels"))
            and _field_matches(obj, field_selector)
        ]

    # ------------------------------------------------------------------ namespaces

    def add_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Obj:
        with self._lock:
            existing = self.get_object("v1", "Namespace", "", name)
            if existing is not None:
                return existing
            return self.put_object(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": name,
                        "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
                    },
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }
            )

    def _ensure_namespace(self, name: str) -> None:
        if ("", name) not in self._objects[("", "v1", "namespaces")]:
            self.add_namespace(name)

    # ------------------------------------------------------------------ deployments and pods

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 1,
        labels: Mapping[str, str] | None = None,
        image: str = "tensorflow/serving:2.14.1",
        containers: Sequence[str] | None = None,
        selector: Mapping[str, str] | None = None,
        ready_replicas: int | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> Obj:
        """Create a Deployment, its ReplicaSet and ``replicas`` pods owned by it.

        ``selector`` defaults to ``{"app": name}``; ``labels`` go on the Deployment
        and its pod template. The first ``ready_replicas`` pods (default: all) are
        Running and ready; the rest are Pending in ``ContainerCreating``.
        """
        selector = dict(selector or {"app": name})
        container_names = list(containers or [name])
        template_labels = {**selector, **(labels or {})}
        deployment: Obj = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(template_labels),
                "annotations": {"deployment.kubernetes.io/revision": "1"},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": template_labels},
                    "spec": {
                        "containers": [
                            {
                                "name": c,
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "resources": dict(resources or {}),
                            }
                            for c in container_names
                        ],
                        "restartPolicy": "Always",
                    },
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        }
        with self._lock:
            self.put_object(deployment)
            self._reconcile(namespace, name, ready=ready_replicas)
            return self.deployment(namespace, name)

    def deployment(self, namespace: str, name: str) -> Obj:
        found = self.get_object("apps/v1", "Deployment", namespace, name)
        if found is None:
            raise KeyError(f"no deployment {namespace}/{name} in the stand-in")
        return found

    def pod(self, namespace: str, name: str) -> Obj:
        found = self.get_object("v1", "Pod", namespace, name)
        if found is None:
            raise KeyError(f"no pod {namespace}/{name} in the stand-in")
        return found

    def pod_names(self, namespace: str, *, deployment: str | None = None) -> list[str]:
        """Pod names in ``namespace`` (those ``deployment`` owns), oldest first.

        Ownership, not the selector: a pod belongs to the ReplicaSet named by its
        ControllerRef, which belongs to the Deployment named by its own (see
        :meth:`owned_pods`), so two Deployments with overlapping selectors each see
        only their own pods.
        """
        with self._lock:
            if deployment is not None:
                pods = self.owned_pods(self.deployment(namespace, deployment))
            else:
                pods = self._list(self._resources[("", "v1", "pods")], namespace, None, None)
            pods.sort(key=lambda p: int((p["metadata"].get("annotations") or {}).get("standin/ordinal", "0")))
            return [p["metadata"]["name"] for p in pods]

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> Obj:
        """Set ``spec.replicas`` and add (Running, ready) or remove (newest first) pods."""
        with self._lock:
            dep = self.deployment(namespace, name)
            dep["spec"]["replicas"] = replicas
            self.put_object(dep)
            self._reconcile(namespace, name)
            return self.deployment(namespace, name)

    def delete_deployment(self, namespace: str, name: str) -> None:
        """Delete the Deployment with the ReplicaSets and pods it owns (foreground cascading:
        the garbage collector follows ownerReferences, never selectors)."""
        with self._lock:
            dep = self.deployment(namespace, name)
            for pod in self.pod_names(namespace, deployment=name):
                self.delete_object("v1", "Pod", namespace, pod)
            for rs in self._owned_replicasets(dep):
                self.delete_object("apps/v1", "ReplicaSet", namespace, rs["metadata"]["name"])
            self.delete_object("apps/v1", "Deployment", namespace, name)
            self._frozen_status.discard((namespace, name))

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        containers: Mapping[str, str] | None = None,
        owner: Mapping[str, Any] | None = None,
        ready: bool = True,
        template: Obj | None = None,
    ) -> Obj:
        """A pod (``containers``: name -> image), Running and ready unless ``ready=False``.

        With ``template`` (a pod template), the pod's spec is the template's (containers,
        probes, volumes) and it starts Pending in ``ContainerCreating``: the kubelet
        (:class:`~tests.support.kubelet.Kubelet`) takes it from there.
        """
        if template is not None:
            containers = {c["name"]: c["image"] for c in template["spec"]["containers"]}
            ready = False
        containers = dict(containers or {name: "busybox:1.36"})
        with self._lock:
            self._pod_counter += 1
            pod: Obj = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": dict(labels or {}),
                    "annotations": {"standin/ordinal": str(self._pod_counter)},
                    "ownerReferences": [dict(owner)] if owner else [],
                },
                "spec": {
                    "containers": [
                        {"name": c, "image": img, "imagePullPolicy": "IfNotPresent", "resources": {}}
                        for c, img in containers.items()
                    ],
                    "restartPolicy": "Always",
                    "nodeName": "standin-node-1",
                    "serviceAccountName": "default",
                    "terminationGracePeriodSeconds": 30,
                },
                "status": {
                    "phase": "Running" if ready else "Pending",
                    "hostIP": "10.0.0.1",
                    "podIP": self._pod_ip(self._pod_counter),
                    "startTime": _now(),
                    "qosClass": "BestEffort",
                    "containerStatuses": [
                        self._container_status(c, img, running=ready) for c, img in containers.items()
                    ],
                },
            }
            if template is not None:
                spec = copy.deepcopy(template.get("spec") or {})
                pod["spec"] = {**pod["spec"], **spec}
            _refresh_pod_conditions(pod)
            return self.put_object(pod)

    def _pod_ip(self, ordinal: int) -> str:
        """The ``ordinal``-th pod's address: 127.<instance>.<hi>.<lo>, lo in 1..254."""
        hi, lo = divmod(ordinal, 254)
        return f"127.{self.pod_ip_instance}.{hi % 256}.{lo + 1}"

    @staticmethod
    def _container_status(name: str, image: str, *, running: bool) -> Obj:
        state: Obj = (
            {"running": {"startedAt": _now()}} if running else {"waiting": {"reason": "ContainerCreating"}}
        )
        return {
            "name": name,
            "image": image,
            "imageID": f"docker.io/{image.split(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
            "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "ready": running,
            "started": running,
            "restartCount": 0,
            "state": state,
            "lastState": {},
        }

    def set_pod_status(
        self,
        namespace: str,
        name: str,
        *,
        phase: str | None = None,
        ready: bool | None = None,
        restarts: int | None = None,
        waiting_reason: str | None = None,
        waiting_message: str | None = None,
        container: str | None = None,
    ) -> Obj:
        """Change a pod's status (all containers, or just ``container``); returns the pod.

        ``waiting_reason="CrashLoopBackOff"`` leaves the pod Running (as Kubernetes
        does) with the container waiting, not ready, and a terminated last state;
        ``ready=True`` puts the container back to running. The owning Deployment's
        status follows.
        """
        if phase is not None and phase not in POD_PHASES:
            raise ValueError(f"phase must be one of {', '.join(POD_PHASES)}, got {phase!r}")
        with self._lock:
            pod = self.pod(namespace, name)
            statuses = pod["status"].setdefault("containerStatuses", [])
            targets = [s for s in statuses if container is None or s["name"] == container]
            if container is not None and not targets:
                raise KeyError(f"pod {namespace}/{name} has no container {container!r}")
            if phase is not None:
                pod["status"]["phase"] = phase
            for s in targets:
                if restarts is not None:
                    s["restartCount"] = restarts
                if waiting_reason is not None:
                    s["state"] = {"waiting": {"reason": waiting_reason}}
                    if waiting_message:
                        s["state"]["waiting"]["message"] = waiting_message
                    s["ready"] = s["started"] = False
                    if waiting_reason == "CrashLoopBackOff":
                        s["lastState"] = {
                            "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": _now()}
                        }
                    if pod["status"]["phase"] == "Pending" and phase is None and s["restartCount"]:
                        pod["status"]["phase"] = "Running"
                elif ready is True:
                    s["state"] = {"running": {"startedAt": _now()}}
                    s["ready"] = s["started"] = True
                elif ready is False:
                    s["ready"] = False
                if pod["status"]["phase"] in ("Succeeded", "Failed"):
                    exit_code = 0 if pod["status"]["phase"] == "Succeeded" else 1
                    s["state"] = {"terminated": {"exitCode": exit_code, "finishedAt": _now()}}
                    s["ready"] = s["started"] = False
            if ready is True and phase is None and pod["status"]["phase"] == "Pending":
                pod["status"]["phase"] = "Running"
            _refresh_pod_conditions(pod)
            self.put_object(pod)
            self._refresh_owner_status(namespace, pod)
            return self.pod(namespace, name)

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod; unlike a real ReplicaSet the stand-in does not replace it."""
        with self._lock:
            pod = self.pod(namespace, name)
            self.delete_object("v1", "Pod", namespace, name)
            self._refresh_owner_status(namespace, pod)

    def set_deployment_status(self, namespace: str, name: str, **fields: Any) -> Obj:
        """Overwrite status fields (API names: ``observedGeneration=1``) and stop deriving them.

        For states the pods cannot express, e.g. a controller that lags behind
        (``observedGeneration`` < ``metadata.generation``).
        """
        with self._lock:
            dep = self.deployment(namespace, name)
            dep["status"].update(fields)
            self.put_object(dep)
            self._frozen_status.add((namespace, name))
            return self.deployment(namespace, name)

    # What the deployment controller does, reduced to one ReplicaSet per template.
    def _reconcile(self, namespace: str, name: str, *, ready: int | None = None) -> None:
        dep = self.deployment(namespace, name)
        template = dep["spec"]["template"]
        pod_hash = _short_hash(json.dumps(template, sort_keys=True), 10)
        rs_name = f"{name}-{pod_hash}"
        desired = dep["spec"].get("replicas", 1)
        rs = self.get_object("apps/v1", "ReplicaSet", namespace, rs_name)
        if rs is None:
            rs = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": namespace,
                    "labels": {**template["metadata"]["labels"], "pod-template-hash": pod_hash},
                    "annotations": {"deployment.kubernetes.io/revision": "1"},
                    "ownerReferences": [_owner_reference(dep)],
                },
                "spec": {
                    "replicas": desired,
                    "selector": {
                        "matchLabels": {
                            **dep["spec"]["selector"]["matchLabels"],
                            "pod-template-hash": pod_hash,
                        }
                    },
                    "template": copy.deepcopy(template),
                },
                "status": {},
            }
        rs["spec"]["replicas"] = desired
        rs = self.put_object(rs)
        current = self.pod_names(namespace, deployment=name)
        for i in range(len(current), desired):
            suffix = _short_hash(f"{rs_name}/{self._pod_counter}/{i}", 5)
            self.add_pod(
                namespace,
                f"{rs_name}-{suffix}",
                labels=rs["metadata"]["labels"],
                containers={c["name"]: c["image"] for c in template["spec"]["containers"]},
                owner=_owner_reference(rs),
                ready=ready is None or i < ready,
            )
        for pod_name in reversed(current[desired:]):
            self.delete_object("v1", "Pod", namespace, pod_name)
        self._refresh_deployment_status(namespace, name)

    def _refresh_owner_status(self, namespace: str, pod: Obj) -> None:
        """Refresh the Deployment that owns ``pod`` through its ReplicaSet (ControllerRef)."""
        rs_uid = _controller_uid(pod)
        if rs_uid is None:
            return
        for rs in self.list_objects("apps/v1", "ReplicaSet", namespace):
            if rs["metadata"].get("uid") != rs_uid:
                continue
            dep_uid = _controller_uid(rs)
            for dep in self.list_objects("apps/v1", "Deployment", namespace):
                if dep["metadata"].get("uid") == dep_uid:
                    self._refresh_deployment_status(namespace, dep["metadata"]["name"])

    def _refresh_deployment_status(self, namespace: str, name: str) -> None:
        if (namespace, name) in self._frozen_status:
            return
        dep = self.deployment(namespace, name)
        previous = dep.get("status") or {}
        pod_hash = _short_hash(json.dumps(dep["spec"]["template"], sort_keys=True), 10)
        pods = [self.pod(namespace, p) for p in self.pod_names(namespace, deployment=name)]
        ready = sum(_pod_ready(p) for p in pods)
        updated = sum(p["metadata"]["labels"].get("pod-template-hash") == pod_hash for p in pods)
        desired = dep["spec"].get("replicas", 1)
        counts = {
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,  # minReadySeconds is 0
            "unavailableReplicas": max(desired - ready, 0),
        }
        max_unavailable = desired // 4  # the default 25%, rounded down
        available = ready >= desired - max_unavailable
        now = _now()
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            **_omit_zero(counts),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available
                    else "Deployment does not have minimum availability.",
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
                self._progress_condition(dep, pod_hash, updated, ready, len(pods))
                or {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if updated == desired else "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{name}-{pod_hash}" has successfully progressed.',
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
            ],
        }
        if _without_times(dep["status"]) == _without_times(previous):
            return  # nothing changed: no new resourceVersion (the controller runs often)
        self.put_object(dep)

    # ------------------------------------------------------------------ writes and the rollout controller
    #
    # Objects written through the API (POST, PUT, PATCH incl. server-side apply, DELETE)
    # behave as on a cluster: the server owns metadata and status, a stale
    # resourceVersion is a 409, a Deployment's selector is immutable, and a
    # Deployment whose pod template changed is rolled out over time by the
    # controller thread (one pod per step), with the failure modes a test picks:
    # :meth:`fail_images` (pods of matching images never get ready) and
    # :meth:`set_rollout` (a stuck or slow rollout, a short progress deadline).

    def fail_images(self, pattern: str, reason: str = "ImagePullBackOff", message: str | None = None) -> None:
        """Pods whose container image matches ``pattern`` (searched) wait in ``reason`` for ever.

        >>> kube.fail_images(r":does-not-exist$")                        # doctest: +SKIP
        >>> kube.fail_images(r"serving:2\\.99", "CrashLoopBackOff")        # doctest: +SKIP
        """
        if reason not in IMAGE_FAULT_REASONS:
            raise ValueError(f"reason must be one of {', '.join(IMAGE_FAULT_REASONS)}, got {reason!r}")
        with self._lock:
            self._image_faults.append((re.compile(pattern), reason, message))

    def set_rollout(
        self,
        namespace: str,
        name: str,
        *,
        mode: str = "progress",
        step_seconds: float = 0.0,
        progress_deadline: float | None = None,
    ) -> None:
        """How the controller rolls out ``namespace/name`` from now on.

        ``mode="stuck"`` creates no new pods at all; ``step_seconds`` spaces the steps
        (a slow rollout); ``progress_deadline`` (seconds) replaces the Deployment's
        ``progressDeadlineSeconds`` so a test sees ``ProgressDeadlineExceeded`` soon.
        """
        if mode not in ROLLOUT_MODES:
            raise ValueError(f"mode must be one of {', '.join(ROLLOUT_MODES)}, got {mode!r}")
        with self._lock:
            self._rollout_settings[(namespace, name)] = RolloutSettings(mode, step_seconds, progress_deadline)

    def on_rollout(self, hook: Callable[[Obj], None]) -> None:
        """Call ``hook(deployment)`` when the first pod of a new pod template is ready.

        That is the moment the new version starts serving; tests use it to make
        the TF Serving stand-in load the version the template names.
        """
        with self._lock:
            self._rollout_hooks.append(hook)

    def writes(self) -> list[RecordedRequest]:
        """Recorded requests that could have changed something (POST, PUT, PATCH, DELETE)."""
        return [r for r in list(self.requests) if r.method in ("POST", "PUT", "PATCH", "DELETE")]

    def _stored(self, r: ResourceType, namespace: str, name: str) -> Obj | None:
        return self._objects[(r.group, r.version, r.plural)].get((namespace if r.namespaced else "", name))

    def _invalid(self, r: ResourceType, name: str, causes: list[str]) -> Response:
        message = f'{r.kind} "{name}" is invalid: ' + "; ".join(causes)
        return Response(422, status_object(422, message, details={"name": name, "kind": r.plural}))

    def _check_written(
        self, r: ResourceType, request: Request, obj: Any, name: str | None
    ) -> Response | None:
        if not isinstance(obj, dict):
            return Response(400, status_object(400, "the body must be a JSON object"))
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            return self._invalid(r, str(name), ["metadata.name: Required value"])
        if name is not None and meta["name"] != name:
            return Response(
                400,
                status_object(
                    400,
                    f"the name of the object ({meta['name']}) does not match the name on the URL ({name})",
                ),
            )
        if obj.get("kind") not in (None, r.kind) or obj.get("apiVersion") not in (None, r.api_version):
            return Response(
                400,
                status_object(
                    400,
                    f"the API version/kind in the data ({obj.get('apiVersion')}/{obj.get('kind')}) "
                    f"does not match the URL ({r.api_version}/{r.kind})",
                ),
            )
        if meta.get("namespace") not in (None, "", request.params.get("namespace")):
            return Response(
                400,
                status_object(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                ),
            )
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", meta["name"]):
            return self._invalid(
                r,
                meta["name"],
                [f"metadata.name: Invalid value: {meta['name']!r}: a lowercase RFC 1123 subdomain"],
            )
        # A Service's name is a DNS-1035 label (ValidateServiceName): it starts with a letter
        # and has at most 63 characters, stricter than the other kinds' subdomains.
        # https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#rfc-1035-label-names
        if r.kind == "Service" and not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", meta["name"]):
            return self._invalid(
                r,
                meta["name"],
                [
                    f"metadata.name: Invalid value: {meta['name']!r}: a DNS-1035 label must consist of lower "
                    "case alphanumeric characters or '-', start with an alphabetic character, and end with "
                    "an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
                    "'[a-z]([-a-z0-9]*[a-z0-9])?')"
                ],
            )
        return None

    def _store_written(self, r: ResourceType, namespace: str, obj: Obj, old: Obj | None) -> Obj:
        """Keep server-owned fields, store, and hand Deployments to the controller."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = r.api_version, r.kind
        meta = obj["metadata"]
        meta["namespace"] = namespace
        for key in ("uid", "creationTimestamp", "generation", "resourceVersion", "managedFields"):
            meta.pop(key, None)
        if r.kind in ("Deployment", "Pod", "Service"):
            # status is a subresource: writes to the main resource never change it.
            obj["status"] = copy.deepcopy(old.get("status", {})) if old else {}
        if r.kind == "Deployment":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            )
        stored = self.put_object(obj)
        if r.kind == "Deployment":
            self._controlled.add((namespace, meta["name"]))
        return stored

    def _deployment_problems(self, r: ResourceType, new: Obj, old: Obj | None) -> list[str]:
        if r.kind in ("ConfigMap", "Secret"):
            return _immutable_problems(new, old)
        if r.kind != "Deployment":
            return []
        spec = new.get("spec") or {}
        problems = []
        selector = spec.get("selector") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector:
            problems.append("spec.selector: Required value")
        elif not labels_match(selector_from_label_selector(selector), labels):
            problems.append(
                "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"
            )
        if old is not None and selector and selector != old["spec"].get("selector"):
            problems.append("spec.selector: Invalid value: field is immutable")
        if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
            problems.append("spec.template.spec.containers: Required value")
        return problems

    def _create(self, request: Request) -> Response:
        r = self._resource(request)
        if r is None or "create" not in r.verbs:
            return Response(
                405, status_object(405, "the server does not allow this method on the requested resource")
            )
        obj = request.json()
        bad = self._check_written(r, request, obj, None)
        if bad is not None:
            return bad
        namespace, name = request.params["namespace"], obj["metadata"]["name"]
        with self._lock:
            if self._stored(r, namespace, name) is not None:
                return Response(
                    409,
                    status_object(
                        409,
                        f'{r.plural} "{name}" already exists',
                        reason="AlreadyExists",
                        details={"name": name, "kind": r.plural},
                    ),
                )
            problems = self._deployment_problems(r, obj, None)
            if problems:
                return self._invalid(r, name, problems)
            if request.query.get("dryRun") == "All":
                return Response(201, obj)
            return Response(201, self._store_written(r, namespace, obj, None))

    def _conflict(self, r: ResourceType, name: str) -> Response:
        return Response(
            409,
            status_object(
                409,
                f'Operation cannot be fulfilled on {r.plural}.{r.group or "core"} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                reason="Conflict",
                details={"name": name, "kind": r.plural},
            ),
        )

    def _not_found(self, r: ResourceType, name: str) -> Response:
        plural = f"{r.plural}.{r.group}" if r.group else r.plural
        return Response(
            404, status_object(404, f'{plural} "{name}" not found', details={"name": name, "kind": r.plural})
        )

    def _replace(self, request: Request) -> Response:
        r = self._resource(request)
        if r is None or "update" not in r.verbs:
            return Response(
                405, status_object(405, "the server does not allow this method on the requested resource")
            )
        name, namespace = request.params["name"], request.params["namespace"]
        obj = request.json()
        bad = self._check_written(r, request, obj, name)
        if bad is not None:
            return bad
        with self._lock:
            old = self._stored(r, namespace, name)
            if old is None:
                return self._not_found(r, name)
            sent = obj["metadata"].get("resourceVersion")
            if sent and sent != old["metadata"]["resourceVersion"]:
                return self._conflict(r, name)
            problems = self._deployment_problems(r, obj, old)
            if problems:
                return self._invalid(r, name, problems)
            return Response(200, self._store_written(r, namespace, obj, old))

    def _patch(self, request: Request) -> Response:
        r = self._resource(request)
        if r is None or "patch" not in r.verbs:
            return Response(
                405, status_object(405, "the server does not allow this method on the requested resource")
            )
        name, namespace = request.params["name"], request.params["namespace"]
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        try:
            patch = request.json()
        except ValueError as e:
            return Response(400, status_object(400, f"the body of the request was in an unknown format: {e}"))
        with self._lock:
            old = self._stored(r, namespace, name)
            if content_type == "application/apply-patch+yaml":
                manager = request.query.get("fieldManager")
                if not manager:
                    return Response(
                        400,
                        status_object(
                            400,
                            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
                        ),
                    )
                bad = self._check_written(r, request, patch, name)
                if bad is not None:
                    return bad
                key = (r.api_version, r.kind, namespace, name)
                if old is None:
                    new = copy.deepcopy(patch)
                else:
                    base = _without_fields(copy.deepcopy(old), self._applied.get(key), patch)
                    new = _merge(base, patch, by_name=False)
                status = 201 if old is None else 200
            elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                if old is None:
                    return self._not_found(r, name)
                if not isinstance(patch, dict):
                    return Response(400, status_object(400, "a merge patch must be a JSON object"))
                new = _merge(
                    copy.deepcopy(old), patch, by_name=content_type.startswith("application/strategic")
                )
                status, key = 200, None
            elif content_type == "application/json-patch+json":
                if old is None:
                    return self._not_found(r, name)
                try:
                    new = _json_patch(copy.deepcopy(old), patch)
                except (KeyError, IndexError, TypeError, ValueError) as e:
                    return Response(422, status_object(422, f"the json patch could not be applied: {e}"))
                status, key = 200, None
            else:
                return Response(
                    415,
                    status_object(
                        415,
                        f"the server does not support the media type {content_type!r}",
                        reason="UnsupportedMediaType",
                    ),
                )
            sent = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
            if old is not None and sent and sent != old["metadata"]["resourceVersion"]:
                return self._conflict(r, name)
            problems = self._deployment_problems(r, new, old)
            if problems:
                return self._invalid(r, name, problems)
            if request.query.get("dryRun") == "All":
                return Response(status, new)
            if old is not None and _same_object(old, new):
                # A no-op write changes nothing, not even resourceVersion (as on a cluster).
                if key is not None:
                    self._applied[key] = copy.deepcopy(patch)
                return Response(200, copy.deepcopy(old))
            stored = self._store_written(r, namespace, new, old)
            if key is not None:
                self._applied[key] = copy.deepcopy(patch)
            return Response(status, stored)

    def _delete(self, request: Request) -> Response:
        r = self._resource(request)
        if r is None or "delete" not in r.verbs:
            return Response(
                405, status_object(405, "the server does not allow this method on the requested resource")
            )
        name, namespace = request.params["name"], request.params["namespace"]
        with self._lock:
            old = self._stored(r, namespace, name)
            if old is None:
                return self._not_found(r, name)
            if r.kind == "Deployment":
                self.delete_deployment(namespace, name)
                self._controlled.discard((namespace, name))
                self._rollouts.pop((namespace, name), None)
            else:
                self.delete_object(r.api_version, r.kind, namespace, name)
            self._applied.pop((r.api_version, r.kind, namespace, name), None)
        return Response(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "kind": r.plural, "uid": old["metadata"]["uid"]},
            },
        )

    # .................................................................. the controller

    def _run_controller(self) -> None:
        while not self._controller_stop.wait(self.controller_interval):
            try:
                self.controller_step()
            except Exception:  # the controller must outlive one bad object, as on a cluster
                log.exception("k8s stand-in: controller step failed")

    def controller_step(self) -> None:
        """One pass of the deployment controller over Deployments written through the API."""
        ready_hooks: list[Obj] = []
        with self._lock:
            for namespace, name in sorted(self._controlled):
                if (namespace, name) in self._frozen_status:
                    continue
                dep = self.get_object("apps/v1", "Deployment", namespace, name)
                if dep is None:
                    continue
                if self._rollout_step(dep):
                    ready_hooks.append(self.deployment(namespace, name))
            hooks = list(self._rollout_hooks)
        for dep in ready_hooks:  # outside the lock: hooks talk to other servers
            for hook in hooks:
                try:
                    hook(dep)
                except Exception:
                    log.exception("k8s stand-in: rollout hook failed")
        self.kubelet.step()  # outside the lock too: container runtimes are other servers

    def attach_runtime(self, runtime: ContainerRuntime) -> None:
        """Let ``runtime`` run the containers it claims (see tests/support/kubelet.py)."""
        with self._lock:
            self.kubelet.runtimes.append(runtime)

    @property
    def registry(self) -> set[str] | None:
        """Images (``repo:tag``, docker.io names) that pull; ``None``: every image pulls."""
        return self.kubelet.registry

    @registry.setter
    def registry(self, images: set[str] | None) -> None:
        self.kubelet.registry = images

    def _ensure_replicaset(self, dep: Obj, pod_hash: str) -> Obj:
        """The ReplicaSet of the current template (re-used when a template comes back, as in a
        rollback), with the Deployment's revision annotation bumped like the controller does."""
        namespace, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        template = dep["spec"]["template"]
        rs_name = f"{name}-{pod_hash}"
        owned = self._owned_replicasets(dep)
        revision = max((_revision(r) for r in owned), default=0)
        rs = self.get_object("apps/v1", "ReplicaSet", namespace, rs_name)
        if rs is None:
            rs = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": namespace,
                    "labels": {**template["metadata"]["labels"], "pod-template-hash": pod_hash},
                    "annotations": {"deployment.kubernetes.io/revision": str(revision + 1)},
                    "ownerReferences": [_owner_reference(dep)],
                },
                "spec": {
                    "replicas": 0,
                    "selector": {
                        "matchLabels": {
                            **dep["spec"]["selector"]["matchLabels"],
                            "pod-template-hash": pod_hash,
                        }
                    },
                    "template": copy.deepcopy(template),
                },
                "status": {},
            }
            rs = self.put_object(rs)
        elif _revision(rs) != revision:
            rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(
                revision + 1
            )
            rs = self.put_object(rs)
        return rs

    def _owned_replicasets(self, dep: Obj) -> list[Obj]:
        """ReplicaSets whose ControllerRef (the ownerReference with ``controller: true``) is ``dep``."""
        uid = dep["metadata"].get("uid")
        return [
            rs
            for rs in self.list_objects("apps/v1", "ReplicaSet", dep["metadata"]["namespace"])
            if _controller_uid(rs) == uid
        ]

    def owned_pods(self, dep: Obj) -> list[Obj]:
        """The pods ``dep`` owns: those whose ControllerRef is one of its ReplicaSets.

        What the Deployment and ReplicaSet controllers count and delete since ControllerRef
        (Kubernetes 1.6): a controller acts only on objects whose ``ownerReferences`` entry
        with ``controller: true`` names it, so controllers with overlapping selectors (a
        stable ``app=x`` and a canary ``app=x,track=canary``) never fight over pods
        (kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/;
        the ControllerRef proposal, kubernetes/kubernetes docs/proposals/controller-ref.md:
        "overlapping controllers that fight over some resources"). An orphan matching a ReplicaSet's selector would be
        adopted; a ReplicaSet's selector carries ``pod-template-hash``, which only its own
        pods have, so the stand-in adopts none.
        """
        namespace = dep["metadata"]["namespace"]
        rs_uids = {rs["metadata"]["uid"] for rs in self._owned_replicasets(dep)}
        return [
            p
            for p in self._list(self._resources[("", "v1", "pods")], namespace, None, None)
            if _controller_uid(p) in rs_uids
        ]

    def _sync_replicasets(self, dep: Obj, current: Obj, pods: list[Obj]) -> None:
        """Each owned ReplicaSet's replicas = its pods; old empty ones beyond
        ``revisionHistoryLimit`` are deleted (oldest revision first), as the controller does."""
        namespace = dep["metadata"]["namespace"]
        counts: dict[str, int] = {}
        for p in pods:
            h = p["metadata"]["labels"].get("pod-template-hash")
            counts[h] = counts.get(h, 0) + 1
        current_hash = current["metadata"]["labels"]["pod-template-hash"]
        current["spec"]["replicas"] = dep["spec"].get("replicas", 1)
        ready = sum(
            _pod_ready(p) for p in pods if p["metadata"]["labels"].get("pod-template-hash") == current_hash
        )
        current["status"] = _omit_zero(
            {"replicas": counts.get(current_hash, 0), "readyReplicas": ready, "availableReplicas": ready}
        )
        stored = self.get_object("apps/v1", "ReplicaSet", namespace, current["metadata"]["name"])
        if (
            stored is None
            or _same_object(stored, current) is False
            or stored.get("status") != current["status"]
        ):
            self.put_object(current)
        old = []
        for rs in self._owned_replicasets(dep):
            h = rs["metadata"]["labels"].get("pod-template-hash")
            if h == current_hash:
                continue
            replicas = counts.get(h, 0)
            if rs["spec"].get("replicas") != replicas:
                rs["spec"]["replicas"] = replicas
                rs["status"] = _omit_zero({"replicas": replicas})
                self.put_object(rs)
            if replicas == 0:
                old.append(rs)
        limit = int(dep["spec"].get("revisionHistoryLimit", 10))
        old.sort(key=_revision)
        for rs in old[: max(len(old) - limit, 0)]:
            self.delete_object("apps/v1", "ReplicaSet", namespace, rs["metadata"]["name"])

    def _image_fault(self, images: Iterable[str]) -> tuple[str, str | None] | None:
        for image in images:
            for pattern, reason, message in self._image_faults:
                if pattern.search(image):
                    default = (
                        f'Back-off pulling image "{image}"'
                        if reason in ("ImagePullBackOff", "ErrImagePull")
                        else "back-off restarting failed container"
                    )
                    return reason, message or default
        return None

    def _rollout_step(self, dep: Obj) -> bool:
        """Advance one Deployment by at most one pod; True when its new template just got ready.

        RollingUpdate as the controller does it: at most ``replicas + maxSurge`` pods
        exist, and an old pod goes only while ``replicas - maxUnavailable`` pods stay
        available (with ``maxUnavailable: 0``, only as new pods become Ready;
        kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-update-deployment).
        New pods are created Pending and the kubelet takes them from there.
        """
        namespace, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        key = (namespace, name)
        template = dep["spec"]["template"]
        pod_hash = _short_hash(json.dumps(template, sort_keys=True), 10)
        desired = dep["spec"].get("replicas", 1)
        settings = self._rollout_settings.get(key, RolloutSettings())
        state = self._rollouts.get(key)
        now = time.monotonic()
        if state is None or state.pod_hash != pod_hash or state.desired != desired:
            # A slow controller (step_seconds) is slow from the first step of a change on.
            first = now if settings.step_seconds else -1e9
            if state is None or state.pod_hash != pod_hash:
                state = self._rollouts[key] = _Rollout(pod_hash, started=now, last_step=first)
            else:
                state.last_step = first
            state.desired = desired
        rs = self._ensure_replicaset(dep, pod_hash)
        pods = [self.pod(namespace, p) for p in self.pod_names(namespace, deployment=name)]
        new = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == pod_hash]
        old = [p for p in pods if p not in new]
        surge, unavailable = _rolling_limits(dep)
        if settings.mode != "stuck" and now - state.last_step >= settings.step_seconds:
            state.last_step = now
            if len(new) < desired and len(new) + len(old) < desired + surge:
                suffix = _short_hash(f"{rs['metadata']['name']}/{self._pod_counter}", 5)
                pod = self.add_pod(
                    namespace,
                    f"{rs['metadata']['name']}-{suffix}",
                    labels=rs["metadata"]["labels"],
                    owner=_owner_reference(rs),
                    template=template,
                )
                self.kubelet.manage(namespace, pod["metadata"]["name"])
                new.append(pod)
            elif len(new) > desired:
                # Scale down: not-ready pods go first, then the newest.
                victim = sorted(new, key=_pod_ready)[0]
                self.delete_object("v1", "Pod", namespace, victim["metadata"]["name"])
                new.remove(victim)
            ready = sum(_pod_ready(p) for p in new) + sum(_pod_ready(p) for p in old)
            if old:
                victim = sorted(old, key=_pod_ready)[0]  # unavailable old pods go first
                after = ready - (1 if _pod_ready(victim) else 0)
                if after >= desired - unavailable or len(new) + len(old) > desired + surge:
                    self.delete_object("v1", "Pod", namespace, victim["metadata"]["name"])
                    old.remove(victim)
        self._sync_replicasets(dep, rs, new + old)
        self._refresh_deployment_status(namespace, name)
        if not state.hooked and any(_pod_ready(p) for p in new):
            state.hooked = True
            return True
        return False

    def _progress_condition(
        self, dep: Obj, pod_hash: str, updated: int, ready: int, total: int
    ) -> Obj | None:
        """The Progressing condition of a controlled rollout, or None for the default one."""
        key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
        state = self._rollouts.get(key)
        if state is None or state.pod_hash != pod_hash:
            return None
        desired = dep["spec"].get("replicas", 1)
        now = _now()
        rs_name = f"{key[1]}-{pod_hash}"
        if updated == desired and ready >= desired and total == desired:
            state.complete = True
        if state.complete:
            return None
        settings = self._rollout_settings.get(key, RolloutSettings())
        deadline = settings.progress_deadline
        if deadline is None:
            deadline = float(dep["spec"].get("progressDeadlineSeconds", 600))
        if time.monotonic() - state.started > deadline:
            return {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{rs_name}" has timed out progressing.',
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            }
        return {
            "type": "Progressing",
            "status": "True",
            "reason": "ReplicaSetUpdated",
            "message": f'ReplicaSet "{rs_name}" is progressing.',
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        }

    # ------------------------------------------------------------------ autoscalers and the scale subresource

    def add_hpa(
        self,
        namespace: str,
        name: str,
        *,
        target: str,
        target_kind: str = "Deployment",
        min_replicas: int = 1,
        max_replicas: int = 10,
    ) -> Obj:
        """An ``autoscaling/v2`` HorizontalPodAutoscaler whose ``scaleTargetRef`` names ``target``."""
        return self.put_object(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target},
                    "minReplicas": min_replicas,
                    "maxReplicas": max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 70},
                            },
                        }
                    ],
                },
                "status": {"currentReplicas": 1, "desiredReplicas": 1},
            }
        )

    def install_keda(self) -> None:
        """Register KEDA's ScaledObject CRD (``keda.sh/v1alpha1``); without it the group is a 404."""
        self.register_resource(KEDA_SCALED_OBJECTS)

    def add_scaled_object(self, namespace: str, name: str, *, target: str, kind: str | None = None) -> Obj:
        """A KEDA ScaledObject scaling ``target`` (``kind`` omitted: KEDA's default, a Deployment)."""
        ref: Obj = {"name": target}
        if kind is not None:
            ref.update({"apiVersion": "apps/v1", "kind": kind})
        return self.put_object(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "scaleTargetRef": ref,
                    "triggers": [{"type": "prometheus", "metadata": {"threshold": "100"}}],
                },
            }
        )

    def rbac_requests(self) -> set[tuple[str, str, str, str, str]]:
        """Recorded requests as RBAC authorizes them:
        ``(verb, apiGroup, resource[/sub], namespace, name)`` (name ``""`` for list and create).

        Discovery and health paths (``/api``, ``/apis``, ``/version``) are left out: every
        authenticated user may read them (``system:discovery``).
        """
        out = set()
        for r in list(self.requests):
            m = _RESOURCE_PATH.fullmatch(r.path)
            if m is None:
                continue
            verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
            if r.method == "GET":
                verb = "get" if m["name"] else ("watch" if r.query.get("watch") in ("1", "true") else "list")
            else:
                verb = verbs.get(r.method, r.method.lower())
            resource = f"{m['plural']}/{m['sub']}" if m["sub"] else m["plural"]
            name = m["name"] or "" if r.method != "POST" else ""
            out.add((verb, m["group"] or "", resource, m["namespace"] or "", name))
        return out

    def _scale_object(self, dep: Obj) -> Obj:
        meta = dep["metadata"]
        selector = ",".join(f"{k}={v}" for k, v in sorted(dep["spec"]["selector"]["matchLabels"].items()))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": dep["spec"].get("replicas", 1)},
            "status": {"replicas": (dep.get("status") or {}).get("replicas", 0), "selector": selector},
        }

    def _scale(self, request: Request) -> Response:
        """``deployments/{name}/scale``: read, or set ``spec.replicas`` (merge patch or PUT)."""
        r = self._resource(request)
        if r is None or r.kind != "Deployment":
            return Response(404, status_object(404, "the server could not find the requested resource"))
        namespace, name = request.params["namespace"], request.params["name"]
        with self._lock:
            dep = self._stored(r, namespace, name)
            if dep is None:
                return self._not_found(r, name)
            if request.method == "GET":
                return Response(200, self._scale_object(dep))
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if request.method == "PATCH" and content_type not in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                return Response(
                    415,
                    status_object(
                        415,
                        f"the stand-in takes merge patches on scale, not {content_type!r}",
                        reason="UnsupportedMediaType",
                    ),
                )
            try:
                body = request.json()
            except ValueError as e:
                return Response(
                    400, status_object(400, f"the body of the request was in an unknown format: {e}")
                )
            if not isinstance(body, dict):
                return Response(400, status_object(400, "the body must be a JSON object"))
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != dep["metadata"]["resourceVersion"]:
                return self._conflict(r, name)
            replicas = (body.get("spec") or {}).get("replicas")
            if request.method == "PUT" and replicas is None:
                replicas = 0  # a PUT replaces the spec: no replicas means zero, as on a cluster
            if replicas is not None and (
                not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0
            ):
                return Response(
                    422,
                    status_object(
                        422,
                        f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                        f"{replicas!r}: must be greater than or equal to 0",
                        details={"name": name, "kind": "Scale"},
                    ),
                )
            if replicas is not None and replicas != dep["spec"].get("replicas", 1):
                dep = copy.deepcopy(dep)
                dep["spec"]["replicas"] = replicas
                dep = self.put_object(dep)
                # The controller converges the pods to the new count, one per step.
                self._controlled.add((namespace, name))
            return Response(200, self._scale_object(dep))

    # ------------------------------------------------------------------ faults and routes

    def inject_fault(
        self,
        method: str,
        path_regex: str,
        status: int | None = 500,
        *,
        times: int | None = 1,
        reason: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Answer the next ``times`` matching requests with a ``Status`` error.

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` is searched in the
        path (no query string). ``delay`` seconds pass before the answer, which with
        ``status=None`` is the normal one: a slow API server, for timeout tests.
        ``times=None`` keeps the fault until :meth:`clear_faults`.
        """
        fault = Fault(method.upper(), re.compile(path_regex), status, times, reason, message, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def _fault_message(self, request: Request, status: int, reason: str) -> str:
        # A 403 reads like the RBAC authorizer's, so error text in tests matches a real cluster's.
        m = _RESOURCE_PATH.fullmatch(request.path)
        if status != 403 or m is None:
            return f"{request.method} {request.path}: {reason} (injected by the stand-in)"
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        verb = verbs.get(request.method, "get" if m["name"] else "list")
        resource = f"{m['plural']}/{m['sub']}" if m["sub"] else m["plural"]
        subject = f'{resource} "{m["name"]}"' if m["name"] else resource
        where = f' in the namespace "{m["namespace"]}"' if m["namespace"] else ""
        return (
            f'{subject} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
            f'in API group "{m["group"] or ""}"{where}'
        )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def add_route(self, method: str, pattern: str, handler: Handler, *, first: bool = True) -> None:
        """Serve ``method`` on paths fully matching ``pattern`` (named groups -> ``request.params``).

        New routes go before the built-in ones by default, so an extension can
        override a generic route (e.g. a ``/scale`` subresource).
        """
        route = (method.upper(), re.compile(pattern), handler)
        with self._lock:
            if first:
                self._routes.insert(0, route)
            else:
                self._routes.append(route)

    def handle(self, request: Request) -> Response:
        """Answer one request: record it, apply faults, authenticate, route."""
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), request.headers.get("authorization")
            )
        )
        with self._lock:
            fault = next((f for f in self._faults if f.matches(request.method, request.path)), None)
            if fault is not None:
                fault.fired += 1
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                reason = fault.reason or REASONS.get(fault.status, "Unknown")
                message = fault.message or self._fault_message(request, fault.status, reason)
                return Response(fault.status, status_object(fault.status, message, reason=reason))
        if (
            self.token is not None
            and request.path not in UNAUTHENTICATED_PATHS
            and request.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return Response(401, status_object(401, "Unauthorized"))
        allowed = False
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(request.path)
            if m is None:
                continue
            allowed = True
            if method == request.method:
                request.params = {k: v for k, v in m.groupdict().items() if v is not None}
                try:
                    return handler(request)
                except LabelSelectorError as e:
                    return Response(400, status_object(400, str(e)))
        if allowed:
            return Response(
                405, status_object(405, "the server does not allow this method on the requested resource")
            )
        return Response(404, status_object(404, "the server could not find the requested resource"))

    def _install_default_routes(self) -> None:
        name = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
        gv = r"(?:api/(?P<version>v1)|apis/(?P<group>[a-z0-9.-]+)/(?P<gversion>v[0-9a-z]+))"
        self.add_route("GET", r"/version", self._version, first=False)
        self.add_route(
            "GET", r"/(?:healthz|livez|readyz)", lambda r: Response(200, b"ok", "text/plain"), first=False
        )
        self.add_route("GET", r"/api", self._core_versions, first=False)
        self.add_route("GET", r"/apis", self._group_list, first=False)
        self.add_route("GET", rf"/{gv}", self._resource_list, first=False)
        self.add_route(
            "GET",
            rf"/{gv}/namespaces/(?P<namespace>{name})/(?P<plural>[a-z]+)/(?P<name>{name})",
            self._get,
            first=False,
        )
        self.add_route(
            "GET",
            rf"/{gv}/namespaces/(?P<namespace>{name})/(?P<plural>[a-z]+)",
            self._list_route,
            first=False,
        )
        self.add_route("GET", rf"/{gv}/(?P<plural>[a-z]+)/(?P<name>{name})", self._get, first=False)
        self.add_route("GET", rf"/{gv}/(?P<plural>[a-z]+)", self._list_route, first=False)
        one = rf"/{gv}/namespaces/(?P<namespace>{name})/(?P<plural>[a-z]+)/(?P<name>{name})"
        self.add_route(
            "POST", rf"/{gv}/namespaces/(?P<namespace>{name})/(?P<plural>[a-z]+)", self._create, first=False
        )
        self.add_route("GET", rf"{one}/scale", self._scale, first=False)
        self.add_route("PATCH", rf"{one}/scale", self._scale, first=False)
        self.add_route("PUT", rf"{one}/scale", self._scale, first=False)
        self.add_route("PUT", one, self._replace, first=False)
        self.add_route("PATCH", one, self._patch, first=False)
        self.add_route("DELETE", one, self._delete, first=False)

    # ------------------------------------------------------------------ built-in handlers

    def _resource(self, request: Request) -> ResourceType | None:
        p = request.params
        key = (p.get("group", ""), p.get("version") or p.get("gversion", ""), p.get("plural", ""))
        return self._resources.get(key)

    def _version(self, request: Request) -> Response:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return Response(
            200,
            {
                "major": major,
                "minor": minor,
                "gitVersion": self.git_version,
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T00:00:00Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            },
        )

    def _core_versions(self, request: Request) -> Response:
        return Response(
            200,
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                ],
            },
        )

    def _group_list(self, request: Request) -> Response:
        groups: dict[str, list[str]] = {}
        for r in self._resources.values():
            if r.group and r.version not in groups.setdefault(r.group, []):
                groups[r.group].append(r.version)
        return Response(
            200,
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in versions],
                        "preferredVersion": {"groupVersion": f"{g}/{versions[0]}", "version": versions[0]},
                    }
                    for g, versions in sorted(groups.items())
                ],
            },
        )

    def _resource_list(self, request: Request) -> Response:
        group = request.params.get("group", "")
        version = request.params.get("version") or request.params.get("gversion", "")
        found = [r for r in self._resources.values() if r.group == group and r.version == version]
        if not found:
            return Response(404, status_object(404, "the server could not find the requested resource"))
        return Response(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": found[0].api_version,
                "resources": [
                    {
                        "name": r.plural,
                        "singularName": r.kind.lower(),
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": list(r.verbs),
                    }
                    for r in found
                ],
            },
        )

    def _list_route(self, request: Request) -> Response:
        r = self._resource(request)
        if r is None:
            return Response(404, status_object(404, "the server could not find the requested resource"))
        if request.query.get("watch") in ("1", "true"):
            return Response(405, status_object(405, "watch is not implemented by the stand-in yet"))
        namespace = request.params.get("namespace")
        with self._lock:
            items = self._list(
                r, namespace, request.query.get("labelSelector"), request.query.get("fieldSelector")
            )
            resource_version = str(self._resource_version)
        for item in items:
            # List items carry no kind/apiVersion on the wire; the list names them.
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return Response(
            200,
            {
                "kind": f"{r.kind}List",
                "apiVersion": r.api_version,
                "metadata": {"resourceVersion": resource_version},
                "items": items,
            },
        )

    def _get(self, request: Request) -> Response:
        r = self._resource(request)
        name = request.params["name"]
        if r is None:
            return Response(404, status_object(404, "the server could not find the requested resource"))
        found = self.get_object(r.api_version, r.kind, request.params.get("namespace", ""), name)
        if found is None:
            details: Obj = {"name": name, "kind": r.plural}
            if r.group:
                details["group"] = r.group
            plural = f"{r.plural}.{r.group}" if r.group else r.plural
            return Response(404, status_object(404, f'{plural} "{name}" not found', details=details))
        return Response(200, found)


@dataclass
class RolloutSettings:
    """How the stand-in's controller rolls out one Deployment (see :meth:`KubeStandIn.set_rollout`)."""

    mode: str = "progress"
    step_seconds: float = 0.0
    progress_deadline: float | None = None


@dataclass
class _Rollout:
    pod_hash: str
    started: float
    last_step: float = -1e9
    desired: int | None = None
    hooked: bool = False
    complete: bool = False


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_times(v)
            for k, v in value.items()
            if k not in ("lastUpdateTime", "lastTransitionTime")
        }
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _merge(target: Any, patch: Any, *, by_name: bool) -> Any:
    """JSON merge patch (RFC 7386); ``by_name`` merges lists of named items like a strategic merge."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif (
            by_name
            and isinstance(value, list)
            and isinstance(target.get(key), list)
            and all(isinstance(v, dict) and "name" in v for v in value + target[key])
        ):
            merged = {item["name"]: item for item in target[key]}
            for item in value:
                merged[item["name"]] = _merge(merged.get(item["name"], {}), item, by_name=True)
            target[key] = list(merged.values())
        else:
            target[key] = _merge(target.get(key), value, by_name=by_name)
    return target


def _without_fields(live: Any, previous: Any, current: Any) -> Any:
    """Drop from ``live`` what the manager applied before (``previous``) but no longer applies.

    Server-side apply's field ownership, reduced to one manager and whole lists.
    """
    if not isinstance(live, dict) or not isinstance(previous, dict):
        return live
    current = current if isinstance(current, dict) else {}
    for key, value in previous.items():
        if key not in current:
            live.pop(key, None)
        elif isinstance(value, dict) and isinstance(live.get(key), dict):
            live[key] = _without_fields(live[key], value, current[key])
    return live


def _json_patch(target: Obj, operations: Any) -> Obj:
    """RFC 6902 add / replace / remove / test, enough for what clients send."""
    if not isinstance(operations, list):
        raise ValueError("a JSON patch must be a list of operations")
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent: Any = target
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                if op["op"] == "replace" and last not in parent:
                    raise KeyError(last)
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op["op"] == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent[last]
            if current != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        else:
            raise ValueError(f"unsupported operation {op['op']!r}")
    return target


def _same_object(old: Obj, new: Obj) -> bool:
    def strip(o: Obj) -> Obj:
        o = copy.deepcopy(o)
        o.pop("status", None)
        for key in (
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "managedFields",
            "namespace",
        ):
            o.get("metadata", {}).pop(key, None)
        o.pop("apiVersion", None)
        o.pop("kind", None)
        return o

    return strip(old) == strip(new)


def _immutable_problems(new: Obj, old: Obj | None) -> list[str]:
    """An ``immutable: true`` ConfigMap or Secret: only deletion and re-creation change it
    (kubernetes.io/docs/concepts/configuration/configmap/#configmap-immutable)."""
    if old is None or old.get("immutable") is not True:
        return []
    problems = []
    if new.get("immutable") is not True:
        problems.append("immutable: Forbidden: field is immutable when `immutable` is set")
    for key in ("data", "binaryData", "stringData"):
        if (new.get(key) or {}) != (old.get(key) or {}):
            problems.append(f"{key}: Forbidden: field is immutable when `immutable` is set")
    return problems


def _revision(rs: Obj) -> int:
    value = (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0")
    return int(value) if str(value).isdigit() else 0


def _rolling_limits(dep: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts: percentages round surge up, unavailable down."""
    import math

    desired = dep["spec"].get("replicas", 1)
    rolling = ((dep["spec"].get("strategy") or {}).get("rollingUpdate")) or {}

    def count(value: Any, default: str, up: bool) -> int:
        value = default if value is None else value
        if isinstance(value, str) and value.endswith("%"):
            exact = desired * float(value[:-1]) / 100
            return math.ceil(exact) if up else math.floor(exact)
        return int(value)

    surge = count(rolling.get("maxSurge"), "25%", True)
    unavailable = count(rolling.get("maxUnavailable"), "25%", False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # the API server refuses both 0; be lenient, never deadlock
    return surge, unavailable


def _controller_uid(obj: Obj) -> str | None:
    """The uid in ``obj``'s ControllerRef (its ownerReference with ``controller: true``), if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _owner_reference(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _pod_ready(pod: Obj) -> bool:
    statuses = pod["status"].get("containerStatuses") or []
    return pod["status"].get("phase") == "Running" and bool(statuses) and all(s["ready"] for s in statuses)


def _refresh_pod_conditions(pod: Obj) -> None:
    now = _now()
    ready = "True" if _pod_ready(pod) else "False"
    scheduled = "True" if pod["spec"].get("nodeName") else "False"
    pod["status"]["conditions"] = [
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "Ready", "status": ready, "lastTransitionTime": now},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
        {"type": "PodScheduled", "status": scheduled, "lastTransitionTime": now},
    ]


# --------------------------------------------------------------------------- as a process


def seed_fleet(standin: KubeStandIn, fleet_path: str | Path) -> list[str]:
    """One Deployment per fleet model (``min_replicas`` pods, at least 1); returns their names."""
    from mlinfra.config import load_fleet

    seeded = []
    for model in load_fleet(fleet_path).models:
        k = model.kubernetes
        standin.add_deployment(
            k.namespace,
            k.deployment,
            replicas=max(model.scaling.min_replicas, 1),
            labels={"app.kubernetes.io/name": model.name, "app.kubernetes.io/managed-by": "mlinfra"},
            image=f"{model.image.repository}:latest",
            resources={"limits": {"cpu": model.resources.cpu, "memory": model.resources.memory}},
        )
        seeded.append(f"{k.namespace}/{k.deployment}")
    return seeded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the Kubernetes API stand-in until killed.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the stand-in here")
    parser.add_argument("--seed-fleet", type=Path, help="fleet.yaml: create a deployment per model")
    parser.add_argument("--token", default="mlinfra-standin-token")
    parser.add_argument("--conn-id", default="kubernetes_default")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    standin = KubeStandIn(host=args.host, port=args.port, token=args.token or None).start()
    if args.seed_fleet:
        for name in seed_fleet(standin, args.seed_fleet):
            log.info("seeded deployment %s", name)
    print(f"MLINFRA_K8S_STANDIN_URL={standin.url}", flush=True)
    if args.kubeconfig:
        path = standin.write_kubeconfig(args.kubeconfig).resolve()
        env, value = standin.airflow_connection_env(args.conn_id, kubeconfig_path=path)
        print(f"{env}={shlex.quote(value)}", flush=True)

    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
