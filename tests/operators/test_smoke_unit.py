"""TFServingSmokeTestOperator's branches with the TF Serving hook patched (no servers).

The fleet is the project's own ``include/fleet.yaml`` (the root conftest points at it); the
smoke file is a short one of the test's own. The hook answers as ``half_plus_two`` does
(``y = 0.5 * x + 2``) unless a test makes it answer wrongly or fail; the smoke run, its
checks and its report are the real ones. ``test_smoke.py`` runs the same operator against
the TF Serving stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlinfra.exceptions import SmokeFileError, SmokeTestFailed, TemplatedValueError, TFServingUnavailable
from mlinfra.operators.smoke import TFServingSmokeTestOperator

TFS_HOOK = "mlinfra.hooks.tf_serving.TFServingHook"
SMOKE = {
    "repetitions": 2,
    "warmup": 1,
    "concurrency": 1,
    "cases": [
        {"name": "zeros", "inputs": {"x": [0.0]}, "expected": {"y": [2.0]}},
        {"name": "batch", "inputs": {"x": [1.0, 5.0]}, "expected": {"y": [2.5, 4.5]}},
    ],
}


class Serving:
    """The TFServingHook's predict calls, answering as half_plus_two (or as told)."""

    hook_class: mock.MagicMock  # the patched TFServingHook class

    def __init__(self) -> None:
        self.slope = 0.5
        self.error: Exception | None = None
        self.calls: list[tuple[str, str, int]] = []  # (protocol, model, version)
        self.closed = 0

    def _answer(self, protocol: str, model: str, inputs: dict[str, Any], version: int) -> list[float]:
        self.calls.append((protocol, model, version))
        if self.error is not None:
            raise self.error
        return [self.slope * x + 2 for x in inputs["x"]]

    def predict(
        self, model: str, inputs: dict[str, Any], version: int, signature: str, dtypes: Any = None
    ) -> dict[str, Any]:
        return {"y": self._answer("grpc", model, inputs, version)}

    def rest_predict(
        self, model: str, *, inputs: dict[str, Any], version: int, signature_name: str
    ) -> dict[str, Any]:
        return {"outputs": self._answer("rest", model, inputs, version)}

    def close(self) -> None:
        self.closed += 1


class TI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def serving() -> Iterator[Serving]:
    standin = Serving()
    with mock.patch(TFS_HOOK) as standin.hook_class:
        standin.hook_class.for_model.return_value = standin
        yield standin


@pytest.fixture
def smoke_file(tmp_path: Path) -> Path:
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(SMOKE))
    return path


def operator(smoke_file: Path, **kwargs: Any) -> TFServingSmokeTestOperator:
    args: dict[str, Any] = {
        "task_id": "smoke_test",
        "model": "half-plus-two",
        "version": "2",
        "smoke_file": str(smoke_file),  # absolute: include_path() keeps it as it is
    }
    return TFServingSmokeTestOperator(**{**args, **kwargs})


def test_a_passing_version_returns_and_pushes_the_report(serving: Serving, smoke_file: Path) -> None:
    ti = TI()
    report = operator(smoke_file).execute({"ti": ti})
    assert report["passed"] is True
    assert ti.pushed == {"smoke_report": report}
    # Every case, warm-up and measured, over both protocols, against the exact version.
    assert len(serving.calls) == 2 * 2 * (1 + 2)
    assert {c[0] for c in serving.calls} == {"grpc", "rest"}
    assert {c[1:] for c in serving.calls} == {("half_plus_two", 2)}
    assert serving.closed == 1
    serving.hook_class.assert_not_called()
    # The hook comes from the fleet model, so it uses the model's connection and addresses.
    model = serving.hook_class.for_model.call_args.args[0]
    assert (model.name, model.serving.conn_id) == ("half-plus-two", "tf_serving_half_plus_two")


def test_protocols_limit_what_is_sent(serving: Serving, smoke_file: Path) -> None:
    operator(smoke_file, protocols=["rest"]).execute({"ti": TI()})
    assert {c[0] for c in serving.calls} == {"rest"}


def test_a_wrong_answer_fails_without_retry_and_keeps_the_report(serving: Serving, smoke_file: Path) -> None:
    serving.slope = 0.6
    ti = TI()
    with pytest.raises(AirflowFailException, match="smoke test of half-plus-two version 2 failed: ") as e:
        operator(smoke_file).execute({"ti": ti})
    assert isinstance(e.value.__cause__, SmokeTestFailed)
    assert "case 'batch'" in str(e.value)
    assert ti.pushed["smoke_report"]["passed"] is False
    assert serving.closed == 1


