"""The sensors' branches with their hooks patched (no servers), as the provider's sensor tests do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from mlinfra.exceptions import ModelLoadFailed, RolloutFailed, TFServingModelNotFound, TFServingUnavailable
from mlinfra.sensors.model import TFServingModelVersionSensor
from mlinfra.sensors.rollout import DeploymentRolloutSensor
from mlinfra.triggers.model import ModelVersionAvailableTrigger
from mlinfra.triggers.rollout import DeploymentRolloutTrigger

K8S_HOOK = "airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook"
TFS_HOOK = "mlinfra.hooks.tf_serving.TFServingHook"


def deployment(
    available: int, *, generation: int = 2, conditions: list[dict[str, Any]] | None = None
) -> dict:
    return {
        "metadata": {"namespace": "serving", "name": "hpt", "generation": generation},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "hpt"}},
            "template": {"metadata": {"labels": {"app": "hpt"}}, "spec": {"containers": [{"image": "tf:2"}]}},
        },
        "status": {
            "observedGeneration": generation,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": available,
            "conditions": conditions or [],
        },
    }


class Kube:
    """What the rollout sensor reads through the hook's API client."""

    def __init__(self) -> None:
        self.deployment = deployment(available=2)
        self.hook_class: mock.MagicMock | None = None


@pytest.fixture
def kube() -> Iterator[Kube]:
    state = Kube()
    apps, core = mock.MagicMock(), mock.MagicMock()
    apps.return_value.read_namespaced_deployment.side_effect = lambda name, ns: state.deployment
    core.return_value.list_namespaced_pod.return_value = {"items": []}
    with (
        mock.patch(K8S_HOOK) as hook_class,
        mock.patch("kubernetes.client.AppsV1Api", apps),
        mock.patch("kubernetes.client.CoreV1Api", core),
    ):
        hook_class.return_value.api_client.sanitize_for_serialization.side_effect = lambda obj: obj
        state.hook_class = hook_class
        yield state


def rollout_sensor(**kwargs: Any) -> DeploymentRolloutSensor:
    return DeploymentRolloutSensor(
        task_id="wait_rollout", namespace="serving", deployment="hpt", timeout=300, **kwargs
    )


def test_rollout_complete(kube: Kube) -> None:
    assert rollout_sensor(min_generation="2").poke({}) is True


def test_rollout_waits_for_available_pods(kube: Kube) -> None:
    kube.deployment = deployment(available=1)
    assert rollout_sensor().poke({}) is False


def test_rollout_waits_for_the_applied_generation(kube: Kube) -> None:
    assert rollout_sensor(min_generation="3").poke({}) is False


def test_one_hook_for_all_pokes(kube: Kube) -> None:
    sensor = rollout_sensor()
    for _ in range(3):
        sensor.poke({})
    assert kube.hook_class is not None
    assert kube.hook_class.call_count == 1


def test_a_failed_rollout_fails_without_retry(kube: Kube) -> None:
    kube.deployment = deployment(
        available=1,
        conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "too slow"}],
    )
    with pytest.raises(AirflowFailException, match="ProgressDeadlineExceeded: too slow") as e:
        rollout_sensor().poke({})
    assert isinstance(e.value.__cause__, RolloutFailed)


def test_a_bad_min_generation_is_refused(kube: Kube) -> None:
    with pytest.raises(ValueError, match="min_generation must be an integer >= 0, got 'latest'"):
        rollout_sensor(min_generation="latest").poke({})


def test_rollout_defers_with_the_generation(kube: Kube) -> None:
    kube.deployment = deployment(available=0)
    with pytest.raises(TaskDeferred) as e:
        rollout_sensor(min_generation="2", poll_interval=1).execute({})
    trigger = e.value.trigger
    assert isinstance(trigger, DeploymentRolloutTrigger)
    assert (trigger.namespace, trigger.name, trigger.min_generation) == ("serving", "hpt", 2)


def test_rollout_already_complete_does_not_defer(kube: Kube) -> None:
    assert rollout_sensor().execute({}) is None


