"""Stable and canary Deployments of half_plus_two on the stand-ins, and each pod's address.

Shared by the stand-in's per-pod tests and the tests of ``mlinfra.deploy.canary.tracks``:
the canary is shaped as issue 13's design says (``<name>-canary``, pod label
``track: canary``, its own ConfigMap), built from mlinfra's own rendered manifests.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from tests.deploy.environment import DEPLOYMENT, MODEL, NAMESPACE, DeployEnv

SERVED = "half_plus_two"
CANARY = f"{DEPLOYMENT}-canary"


def labelled_config(versions: list[int], labels: dict[str, int]) -> str:
    listed = " ".join(f"versions: {v}" for v in versions)
    label_text = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{SERVED}"\n    base_path: "/models/{SERVED}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ {listed} }} }}\n{label_text}  }}\n}}\n"
    )


def rendered(env: DeployEnv, version: int) -> list[dict[str, Any]]:
    from mlinfra.config import load_fleet
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import validate_request

    fleet = load_fleet(env.fleet_file)
    request = validate_request({"model": MODEL, "version": version, "image_tag": "2.14.1"}, fleet)
    values = manifest_values(fleet.model(MODEL), request, run_id=f"v{version}", replicas=1)
    return render_manifests(values).objects


def as_canary(
    objects: list[dict[str, Any]], *, config: str | None = None, allow_unavailable_labels: bool = True
) -> list[dict[str, Any]]:
    """The canary's manifests (design of issue 13): ``<name>-canary``, pod label ``track: canary``."""
    config_map, _service, dep = copy.deepcopy(objects)
    if config is not None:
        config_map["metadata"]["name"] += "-labelled"
        config_map["data"]["models.config"] = config
        dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = config_map["metadata"]["name"]
    dep["metadata"]["name"] = CANARY
    dep["spec"]["selector"]["matchLabels"]["track"] = "canary"
    dep["spec"]["template"]["metadata"]["labels"]["track"] = "canary"
    # mlinfra's manifests carry the flag (every config labels its version); a test of TF
    # Serving without it takes it out.
    flag = "--allow_version_labels_for_unavailable_models=true"
    args = [a for a in dep["spec"]["template"]["spec"]["containers"][0]["args"] if a != flag]
    dep["spec"]["template"]["spec"]["containers"][0]["args"] = (
        [*args, flag] if allow_unavailable_labels else args
    )
    return [config_map, dep]


def apply(objects: list[dict[str, Any]]) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.deploy.kube import ManifestClient, apply_objects, snapshot

    client = ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)
    apply_objects(client, objects, snapshot(client, objects))


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s: {what}")


def ready_pod(env: DeployEnv, deployment: str) -> dict[str, Any]:
    """The one Ready pod of ``deployment``, with its address."""

    def ready() -> dict[str, Any] | None:
        names = env.kube.pod_names(NAMESPACE, deployment=deployment)
        pods = [env.kube.pod(NAMESPACE, n) for n in names]
        ready = [
            p
            for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
        ]
        return ready[0] if len(ready) == 1 and len(pods) == 1 else None

    pod: dict[str, Any] = wait_for(ready, f"one Ready pod of {deployment}")
    return pod


def ports(pod: dict[str, Any]) -> tuple[str, int, int]:
    container = pod["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    return pod["status"]["podIP"], named["grpc"], named["http"]


def hook_for(pod: dict[str, Any]) -> Any:
    from mlinfra.hooks.tf_serving import TFServingHook

    ip, grpc_port, rest_port = ports(pod)
    return TFServingHook(
        "tf_serving_half_plus_two", grpc_target=f"{ip}:{grpc_port}", rest_url=f"http://{ip}:{rest_port}"
    )


def start_stable_and_canary(env: DeployEnv, **canary: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    apply(rendered(env, 1))
    stable = ready_pod(env, DEPLOYMENT)
    apply(as_canary(rendered(env, 2), **canary))
    return stable, ready_pod(env, CANARY)
