"""The kubelet of the Kubernetes stand-in: what happens to a pod after the scheduler placed it.

Pods that the stand-in's deployment controller creates (for Deployments written
through the API) go through the stages a node takes them through, each following
the Kubernetes documentation:

* **image pull** — an image the registry does not hold waits in ``ErrImagePull``, then
  ``ImagePullBackOff`` with a back-off of 10 s doubling up to 5 min
  (kubernetes.io/docs/concepts/containers/images/, "Image pull backoff");
* **volume mounts** — a ConfigMap volume whose ConfigMap does not exist keeps the pod in
  ``ContainerCreating`` (``MountVolume.SetUp failed``); the kubelet projects the keys as
  files under the mount path;
* **container start** — a :class:`ContainerRuntime` linked by the test starts the
  container (the TF Serving stand-in starts a server for the pod); a container that
  exits goes ``CrashLoopBackOff`` with a restart delay of 10 s doubling to 5 min
  (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts);
* **readiness** — an ``httpGet`` readiness probe is sent every ``periodSeconds`` after
  ``initialDelaySeconds``; one success makes the container Ready, ``failureThreshold``
  failures in a row make it unready; only Ready pods are a Service's endpoints
  (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-probes);
* **ConfigMap propagation** — a mounted ConfigMap that changes is re-projected into the
  running pod after the kubelet's sync delay (sync period plus cache TTL, about a
  minute); ``immutable: true`` ConfigMaps are never watched again, and keys consumed
  through ``subPath`` or environment variables never change
  (kubernetes.io/docs/tasks/configure-pod-container/configure-pod-configmap/,
  "Mounted ConfigMaps are updated automatically").

Every duration of a real node (back-offs, probe periods, the sync delay) is multiplied
by the stand-in's ``time_scale`` so tests see minutes of cluster time in seconds.
A container no runtime claims counts as started and ready at once (nothing could
answer its probe, so the stand-in does not pretend to send one).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tests.support.k8s_standin import KubeStandIn

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# Back-off of image pulls and of container restarts: 10 s doubling, capped at 5 min.
BACKOFF_START_S = 10.0
BACKOFF_CAP_S = 300.0
# kubelet --sync-frequency (1 min) plus the ConfigMap cache's TTL: "up to a minute or so".
DEFAULT_SYNC_DELAY_S = 60.0

# Repositories and tags the stand-in's registry holds (docker.io names). Anything else is
# "not found" and the pod waits in ErrImagePull / ImagePullBackOff, as on a cluster.
REFUSED_DEMO_TAG = "tensorflow/serving:does-not-exist"
DEFAULT_REGISTRY = frozenset(
    {
        f"tensorflow/serving:{tag}{suffix}"
        for tag in ("2.14.1", "2.15.0", "2.15.1", "2.16.1", "2.17.0", "2.18.0", "2.19.0", "latest")
        for suffix in ("", "-gpu")
    }
    | {"busybox:1.36"}
)


def normalize_image(image: str) -> str:
    """``docker.io/library/busybox:1.36`` -> ``busybox:1.36``; a missing tag is ``:latest``."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if image.startswith(prefix):
            image = image[len(prefix) :]
    if image.startswith("library/"):
        image = image[len("library/") :]
    last = image.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        image += ":latest"
    return image


class ContainerRuntime(Protocol):
    """Runs the containers the kubelet starts (see tests/support/serving_runtime.py)."""

    def handles(self, pod: Obj, container: Obj) -> bool: ...

    def start(self, pod: Obj, container: Obj, files: dict[str, str], time_scale: float) -> str | None:
        """Start the container with ``files`` (container path -> content); an error message if it exits."""

    def update_files(self, pod: Obj, container: Obj, files: dict[str, str]) -> None: ...

    def stop(self, pod: Obj) -> None: ...

    def probe(self, pod: Obj, container: Obj, http_get: Obj) -> bool: ...

    def set_endpoints(self, service: Obj, pods: list[str]) -> None: ...


@dataclass
class _PodState:
    stage: str = "pull"  # pull -> mount -> start -> running (or crash, waiting to restart)
    attempts: int = 0  # failed pulls, or container exits
    next_at: float = 0.0
    ready: bool = False
    probe_failures: int = 0
    next_probe: float = 0.0
    runtime: ContainerRuntime | None = None
    # ConfigMap name -> (resourceVersion projected, when a newer one was first seen)
    mounted: dict[str, str] = field(default_factory=dict)
    changed_since: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


