"""ScaleClient against the Kubernetes stand-in: counts, owners (HPA, KEDA or none), patches, 409, 403."""

from __future__ import annotations

import pytest

from mlinfra.exceptions import ScaleFailed, ScaleForbidden
from mlinfra.scaling.kube import ScaleClient
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration


def client(**kw: object) -> ScaleClient:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return ScaleClient(KubernetesHook(conn_id="kubernetes_default").api_client, sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def test_replicas_of_a_namespace_in_one_call(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "a", replicas=2)
    kube.add_deployment("serving", "b", replicas=5)
    kube.add_deployment("batch", "c", replicas=1)
    kube.requests.clear()
    assert client().replicas("serving") == {"a": 2, "b": 5}
    assert [r.path for r in kube.requests] == ["/apis/apps/v1/namespaces/serving/deployments"]


def test_owners_hpa_and_no_keda_installed(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "a")
    kube.add_hpa("serving", "a-hpa", target="a")
    kube.add_hpa("serving", "rs-hpa", target="a", target_kind="ReplicaSet")  # not a Deployment
    # KEDA is not installed: its group answers 404, which means "no ScaledObjects"
    assert client().owners("serving") == {"a": "HorizontalPodAutoscaler/a-hpa"}
    assert any(r.path.startswith("/apis/keda.sh/") for r in kube.requests)


def test_owners_keda_scaled_object(kube: KubeStandIn) -> None:
    kube.install_keda()
    kube.add_scaled_object("serving", "b-so", target="b")  # kind omitted: KEDA's default Deployment
    kube.add_scaled_object("serving", "ss-so", target="c", kind="StatefulSet")
    assert client().owners("serving") == {"b": "ScaledObject/b-so"}


def test_patch_replicas_and_the_controller_converges(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "a", replicas=1)
    before, scale = client().patch_replicas("serving", "a", 3)
    assert (before, scale["spec"]["replicas"]) == (1, 3)
    assert kube.deployment("serving", "a")["spec"]["replicas"] == 3
    patch = [r for r in kube.writes() if r.path.endswith("/scale")]
    assert len(patch) == 1
    assert patch[0].method == "PATCH"


def test_conflicts_are_retried(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "a", replicas=1)
    kube.inject_fault("PATCH", r"/deployments/a/scale$", 409, times=2)
    before, _ = client().patch_replicas("serving", "a", 2)
    assert before == 1
    assert len([r for r in kube.writes() if r.path.endswith("/scale")]) == 3
    assert kube.deployment("serving", "a")["spec"]["replicas"] == 2


def test_conflicts_give_up_after_the_retries(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "a", replicas=1)
    kube.inject_fault("PATCH", r"/scale$", 409, times=None)
    with pytest.raises(ScaleFailed, match="still conflicting after 3 attempts"):
        client(conflict_retries=2).patch_replicas("serving", "a", 2)


def test_forbidden_names_namespace_verb_and_resource(kube: KubeStandIn) -> None:
    kube.add_deployment("serving", "a", replicas=1)
    kube.inject_fault("PATCH", r"/scale$", 403)
    with pytest.raises(ScaleForbidden) as e:
        client().patch_replicas("serving", "a", 2)
    assert (e.value.verb, e.value.resource, e.value.api_group, e.value.namespace) == (
        "patch", "deployments/scale", "apps", "serving",
    )  # fmt: skip
    assert "may not patch deployments/scale (API group 'apps') in namespace 'serving'" in str(e.value)
    assert "include/k8s/rbac.yaml" in str(e.value)
    assert 'cannot patch resource "deployments/scale"' in str(e.value)  # what the API server said


def test_forbidden_hpa_list(kube: KubeStandIn) -> None:
    kube.inject_fault("GET", r"/horizontalpodautoscalers$", 403)
    with pytest.raises(ScaleForbidden, match="may not list horizontalpodautoscalers"):
        client().owners("serving")
