"""ModelRollbackOperator's decisions that the end-to-end tests do not reach."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from mlinfra.deploy.records import DeploymentRecords
from mlinfra.operators.rollback import ModelRollbackOperator
from mlinfra.store import MetricsStore
from mlinfra.triggers.rollout import DeploymentRolloutTrigger
from tests.support.k8s_standin import KubeStandIn

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[KubeStandIn, DeploymentRecords]]:
    with KubeStandIn() as kube:
        monkeypatch.setenv(
            *kube.airflow_connection_env(kubeconfig_path=kube.write_kubeconfig(tmp_path / "kc"))
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_MLINFRA_STORE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")})
        )
        yield kube, DeploymentRecords(MetricsStore.from_url(f"sqlite:///{tmp_path / 's.db'}"))


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
