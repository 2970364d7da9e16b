"""A container runtime for the Kubernetes stand-in's kubelet: TF Serving pods of one Service.

Links :class:`~tests.support.k8s_standin.KubeStandIn` and a TF Serving stand-in process the
way a cluster links a Deployment of ``tensorflow/serving`` and its Service:

* each pod of the Deployment the kubelet starts becomes a server of its own inside the
  stand-in process, reading the model config file the pod mounts (projected from its
  ConfigMap) and re-reading it every ``--model_config_file_poll_wait_seconds`` (scaled by
  the stand-in's ``time_scale``), unloading what the file no longer lists;
* a pod whose model base path does not exist exits at start-up (``CrashLoopBackOff``);
* the readiness probe is answered by that pod's own server;
* each pod also answers on its own address, as a pod on a cluster network does: a gRPC
  server on ``<podIP>:<--port>`` and, with ``--rest_api_port``, a REST server on
  ``<podIP>:<--rest_api_port>``, serving that pod's model config only (its versions,
  version labels and metrics page); the Kubernetes stand-in gives pods loopback IPs
  (``127.<instance>.<hi>.<lo>``) so these can be bound; they close when the pod stops;
* the Service's address (the stand-in's two ports) spreads requests over the Ready pods
  only, and fails when there is none.

::

    kube.attach_runtime(TFServingRuntime(serving, namespace="serving", service="half-plus-two"))
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from tests.support.tf_serving_standin import StandinProcess

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _arg(container: Obj, flag: str) -> str | None:
    for arg in container.get("args") or []:
        if arg.startswith(f"{flag}="):
            return str(arg.split("=", 1)[1])
    return None


def _flag(container: Obj, flag: str) -> bool:
    """A boolean flag as tensorflow_model_server reads it: ``--f``, ``--f=true`` or ``--f=1``."""
    if flag in (container.get("args") or []):
        return True
    return (_arg(container, flag) or "").lower() in ("true", "1")


def pod_address(pod: Obj, container: Obj) -> dict[str, Any] | None:
    """Where the pod's own servers listen: its pod IP, ``--port`` and ``--rest_api_port``.

    tensorflow_model_server's defaults: gRPC on 8500; REST only with a non-zero
    ``--rest_api_port`` (its default 0 turns the REST API off).
    """
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    rest = int(_arg(container, "--rest_api_port") or 0)
    return {"ip": ip, "grpc_port": int(_arg(container, "--port") or 8500), "rest_port": rest or None}


class TFServingRuntime:
    """Runs ``tensorflow/serving`` containers of ``namespace/service``'s pods in ``serving``."""

    def __init__(self, serving: StandinProcess, *, namespace: str, service: str, timeout: float = 10.0):
        self.serving = serving
        self.namespace = namespace
        self.service = service
        self.http = httpx.Client(base_url=serving.rest_url, timeout=timeout)

    def reset(self) -> None:
        """Forget every pod and endpoint (between tests sharing one stand-in process)."""
        self.http.post("/_standin/endpoints", json={"pods": None}).raise_for_status()
        for pod in self.http.get("/_standin/pods").json()["pods"]:
            self.http.delete(f"/_standin/pods/{pod}")

    # ------------------------------------------------------------------ ContainerRuntime

    def handles(self, pod: Obj, container: Obj) -> bool:
        return (
            pod["metadata"]["namespace"] == self.namespace
            and pod["metadata"].get("labels", {}).get("app") == self.service
            and _arg(container, "--model_config_file") is not None
        )

    def start(self, pod: Obj, container: Obj, files: dict[str, str], time_scale: float) -> str | None:
        path = _arg(container, "--model_config_file") or ""
        if path not in files:
            return f"Could not read model config file {path}: No such file or directory"
        # Without the flag TF Serving reads the file once; with it, every N seconds.
        poll = float(_arg(container, "--model_config_file_poll_wait_seconds") or 0)
        response = self.http.post(
            f"/_standin/pods/{pod['metadata']['name']}",
            json={
                "config": files[path],
                "poll_seconds": poll * time_scale if poll > 0 else 1e9,
                "address": pod_address(pod, container),
                "allow_unavailable_labels": _flag(container, "--allow_version_labels_for_unavailable_models"),
            },
        )
        if response.status_code == 422:
            return str(response.json()["error"])
        response.raise_for_status()
        return None

    def update_files(self, pod: Obj, container: Obj, files: dict[str, str]) -> None:
        path = _arg(container, "--model_config_file") or ""
        if path in files:
            self.http.post(
                f"/_standin/pods/{pod['metadata']['name']}/config", json={"config": files[path]}
            ).raise_for_status()

    def stop(self, pod: Obj) -> None:
        self.http.delete(f"/_standin/pods/{pod['metadata']['name']}")

    def probe(self, pod: Obj, container: Obj, http_get: Obj) -> bool:
        try:
            response = self.http.get(
                f"/_standin/pods/{pod['metadata']['name']}/probe", params={"path": http_get.get("path", "/")}
            )
            status = int(response.json()["status"])
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        # Kubernetes: any code from 200 to 399 is a success.
        return 200 <= status < 400

    def set_endpoints(self, service: Obj, pods: list[str]) -> None:
        if (service["metadata"]["namespace"], service["metadata"]["name"]) != (self.namespace, self.service):
            return
        self.http.post("/_standin/endpoints", json={"pods": pods}).raise_for_status()
