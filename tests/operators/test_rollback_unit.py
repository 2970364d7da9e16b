"""ModelRollbackOperator's branches with the Kubernetes hook, the client and the records patched.

The fleet is the project's own ``include/fleet.yaml``; the rollback plan and its execution
(``rollback_plan``, ``execute_rollback``) run for real against an in-memory cluster.
``test_rollback.py`` runs the whole rollback against the Kubernetes and TF Serving stand-ins.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred
from kubernetes.client.exceptions import ApiException

from mlinfra.exceptions import RollbackFailed, RolloutFailed, TemplatedValueError
from mlinfra.operators.rollback import ModelRollbackOperator
from mlinfra.triggers.model import ModelVersionAvailableTrigger
from mlinfra.triggers.rollout import DeploymentRolloutTrigger
from tests.support.deploy_fakes import FakeCluster, FakeRecords

HOOK = "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook"
RUN = "manual__deploy-2"
IDENTITIES = [
    {"kind": "ConfigMap", "namespace": "serving", "name": "half-plus-two-config-v2"},
    {"kind": "Service", "namespace": "serving", "name": "half-plus-two"},
    {"kind": "Deployment", "namespace": "serving", "name": "half-plus-two"},
]


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "serving", "name": "half-plus-two"},
        "spec": {"ports": [{"name": "grpc", "port": 8500}]},
    }


def deployment(version: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"namespace": "serving", "name": "half-plus-two"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "half-plus-two", "version": str(version)}},
                "spec": {"containers": [{"name": "serving", "image": "tensorflow/serving:2.14.1"}]},
            },
        },
    }


def previous(*, first_deploy: bool = False) -> dict[str, Any]:
    """What the apply kept before writing: the v1 objects, or nothing on a model's first deploy."""
    if first_deploy:
        return {"ConfigMap": None, "Service": None, "Deployment": None}
    return {"ConfigMap": None, "Service": service(), "Deployment": deployment(1)}


class Cluster(FakeCluster):
    hook_class: mock.MagicMock


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    standin = Cluster()
    standin.put(service())
    standin.put(deployment(2))  # what the failed deploy left
    with (
        mock.patch(HOOK) as standin.hook_class,
        mock.patch("mlinfra.deploy.kube.ManifestClient", return_value=standin),
    ):
        yield standin


@pytest.fixture
def records() -> Iterator[FakeRecords]:
    fake = FakeRecords()
    fake.seed(
        RUN,
        version=2,
        reason="smoke test failed",
        previous=previous(),
        applied={
            "changed": ["ConfigMap/half-plus-two-config-v2", "Deployment/half-plus-two"],
            "objects": IDENTITIES,
        },
    )
    with mock.patch("mlinfra.deploy.records.DeploymentRecords.from_connection", return_value=fake):
        yield fake


def operator(**kwargs: Any) -> ModelRollbackOperator:
    args: dict[str, Any] = {
        "task_id": "rollback",
        "model": "half-plus-two",
        "deploy_run_id": RUN,
        "rollout_timeout": 300,
        "model_timeout": 120,
        "poll_interval": 1,
    }
    return ModelRollbackOperator(**{**args, **kwargs})


def test_reapplies_the_kept_spec_and_defers_for_its_rollout(cluster: Cluster, records: FakeRecords) -> None:
    with pytest.raises(TaskDeferred) as e:
        operator().execute({})
    # The Service and Deployment come back; a version's ConfigMap is never touched.
    assert cluster.written() == [("apply", "Service/half-plus-two"), ("apply", "Deployment/half-plus-two")]
    live = cluster.objects[("Deployment", "serving", "half-plus-two")]
    assert live["spec"]["template"]["metadata"]["labels"]["version"] == "1"
    trigger = e.value.trigger
    assert isinstance(trigger, DeploymentRolloutTrigger)
    assert (trigger.namespace, trigger.name, trigger.kubernetes_conn_id) == (
        "serving",
        "half-plus-two",
        "kubernetes_default",
    )
    assert trigger.min_generation == cluster.generation
    assert e.value.method_name == "rollout_complete"
    assert e.value.timeout is not None
    assert e.value.timeout.total_seconds() == 360
    assert records.rows[RUN]["rollback"] == {
        "performed": True,
        "reapplied": ["Service/half-plus-two", "Deployment/half-plus-two"],
        "deleted": [],
        "generation": cluster.generation,
        "pod_labels": {"app": "half-plus-two", "version": "1"},
        "previous_version": 1,
    }
    assert records.rows[RUN]["outcome"] is None  # finished only when the waits end
    cluster.hook_class.assert_called_once_with(conn_id="kubernetes_default")  # the fleet's connection


