"""Which container and pod a GPU process belongs to: ``/proc/<pid>/cgroup`` and the pod list.

NVML names processes by host pid. The kubelet puts every container in a cgroup
whose path carries the pod UID and the container id, in one of these layouts
(containerd and CRI-O, the systemd and cgroupfs cgroup drivers, cgroup v1 and v2)::

    0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e..._9a.slice/cri-containerd-<64 hex>.scope
    11:memory:/kubepods/besteffort/pod1f2e...-9a/<64 hex>
    0::/kubepods.slice/kubepods-pod1f2e..._9a.slice/crio-<64 hex>.scope
    4:cpu,cpuacct:/kubepods/burstable/pod1f2e...-9a/crio-<64 hex>

>>> pod_of_cgroup("0::/kubepods.slice/kubepods-besteffort.slice/"
...     "kubepods-besteffort-pod0f9e8d7c_6b5a_4f3e_9d2c_1b0a9f8e7d6c.slice/cri-containerd-" + "ab" * 32 + ".scope")
ContainerRef(pod_uid='0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c', container_id='abababababababababababababababababababababababababababababababab')

The pod's name, namespace and container name come from the Kubernetes collector's
``kube_pod_info`` / ``kube_pod_container_info`` samples of the same sweep (no second
pod list), and the model from the fleet file (the model whose Deployment owns the pod).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlinfra.samples import Sample

if TYPE_CHECKING:
    from mlinfra.config import Fleet

__all__ = ["ContainerRef", "attribute_processes", "host_proc_problem", "pod_of_cgroup", "read_container"]

# The kubelet writes the UID with '-' (cgroupfs driver) or '_' (systemd driver: '-' is
# the slice hierarchy separator there).
_POD = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$"
)
# The container's own cgroup: a bare id (cgroupfs) or <runtime>-<id>.scope (systemd).
_CONTAINER = re.compile(r"^(?:cri-containerd-|crio-|docker-)?([0-9a-f]{64})(?:\.scope)?$")
_CONTAINER_RUNTIMES = ("kubepods", "docker", "containerd", "crio", "libpod")

NO_HOST_PROC = (
    "per-pod GPU attribution is off: this process does not see the host's /proc "
    "(run the collector's pod with hostPID: true, or mount the host's /proc and set MLINFRA_HOST_PROC)"
)


@dataclass(frozen=True)
class ContainerRef:
    pod_uid: str
    container_id: str | None


def pod_of_cgroup(text: str) -> ContainerRef | None:
    """The pod (and container) named by the contents of a ``/proc/<pid>/cgroup`` file, or None."""
    for line in text.splitlines():
        # hierarchy-ID:controller-list:cgroup-path (v2 has the single line "0::<path>").
        path = line.split(":", 2)[-1]
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts):
            m = _POD.search(part)
            if m is None:
                continue
            uid = m.group(1).replace("_", "-")
            container = None
            if i + 1 < len(parts):
                c = _CONTAINER.match(parts[i + 1])
                container = c.group(1) if c else None
            return ContainerRef(uid, container)
    return None


def read_container(proc_root: Path, pid: int) -> ContainerRef | None:
    """The container of host pid ``pid``; None outside Kubernetes or when the process is gone."""
    try:
        return pod_of_cgroup((proc_root / str(pid) / "cgroup").read_text(errors="replace"))
    except OSError:
        return None


def host_proc_problem(proc_root: Path) -> str | None:
    """Why ``proc_root`` is not the host's process table (None when it is).

    NVML answers with host pids. In a container without ``hostPID`` the same numbers
    name other processes (or none), so attributing by them would be wrong, not just
    missing. Pid 1 tells: on the host it is the init system, in a container's own
    pid namespace it is the container's entry point, in a kubepods/docker cgroup.
    """
    try:
        init_cgroup = (proc_root / "1" / "cgroup").read_text(errors="replace")
    except OSError as e:
        return f"{NO_HOST_PROC}; cannot read {proc_root}/1/cgroup: {e.strerror}"
    for line in init_cgroup.splitlines():
        path = line.split(":", 2)[-1]
        if any(runtime in path for runtime in _CONTAINER_RUNTIMES):
            return NO_HOST_PROC
    return None


def attribute_processes(samples: Sequence[Sample], fleet: Fleet | None) -> list[Sample]:
    """``samples`` with ``pod``, ``namespace``, ``container`` and ``model`` added to GPU process series.

    A process sample carries ``pod_uid`` (and ``container_id``) from its cgroup; the
    Kubernetes collector's ``kube_pod_info{uid}`` and ``kube_pod_container_info{container_id}``
    of the same sweep give the names. ``container_id`` is dropped once the container's
    name is known (it changes on every restart); a pod the sweep did not list keeps
    ``pod_uid`` alone. ``model`` is the fleet model whose namespace and Deployment own the pod.
    """
    pods: dict[str, dict[str, str]] = {}
    containers: dict[str, str] = {}
    for s in samples:
        if s.name == "kube_pod_info" and s.labels.get("uid"):
            pods[s.labels["uid"]] = dict(s.labels)
        elif s.name == "kube_pod_container_info" and s.labels.get("container_id"):
            # The API writes "containerd://<id>" / "cri-o://<id>".
            containers[s.labels["container_id"].rsplit("/", 1)[-1]] = s.labels.get("container", "")
    models = _models_by_deployment(fleet)
    out: list[Sample] = []
    for s in samples:
        uid = s.labels.get("pod_uid")
        if not s.name.startswith("ml_gpu_process_") or not uid:
            out.append(s)
            continue
        labels = dict(s.labels)
        pod = pods.get(uid)
        if pod is not None:
            labels["pod"], labels["namespace"] = pod["pod"], pod["namespace"]
            model = models.get((pod["namespace"], pod.get("deployment", "")))
            if model:
                labels["model"] = model
        cid = labels.get("container_id")
        if cid and containers.get(cid):
            labels["container"] = containers[cid]
            del labels["container_id"]
        out.append(Sample(s.name, labels, s.value, s.timestamp))
    return out


def _models_by_deployment(fleet: Fleet | None) -> dict[tuple[str, str], str]:
    if fleet is None:
        return {}
    return {(m.kubernetes.namespace, m.kubernetes.deployment): m.name for m in fleet.models}


def pods_of_gpu(samples: Iterable[Sample]) -> dict[tuple[str, str, str, str], set[tuple[str, str, str]]]:
    """(host, gpu_id, gpu_instance, compute_instance) -> {(pod, namespace, container)} from process samples."""
    out: dict[tuple[str, str, str, str], set[tuple[str, str, str]]] = {}
    for s in samples:
        if s.name != "ml_gpu_process_memory_used_bytes" or "pod" not in s.labels:
            continue
        key = (
            s.labels.get("host", ""),
            s.labels.get("gpu_id", ""),
            s.labels.get("gpu_instance", ""),
            s.labels.get("compute_instance", ""),
        )
        out.setdefault(key, set()).add(
            (s.labels["pod"], s.labels["namespace"], s.labels.get("container", ""))
        )
    return out
