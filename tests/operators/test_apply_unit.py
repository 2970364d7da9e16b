"""ApplyManifestsOperator's branches with the Kubernetes hook, the client and the records patched.

The integration tests (``test_apply.py``) apply to the Kubernetes stand-in; these check the
operator's wiring in milliseconds: what it writes, what it keeps for a rollback, and what a
retry after a failure part-way sees.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlinfra.operators.apply import ApplyManifestsOperator
from tests.support.deploy_fakes import FakeCluster, FakeRecords

HOOK = "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook"
RUN = "manual__deploy-2"


def manifests(version: int = 2) -> list[dict[str, Any]]:
    meta = {"namespace": "serving", "labels": {"app": "half-plus-two"}}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {**meta, "name": f"half-plus-two-config-v{version}"},
            "data": {"models.config": f"version {version}"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**meta, "name": "half-plus-two"},
            "spec": {"ports": [{"name": "grpc", "port": 8500}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "name": "half-plus-two"},
            "spec": {
                "replicas": 2,
                "template": {
                    "metadata": {"labels": {"app": "half-plus-two", "version": str(version)}},
                    "spec": {"containers": [{"name": "serving", "image": "tensorflow/serving:2.14.1"}]},
                },
            },
        },
    ]


def live(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server returns it: server-owned fields added."""
    out = copy.deepcopy(obj)
    out["metadata"].update(uid="u-1", resourceVersion="77", generation=4)
    out["status"] = {"observedGeneration": 4}
    return out


class Cluster(FakeCluster):
    """The fake cluster, with the patched hook and client classes to check how they were built."""

    hook_class: mock.MagicMock
    client_class: mock.MagicMock


class Records(FakeRecords):
    from_connection: mock.MagicMock


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    standin = Cluster()
    with (
        mock.patch(HOOK) as standin.hook_class,
        mock.patch("mlinfra.deploy.kube.ManifestClient", return_value=standin) as standin.client_class,
    ):
        yield standin


@pytest.fixture
def records() -> Iterator[Records]:
    fake = Records()
    fake.seed(RUN, version=2)  # the deploy's first task created the row
    with mock.patch(
        "mlinfra.deploy.records.DeploymentRecords.from_connection", return_value=fake
    ) as fake.from_connection:
        yield fake


def operator(**kwargs: Any) -> ApplyManifestsOperator:
    args: dict[str, Any] = {"task_id": "apply", "manifests": manifests(), "deploy_run_id": RUN}
    return ApplyManifestsOperator(**{**args, **kwargs})


@pytest.mark.parametrize(
    "bad",
    [[], None, [{"metadata": {"name": "x"}}], ["ConfigMap"]],
    ids=["empty", "none", "no-kind", "not-a-dict"],
)
def test_bad_manifests_are_refused_before_any_call(bad: Any, records: Records) -> None:
    with (
        mock.patch(HOOK) as hook_class,
        pytest.raises(AirflowFailException, match="manifests must be a non-empty list of Kubernetes objects"),
    ):
        operator(manifests=bad).execute({})
    hook_class.assert_not_called()
    assert records.writes == []


def test_first_deploy_writes_everything_and_keeps_nothing_to_restore(
    cluster: Cluster, records: Records
) -> None:
    result = operator().execute({})
    assert result == {
        "changed": ["ConfigMap/half-plus-two-config-v2", "Service/half-plus-two", "Deployment/half-plus-two"],
        "unchanged": [],
        "generation": 6,
        "pod_labels": {"app": "half-plus-two", "version": "2"},
        "previous_version": None,
    }
    assert cluster.written() == [
        ("apply", "ConfigMap/half-plus-two-config-v2"),
        ("apply", "Service/half-plus-two"),
        ("apply", "Deployment/half-plus-two"),
    ]
    # The kept "before" is written first, before anything in the cluster changes.
    assert records.writes[0] == (
        "update",
        RUN,
        {"previous": {"ConfigMap": None, "Service": None, "Deployment": None}},
    )
    applied = records.rows[RUN]["applied"]
    assert applied["complete"] is True
    assert applied["spec"] == manifests()
    assert applied["objects"][2] == {"kind": "Deployment", "namespace": "serving", "name": "half-plus-two"}
    cluster.client_class.assert_called_once_with(
        cluster.hook_class.return_value.api_client,
        field_manager="mlinfra",
    )


def test_progress_is_recorded_after_each_write(cluster: Cluster, records: Records) -> None:
    operator().execute({})
    progress = [w[2]["applied"] for w in records.writes if "applied" in w[2]]
    assert [(p["changed"], p["complete"]) for p in progress] == [
        (["ConfigMap/half-plus-two-config-v2"], False),
        (["ConfigMap/half-plus-two-config-v2", "Service/half-plus-two"], False),
        (
            ["ConfigMap/half-plus-two-config-v2", "Service/half-plus-two", "Deployment/half-plus-two"],
            False,
        ),
        (
            ["ConfigMap/half-plus-two-config-v2", "Service/half-plus-two", "Deployment/half-plus-two"],
            True,
        ),
    ]


