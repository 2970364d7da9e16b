"""AlertmanagerHook against a real Alertmanager (Debian prometheus-alertmanager) on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from mlinfra.exceptions import AlertmanagerError
from mlinfra.hooks.alertmanager import AlertmanagerHook, alert_payload, rfc3339
from mlinfra.promql.engine import LocalEngine
from mlinfra.rules.evaluate import EvaluatedAlert, evaluate_groups
from mlinfra.rules.files import load_rule_file
from mlinfra.rules.state import StoreAlertStates
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore

GENERATOR = "http://airflow.example/dags/infra_health_sweep/runs/r1/tasks/evaluate_rules"


def _alert(state: str, **kw: Any) -> EvaluatedAlert:
    return EvaluatedAlert(
        group="g",
        file="f.yaml",
        labels={"alertname": "A", "host": "h"},
        annotations={"summary": "s"},
        state=state,
        active_at=1000.0,
        value=1.0,
        **kw,
    )


def test_payload_of_a_firing_alert_expires_unless_resent() -> None:
    body = alert_payload(
        _alert("firing", fired_at=1060.0), at=1200.0, interval=300.0, generator_url=GENERATOR
    )
    assert body == {
        "labels": {"alertname": "A", "host": "h"},
        "annotations": {"summary": "s"},
        "startsAt": rfc3339(1060.0),
        "endsAt": rfc3339(1200.0 + 4 * 300.0),
        "generatorURL": GENERATOR,
    }


def test_payload_of_a_resolved_alert_ends_when_it_resolved() -> None:
    body = alert_payload(_alert("resolved", fired_at=1060.0, resolved_at=1120.0), at=1200.0, interval=60.0)
    assert body["endsAt"] == "1970-01-01T00:18:40Z"
    assert "generatorURL" not in body


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1.5) == "1970-01-01T00:00:01.500Z"


@pytest.fixture
def am_conn(monkeypatch: pytest.MonkeyPatch, alertmanager) -> str:  # type: ignore[no-untyped-def]
    host, port = alertmanager.url.removeprefix("http://").split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTMANAGER_DEFAULT",
        json.dumps({"conn_type": "http", "host": host, "port": int(port), "extra": {"timeout": 5}}),
    )
    return alertmanager.url


def _poll(
    fetch: Callable[[], list[dict[str, Any]]], ok: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    got = fetch()
    while not ok(got) and time.monotonic() < deadline:
        time.sleep(0.2)
        got = fetch()
    return got


RULES = """
groups:
  - name: am
    rules:
      - alert: MlinfraTestHot
        expr: ml_gpu_temperature_celsius > 85
        labels: {severity: warning}
        annotations: {summary: "GPU {{ $labels.gpu_id }} at {{ $value }} C"}