class Kubelet:
    """One node's kubelet over the stand-in's pods (driven by the controller thread)."""

    def __init__(self, standin: KubeStandIn, *, time_scale: float, sync_delay: float = DEFAULT_SYNC_DELAY_S):
        self.standin = standin
        self.time_scale = time_scale
        self.sync_delay = sync_delay
        self.registry: set[str] | None = set(DEFAULT_REGISTRY)
        self.runtimes: list[ContainerRuntime] = []
        self._pods: dict[tuple[str, str], _PodState] = {}
        self._endpoints: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up

    def manage(self, namespace: str, name: str) -> None:
        """Take a new pod through the node's stages (the controller calls this on creation)."""
        with self._lock:
            self._pods[(namespace, name)] = _PodState()

    def pullable(self, image: str) -> bool:
        return self.registry is None or normalize_image(image) in self.registry

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def _backoff(self, attempts: int) -> float:
        return self.scaled(min(BACKOFF_START_S * 2 ** max(attempts - 1, 0), BACKOFF_CAP_S))

    # ------------------------------------------------------------------ one pass

    def step(self) -> None:
        """Advance every managed pod by what is due now; then publish Service endpoints."""
        now = time.monotonic()
        with self._lock:
            managed = list(self._pods.items())
        for (namespace, name), state in managed:
            pod = self.standin.get_object("v1", "Pod", namespace, name)
            if pod is None:
                # Deleted by the controller: the container stops with it.
                with self._lock:
                    self._pods.pop((namespace, name), None)
                if state.runtime is not None and state.stage in ("running", "crash"):
                    try:
                        state.runtime.stop({"metadata": {"namespace": namespace, "name": name}})
                    except Exception:
                        log.exception("kubelet: stopping %s/%s failed", namespace, name)
                continue
            try:
                self._advance(pod, state, now)
            except Exception:  # one pod must not stop the node
                log.exception("kubelet: pod %s/%s", namespace, name)
        self._publish_endpoints()

    def _advance(self, pod: Obj, state: _PodState, now: float) -> None:
        if now < state.next_at:
            return
        container = pod["spec"]["containers"][0]
        image = container["image"]
        if state.stage == "pull":
            fault = self.standin._image_fault([c["image"] for c in pod["spec"]["containers"]])
            pull_fault = fault is not None and fault[0] in ("ImagePullBackOff", "ErrImagePull")
            # An image a test made crash (fail_images) exists: it pulls, then fails to run.
            if pull_fault or (fault is None and not self.pullable(image)):
                state.attempts += 1
                state.next_at = now + self._backoff(state.attempts)
                reason = "ErrImagePull" if state.attempts == 1 else "ImagePullBackOff"
                message = (
                    f'failed to pull and unpack image "docker.io/{normalize_image(image)}": not found'
                    if reason == "ErrImagePull"
                    else f'Back-off pulling image "{image}"'
                )
                self._set(pod, phase="Pending", waiting=(reason, message))
                return
            state.stage, state.attempts = "mount", 0
        if state.stage == "mount":
            files, missing = self._project(pod, state)
            if missing:
                self._set(
                    pod,
                    phase="Pending",
                    waiting=(
                        "ContainerCreating",
                        f'MountVolume.SetUp failed for volume: configmap "{missing}" not found',
                    ),
                )
                state.next_at = now + self.scaled(2.0)
                return
            state.files = files
            state.stage = "start"
        if state.stage in ("start", "crash"):
            self._start(pod, container, state, now)
            if state.stage != "running":
                return
        if state.stage == "running":
            self._propagate(pod, container, state, now)
            self._probe(pod, container, state, now)

    def _start(self, pod: Obj, container: Obj, state: _PodState, now: float) -> None:
        fault = self.standin._image_fault([c["image"] for c in pod["spec"]["containers"]])
        error: str | None = None
        if fault is not None and fault[0] in ("CrashLoopBackOff", "CreateContainerConfigError"):
            error = fault[1] or "back-off restarting failed container"
            if fault[0] == "CreateContainerConfigError":
                state.next_at = now + self.scaled(2.0)
                self._set(pod, phase="Pending", waiting=(fault[0], error))
                return
        else:
            state.runtime = next((r for r in self.runtimes if r.handles(pod, container)), None)
            if state.runtime is not None:
                error = state.runtime.start(pod, container, state.files, self.time_scale)
        if error is not None:
            state.attempts += 1
            state.stage = "crash"
            state.next_at = now + self._backoff(state.attempts)
            self._set(
                pod,
                phase="Running",
                waiting=("CrashLoopBackOff", f"back-off restarting failed container: {error}"),
                restarts=state.attempts,
            )
            return
        state.stage = "running"
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        if state.runtime is not None and probe:
            initial = float(container["readinessProbe"].get("initialDelaySeconds", 0))
            state.next_probe = now + self.scaled(initial)
            state.ready = False
        else:
            state.ready = True
        self._set(pod, phase="Running", running=True, ready=state.ready, restarts=state.attempts)

    def _project(self, pod: Obj, state: _PodState) -> tuple[dict[str, str], str | None]:
        """Files of the pod's ConfigMap volumes (container path -> content), or the missing one."""
        namespace = pod["metadata"]["namespace"]
        files: dict[str, str] = {}
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for container in pod["spec"]["containers"]:
            for mount in container.get("volumeMounts") or []:
                volume = volumes.get(mount["name"]) or {}
                source = volume.get("configMap")
                if not source:
                    continue
                cm = self.standin.get_object("v1", "ConfigMap", namespace, source["name"])
                if cm is None:
                    if source.get("optional"):
                        continue
                    return {}, source["name"]
                state.mounted[source["name"]] = cm["metadata"]["resourceVersion"]
                data = cm.get("data") or {}
                if mount.get("subPath"):
                    files[mount["mountPath"]] = data.get(mount["subPath"], "")
                else:
                    for key, value in data.items():
                        files[f"{mount['mountPath'].rstrip('/')}/{key}"] = value
        return files, None

    def _propagate(self, pod: Obj, container: Obj, state: _PodState, now: float) -> None:
        """Re-project ConfigMaps that changed, once the sync delay has passed."""
        namespace = pod["metadata"]["namespace"]
        due = False
        for name, projected in list(state.mounted.items()):
            cm = self.standin.get_object("v1", "ConfigMap", namespace, name)
            if cm is None or cm.get("immutable") or cm["metadata"]["resourceVersion"] == projected:
                state.changed_since.pop(name, None)
                continue
            first_seen = state.changed_since.setdefault(name, now)
            if now - first_seen >= self.scaled(self.sync_delay):
                due = True
        if not due:
            return
        previous = dict(state.files)
        files, _ = self._project(pod, state)
        state.changed_since.clear()
        # subPath mounts keep the content they started with.
        subpaths = {
            m["mountPath"]
            for c in pod["spec"]["containers"]
            for m in c.get("volumeMounts") or []
            if m.get("subPath")
        }
        files = {path: previous.get(path, text) if path in subpaths else text for path, text in files.items()}
        if files != state.files:
            state.files = files
            log.info("kubelet: re-projected ConfigMaps into %s", pod["metadata"]["name"])
            if state.runtime is not None:
                state.runtime.update_files(pod, container, files)

    def _probe(self, pod: Obj, container: Obj, state: _PodState, now: float) -> None:
        probe = container.get("readinessProbe") or {}
        http_get = probe.get("httpGet")
        if state.runtime is None or not http_get or now < state.next_probe:
            return
        state.next_probe = now + self.scaled(float(probe.get("periodSeconds", 10)))
        ok = state.runtime.probe(pod, container, http_get)
        if ok:
            state.probe_failures = 0
            ready = True
        else:
            state.probe_failures += 1
            ready = state.ready and state.probe_failures < int(probe.get("failureThreshold", 3))
        if ready != state.ready:
            state.ready = ready
            log.info("kubelet: %s is %s", pod["metadata"]["name"], "Ready" if ready else "not Ready")
            self._set(pod, phase="Running", running=True, ready=ready, restarts=state.attempts)

    # ------------------------------------------------------------------ status and endpoints

    def _set(
        self,
        pod: Obj,
        *,
        phase: str,
        waiting: tuple[str, str] | None = None,
        running: bool = False,
        ready: bool = False,
        restarts: int | None = None,
    ) -> None:
        from tests.support.k8s_standin import _now, _refresh_pod_conditions

        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        with self.standin._lock:
            live = self.standin.get_object("v1", "Pod", namespace, name)
            if live is None:
                return
            before = copy.deepcopy(live["status"])
            live["status"]["phase"] = phase
            for s in live["status"].get("containerStatuses") or []:
                if restarts is not None:
                    if restarts > s.get("restartCount", 0):
                        s["lastState"] = {
                            "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": _now()}
                        }
                    s["restartCount"] = restarts
                if waiting is not None:
                    s["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
                    s["ready"] = s["started"] = False
                elif running:
                    if "running" not in (s.get("state") or {}):
                        s["state"] = {"running": {"startedAt": _now()}}
                    s["started"] = True
                    s["ready"] = ready
            _refresh_pod_conditions(live)
            if _changed(before, live["status"]):
                self.standin.put_object(live)
                self.standin._refresh_owner_status(namespace, live)

    def _publish_endpoints(self) -> None:
        """Each Service's Ready pods to the runtimes (only Ready pods are endpoints)."""
        from tests.support.k8s_standin import _pod_ready, labels_match, parse_label_selector

        if not self.runtimes:
            return
        for service in self.standin.list_objects("v1", "Service"):
            selector = (service.get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            namespace = service["metadata"]["namespace"]
            reqs = parse_label_selector(",".join(f"{k}={v}" for k, v in selector.items()))
            ready = sorted(
                p["metadata"]["name"]
                for p in self.standin.list_objects("v1", "Pod", namespace)
                if labels_match(reqs, p["metadata"].get("labels")) and _pod_ready(p)
            )
            key = (namespace, service["metadata"]["name"])
            if self._endpoints.get(key) == ready:
                continue
            self._endpoints[key] = ready
            for runtime in self.runtimes:
                try:
                    runtime.set_endpoints(service, ready)
                except Exception:
                    log.exception("kubelet: publishing endpoints of %s/%s failed", *key)


def _changed(before: Obj, after: Obj) -> bool:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if k not in ("lastTransitionTime", "startedAt", "finishedAt")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return bool(strip(before) != strip(after))
