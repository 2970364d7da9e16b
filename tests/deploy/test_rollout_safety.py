"""A bad version must never take the serving version down: the per-version ConfigMap design.

The regression test of the defect the old design had: every deploy rewrote one mutable
ConfigMap (``<deployment>-config``) that the running pods mount. On a real cluster the
kubelet re-projects it into the *old* pods within about a minute; TF Serving re-reads its
model config on its poll interval and unloads the version those pods serve, and their
readiness path fails, before the rollout, the model wait or the smoke test could judge the
new version. The Kubernetes stand-in (tests/support/kubelet.py) propagates ConfigMaps and
the TF Serving stand-in polls its config as the real ones do, so the old design fails here
and the new one (an immutable ConfigMap per version, mounted only by its own pods) passes.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from tests.deploy.environment import DEPLOYMENT, MODEL, DeployEnv, traffic

pytestmark = pytest.mark.integration


def rendered(env: DeployEnv, version: int, image_tag: str) -> list[dict[str, Any]]:
    from mlinfra.config import load_fleet
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import validate_request

    fleet = load_fleet(env.fleet_file)
    request = validate_request({"model": MODEL, "version": version, "image_tag": image_tag}, fleet)
    values = manifest_values(fleet.model(MODEL), request, run_id=f"v{version}", replicas=2)
    return render_manifests(values).objects


def single_mutable_config_map(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifests as the old design rendered them: one ConfigMap per model, rewritten."""
    config, service, dep = copy.deepcopy(objects)
    config["metadata"]["name"] = f"{DEPLOYMENT}-config"
    config.pop("immutable")
    # The old design's config had no version labels (with a `stable` label, TF Serving
    # refuses to move it to a version not yet loaded, and the reload would fail instead).
    config["data"]["models.config"] = (
        "\n".join(
            line for line in config["data"]["models.config"].splitlines() if "version_labels" not in line
        )
        + "\n"
    )
    dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = f"{DEPLOYMENT}-config"
    return [config, service, dep]


def per_version(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return objects


def apply(objects: list[dict[str, Any]]) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.deploy.kube import ManifestClient, apply_objects, snapshot

    client = ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)
    apply_objects(client, objects, snapshot(client, objects))


def failures_during_a_bad_rollout(env: DeployEnv, design: Any) -> list[str]:
    apply(design(rendered(env, 1, "2.14.1")))
    env.wait_serving(1, 2)
    with traffic(env.serving) as client:
        # Version 2 on an image the registry does not hold: its pods never start.
        apply(design(rendered(env, 2, "does-not-exist")))
        # Four kubelet sync delays plus TF Serving poll intervals of cluster time.
        time.sleep(4 * 60 * env.kube.kubelet.time_scale + 1.0)
    assert len(client.results) > 50
    return client.failures


def test_the_old_single_config_map_design_loses_the_serving_version(env: DeployEnv) -> None:
    failures = failures_during_a_bad_rollout(env, single_mutable_config_map)
    # The old pods were re-configured under their feet: requests to the Service failed.
    assert failures, "the stand-in no longer shows the defect the old design had"
    assert any("503" in f or "404" in f for f in failures), failures[:3]


def test_per_version_config_maps_keep_every_request_answered(env: DeployEnv) -> None:
    failures = failures_during_a_bad_rollout(env, per_version)
    assert failures == []
    pods = env.serving.pods()
    assert len(pods["endpoints"]) == 2
    assert all(states == {"1": "AVAILABLE"} for states in pods["pods"].values() if states)


def test_an_immutable_config_map_refuses_changes_with_422(env: DeployEnv) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException

    from mlinfra.deploy.kube import ManifestClient

    client = ManifestClient(KubernetesHook(conn_id="kubernetes_default").api_client)
    config = rendered(env, 1, "2.14.1")[0]
    client.apply(config)
    client.apply(config)  # the same content again is a no-op, not an error
    changed = copy.deepcopy(config)
    changed["data"]["models.config"] = changed["data"]["models.config"].replace("versions: 1", "versions: 2")
    with pytest.raises(ApiException) as e:
        client.apply(changed)
    assert e.value.status == 422
    assert "field is immutable when `immutable` is set" in e.value.body


def test_a_model_base_path_that_does_not_exist_crash_loops_with_back_off(env: DeployEnv) -> None:
    from dataclasses import replace

    from mlinfra.config import load_fleet
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import validate_request

    fleet = load_fleet(env.fleet_file)
    request = validate_request({"model": MODEL, "version": 1, "image_tag": "2.14.1"}, fleet)
    values = manifest_values(fleet.model(MODEL), request, run_id="r", replicas=1)
    apply(render_manifests(replace(values, model_base_path="/models/not_there")).objects)

    deadline = time.monotonic() + 20
    restarts: list[int] = []
    while time.monotonic() < deadline and (not restarts or restarts[-1] < 3):
        for name in env.kube.pod_names("serving", deployment=DEPLOYMENT):
            status = env.kube.pod("serving", name)["status"]["containerStatuses"][0]
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                assert "Could not find base path /models/not_there" in waiting["message"]
                restarts.append(status["restartCount"])
        time.sleep(0.05)
    assert restarts, "the pod never crash-looped"
    assert restarts[-1] >= 3
    assert env.serving.pods()["endpoints"] == []  # never Ready, never an endpoint
