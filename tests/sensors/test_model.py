"""TFServingModelVersionSensor against the session's TF Serving stand-in (version 1 AVAILABLE)."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from mlinfra.sensors.model import TFServingModelVersionSensor
from mlinfra.triggers.model import ModelVersionAvailableTrigger


def sensor(version: Any) -> TFServingModelVersionSensor:
    return TFServingModelVersionSensor(
        task_id="wait_model",
        tf_serving_conn_id="tf_serving_t",
        model_name="half_plus_two",
        version=version,
        timeout=30,
        poll_interval=0.2,
    )


@pytest.mark.integration
def test_an_available_version_does_not_defer(
    tf_serving_standin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*tf_serving_standin.connection_env("tf_serving_t"))
    assert sensor(1).execute({}) is None


@pytest.mark.integration
def test_a_missing_version_defers(tf_serving_standin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*tf_serving_standin.connection_env("tf_serving_t"))
    with pytest.raises(TaskDeferred) as e:
        sensor("9").execute({})
    assert isinstance(e.value.trigger, ModelVersionAvailableTrigger)
    assert e.value.trigger.version == 9


def test_a_failed_load_fails_with_the_server_message() -> None:
    with pytest.raises(AirflowFailException, match="failed to load: UNKNOWN: disk on fire"):
        sensor(2).execute_complete(
            {}, {"status": "failed", "message": "version 2 failed to load: UNKNOWN: disk on fire"}
        )
    assert sensor(2).execute_complete({}, {"status": "success", "versions": [{"version": 2}]}) == [
        {"version": 2}
    ]
