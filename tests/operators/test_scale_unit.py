"""ScaleDeploymentOperator's branches with the Kubernetes client and the audit patched (no servers).

The integration tests (``test_scale.py``) run the same operator against the Kubernetes
stand-in; these check each branch of the wiring in milliseconds, as the cncf.kubernetes
provider's operator tests do with its hook patched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from mlinfra.exceptions import ScaleFailed, ScaleForbidden
from mlinfra.operators.scale import ScaleDeploymentOperator
from mlinfra.scaling.records import ScaleRecords
from mlinfra.store import MetricsStore
from mlinfra.triggers.scale import DeploymentScaleTrigger

CONTEXT = {"run_id": "scheduled__2026-11-20T12:00:00+00:00"}
HOOK = "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook"


def deployment(replicas: int, available: int, generation: int = 3) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "serving", "name": "hpt", "generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": "tf:1"}]}}},
        "status": {
            "observedGeneration": generation,
            "replicas": available,
            "updatedReplicas": available,
            "availableReplicas": available,
        },
    }


class Cluster:
    """The ScaleClient's surface, with a live count and an owner."""

    def __init__(self, live: int = 2, owner: str | None = None, available: int | None = None) -> None:
        self.live = live
        self.owner = owner
        self.available = available
        self.patched: list[int] = []
        self.error: Exception | None = None
        self.rollout_errors: list[Exception] = []  # raised by the next reads of the rollout, in turn
        self.tries = 1  # operators (tries of the task) a test runs against this cluster

    def owners(self, namespace: str) -> dict[str, str]:
        return {"hpt": self.owner} if self.owner else {}

    def read_scale(self, namespace: str, name: str) -> dict[str, Any]:
        return {"spec": {"replicas": self.live}}

    def patch_replicas(self, namespace: str, name: str, replicas: int) -> tuple[int, dict[str, Any]]:
        if self.error:
            raise self.error
        previous, self.live = self.live, replicas
        self.patched.append(replicas)
        return previous, {}

    def rollout_objects(self, namespace: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if self.rollout_errors:
            raise self.rollout_errors.pop(0)
        available = self.live if self.available is None else self.available
        return deployment(self.live, available), []


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    standin = Cluster()
    with (
        mock.patch(HOOK) as hook_class,
        mock.patch("mlinfra.scaling.kube.ScaleClient", return_value=standin) as client_class,
    ):
        yield standin
        # One hook and one client per try of the task, however many calls the try made.
        assert hook_class.call_count <= standin.tries
        assert client_class.call_count <= standin.tries


@pytest.fixture
def records() -> Iterator[mock.MagicMock]:
    with mock.patch("mlinfra.scaling.records.ScaleRecords.from_connection") as from_connection:
        from_connection.return_value.active_holds.return_value = {}  # no manual hold
        yield from_connection.return_value


def operator(**kwargs: Any) -> ScaleDeploymentOperator:
    args: dict[str, Any] = {
        "task_id": "scale",
        "model": "hpt",
        "namespace": "serving",
        "deployment": "hpt",
        "replicas": 4,
        "from_replicas": 2,
        "trigger": "metric",
        "reason": "load",
        "decided_at": "1800000000.0",
    }
    return ScaleDeploymentOperator(**{**args, **kwargs})


def forbidden(verb: str, resource: str, api_group: str) -> ScaleForbidden:
    return ScaleForbidden(
        f"403: cannot {verb} {resource} in serving",
        verb=verb,
        resource=resource,
        api_group=api_group,
        namespace="serving",
    )


def recorded(records: mock.MagicMock) -> list[tuple[str, int | None, str | None]]:
    return [
        (c.kwargs["outcome"], c.kwargs["from_replicas"], c.kwargs["message"])
        for c in records.record_event.call_args_list
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trigger": "cron"}, "trigger must be one of metric, alert, manual, bounds"),
        ({"replicas": "four"}, "replicas must be an integer >= 0, got 'four'"),
        ({"reason": ""}, "reason is required"),
        ({"record_only": "perhaps"}, "record_only must be a boolean"),
    ],
)
def test_bad_parameters_fail_without_retry_before_any_call(
    kwargs: dict[str, Any], message: str, records: mock.MagicMock
) -> None:
    with mock.patch(HOOK) as hook_class, pytest.raises(AirflowFailException, match=message):
        operator(**kwargs).execute(CONTEXT)
    hook_class.assert_not_called()
    records.record_event.assert_not_called()


