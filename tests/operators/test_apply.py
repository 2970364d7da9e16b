"""ApplyManifestsOperator: applies through the provider hook, keeps the previous spec, retry-safe."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlinfra.deploy.manifests import manifest_values, render_manifests
from mlinfra.deploy.params import validate_request
from mlinfra.deploy.records import DeploymentRecords
from mlinfra.operators.apply import ApplyManifestsOperator
from mlinfra.store import MetricsStore
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration


@pytest.fixture
def env(kube: KubeStandIn, store_env: MetricsStore) -> tuple[KubeStandIn, DeploymentRecords]:
    return kube, DeploymentRecords(store_env)


def objects(version: int) -> list[dict[str, Any]]:
    from mlinfra.config import load_fleet

    fleet = load_fleet()
    request = validate_request({"model": "half-plus-two", "version": version, "image_tag": "2.14.1"}, fleet)
    return render_manifests(
        manifest_values(fleet.model("half-plus-two"), request, run_id="r", replicas=1)
    ).objects


def test_applies_and_records_the_previous_spec(env: tuple[KubeStandIn, DeploymentRecords]) -> None:
    kube, records = env
    kube.add_deployment("serving", "half-plus-two", labels={"version": "1"})
    records.start("r", model="half-plus-two")
    op = ApplyManifestsOperator(task_id="apply", manifests=objects(2), deploy_run_id="r")

    result = op.execute({})

    assert result["previous_version"] == 1
    assert result["generation"] == 2
    assert len(result["changed"]) == 3
    record = records.get("r")
    assert record is not None
    assert record.previous["Deployment"]["spec"]["template"]["metadata"]["labels"]["version"] == "1"
    assert record.previous["Service"] is None
    assert [o["kind"] for o in record.applied["objects"]] == ["ConfigMap", "Service", "Deployment"]


def test_a_retry_keeps_what_the_first_attempt_saw(env: tuple[KubeStandIn, DeploymentRecords]) -> None:
    kube, records = env
    kube.add_deployment("serving", "half-plus-two", labels={"version": "1"})
    records.start("r", model="half-plus-two")
    # The first attempt dies after its first write (the API server fails the Service).
    kube.inject_fault("PATCH", r"/services/half-plus-two$", 500, times=1)
    op = ApplyManifestsOperator(task_id="apply", manifests=objects(2), deploy_run_id="r")
    with pytest.raises(Exception, match="500"):
        op.execute({})
    result = op.execute({})  # the retry

    assert result["previous_version"] == 1
    assert result["changed"] == ["Service/half-plus-two", "Deployment/half-plus-two"]
    record = records.get("r")
    assert record is not None
    assert record.previous["ConfigMap"] is None  # not the half-applied state of the first attempt


def test_refuses_what_is_not_a_list_of_objects(env: tuple[KubeStandIn, DeploymentRecords]) -> None:
    with pytest.raises(AirflowFailException, match="non-empty list of Kubernetes objects"):
        ApplyManifestsOperator(task_id="apply", manifests=[]).execute({})
    assert env[0].writes() == []