def test_the_kept_spec_is_reapplied_without_server_fields(cluster: Cluster, records: FakeRecords) -> None:
    kept = previous()
    kept["Deployment"]["metadata"].update(resourceVersion="12", uid="u-1")
    records.rows[RUN]["previous"] = kept
    with pytest.raises(TaskDeferred):
        operator().execute({})
    live = cluster.objects[("Deployment", "serving", "half-plus-two")]
    assert live["metadata"]["resourceVersion"] != "12"  # a stale one would be a 409
    assert "uid" not in live["metadata"]


def test_a_first_deploy_is_deleted_and_finished_without_waiting(
    cluster: Cluster, records: FakeRecords
) -> None:
    records.rows[RUN]["previous"] = previous(first_deploy=True)
    state = operator().execute({})
    # Pods go before the Service; the ConfigMap is left to the config-map collector.
    assert cluster.written() == [("delete", "Deployment/half-plus-two"), ("delete", "Service/half-plus-two")]
    assert state == {
        "performed": True,
        "reapplied": [],
        "deleted": ["Deployment/half-plus-two", "Service/half-plus-two"],
        "generation": 0,
        "pod_labels": {},
        "previous_version": None,
    }
    assert records.writes[-1] == (
        "finish",
        RUN,
        {"outcome": "rolled_back", "rollback": {**state, "rollout": "not needed"}},
    )


def test_a_retry_after_the_deletes_finds_nothing_to_delete(cluster: Cluster, records: FakeRecords) -> None:
    records.rows[RUN]["previous"] = previous(first_deploy=True)
    cluster.objects.clear()
    state = operator().execute({})
    assert state["deleted"] == []
    assert records.rows[RUN]["outcome"] == "rolled_back"


def test_without_the_applied_objects_the_fleet_names_are_used(cluster: Cluster, records: FakeRecords) -> None:
    records.rows[RUN]["applied"] = None  # the apply failed before its first write was recorded
    records.rows[RUN]["previous"] = previous(first_deploy=True)
    operator().execute({})
    assert cluster.written() == [("delete", "Deployment/half-plus-two"), ("delete", "Service/half-plus-two")]


@pytest.mark.parametrize("record", ["missing", "no previous"])
def test_nothing_applied_is_skipped(record: str, cluster: Cluster, records: FakeRecords) -> None:
    if record == "missing":
        records.rows.clear()
    else:
        records.rows[RUN]["previous"] = None
    with pytest.raises(AirflowSkipException, match="nothing was applied in this run"):
        operator().execute({})
    assert records.writes == []
    assert cluster.written() == []


@pytest.mark.parametrize("flag", [False, "False", "off", "no", "0"])
def test_auto_rollback_off_records_and_skips(flag: object, cluster: Cluster, records: FakeRecords) -> None:
    with pytest.raises(AirflowSkipException, match="auto_rollback is off"):
        operator(auto_rollback=flag).execute({})
    assert records.writes == [
        ("update", RUN, {"rollback": {"performed": False, "why": "auto_rollback is off"}})
    ]
    assert cluster.written() == []
    cluster.hook_class.assert_not_called()


@pytest.mark.parametrize("flag", [True, "true", "Yes", "on", "None"])
def test_auto_rollback_on_or_missing_rolls_back(flag: object, cluster: Cluster, records: FakeRecords) -> None:
    with pytest.raises(TaskDeferred):
        operator(auto_rollback=flag).execute({})
    assert records.rows[RUN]["rollback"]["performed"] is True


def test_a_bad_auto_rollback_fails_without_retry_before_any_call(cluster: Cluster) -> None:
    with (
        mock.patch("mlinfra.deploy.records.DeploymentRecords.from_connection") as from_connection,
        pytest.raises(AirflowFailException) as e,
    ):
        operator(auto_rollback="perhaps").execute({})
    assert str(e.value) == "auto_rollback must be a boolean (true/false, yes/no, on/off, 1/0), got 'perhaps'"
    assert isinstance(e.value.__cause__, TemplatedValueError)
    from_connection.assert_not_called()
    cluster.hook_class.assert_not_called()