def test_patches_and_returns_when_the_replicas_are_already_available(
    cluster: Cluster, records: mock.MagicMock
) -> None:
    result = operator().execute(CONTEXT)
    assert cluster.patched == [4]
    assert result is not None
    assert (result["outcome"], result["from"], result["to"]) == ("available", 2, 4)
    assert recorded(records) == [("patched", 2, None)]
    assert records.record_event.call_args.kwargs["ts"] == 1800000000.0
    records.update_outcome.assert_called_once_with(CONTEXT["run_id"], "hpt", "available", mock.ANY)


def test_defers_while_the_new_pods_come_up(cluster: Cluster, records: mock.MagicMock) -> None:
    cluster.available = 2
    with pytest.raises(TaskDeferred) as e:
        operator(timeout=120, poll_interval=1).execute(CONTEXT)
    trigger = e.value.trigger
    assert isinstance(trigger, DeploymentScaleTrigger)
    assert (trigger.replicas, trigger.min_generation) == (4, 3)
    assert e.value.kwargs == {"before": 2}
    assert e.value.timeout is not None
    assert e.value.timeout.total_seconds() == 180


def test_a_person_request_takes_from_what_the_patch_replaced(
    cluster: Cluster, records: mock.MagicMock
) -> None:
    cluster.live = 6
    result = operator(trigger="manual", from_replicas=None).execute(CONTEXT)
    assert result is not None
    assert result["from"] == 6
    assert recorded(records) == [("patched", 6, None)]


def test_a_retry_finds_the_count_set_and_only_waits(cluster: Cluster, records: mock.MagicMock) -> None:
    cluster.live = 4
    result = operator().execute(CONTEXT)
    assert cluster.patched == []
    assert result is not None
    assert result["from"] == 2


def test_superseded_leaves_it_alone(cluster: Cluster, records: mock.MagicMock) -> None:
    cluster.live = 3
    result = operator().execute(CONTEXT)
    assert cluster.patched == []
    assert result is not None
    assert result["outcome"] == "superseded"
    assert recorded(records)[0][:2] == ("superseded", 3)


@pytest.mark.parametrize("flag", [True, "true", "on", "Yes"])
def test_dry_run_records_and_never_patches(flag: object, cluster: Cluster, records: mock.MagicMock) -> None:
    result = operator(record_only=flag).execute(CONTEXT)
    assert cluster.patched == []
    assert result is not None
    assert result["outcome"] == "dry_run"
    assert records.record_event.call_args.kwargs["dry_run"] is True


@pytest.mark.parametrize("flag", [False, "false", "off", "0", "None"])
def test_not_a_dry_run(flag: object, cluster: Cluster, records: mock.MagicMock) -> None:
    operator(record_only=flag).execute(CONTEXT)
    assert cluster.patched == [4]


def test_owned_by_an_autoscaler_is_skipped_by_the_sweep(cluster: Cluster, records: mock.MagicMock) -> None:
    cluster.owner = "HorizontalPodAutoscaler/hpt"
    result = operator().execute(CONTEXT)
    assert result is not None
    assert result["outcome"] == "skipped"
    assert cluster.patched == []
    assert recorded(records) == [
        ("skipped", 2, "serving/hpt is owned by HorizontalPodAutoscaler/hpt: mlinfra does not scale it")
    ]


def test_owned_by_an_autoscaler_fails_a_person_without_retry(
    cluster: Cluster, records: mock.MagicMock
) -> None:
    cluster.owner = "ScaledObject/hpt"
    with pytest.raises(AirflowFailException, match="change the ScaledObject's bounds instead") as e:
        operator(trigger="manual", from_replicas=None).execute(CONTEXT)
    assert isinstance(e.value.__cause__, ScaleFailed)
    assert recorded(records)[0][0] == "skipped"


def test_forbidden_fails_without_retry_and_is_recorded(cluster: Cluster, records: mock.MagicMock) -> None:
    cluster.error = forbidden("patch", "deployments/scale", "apps")
    with pytest.raises(AirflowFailException, match="cannot patch deployments/scale"):
        operator().execute(CONTEXT)
    assert recorded(records) == [("failed", 2, "403: cannot patch deployments/scale in serving")]


def test_other_api_failures_are_retried(cluster: Cluster, records: mock.MagicMock) -> None:
    cluster.error = ScaleFailed("HTTP 503 from the API server")
    with pytest.raises(ScaleFailed, match="HTTP 503"):
        operator().execute(CONTEXT)
    assert recorded(records) == [("failed", 2, "HTTP 503 from the API server")]


