"""TFServingSmokeTestOperator against the session's TF Serving stand-in (version 1 of half_plus_two)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlinfra.operators.smoke import TFServingSmokeTestOperator
from tests.deploy.environment import write_test_fleet

pytestmark = pytest.mark.integration


class RecordingTI:
    """Collects xcom_push calls (the operator pushes its report before failing)."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def fleet_env(tf_serving_standin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(*tf_serving_standin.connection_env("tf_serving_half_plus_two"))
    path = write_test_fleet(tmp_path, repetitions=3)
    monkeypatch.setenv("MLINFRA_FLEET_FILE", str(path))
    return path


def test_passes_and_returns_the_report(fleet_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    ti = RecordingTI()
    report = TFServingSmokeTestOperator(task_id="smoke", model="half-plus-two", version="1").execute(
        {"ti": ti}
    )
    assert report["passed"] is True
    assert report["protocols"]["grpc"]["requests"] == 9
    assert report["protocols"]["grpc"]["warmup"] == 6
    assert ti.pushed["smoke_report"] == report
    # 9 measured requests cannot give a p99: the report says so instead of judging the slowest.
    assert report["protocols"]["grpc"]["latency"]["p99"] == "not enough samples"
    assert report["not_judged"][0].startswith("grpc: p99 not judged: 9 measured request(s), 100 needed")


def test_a_wrong_expectation_fails_without_retry_and_keeps_the_report(fleet_env: Path) -> None:
    smoke = fleet_env.parent / "smoke" / "half_plus_two.json"
    spec = json.loads(smoke.read_text())
    spec["cases"][1]["expected"]["y"] = [2.5, 3.0, 4.6]
    smoke.write_text(json.dumps(spec))
    ti = RecordingTI()
    # 3 measured requests; the 2 warm-up answers are checked too, and counted apart.
    with pytest.raises(
        AirflowFailException,
        match=r"case 'batch': 0 error\(s\), 3 mismatch\(es\) in 3 requests \(and 2 of 2 warm-up requests\)",
    ):
        TFServingSmokeTestOperator(task_id="smoke", model="half-plus-two", version=1).execute({"ti": ti})
    assert ti.pushed["smoke_report"]["passed"] is False


def test_the_exact_version_is_tested(fleet_env: Path) -> None:
    with pytest.raises(AirflowFailException, match="NOT_FOUND"):
        TFServingSmokeTestOperator(task_id="smoke", model="half-plus-two", version=42).execute(
            {"ti": RecordingTI()}
        )


def test_run_smoke_off_skips(fleet_env: Path) -> None:
    with pytest.raises(AirflowSkipException):
        TFServingSmokeTestOperator(
            task_id="smoke", model="half-plus-two", version=1, run_smoke=False
        ).execute({})