def test_an_api_failure_records_what_the_cluster_is_left_with(cluster: Cluster, records: FakeRecords) -> None:
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"message": 'deployments.apps "half-plus-two" is forbidden'})
    cluster.fail_on[("apply", "Deployment/half-plus-two")] = forbidden
    with pytest.raises(RollbackFailed) as e:  # retried: the plan is safe to run again
        operator().execute({})
    assert str(e.value) == (
        "cluster partially changed (ConfigMap/half-plus-two-config-v2, Deployment/half-plus-two); "
        'rollback failed: HTTP 403: deployments.apps "half-plus-two" is forbidden'
    )
    assert e.value.__cause__ is forbidden
    method, run_id, fields = records.writes[-1]
    assert (method, run_id, fields["outcome"]) == ("finish", RUN, "partial")
    assert fields["rollback"] == {
        "performed": False,
        "attempted": True,
        "error": 'HTTP 403: deployments.apps "half-plus-two" is forbidden',
        "changed": ["ConfigMap/half-plus-two-config-v2", "Deployment/half-plus-two"],
        "planned": {"reapply": ["Service/half-plus-two", "Deployment/half-plus-two"], "delete": []},
        "previous_version": 1,
    }


def test_a_non_api_failure_is_described_by_its_class(cluster: Cluster, records: FakeRecords) -> None:
    cluster.fail_on[("apply", "Service/half-plus-two")] = ConnectionError("connection refused\nmore")
    with pytest.raises(RollbackFailed, match=r"rollback failed: ConnectionError: connection refused$"):
        operator().execute({})
    assert records.rows[RUN]["outcome"] == "partial"


def rolled_back_state(records: FakeRecords) -> dict[str, Any]:
    state = {
        "performed": True,
        "reapplied": ["Deployment/half-plus-two"],
        "generation": 7,
        "previous_version": 1,
    }
    records.rows[RUN]["rollback"] = copy.deepcopy(state)
    return state


def test_rollout_complete_defers_for_the_previous_version(records: FakeRecords) -> None:
    state = rolled_back_state(records)
    with pytest.raises(TaskDeferred) as e:
        operator().rollout_complete({}, {"status": "success", "message": "2 of 2 updated replicas available"})
    trigger = e.value.trigger
    assert isinstance(trigger, ModelVersionAvailableTrigger)
    assert (trigger.tf_serving_conn_id, trigger.model_name, trigger.version) == (
        "tf_serving_half_plus_two",
        "half_plus_two",
        1,
    )
    assert e.value.method_name == "model_checked"
    assert e.value.timeout is not None
    assert e.value.timeout.total_seconds() == 180
    assert records.rows[RUN]["rollback"] == {
        **state,
        "rollout": "success",
        "rollout_message": "2 of 2 updated replicas available",
    }
    assert records.rows[RUN]["outcome"] is None


@pytest.mark.parametrize("status", ["failed", "timeout", "error"])
def test_rollout_complete_on_anything_but_success_fails_the_record(status: str, records: FakeRecords) -> None:
    state = rolled_back_state(records)
    with pytest.raises(RolloutFailed, match="the rollback's rollout did not complete: pods crash"):
        operator().rollout_complete({}, {"status": status, "message": "pods crash"})
    assert records.writes[-1] == (
        "finish",
        RUN,
        {"outcome": "failed", "rollback": {**state, "rollout": status, "rollout_message": "pods crash"}},
    )


@pytest.mark.parametrize(("status", "available"), [("success", True), ("timeout", False), ("failed", False)])
def test_model_checked_finishes_as_rolled_back(status: str, available: bool, records: FakeRecords) -> None:
    state = {**rolled_back_state(records), "rollout": "success"}
    records.rows[RUN]["rollback"] = copy.deepcopy(state)
    result = operator().model_checked({}, {"status": status, "message": "version 1: AVAILABLE?"})
    expected = {**state, "previous_version_available": available, "model_message": "version 1: AVAILABLE?"}
    assert result == expected
    assert records.writes[-1] == ("finish", RUN, {"outcome": "rolled_back", "rollback": expected})
