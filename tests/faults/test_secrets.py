"""No secret leaks: recognisable secrets in every connection and extra, every dependency failing.

Errors are where secrets escape (a URL with credentials, a key that is not a file),
and errors travel furthest: into task logs, XCom, the store (sweep summaries, alert
evaluations, scaling reasons), the UI's ``/mlinfra/*`` responses and report files.
So every dependency fails here, and each of those places is searched for every secret.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlinfra.config import RuleSettings
from mlinfra.store import MetricsStore, metadata
from tests.faults.servers import FaultyHTTP, free_port
from tests.faults.test_matrix import (
    RUN,
    TS,
    collect_step,
    evaluate_step,
    plan_step,
    rules_dir,
    seed,
)

pytestmark = pytest.mark.integration

SECRET = {
    name: f"s3cr3t-{name}-{uuid.uuid4().hex[:10]}"
    for name in (
        "pushgateway-password",
        "pushgateway-url",
        "alertmanager-password",
        "alertmanager-url",
        "prometheus-password",
        "prometheus-url",
        "tf-client-key",
        "kube-token",
        "store-password",
        "aws-secret",
    )
}


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))


def _store_text(store: MetricsStore) -> str:
    store.create_schema()
    with store.engine.connect() as conn:
        return "\n".join(
            repr(row) for table in metadata.sorted_tables for row in conn.execute(sa.select(table))
        )


def test_no_secret_reaches_logs_xcom_store_ui_or_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog
) -> None:  # type: ignore[no-untyped-def]
    from mlinfra.collectors import kubernetes, serving
    from mlinfra.config import load_fleet
    from mlinfra.exceptions import MlinfraError

    monkeypatch.setenv("MLINFRA_STORE_BUSY_TIMEOUT", "2")
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    seed(store)
    fleet = load_fleet()
    down = free_port()  # nothing listens here
    xcom: list[Any] = []

    with FaultyHTTP(None) as failing:
        failing.set("5xx")
        _conn(
            monkeypatch,
            "prometheus_pushgateway",
            {
                "conn_type": "http",
                "host": f"http://pgw:{SECRET['pushgateway-url']}@127.0.0.1:{failing.port}",
                "login": "pusher",
                "password": SECRET["pushgateway-password"],
                "extra": {"timeout": 1},
            },
        )
        _conn(
            monkeypatch,
            "alertmanager_default",
            {
                "conn_type": "http",
                "host": f"http://am:{SECRET['alertmanager-url']}@127.0.0.1:{failing.port}",
                "login": "am",
                "password": SECRET["alertmanager-password"],
                "extra": {"timeout": 1},
            },
        )
        _conn(
            monkeypatch,
            "prometheus_secrets",
            {
                "conn_type": "prometheus",
                "host": f"http://prom:{SECRET['prometheus-url']}@127.0.0.1:{down}",
                "login": "prom",
                "password": SECRET["prometheus-password"],
                "extra": {"timeout": 1},
            },
        )
        _conn(
            monkeypatch,
            "tf_serving_half_plus_two",
            {
                "conn_type": "tf_serving",
                "host": "127.0.0.1",
                "port": down,
                "extra": {"rest_url": failing.url, "timeout": 1, "client_key": SECRET["tf-client-key"]},
            },
        )
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": failing.url}}],
            "users": [{"name": "u", "user": {"token": SECRET["kube-token"]}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "serving"}}],
            "current-context": "x",
        }
        _conn(
            monkeypatch,
            "kubernetes_default",
            {"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}},
        )

        # The sweep: two collectors fail against their dependencies, the export fails.
        xcom.append(
            collect_step(store, fleet, "kubernetes", lambda _n, f: kubernetes.run(f, request_timeout=1))
        )
        xcom.append(collect_step(store, fleet, "serving", lambda _n, f: serving.run(f)))
        # Rules on a Prometheus that is down, alerts to an Alertmanager that fails.
        prom_fleet = fleet.model_copy(
            update={"rules": RuleSettings(engine="prometheus", prometheus_conn_id="prometheus_secrets")}
        )
        xcom.append(evaluate_step(store, prom_fleet, rules_dir(tmp_path)))
        xcom.append(evaluate_step(store, fleet, rules_dir(tmp_path)))
        xcom.append(plan_step(store, prom_fleet, alerts=xcom[-1]["firing"]))

        # A metrics store that is down, with its password in the connection.
        pg = MetricsStore.from_url(
            f"postgresql+psycopg2://mlinfra:{SECRET['store-password']}@127.0.0.1:{down}/m?connect_timeout=1"
        )
        with pytest.raises(MlinfraError) as store_error:
            pg.staged(RUN)
        xcom.append(str(store_error.value))

        # Reports: object storage refusing, then a local folder.
        from airflow.sdk import ObjectStoragePath

        from mlinfra.reports.publish import publish_report

        _conn(
            monkeypatch,
            "aws_secrets",
            {
                "conn_type": "aws",
                "login": "AKIASECRETS",
                "password": SECRET["aws-secret"],
                "extra": {"endpoint_url": failing.url, "region_name": "us-east-1"},
            },
        )
        s3 = ObjectStoragePath("s3://reports/mlinfra", conn_id="aws_secrets")
        s3.fs.retries = 1
        with pytest.raises(MlinfraError) as report_error:
            publish_report(store, fleet, TS - 3600, TS, base=s3, run_id=RUN)
        xcom.append(str(report_error.value))
        local = ObjectStoragePath((tmp_path / "reports").as_uri())
        xcom.append(publish_report(store, fleet, TS - 3600, TS, base=local, run_id=RUN))

    # The UI, as a signed-in user sees it.
    from fastapi.testclient import TestClient

    from mlinfra.ui.app import create_app

    app = create_app(store=lambda: store, fleet=lambda: fleet, auth=lambda: None)
    with TestClient(app) as client:
        pages = [client.get(path) for path in ("/api/fleet?hours=24", "/fleet?hours=24", "/metrics")]
    assert all(p.status_code == 200 for p in pages), [p.status_code for p in pages]

    logs = capfd.readouterr()
    places = {
        "task logs": logs.out + logs.err + caplog.text,
        "XCom": json.dumps(xcom, default=str),
        "the store": _store_text(store),
        "/mlinfra/* responses": "\n".join(p.text for p in pages),
        "report files": "\n".join(
            p.read_text(errors="replace") for p in (tmp_path / "reports").rglob("*") if p.is_file()
        ),
    }
    # The failures did happen (or this test would prove nothing) ...
    assert "export_error" in places["XCom"]
    assert "post_error" in places["XCom"]
    assert "cannot write to s3://reports/mlinfra" in places["XCom"]
    assert "kubernetes" in xcom[0]["down"]
    assert "serving" in xcom[1]["down"]
    assert len(places["report files"]) > 1000
    # ... and no secret went anywhere.
    leaks = [
        f"{name} in {where}"
        for name, secret in SECRET.items()
        for where, text in places.items()
        if secret in text
    ]
    assert leaks == []
