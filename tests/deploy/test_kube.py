"""Apply / snapshot / rollback through the real kubernetes client against the API stand-in.

Also the stand-in's write API these rely on: server-side apply, 409 on a stale
resourceVersion, immutable selectors, merge patches, and the rollout controller.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from mlinfra.deploy.kube import (
    ManifestClient,
    apply_objects,
    current_replicas,
    deployed_version,
    execute_rollback,
    rollback_plan,
    snapshot,
)
from mlinfra.deploy.manifests import manifest_values, render_manifests
from mlinfra.deploy.params import validate_request
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration


def rendered(fleet: Any, version: int = 2, tag: str = "2.14.1", replicas: int = 2) -> list[dict[str, Any]]:
    request = validate_request({"model": "half-plus-two", "version": version, "image_tag": tag}, fleet)
    return render_manifests(
        manifest_values(fleet.model("half-plus-two"), request, run_id=f"run-{version}", replicas=replicas)
    ).objects


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def rolled_out(kube: KubeStandIn) -> bool:
    dep = kube.deployment("serving", "half-plus-two")
    s = dep["status"]
    return (
        s.get("observedGeneration") == dep["metadata"]["generation"]
        and s.get("updatedReplicas")
        == s.get("availableReplicas")
        == s.get("replicas")
        == dep["spec"]["replicas"]
    )


def test_first_apply_creates_everything_with_server_side_apply(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    objects = rendered(fleet)
    live = snapshot(client, objects)
    assert live == {"ConfigMap": None, "Service": None, "Deployment": None}

    result = apply_objects(client, objects, live)

    assert result.changed == [
        f"ConfigMap/{objects[0]['metadata']['name']}",
        "Service/half-plus-two",
        "Deployment/half-plus-two",
    ]
    assert result.generation == 1
    patches = [r for r in kube.writes() if r.method == "PATCH"]
    assert len(patches) == 3
    assert all(r.query.get("fieldManager") == "mlinfra" and r.query.get("force") == "True" for r in patches)
    wait_for(lambda: rolled_out(kube))
    assert len(kube.pod_names("serving", deployment="half-plus-two")) == 2


def test_applying_the_same_objects_again_writes_nothing(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    objects = rendered(fleet)
    apply_objects(client, objects, snapshot(client, objects))
    writes = len(kube.writes())

    again = rendered(fleet)  # a new run id: only the run annotation differs
    result = apply_objects(client, again, snapshot(client, again))

    assert result.changed == []
    assert len(result.unchanged) == 3
    assert len(kube.writes()) == writes


def test_a_forced_no_op_apply_keeps_the_resource_version(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    objects = rendered(fleet)
    first = client.apply(objects[0])
    second = client.apply(objects[0])
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_rollback_restores_the_previous_spec_and_version(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    kube.add_deployment(
        "serving", "half-plus-two", replicas=1, labels={"model": "half-plus-two", "version": "1"}
    )
    objects = rendered(fleet, version=2)
    previous = snapshot(client, objects)
    assert deployed_version(previous["Deployment"]) == 1
    assert current_replicas(previous["Deployment"]) == 1
    apply_objects(client, objects, previous)
    wait_for(lambda: rolled_out(kube))
    assert deployed_version(client.read("Deployment", "serving", "half-plus-two")) == 2

    plan = rollback_plan(previous, objects)
    assert [o["kind"] for o in plan.reapply] == ["Deployment"]
    # The version's immutable ConfigMap is left to the garbage collector, not deleted here.
    assert plan.delete == [("Service", "serving", "half-plus-two")]
    done = execute_rollback(client, plan)

    assert done["deleted"] == ["Service/half-plus-two"]
    dep = client.read("Deployment", "serving", "half-plus-two")
    assert deployed_version(dep) == 1
    # Fields only the failed deploy set are gone again (server-side apply ownership).
    assert "annotations" not in dep["spec"]["template"]["metadata"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["name"] == "half-plus-two"
    wait_for(lambda: rolled_out(kube))
    assert client.read("Service", "serving", "half-plus-two") is None


# --------------------------------------------------------------------------- the stand-in's write API


def test_stale_resource_version_is_a_conflict(kube: KubeStandIn, client: ManifestClient, fleet: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    config = {**rendered(fleet)[0], "immutable": False}
    name = config["metadata"]["name"]
    config = client.apply(config)
    stale = dict(config)
    client.core.patch_namespaced_config_map(name, "serving", {"data": {"extra": "1"}})
    with pytest.raises(ApiException) as e:
        client.core.replace_namespaced_config_map(name, "serving", stale)
    assert e.value.status == 409
    assert "the object has been modified" in e.value.body


def test_a_service_name_must_start_with_a_letter(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    from kubernetes.client.exceptions import ApiException

    service = copy.deepcopy(rendered(fleet)[1])
    assert service["kind"] == "Service"
    service["metadata"]["name"] = "2stage-ranker"
    with pytest.raises(ApiException) as e:
        client.apply(service)
    assert e.value.status == 422
    assert "a DNS-1035 label must consist of lower case alphanumeric characters" in e.value.body
    config = copy.deepcopy(rendered(fleet)[0])
    config["metadata"]["name"] = "2stage-ranker-config"  # any other kind: a DNS-1123 subdomain will do
    assert client.apply(config)["metadata"]["name"] == "2stage-ranker-config"


def test_create_twice_is_already_exists(kube: KubeStandIn, client: ManifestClient, fleet: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    config = rendered(fleet)[0]
    client.core.create_namespaced_config_map("serving", config)
    with pytest.raises(ApiException) as e:
        client.core.create_namespaced_config_map("serving", config)
    assert e.value.status == 409
    assert "AlreadyExists" in e.value.body


def test_a_deployment_selector_is_immutable(kube: KubeStandIn, client: ManifestClient, fleet: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    kube.add_deployment("serving", "half-plus-two", selector={"app": "other"}, labels={"x": "y"})
    with pytest.raises(ApiException) as e:
        client.apply(rendered(fleet)[2])
    assert e.value.status == 422
    assert "field is immutable" in e.value.body


def test_strategic_merge_patch_merges_containers_by_name(kube: KubeStandIn, client: ManifestClient) -> None:
    kube.add_deployment("serving", "d", containers=["a", "b"])
    client.apps.patch_namespaced_deployment(
        "d", "serving", {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "new:1"}]}}}}
    )
    containers = kube.deployment("serving", "d")["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("a", "tensorflow/serving:2.14.1"),
        ("b", "new:1"),
    ]


def test_apply_without_a_field_manager_is_refused(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    from kubernetes.client.exceptions import ApiException

    obj = rendered(fleet)[0]
    with pytest.raises(ApiException) as e:
        client.core.patch_namespaced_config_map(
            obj["metadata"]["name"], "serving", obj, _content_type="application/apply-patch+yaml"
        )
    assert e.value.status == 400


def test_controller_leaves_pods_of_a_bad_image_waiting(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    kube.fail_images(r":broken$", "ImagePullBackOff")
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    objects = rendered(fleet, tag="broken", replicas=1)
    apply_objects(client, objects, snapshot(client, objects))

    def waiting() -> list[str]:
        pods = [kube.pod("serving", p) for p in kube.pod_names("serving", deployment="half-plus-two")]
        return [
            cs["state"].get("waiting", {}).get("reason", "")
            for p in pods
            for cs in p["status"]["containerStatuses"]
        ]

    wait_for(lambda: "ImagePullBackOff" in waiting())
    time.sleep(0.3)
    assert len(kube.pod_names("serving", deployment="half-plus-two")) == 2  # the old pod keeps serving
    assert not rolled_out(kube)


def test_a_stuck_rollout_exceeds_its_progress_deadline(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    kube.set_rollout("serving", "half-plus-two", mode="stuck", progress_deadline=0.3)
    objects = rendered(fleet, replicas=1)
    apply_objects(client, objects, snapshot(client, objects))

    def reason() -> str | None:
        conditions = kube.deployment("serving", "half-plus-two")["status"].get("conditions", [])
        return next((c["reason"] for c in conditions if c["type"] == "Progressing"), None)

    wait_for(lambda: reason() == "ProgressDeadlineExceeded")


def test_rollout_hooks_fire_when_the_new_template_is_ready(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    seen: list[str] = []
    kube.on_rollout(lambda dep: seen.append(dep["spec"]["template"]["metadata"]["labels"]["version"]))
    objects = rendered(fleet, version=5, replicas=1)
    apply_objects(client, objects, snapshot(client, objects))
    wait_for(lambda: seen == ["5"])


def test_unused_version_config_maps_are_collected_and_used_ones_kept(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    from mlinfra.deploy.kube import collect_config_maps

    names = []
    for version in (1, 2, 3):
        objects = rendered(fleet, version=version, replicas=1)
        apply_objects(client, objects, snapshot(client, objects))
        wait_for(lambda: rolled_out(kube))
        names.append(objects[0]["metadata"]["name"])
    # A ConfigMap of ours that nothing mounts any more (its ReplicaSet left the history),
    # one that is too young to judge, and one that is not ours at all.
    kube.put_object({**rendered(fleet, version=9)[0]})
    young = {**rendered(fleet, version=10)[0]}
    kube.put_object(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "serving"}}
    )

    done = collect_config_maps(client, "serving", "half-plus-two", min_age=0)

    # Versions 1 and 2 stay: their ReplicaSets are in the revision history (rollout undo).
    assert sorted(done["kept"]) == sorted(names)
    assert done["deleted"] == [rendered(fleet, version=9)[0]["metadata"]["name"]]
    kube.put_object(young)
    assert young["metadata"]["name"] in collect_config_maps(client, "serving", "half-plus-two")["kept"]
    assert kube.get_object("v1", "ConfigMap", "serving", "x") is not None


def test_old_replicasets_beyond_the_history_limit_are_pruned_with_their_config(
    kube: KubeStandIn, client: ManifestClient, fleet: Any
) -> None:
    from mlinfra.deploy.kube import collect_config_maps

    names = []
    for version in range(1, 9):  # revisionHistoryLimit is 5 in the template
        objects = rendered(fleet, version=version, replicas=1)
        apply_objects(client, objects, snapshot(client, objects))
        wait_for(lambda: rolled_out(kube))
        names.append(objects[0]["metadata"]["name"])
    replicasets = kube.list_objects("apps/v1", "ReplicaSet", "serving")
    assert len(replicasets) == 6  # the current one and five old ones

    done = collect_config_maps(client, "serving", "half-plus-two", min_age=0)

    assert sorted(done["deleted"]) == sorted(names[:2])
    assert sorted(done["kept"]) == sorted(names[2:])