def test_an_unreachable_server_fails_without_retry(serving: Serving, smoke_file: Path) -> None:
    serving.error = TFServingUnavailable("connection refused", status="UNAVAILABLE")
    ti = TI()
    with pytest.raises(AirflowFailException, match="UNAVAILABLE") as e:
        operator(smoke_file).execute({"ti": ti})
    assert isinstance(e.value.__cause__, SmokeTestFailed)
    assert ti.pushed["smoke_report"]["passed"] is False
    assert serving.closed == 1


def test_the_task_timeout_fails_without_retry(serving: Serving, smoke_file: Path) -> None:
    """A retry of a version too slow to be tested in time could pass and promote it."""
    from datetime import timedelta

    from airflow.sdk.exceptions import AirflowTaskTimeout

    serving.error = AirflowTaskTimeout()  # what execution_timeout's alarm raises in the task
    op = operator(smoke_file, execution_timeout=timedelta(minutes=10))
    assert op.budget_s == 480  # no request starts after 80% of the timeout
    with pytest.raises(
        AirflowFailException, match=r"did not finish within the task's execution_timeout"
    ) as e:
        op.execute({"ti": TI()})
    assert isinstance(e.value.__cause__, SmokeTestFailed)
    assert serving.closed == 1


def test_the_hook_is_closed_even_when_the_run_breaks(serving: Serving, smoke_file: Path) -> None:
    ti = mock.Mock()
    ti.xcom_push.side_effect = RuntimeError("XCom backend down")
    with pytest.raises(RuntimeError, match="XCom backend down"):  # retried: nothing was judged
        operator(smoke_file).execute({"ti": ti})
    assert serving.closed == 1


@pytest.mark.parametrize("flag", [False, "False", "off", "no", "0"])
def test_run_smoke_off_skips_before_any_call(flag: object, serving: Serving, smoke_file: Path) -> None:
    with pytest.raises(AirflowSkipException, match="run_smoke is off"):
        operator(smoke_file, run_smoke=flag).execute({"ti": TI()})
    serving.hook_class.for_model.assert_not_called()


@pytest.mark.parametrize("flag", [True, "true", "on", "None", ""])
def test_run_smoke_on_or_missing_runs(flag: object, serving: Serving, smoke_file: Path) -> None:
    assert operator(smoke_file, run_smoke=flag).execute({"ti": TI()})["passed"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"run_smoke": "maybe"},
            "run_smoke must be a boolean (true/false, yes/no, on/off, 1/0), got 'maybe'",
        ),
        ({"version": "latest"}, "version must be an integer >= 0, got 'latest'"),
        ({"version": "-1"}, "version must be an integer >= 0, got '-1'"),
        ({"version": "None"}, "version must be an integer >= 0, got 'None'"),
    ],
)
def test_bad_templated_values_fail_without_retry_before_any_call(
    kwargs: dict[str, Any], message: str, serving: Serving, smoke_file: Path
) -> None:
    with pytest.raises(AirflowFailException) as e:
        operator(smoke_file, **kwargs).execute({"ti": TI()})
    assert str(e.value) == message
    assert isinstance(e.value.__cause__, TemplatedValueError)
    serving.hook_class.for_model.assert_not_called()


def test_a_broken_smoke_file_fails_without_retry_before_any_call(serving: Serving, tmp_path: Path) -> None:
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({**SMOKE, "repetitions": 0}))
    with pytest.raises(AirflowFailException, match=r"smoke\.json: repetitions: ") as e:
        operator(path).execute({"ti": TI()})
    assert isinstance(e.value.__cause__, SmokeFileError)
    serving.hook_class.for_model.assert_not_called()


def test_a_missing_smoke_file_fails_without_retry(serving: Serving, tmp_path: Path) -> None:
    with pytest.raises(AirflowFailException, match="cannot read the smoke file") as e:
        operator(tmp_path / "absent.json").execute({"ti": TI()})
    assert isinstance(e.value.__cause__, SmokeFileError)


def test_the_fleet_smoke_file_is_the_default(serving: Serving) -> None:
    # include/smoke/half_plus_two.json: 3 cases, 2 warm-up + 40 measured each, both protocols.
    report = TFServingSmokeTestOperator(task_id="smoke_test", model="half-plus-two", version=1).execute(
        {"ti": TI()}
    )
    assert report["passed"] is True
    assert len(serving.calls) == 2 * 3 * (2 + 40)