"""


@pytest.mark.integration
def test_a_firing_alert_appears_in_alertmanager_and_then_resolves(
    am_conn, tmp_path, sqlite_store: MetricsStore
) -> None:  # type: ignore[no-untyped-def]
    rules_path = tmp_path / "am.yaml"
    rules_path.write_text(RULES)
    engine = LocalEngine(sqlite_store)
    groups = load_rule_file(rules_path, engine=engine)
    states = StoreAlertStates(sqlite_store)
    hook = AlertmanagerHook()

    def mine() -> list[dict[str, Any]]:
        return [a for a in hook.get_alerts() if a["labels"].get("alertname") == "MlinfraTestHot"]

    # Evaluation times a few seconds in the past, as a sweep's logical time is: a resolution
    # (endsAt = resolved_at) must not lie in Alertmanager's future, or it is merged away.
    now = time.time() - 5
    sqlite_store.write_sweep(now, [Sample("ml_gpu_temperature_celsius", {"gpu_id": "0", "host": "h1"}, 91.0)])
    result = evaluate_groups(groups, engine, at=now, store=sqlite_store, states=states)
    assert [a.state for a in result.alerts] == ["firing"]
    assert hook.post_alerts(result.alerts, generator_url=GENERATOR, at=now, interval=60) == 1

    got = _poll(mine, lambda alerts: len(alerts) == 1)
    assert len(got) == 1, got
    (alert,) = got
    assert alert["labels"] == {
        "alertname": "MlinfraTestHot",
        "gpu_id": "0",
        "host": "h1",
        "severity": "warning",
    }
    assert alert["annotations"] == {"summary": "GPU 0 at 91 C"}
    assert alert["generatorURL"] == GENERATOR
    assert alert["status"]["state"] == "active"

    # Re-sent while active: posting again keeps one alert.
    hook.post_alerts(result.alerts, generator_url=GENERATOR, at=now, interval=60)
    assert len(_poll(mine, lambda alerts: len(alerts) == 1)) == 1

    # The temperature drops: the next evaluation resolves it, and Alertmanager lets it go.
    later = now + 1
    sqlite_store.write_sweep(
        later, [Sample("ml_gpu_temperature_celsius", {"gpu_id": "0", "host": "h1"}, 60.0)]
    )
    result = evaluate_groups(groups, engine, at=later, store=sqlite_store, states=states)
    assert [a.state for a in result.alerts] == ["resolved"]
    hook.post_alerts(result.alerts, generator_url=GENERATOR, at=later, interval=60)
    assert _poll(mine, lambda alerts: alerts == []) == []
    hook.close()


@pytest.mark.integration
def test_alertmanager_refusal_is_a_clear_error(am_conn) -> None:  # type: ignore[no-untyped-def]
    hook = AlertmanagerHook()
    bad = _alert("firing")
    object.__setattr__(bad, "labels", {})  # Alertmanager requires at least one label
    with pytest.raises(AlertmanagerError, match=r"answered 400"):
        hook.post_alerts([bad], at=time.time())
    assert hook.test_connection()[0] is True


def test_unreachable_alertmanager_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTMANAGER_DEFAULT",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "extra": {"timeout": 1}}),
    )
    monkeypatch.setattr("mlinfra.hooks.alertmanager.RETRY_ATTEMPTS", 2)
    with pytest.raises(AlertmanagerError, match="unreachable"):
        AlertmanagerHook().post_alerts([_alert("firing")], at=time.time())


# ---------------------------------------------------------------------- settings (issue 11)


def _am_connection(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ALERTMANAGER_DEFAULT", json.dumps({"conn_type": "http", **fields}))


@pytest.mark.parametrize(
    ("verify", "expected"), [("false", False), ("False", False), ("0", False), ("true", True), (False, False)]
)
def test_verify_spelled_as_a_string_is_a_boolean_not_a_ca_path(
    monkeypatch: pytest.MonkeyPatch, verify: object, expected: bool
) -> None:
    _am_connection(monkeypatch, host="am", port=9093, extra={"verify": verify})
    assert AlertmanagerHook().verify is expected


def test_verify_naming_a_missing_ca_bundle_is_refused_naming_the_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _am_connection(monkeypatch, host="am", port=9093, extra={"verify": str(tmp_path / "ca.pem")})
    with pytest.raises(
        AlertmanagerError, match=r"'alertmanager_default': extra 'verify' must be true, false"
    ):
        _ = AlertmanagerHook().verify


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf"])
def test_non_finite_timeouts_are_refused(monkeypatch: pytest.MonkeyPatch, timeout: str) -> None:
    _am_connection(monkeypatch, host="am", port=9093, extra={"timeout": timeout})
    with pytest.raises(AlertmanagerError, match="'timeout' must be a finite number"):
        _ = AlertmanagerHook().timeout


def test_credentials_in_the_host_url_stay_out_of_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _am_connection(monkeypatch, host="http://ops:am-s3cret@127.0.0.1:9", extra={"timeout": 1})
    monkeypatch.setattr("mlinfra.hooks.alertmanager.RETRY_ATTEMPTS", 1)
    with pytest.raises(AlertmanagerError, match="unreachable") as err:
        AlertmanagerHook().post_alerts([_alert("firing")], at=time.time())
    assert "am-s3cret" not in str(err.value)
    assert "http://127.0.0.1:9" in str(err.value)
