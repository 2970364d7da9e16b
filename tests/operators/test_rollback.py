"""ModelRollbackOperator's decisions that the end-to-end tests do not reach."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from mlinfra.deploy.records import DeploymentRecords
from mlinfra.operators.rollback import ModelRollbackOperator
from mlinfra.store import MetricsStore
from mlinfra.triggers.rollout import DeploymentRolloutTrigger
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration


@pytest.fixture
def env(kube: KubeStandIn, store_env: MetricsStore) -> tuple[KubeStandIn, DeploymentRecords]:
    return kube, DeploymentRecords(store_env)


def op(auto_rollback: object = True) -> ModelRollbackOperator:
    return ModelRollbackOperator(
        task_id="rollback", model="half-plus-two", deploy_run_id="r", auto_rollback=auto_rollback
    )


def test_nothing_applied_means_nothing_to_do_and_no_request(
    env: tuple[KubeStandIn, DeploymentRecords],
) -> None:
    kube, records = env
    records.start("r", model="half-plus-two")
    with pytest.raises(AirflowSkipException, match="nothing was applied"):
        op().execute({})
    assert list(kube.requests) == []


def test_auto_rollback_off_leaves_the_cluster_alone(env: tuple[KubeStandIn, DeploymentRecords]) -> None:
    kube, records = env
    records.start("r", model="half-plus-two")
    records.update("r", previous={"Deployment": None, "Service": None, "ConfigMap": None})
    with pytest.raises(AirflowSkipException, match="auto_rollback is off"):
        op(auto_rollback="False").execute({})
    assert kube.writes() == []
    record = records.get("r")
    assert record is not None
    assert record.rollback == {"performed": False, "why": "auto_rollback is off"}


def test_a_first_deploy_is_rolled_back_by_deleting_it(env: tuple[KubeStandIn, DeploymentRecords]) -> None:
    kube, records = env
    kube.add_deployment("serving", "half-plus-two")
    records.start("r", model="half-plus-two")
    records.update("r", previous={"Deployment": None, "Service": None, "ConfigMap": None})
    state = op().execute({})
    assert state["deleted"] == ["Deployment/half-plus-two"]
    record = records.get("r")
    assert record is not None
    assert record.outcome == "rolled_back"
    with pytest.raises(KeyError):
        kube.deployment("serving", "half-plus-two")


def test_a_kept_spec_is_reapplied_and_its_rollout_awaited(env: tuple[KubeStandIn, DeploymentRecords]) -> None:
    kube, records = env
    kube.add_deployment("serving", "half-plus-two", labels={"version": "1"})
    previous = kube.deployment("serving", "half-plus-two")
    previous.pop("status")
    kube.scale_deployment("serving", "half-plus-two", 3)
    records.start("r", model="half-plus-two")
    records.update("r", previous={"Deployment": previous, "Service": None, "ConfigMap": None})
    with pytest.raises(TaskDeferred) as e:
        op().execute({})
    assert isinstance(e.value.trigger, DeploymentRolloutTrigger)
    assert e.value.method_name == "rollout_complete"
    assert kube.deployment("serving", "half-plus-two")["spec"]["replicas"] == 1
    record = records.get("r")
    assert record is not None
    assert record.rollback["previous_version"] == 1
    assert record.rollback["reapplied"] == ["Deployment/half-plus-two"]


def test_an_api_that_drops_mid_apply_and_mid_rollback_is_reported_as_partially_changed(
    env: tuple[KubeStandIn, DeploymentRecords],
) -> None:
    """The apply writes the ConfigMap and the Service, then the API server goes away; the
    rollback finds it still gone. The record and the messages say exactly that."""
    from kubernetes.client.exceptions import ApiException

    from mlinfra.config import load_fleet
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import validate_request
    from mlinfra.deploy.steps import finish
    from mlinfra.exceptions import DeployFailed, RollbackFailed
    from mlinfra.operators.apply import ApplyManifestsOperator

    kube, records = env
    kube.add_deployment("serving", "half-plus-two", labels={"version": "1"})
    fleet = load_fleet()
    request = validate_request({"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}, fleet)
    objects = render_manifests(
        manifest_values(fleet.model("half-plus-two"), request, run_id="r", replicas=1)
    ).objects
    records.start("r", model="half-plus-two", version=2)
    # The API server answers the ConfigMap and the Service, then nothing but 503s.
    kube.inject_fault("PATCH", r"/deployments/half-plus-two$", 503, times=None)
    apply = ApplyManifestsOperator(task_id="apply", manifests=objects, deploy_run_id="r")
    with pytest.raises(ApiException):
        apply.execute({})
    record = records.get("r")
    assert record is not None
    changed = [f"ConfigMap/{objects[0]['metadata']['name']}", "Service/half-plus-two"]
    assert record.applied["changed"] == changed
    assert record.applied["complete"] is False
    assert (
        kube.deployment("serving", "half-plus-two")["spec"]["template"]["metadata"]["labels"]["version"]
        == "1"
    )

    kube.clear_faults()
    kube.inject_fault("*", r"/namespaces/serving/", 503, times=None, message="the API server is gone")
    with pytest.raises(
        RollbackFailed,
        match=r"cluster partially changed \(.*Service/half-plus-two\); rollback failed: HTTP 503",
    ):
        op().execute({})
    record = records.get("r")
    assert record is not None
    assert record.outcome == "partial"
    assert record.rollback["attempted"] is True
    assert record.rollback["performed"] is False
    assert record.rollback["changed"] == changed
    assert "the API server is gone" in record.rollback["error"]
    with pytest.raises(DeployFailed, match="cluster partially changed .* rollback failed: HTTP 503"):
        finish(records, "r")

    # The API comes back: a retry of the rollback restores the previous spec and says so.
    kube.clear_faults()
    with pytest.raises(TaskDeferred):
        op().execute({})
    assert records.get("r").rollback["performed"] is True