@pytest.mark.parametrize(
    ("status", "raised", "outcome"),
    [
        ("success", None, "available"),
        ("superseded", None, "superseded"),
        ("error", ScaleFailed, "patched"),  # the count is set: its cooldown must count; a retry waits
        ("timeout", AirflowFailException, "timeout"),
        ("failed", AirflowFailException, "failed"),
    ],
)
def test_execute_complete(
    status: str, raised: type[Exception] | None, outcome: str, records: mock.MagicMock
) -> None:
    event = {"status": status, "message": f"the wait ended: {status}"}
    op = operator()
    if raised is None:
        result = op.execute_complete(CONTEXT, event, before=2)
        assert (result["outcome"], result["from"]) == (outcome, 2)
    else:
        with pytest.raises(raised, match=f"the wait ended: {status}"):
            op.execute_complete(CONTEXT, event, before=2)
    records.update_outcome.assert_called_once_with(
        CONTEXT["run_id"], "hpt", outcome, f"the wait ended: {status}"
    )


def test_a_manual_hold_leaves_the_count_to_the_person(cluster: Cluster, records: mock.MagicMock) -> None:
    records.active_holds.return_value = {
        "hpt": {"replicas": 2, "until": 1_900_000_000.0, "run_id": "manual__launch", "reason": "launch"}
    }
    result = operator().execute(CONTEXT)
    assert result is not None
    assert result["outcome"] == "superseded"
    assert (
        "held at 2 replicas by a manual scale until 2030-03-17T17:46:40Z (run manual__launch)"
        in (result["message"])
    )
    assert cluster.patched == []


def test_a_manual_hold_never_holds_back_a_person(cluster: Cluster, records: mock.MagicMock) -> None:
    records.active_holds.return_value = {
        "hpt": {"replicas": 2, "until": 1_900_000_000.0, "run_id": "manual__launch", "reason": "launch"}
    }
    manual = operator(trigger="manual").execute(CONTEXT)
    assert manual is not None
    assert manual["outcome"] == "available"
    assert cluster.patched == [4]


@pytest.fixture
def real_records(tmp_path: Path) -> Iterator[ScaleRecords]:
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    with mock.patch("mlinfra.scaling.records.ScaleRecords.from_connection", return_value=ScaleRecords(store)):
        yield ScaleRecords(store)


@pytest.mark.parametrize("trigger", ["manual", "metric"])
def test_a_failure_after_the_patch_keeps_its_cooldown_and_a_retry_ends_as_an_undisturbed_run(
    trigger: str, cluster: Cluster, real_records: ScaleRecords
) -> None:
    from_replicas = None if trigger == "manual" else 2  # a person's request names no count to start from
    after_the_patch = ScaleFailed("HTTP 503 from the API server")
    cluster.rollout_errors = [after_the_patch]
    cluster.tries = 2
    with pytest.raises(ScaleFailed):
        operator(trigger=trigger, from_replicas=from_replicas).execute(CONTEXT)
    (event,) = real_records.scale_events(model="hpt")
    assert (event.outcome, event.from_replicas, event.to_replicas) == ("patched", 2, 4)
    assert event.message == f"the new count is set; then: {after_the_patch}"
    # The count was changed: the next sweep's cooldown counts from it (a "failed" row does not).
    assert "hpt" in real_records.last_actions(["hpt"], before=2_000_000_000.0)

    result = operator(trigger=trigger, from_replicas=from_replicas).execute(CONTEXT)  # the retry
    assert cluster.patched == [4]
    assert result is not None
    assert (result["outcome"], result["from"], result["to"]) == ("available", 2, 4)
    (event,) = real_records.scale_events(model="hpt")
    assert (event.outcome, event.from_replicas, event.to_replicas) == ("available", 2, 4)


def test_forbidden_after_the_patch_fails_for_good_and_the_row_stays_patched(
    cluster: Cluster, real_records: ScaleRecords
) -> None:
    cluster.rollout_errors = [forbidden("list", "pods", "")]
    with pytest.raises(AirflowFailException, match="cannot list pods"):
        operator(trigger="manual", from_replicas=None).execute(CONTEXT)
    (event,) = real_records.scale_events(model="hpt")
    assert (event.outcome, event.from_replicas, event.to_replicas) == ("patched", 2, 4)
    assert event.message == "the new count is set; then: 403: cannot list pods in serving"