def test_objects_already_as_rendered_are_not_written(cluster: Cluster, records: Records) -> None:
    for obj in manifests():
        cluster.put(live(obj))
    result = operator().execute({})
    assert cluster.written() == []
    assert result["changed"] == []
    assert len(result["unchanged"]) == 3
    assert result["previous_version"] == 2
    assert records.rows[RUN]["applied"]["complete"] is True


def test_an_upgrade_keeps_the_live_spec_without_server_fields(cluster: Cluster, records: Records) -> None:
    for obj in manifests(version=1):
        cluster.put(live(obj))
    result = operator().execute({})
    assert result["changed"] == ["ConfigMap/half-plus-two-config-v2", "Deployment/half-plus-two"]
    assert result["unchanged"] == ["Service/half-plus-two"]
    assert result["previous_version"] == 1
    previous = records.rows[RUN]["previous"]
    assert previous["ConfigMap"] is None  # v2's ConfigMap is a new name
    kept = previous["Deployment"]
    assert kept["spec"]["template"]["metadata"]["labels"]["version"] == "1"
    assert "status" not in kept
    assert not {"uid", "resourceVersion", "generation"} & set(kept["metadata"])


def test_a_retry_keeps_what_the_first_attempt_saw(cluster: Cluster, records: Records) -> None:
    for obj in manifests(version=1):
        cluster.put(live(obj))
    cluster.fail_on[("apply", "Deployment/half-plus-two")] = RuntimeError("connection reset")
    with pytest.raises(RuntimeError, match="connection reset"):  # not AirflowFailException: retried
        operator().execute({})
    first_previous = records.rows[RUN]["previous"]
    assert records.rows[RUN]["applied"]["changed"] == ["ConfigMap/half-plus-two-config-v2"]
    assert records.rows[RUN]["applied"]["complete"] is False

    # The retry: the cluster now holds v2's ConfigMap, and the apply goes through.
    del cluster.fail_on[("apply", "Deployment/half-plus-two")]
    result = operator().execute({})
    assert records.rows[RUN]["previous"] == first_previous
    assert [w for w in records.writes if "previous" in w[2]] == [
        ("update", RUN, {"previous": first_previous})
    ]
    assert result["previous_version"] == 1
    # What the first attempt wrote counts as changed, though this attempt found it in place.
    assert result["changed"] == ["Deployment/half-plus-two"]
    assert records.rows[RUN]["applied"]["changed"] == [
        "ConfigMap/half-plus-two-config-v2",
        "Deployment/half-plus-two",
    ]
    assert records.rows[RUN]["applied"]["complete"] is True


def test_a_retry_after_the_deployment_was_written_still_knows_the_old_version(
    cluster: Cluster, records: Records
) -> None:
    for obj in manifests(version=1):
        cluster.put(live(obj))
    cluster.lost_replies.add("Deployment/half-plus-two")
    with pytest.raises(ConnectionResetError):
        operator().execute({})
    # The cluster runs v2 now; the retry must not take that for the spec to roll back to.
    result = operator().execute({})
    assert result["changed"] == []  # this attempt's writes: the first one's reached the cluster
    assert result["unchanged"] == [
        "ConfigMap/half-plus-two-config-v2",
        "Service/half-plus-two",
        "Deployment/half-plus-two",
    ]
    assert result["previous_version"] == 1
    kept = records.rows[RUN]["previous"]["Deployment"]
    assert kept["spec"]["template"]["metadata"]["labels"]["version"] == "1"


def test_a_write_whose_reply_was_lost_is_recorded_as_changed(cluster: Cluster, records: Records) -> None:
    for obj in manifests(version=1):
        cluster.put(live(obj))
    cluster.lost_replies.add("Deployment/half-plus-two")
    with pytest.raises(ConnectionResetError):
        operator().execute({})
    operator().execute({})
    assert records.rows[RUN]["applied"]["changed"] == [
        "ConfigMap/half-plus-two-config-v2",
        "Deployment/half-plus-two",
    ]


def test_without_a_run_id_nothing_is_recorded(cluster: Cluster, records: Records) -> None:
    result = operator(deploy_run_id=None).execute({})
    assert len(result["changed"]) == 3
    records.from_connection.assert_not_called()
    assert records.writes == []


def test_record_extra_and_field_manager_are_passed_on(cluster: Cluster, records: Records) -> None:
    operator(field_manager="mlinfra-rollback", record_extra={"manual_rollback_to": 1}).execute({})
    assert cluster.client_class.call_args.kwargs == {"field_manager": "mlinfra-rollback"}
    applied = [w[2]["applied"] for w in records.writes if "applied" in w[2]]
    assert all(a["manual_rollback_to"] == 1 for a in applied)


def test_one_hook_and_one_client_per_task_on_its_connection(cluster: Cluster, records: Records) -> None:
    operator(kubernetes_conn_id="kubernetes_gpu").execute({})
    cluster.hook_class.assert_called_once_with(conn_id="kubernetes_gpu")
    cluster.client_class.assert_called_once()
