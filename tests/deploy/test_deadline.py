"""model_deploy's Deadline Alert: the interval it is given, the DAG that carries it, the callback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlinfra.config import load_fleet, parse_fleet
from mlinfra.deploy.deadline import ALERT_NAME, TASK_ALLOWANCE_S, deploy_ran_long, expected_duration
from mlinfra.deploy.settings import DeploySettings

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "include" / "fleet.yaml"
SETTINGS = DeploySettings(rollout_timeout=600.0, model_timeout=300.0)


def canary_fleet(steps: list[dict[str, Any]], approval_timeout: str = "30m") -> Any:
    data = yaml.safe_load(FLEET.read_text())
    data["models"][1]["deploy"] = {"strategy": "canary", "steps": steps, "approval_timeout": approval_timeout}
    return parse_fleet(yaml.safe_dump(data, sort_keys=False), "fleet.yaml")


def test_rolling_models_expect_the_rollout_and_model_timeouts_plus_the_tasks() -> None:
    assert expected_duration(SETTINGS, load_fleet(FLEET)) == TASK_ALLOWANCE_S + 600 + 300


def test_a_canary_model_adds_its_weights_pauses_approvals_and_analyses() -> None:
    fleet = canary_fleet(
        [
            {"weight": 20},
            {"analysis": "serving-health"},
            {"pause": "approval"},
            {"weight": 50},
            {"pause": "5m"},
        ]
    )
    health = max(m.interval * m.count for m in fleet.analyses["serving-health"].metrics)
    # two weights + the promotion's rollout, one analysis, one approval (30m), one pause (5m)
    canary = 3 * 600 + health + 1800 + 300
    assert health > 0
    assert expected_duration(SETTINGS, fleet) == TASK_ALLOWANCE_S + canary


def test_the_setting_wins_over_the_derived_value() -> None:
    settings = DeploySettings.from_env({"MLINFRA_DEPLOY_EXPECTED_DURATION": "45m"})
    assert settings.expected_duration == 2700.0
    assert expected_duration(settings, load_fleet(FLEET)) == 2700.0
    assert DeploySettings.from_env({}).expected_duration is None
    with pytest.raises(ValueError, match="MLINFRA_DEPLOY_EXPECTED_DURATION='soon'"):
        DeploySettings.from_env({"MLINFRA_DEPLOY_EXPECTED_DURATION": "soon"})


def _model_deploy_deadline() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "model_deploy.py"))
    assert bag.import_errors == {}
    deadlines = bag.dags["model_deploy"].deadline
    assert isinstance(deadlines, list)
    assert len(deadlines) == 1
    return deadlines[0]


def test_the_dag_carries_the_deadline_from_the_queued_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.definitions.deadline import DeadlineReference

    for name in (
        "MLINFRA_DEPLOY_EXPECTED_DURATION",
        "MLINFRA_DEPLOY_ROLLOUT_TIMEOUT",
        "MLINFRA_DEPLOY_MODEL_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLINFRA_FLEET_FILE", str(FLEET))
    deadline = _model_deploy_deadline()

    expected = expected_duration(DeploySettings.from_env({}), load_fleet(FLEET))
    assert deadline.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert deadline.interval == timedelta(seconds=expected)
    assert deadline.callback.path == "mlinfra.deploy.deadline.deploy_ran_long"
    assert deadline.callback.kwargs == {"expected_seconds": expected}

    monkeypatch.setenv("MLINFRA_DEPLOY_EXPECTED_DURATION", "2h")
    assert _model_deploy_deadline().interval == timedelta(hours=2)


CONTEXT = {
    "dag_run": {"dag_id": "model_deploy", "dag_run_id": "manual__7", "conf": {"model": "half-plus-two"}},
    "deadline": {"id": "0193", "deadline_time": "2026-01-01T01:00:00+00:00"},
}


def test_without_alertmanager_the_callback_logs_and_says_it_did_not_notify(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ALERTMANAGER_DEFAULT", raising=False)
    with caplog.at_level(logging.INFO, logger="mlinfra.deploy.deadline"):
        result = asyncio.run(deploy_ran_long(context=CONTEXT, expected_seconds=3060))

    assert result == {
        "run_id": "manual__7",
        "model": "half-plus-two",
        "summary": "model_deploy run manual__7 (half-plus-two) has not finished 0:51:00 after it was queued",
        "notified": False,
    }
    assert "has not finished 0:51:00 after it was queued (deadline 2026-01-01T01:00:00+00:00)" in caplog.text
    assert "no Airflow connection alertmanager_default" in caplog.text


def test_an_unreachable_alertmanager_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTMANAGER_DEFAULT",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "extra": {"timeout": 1}}),
    )
    with caplog.at_level(logging.WARNING, logger="mlinfra.deploy.deadline"):
        result = asyncio.run(deploy_ran_long(context=CONTEXT, expected_seconds=60))

    assert result["notified"] is False
    assert "the deadline alert was not posted to Alertmanager (alertmanager_default)" in caplog.text


@pytest.mark.integration
def test_the_callback_posts_one_alert_to_alertmanager(
    monkeypatch: pytest.MonkeyPatch, alertmanager: Any
) -> None:
    from mlinfra.hooks.alertmanager import AlertmanagerHook

    host, port = alertmanager.url.removeprefix("http://").split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTMANAGER_DEFAULT",
        json.dumps({"conn_type": "http", "host": host, "port": int(port), "extra": {"timeout": 5}}),
    )
    run = {**CONTEXT, "dag_run": {**CONTEXT["dag_run"], "dag_run_id": f"manual__{time.time_ns()}"}}

    result = asyncio.run(deploy_ran_long(context=run, expected_seconds=60))

    assert result["notified"] is True
    hook = AlertmanagerHook()
    try:
        mine = [a for a in hook.get_alerts() if a["labels"].get("run_id") == result["run_id"]]
    finally:
        hook.close()
    assert [a["labels"] for a in mine] == [
        {
            "alertname": ALERT_NAME,
            "severity": "warning",
            "dag_id": "model_deploy",
            "run_id": result["run_id"],
            "model": "half-plus-two",
        }
    ]
    assert mine[0]["annotations"]["summary"] == result["summary"]
