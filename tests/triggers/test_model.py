"""ModelVersionAvailableTrigger: serialize round-trip, verdicts, and events from a TF Serving stand-in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlinfra.triggers.model import ModelVersionAvailableTrigger, evaluate_versions
from tests.deploy.environment import copy_base_path, ensure_version
from tests.support.tf_serving_standin import StandinProcess, start_tf_serving_standin


def first_event(trigger: Any) -> dict[str, Any]:
    async def run() -> Any:
        return await anext(trigger.run())

    return asyncio.run(run()).payload


def test_serialize_round_trip() -> None:
    from airflow.sdk._shared.module_loading import import_string

    trigger = ModelVersionAvailableTrigger(
        "tf",
        "half_plus_two",
        2,
        deadline=99.0,
        poll_interval=1,
        default_grpc_target="h:8500",
        default_rest_url="http://h:8501",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "mlinfra.triggers.model.ModelVersionAvailableTrigger"
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)
    assert set(kwargs) == {
        "tf_serving_conn_id",
        "model_name",
        "version",
        "deadline",
        "poll_interval",
        "default_grpc_target",
        "default_rest_url",
    }


@pytest.mark.parametrize(
    ("versions", "version", "verdict", "fragment"),
    [
        ([{"version": 2, "state": "AVAILABLE"}], 2, "success", "version 2 is AVAILABLE"),
        ([{"version": 1, "state": "AVAILABLE"}], 2, "waiting", "1: AVAILABLE"),
        ([{"version": 2, "state": "LOADING"}], 2, "waiting", "2: LOADING"),
        (
            [{"version": 2, "state": "END", "error_code": "NOT_FOUND", "error_message": "no such dir"}],
            2,
            "failed",
            "version 2 failed to load: NOT_FOUND: no such dir",
        ),
        ([{"version": 1, "state": "AVAILABLE"}], None, "success", "version 1"),
    ],
)
def test_verdicts(versions: list[dict[str, Any]], version: int | None, verdict: str, fragment: str) -> None:
    got, message = evaluate_versions(versions, version)
    assert got == verdict
    assert fragment in message


@pytest.fixture(scope="module")
def serving(
    tf_serving_standin: StandinProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandinProcess]:
    tmp = tmp_path_factory.mktemp("model-trigger")
    base = copy_base_path(tmp / "half_plus_two")
    ensure_version(base, 2)
    with start_tf_serving_standin(
        base,
        build_versions=None,
        log_dir=tmp,
        extra_args=["--versions", "1", "2", "--fail-load-version", "2", "--poll-seconds", "0.2"],
    ) as server:
        yield server


def trigger(version: int | None, seconds: float = 20) -> ModelVersionAvailableTrigger:
    return ModelVersionAvailableTrigger(
        "tf_serving_t", "half_plus_two", version, deadline=time.time() + seconds, poll_interval=0.1
    )


@pytest.mark.integration
def test_available_version_succeeds(serving: StandinProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*serving.connection_env("tf_serving_t"))
    event = first_event(trigger(1))
    assert event["status"] == "success"
    assert {v["version"]: v["state"] for v in event["versions"]}[1] == "AVAILABLE"


@pytest.mark.integration
def test_a_failed_load_surfaces_the_server_error(
    serving: StandinProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*serving.connection_env("tf_serving_t"))
    event = first_event(trigger(2))
    assert event["status"] == "failed"
    assert "version 2 failed to load: UNKNOWN: simulated load failure" in event["message"]


@pytest.mark.integration
def test_an_unknown_version_times_out(serving: StandinProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*serving.connection_env("tf_serving_t"))
    event = first_event(trigger(7, seconds=0.5))
    assert event["status"] == "timeout"
    assert "not AVAILABLE by the deadline" in event["message"]


@pytest.mark.integration
def test_an_unreachable_server_times_out_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_TF_SERVING_T",
        json.dumps(
            {
                "conn_type": "tf_serving",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"rest_url": f"http://127.0.0.1:{port}"},
            }
        ),
    )
    event = first_event(trigger(1, seconds=0.5))
    assert event["status"] == "timeout"
    assert f"127.0.0.1:{port}" in event["message"]