@pytest.mark.parametrize(
    ("status", "raised"),
    [("error", RolloutFailed), ("failed", AirflowFailException), ("timeout", AirflowFailException)],
)
def test_rollout_execute_complete_raises_on_anything_but_success(
    status: str, raised: type[Exception]
) -> None:
    with pytest.raises(raised, match="pods crash"):
        rollout_sensor().execute_complete({}, {"status": status, "message": "pods crash"})


def test_rollout_execute_complete_success() -> None:
    assert rollout_sensor().execute_complete({}, {"status": "success", "rollout": {"state": "complete"}}) == {
        "state": "complete"
    }


# ---------------------------------------------------------------------------- TF Serving


@pytest.fixture
def tfs() -> Iterator[mock.MagicMock]:
    with mock.patch(TFS_HOOK) as hook_class:
        yield hook_class


def model_sensor(**kwargs: Any) -> TFServingModelVersionSensor:
    args: dict[str, Any] = {
        "task_id": "wait_model",
        "tf_serving_conn_id": "tf_serving_hpt",
        "model_name": "half_plus_two",
        "version": "2",
        "timeout": 300,
    }
    return TFServingModelVersionSensor(**{**args, **kwargs})


def status(state: str, version: int = 2, code: str = "OK", message: str = "") -> list[dict[str, Any]]:
    return [{"version": version, "state": state, "error_code": code, "error_message": message}]


def test_model_available(tfs: mock.MagicMock) -> None:
    tfs.return_value.get_model_status.return_value = status("AVAILABLE")
    assert model_sensor().poke({}) is True
    tfs.return_value.get_model_status.assert_called_once_with("half_plus_two")


def test_model_loading_waits(tfs: mock.MagicMock) -> None:
    tfs.return_value.get_model_status.return_value = status("LOADING")
    assert model_sensor().poke({}) is False


def test_other_version_available_is_not_enough(tfs: mock.MagicMock) -> None:
    tfs.return_value.get_model_status.return_value = status("AVAILABLE", version=1)
    assert model_sensor().poke({}) is False
    assert model_sensor(version="None").poke({}) is True


@pytest.mark.parametrize(
    "error", [TFServingModelNotFound("not yet"), TFServingUnavailable("connection refused")]
)
def test_not_found_or_unreachable_waits(tfs: mock.MagicMock, error: Exception) -> None:
    tfs.return_value.get_model_status.side_effect = error
    assert model_sensor().poke({}) is False


def test_a_failed_load_fails_without_retry(tfs: mock.MagicMock) -> None:
    tfs.return_value.get_model_status.return_value = status("END", code="UNKNOWN", message="disk on fire")
    with pytest.raises(AirflowFailException, match="failed to load: UNKNOWN: disk on fire") as e:
        model_sensor().poke({})
    assert isinstance(e.value.__cause__, ModelLoadFailed)


def test_one_hook_for_all_pokes_and_closed_before_deferring(tfs: mock.MagicMock) -> None:
    tfs.return_value.get_model_status.return_value = status("LOADING")
    sensor = model_sensor(poll_interval=1)
    sensor.poke({})
    with pytest.raises(TaskDeferred) as e:
        sensor.execute({})
    assert tfs.call_count == 1
    tfs.return_value.close.assert_called_once()
    trigger = e.value.trigger
    assert isinstance(trigger, ModelVersionAvailableTrigger)
    assert (trigger.model_name, trigger.version) == ("half_plus_two", 2)


def test_model_available_at_once_does_not_defer(tfs: mock.MagicMock) -> None:
    tfs.return_value.get_model_status.return_value = status("AVAILABLE")
    assert model_sensor().execute({}) is None
    tfs.return_value.close.assert_called_once()


def test_model_execute_complete() -> None:
    versions = status("AVAILABLE")
    assert model_sensor().execute_complete({}, {"status": "success", "versions": versions}) == versions
    with pytest.raises(AirflowFailException, match="did not become AVAILABLE"):
        model_sensor().execute_complete({}, {"status": "timeout"})
