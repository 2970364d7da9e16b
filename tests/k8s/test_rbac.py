"""include/k8s/rbac.yaml: namespaced, least privilege, and covering every request the code makes.

The code paths that talk to Kubernetes (the collector, the deploy's apply / rollback /
rollout wait, the scaling plan and the scale operator with its trigger) run here against
the stand-in, which records each request as RBAC sees it (verb, group, resource,
namespace); every one must be allowed by the Role, and the Role must grant nothing
they do not use. tests/dags/test_sweep_scaling.py checks its end-to-end run the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from mlinfra.store import MetricsStore
from tests.k8s.rbac import allowed, load_rbac, role_rules, uncovered
from tests.support.k8s_standin import KubeStandIn


def test_rbac_file_parses_and_is_namespaced() -> None:
    docs = load_rbac()
    assert [d["kind"] for d in docs] == ["Role", "RoleBinding"]
    role, binding = docs
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "serving"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mlinfra"}
    assert all(s["kind"] == "ServiceAccount" for s in binding["subjects"])
    for rule in role["rules"]:
        assert "*" not in rule["verbs"]
        assert "*" not in rule["resources"]
        assert "*" not in rule["apiGroups"]
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
    rules = role_rules(docs)
    assert allowed(rules, "patch", "apps", "deployments/scale", "half-plus-two")
    assert not allowed(rules, "patch", "apps", "deployments/scale", "not-in-the-fleet")
    assert not allowed(rules, "update", "apps", "deployments/scale", "half-plus-two")
    assert not allowed(rules, "get", "", "secrets")


def test_uncovered_reports_what_is_missing() -> None:
    assert uncovered({("patch", "apps", "deployments/scale", "serving", "half-plus-two")}) == []
    assert uncovered({("list", "", "secrets", "serving"), ("list", "", "namespaces", "")}) == [
        "list namespaces (group '') in the cluster scope",
        "list secrets (group '') in serving",
    ]


@pytest.mark.integration
def test_every_request_of_the_code_is_allowed_and_every_rule_is_used(
    kube: KubeStandIn, store_env: MetricsStore
) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from mlinfra.collectors.kubernetes import collect_kubernetes_samples
    from mlinfra.config import load_fleet
    from mlinfra.deploy.kube import (
        ManifestClient,
        apply_objects,
        collect_config_maps,
        execute_rollback,
        rollback_plan,
        snapshot,
    )
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import validate_request
    from mlinfra.operators.scale import ScaleDeploymentOperator
    from mlinfra.scaling.plan import plan_scaling
    from mlinfra.sensors.rollout import DeploymentRolloutSensor

    kube.install_keda()  # so the ScaledObject list is a real answer, not a 404
    hook = KubernetesHook(conn_id="kubernetes_default")
    fleet = load_fleet()
    # deploy: snapshot, apply (creates the objects), rollout wait, rollback (deletes them)
    request = validate_request({"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}, fleet)
    objects = render_manifests(
        manifest_values(fleet.model("half-plus-two"), request, run_id="r", replicas=1)
    ).objects
    client = ManifestClient(hook.api_client)
    live = snapshot(client, objects)
    apply_objects(client, objects, live)
    DeploymentRolloutSensor(task_id="w", namespace="serving", deployment="half-plus-two").check()
    collect_config_maps(client, "serving", "half-plus-two", min_age=0)
    execute_rollback(client, rollback_plan(live, objects))
    collect_config_maps(client, "serving", "half-plus-two", min_age=0)
    # sweep: collector and plan; scale: the operator and its trigger
    kube.add_deployment("serving", "half-plus-two", replicas=1)
    collect_kubernetes_samples(["serving"], core_v1=hook.core_v1_client, apps_v1=hook.apps_v1_client)
    plan_scaling(fleet=fleet, store=store_env, at=1e9)
    kube.set_rollout("serving", "half-plus-two", step_seconds=0.3)
    op = ScaleDeploymentOperator(
        task_id="s", model="half-plus-two", namespace="serving", deployment="half-plus-two",
        replicas=2, reason="rbac", poll_interval=0.05, timeout=10,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"run_id": "r"})

    async def wait() -> Any:
        return await anext(deferred.value.trigger.run())

    assert asyncio.run(wait()).payload["status"] == "success"
    used = kube.rbac_requests()

    assert uncovered(used) == []
    granted = {
        (verb, group, resource)
        for rule in role_rules(load_rbac())
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # Granted but not seen, each on purpose: "create" because a server-side apply that
    # creates an absent object is also authorized as create (the stand-in records the PATCH).
    unused = sorted(granted - {(v, g, r) for v, g, r, _, _ in used})
    assert unused == [
        ("create", "", "configmaps"),
        ("create", "", "services"),
        ("create", "apps", "deployments"),
    ]


def test_the_committed_rbac_file_is_what_the_fleet_generates() -> None:
    from mlinfra.config import load_fleet
    from mlinfra.deploy.rbac import render_rbac

    committed = (Path(__file__).resolve().parents[2] / "include" / "k8s" / "rbac.yaml").read_text()
    assert committed == render_rbac(load_fleet()), "regenerate: mlinfra fleet rbac > include/k8s/rbac.yaml"


def test_names_are_enforced_where_kubernetes_can() -> None:
    assert uncovered({("patch", "apps", "deployments", "serving", "half-plus-two")}) == []
    assert uncovered({("patch", "apps", "deployments", "serving", "someone-elses")}) == [
        "patch deployments/someone-elses (group 'apps') in serving"
    ]
    assert uncovered({("delete", "", "services", "serving", "kube-dns")}) != []
    assert uncovered({("get", "apps", "deployments/scale", "serving", "payments")}) != []
    assert uncovered({("list", "apps", "deployments", "serving", "")}) == []
    assert uncovered({("list", "apps", "deployments", "other-namespace", "")}) != []


def test_pvc_models_get_their_claims_and_nothing_else(tmp_path: Path) -> None:
    import yaml

    from mlinfra.config import PROJECT_ROOT, parse_fleet
    from mlinfra.deploy.rbac import rbac_documents

    raw = yaml.safe_load((PROJECT_ROOT / "include" / "fleet.yaml").read_text())
    raw["models"][1]["serving"]["model_base_path"] = "pvc://model-store/resnet50"
    docs = rbac_documents(parse_fleet(yaml.safe_dump(raw)))
    assert uncovered({("get", "", "persistentvolumeclaims", "serving", "model-store")}, docs) == []
    assert uncovered({("get", "", "persistentvolumeclaims", "serving", "other")}, docs) != []
    assert (
        uncovered({("get", "", "persistentvolumeclaims", "serving", "model-store")}) != []
    )  # the shipped fleet
