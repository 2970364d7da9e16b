"""The mlinfra UI as Airflow's API server serves it: Airflow's own app, plugin loading and auth, in-process.

The app under test is mounted by ``airflow.api_fastapi.app.create_app`` from this
repo's plugins folder, exactly as ``airflow api-server`` mounts it; tokens come from
the real auth manager (SimpleAuthManager) and are checked against the real metadata DB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlinfra.store import MetricsStore
from tests.support.connections import store_connection_env
from tests.ui.fleet_data import fill_store

pytestmark = pytest.mark.integration

ROUTES = [
    "/mlinfra/fleet",
    "/mlinfra/api/fleet",
    "/mlinfra/metrics",
    "/mlinfra/audit/serving/half-plus-two",
    "/mlinfra/reports/2026-11-20/report.html",
    "/mlinfra/static/icon.svg",
    "/mlinfra/backtest",
    "/mlinfra/alerts/Hot/why",
    "/mlinfra/",
]


@pytest.fixture(scope="module")
def airflow_app(airflow_db: Path) -> Any:
    from airflow.api_fastapi.app import create_app

    return create_app("core")


@pytest.fixture(scope="module")
def client(airflow_app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(airflow_app, follow_redirects=False) as c:
        yield c


@pytest.fixture(scope="module")
def token(airflow_app: Any) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin")))


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def use_store(monkeypatch: pytest.MonkeyPatch, path: Path) -> MetricsStore:
    monkeypatch.setenv(*store_connection_env(path))
    return MetricsStore.from_url(f"sqlite:///{path}")


@pytest.fixture
def filled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    store = use_store(monkeypatch, tmp_path / "store.db")
    return {"store": store, **fill_store(store, time.time())}


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_refuses_a_request_without_credentials(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Not authenticated"}


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_refuses_a_forged_token(client: Any, path: str) -> None:
    response = client.get(path, headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 403, response.text


def test_a_token_signed_with_another_secret_is_refused(client: Any) -> None:
    import jwt

    forged = jwt.encode({"sub": "admin", "role": "admin", "exp": time.time() + 600}, "guessed", "HS512")
    response = client.get("/mlinfra/api/fleet", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code in (401, 403)


def test_a_browser_without_a_session_gets_a_sign_in_page_with_the_same_status(client: Any) -> None:
    response = client.get("/mlinfra/fleet", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert "/auth/login?next=/mlinfra/fleet" in response.text


def test_the_ui_session_cookie_is_accepted(client: Any, token: str, filled: dict[str, Any]) -> None:
    response = client.get("/mlinfra/fleet", cookies={"_token": token})
    assert response.status_code == 200
    assert "ML Fleet" in response.text


# --------------------------------------------------------------------------- JSON


def test_fleet_json_reports_models_from_the_latest_sweep_and_the_deploy_records(
    client: Any, auth: dict[str, str], filled: dict[str, Any]
) -> None:
    data = client.get("/mlinfra/api/fleet", headers=auth).json()

    models = {m["name"]: m for m in data["models"]}
    assert list(models) == ["half-plus-two", "resnet50-classifier"]
    hpt = models["half-plus-two"]
    assert hpt["deployed_version"] == 2
    assert hpt["serving_versions"] == [2]
    assert hpt["replicas"] == {"desired": 3, "available": 3, "min": 1, "max": 4}
    assert hpt["health"] == "healthy"
    assert hpt["last_deploy"]["run_id"] == "manual__2026-11-20T10:00:00+00:00"
    assert hpt["last_smoke"]["passed"] is True
    assert hpt["last_smoke"]["p99_ms"] == 9.4
    assert hpt["last_smoke"]["requests"] == 30
    assert hpt["image"] == "tensorflow/serving:2.14.1"

    resnet = models["resnet50-classifier"]
    assert resnet["replicas"]["available"] == 1
    assert resnet["health"] == "degraded"
    assert "alert ReplicasUnavailable firing" in resnet["health_reasons"]
    assert resnet["deployed_version"] is None

    assert data["summary"] == {"models": 2, "healthy": 1, "firing": 1, "pending": 1}
    assert data["sweep"]["ts"] == filled["end"]


def test_fleet_json_has_gpu_history_alerts_deploys_scale_events_and_reports(
    client: Any, auth: dict[str, str], filled: dict[str, Any]
) -> None:
    data = client.get("/mlinfra/api/fleet", params={"hours": 1}, headers=auth).json()

    gpus = data["gpus"]
    assert [(g["host"], g["gpu_id"]) for g in gpus] == [("gpu-node-1", "0"), ("gpu-node-1", "1")]
    # One hour at a sweep every 5 minutes: 12 or 13 points depending on where "now" falls.
    assert 12 <= len(gpus[0]["utilization"]["points"]) <= 13
    assert gpus[0]["memory"]["total_bytes"] == 40 * 2**30
    assert 0 < gpus[0]["memory"]["latest"] < 100
    assert gpus[1]["temperature"]["latest"] > gpus[0]["temperature"]["latest"]

    assert [(a["alert"], a["state"]) for a in data["alerts"]] == [
        ("ReplicasUnavailable", "firing"),
        ("GPUHot", "pending"),
    ]
    assert data["alerts"][0]["annotations"]["summary"] == "resnet50-classifier has 1 of 2 replicas available"
    assert [d["version"] for d in data["deployments"]] == [2, 3, 1]
    assert data["deployments"][1]["outcome"] == "rolled_back"
    assert [e["to_replicas"] for e in data["scale_events"]] == [2, 4]
    assert data["scale_events"][1]["dag_id"] == "infra_health_sweep"
    assert [r["status"] for r in data["reports"]] == ["complete", "complete"]


def test_an_empty_store_gives_empty_sections_not_an_error(
    client: Any, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_store(monkeypatch, tmp_path / "empty.db")

    data = client.get("/mlinfra/api/fleet", headers=auth).json()
    page = client.get("/mlinfra/fleet", headers=auth)

    assert data["sweep"] is None
    assert data["gpus"] == data["alerts"] == data["deployments"] == data["scale_events"] == []
    assert data["reports"] == []
    assert {m["health"] for m in data["models"]} == {"unknown"}
    assert page.status_code == 200
    assert "No sweep in the store yet" in page.text
    assert "No scale events recorded" in page.text


# --------------------------------------------------------------------------- HTML


def test_fleet_page_shows_versions_replicas_alerts_and_links_to_dag_runs(
    client: Any, auth: dict[str, str], filled: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLINFRA_DEMO", raising=False)
    html = client.get("/mlinfra/fleet", headers=auth).text

    assert 'id="model-half-plus-two"' in html
    assert '<span class="version" data-field="version">v2</span>' in html
    assert '<span data-field="replicas">3 / 3</span>' in html
    assert "resnet50-classifier has 1 of 2 replicas available" in html
    assert html.count("<svg") >= 6  # three sparklines per GPU
    assert 'href="/dags/model_deploy/runs/manual__2026-11-20T10%3A00%3A00%2B00%3A00"' in html
    assert 'href="/mlinfra/reports/' in html
    assert "Simulated cluster" not in html


def test_a_rule_firing_for_many_models_shows_ten_and_a_link_to_all(
    client: Any, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlinfra.rules.alerts import ActiveAlert
    from mlinfra.rules.state import StoreAlertStates

    store = use_store(monkeypatch, tmp_path / "store.db")
    now = time.time()
    pending = [
        ActiveAlert(
            labels={"alertname": "SlowModel", "severity": "warning", "model": f"model-{i:02d}"},
            annotations={"summary": f"model-{i:02d} is slow"},
            state="pending",
            active_at=now - 60,
            value=0.5,
        )
        for i in range(25)
    ]
    StoreAlertStates(store).save("serving.yaml", "serving", now, {a.fingerprint: a for a in pending}, [])

    grouped = client.get("/mlinfra/fleet?hours=1", headers=auth).text
    every = client.get("/mlinfra/fleet?hours=1&alerts=all", headers=auth).text

    assert grouped.count('<div class="alert">') == 10
    assert "15 more SlowModel alerts" in grouped
    assert 'href="/mlinfra/fleet?hours=1&amp;alerts=all#alerts"' in grouped
    assert 'Alerts <span class="count">(25 firing or pending)' in grouped
    assert every.count('<div class="alert">') == 25
    assert "more SlowModel" not in every
    assert len(client.get("/mlinfra/api/fleet", headers=auth).json()["alerts"]) == 25
    assert client.get("/mlinfra/fleet?alerts=some", headers=auth).status_code == 422


def test_demo_mode_says_the_cluster_is_simulated(
    client: Any, auth: dict[str, str], filled: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLINFRA_DEMO", "1")
    assert "Simulated cluster" in client.get("/mlinfra/fleet", headers=auth).text


def test_audit_page_lists_the_deployments_deploys_and_scale_events(
    client: Any, auth: dict[str, str], filled: dict[str, Any]
) -> None:
    html = client.get("/mlinfra/audit/serving/half-plus-two", headers=auth).text

    assert html.count('<tr id="deploy-') == 3
    ts = filled["scale_events"][1]["ts"]
    assert f'<tr id="scale-{ts}">' in html
    assert "resnet50" not in html.split("<h2>Scale events")[1].split("<h2>Deploys")[0]


def test_report_files_are_served_from_the_path_the_store_records(
    client: Any, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlinfra.reports.records import upsert_report_record

    store = use_store(monkeypatch, tmp_path / "store.db")
    folder = tmp_path / "reports" / "2026-11-20"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<h1>Fleet report 2026-11-20</h1>")
    start = 1_795_132_800  # 2026-11-20T00:00:00Z
    upsert_report_record(store, start, start + 86400, folder.as_uri(), {"status": "complete"})

    ok = client.get("/mlinfra/reports/2026-11-20/report.html", headers=auth)
    missing_file = client.get("/mlinfra/reports/2026-11-20/report.csv", headers=auth)
    other_day = client.get("/mlinfra/reports/2026-11-19/report.html", headers=auth)
    not_a_report = client.get("/mlinfra/reports/2026-11-20/..%2F..%2Fstore.db", headers=auth)

    assert ok.status_code == 200
    assert ok.text == "<h1>Fleet report 2026-11-20</h1>"
    assert ok.headers["content-type"].startswith("text/html")
    assert missing_file.status_code == 404
    assert other_day.status_code == 404
    assert not_a_report.status_code == 404


# --------------------------------------------------------------------------- /mlinfra/metrics


def test_metrics_is_the_latest_sweep_in_the_prometheus_text_format(
    client: Any, auth: dict[str, str], filled: dict[str, Any]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/mlinfra/metrics", headers=auth)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    util = families["ml_gpu_utilization_percent"].samples
    assert sorted(s.labels["gpu_id"] for s in util) == ["0", "1"]
    from tests.ui.fleet_data import gpu_samples

    expected = {
        s.labels["gpu_id"]: s.value
        for s in gpu_samples(filled["end"])
        if s.name == "ml_gpu_utilization_percent"
    }
    assert {s.labels["gpu_id"]: s.value for s in util} == pytest.approx(expected)
    # A sample's own "job" label is kept as exported_job, as Prometheus does on a scrape.
    cpu = families["ml_cpu_usage_percent"].samples[0]
    assert cpu.labels == {"host": "gpu-node-1", "exported_job": "node"}
    assert families["mlinfra_latest_sweep_timestamp_seconds"].samples[0].value == filled["end"]
    # Every family is described and typed (it used to be "untyped" everywhere).
    assert response.text.count("# HELP ") == response.text.count("# TYPE ") == len(families)
    assert families["ml_gpu_utilization_percent"].type == "gauge"
    assert families["ml_gpu_utilization_percent"].documentation.startswith("GPU busy time")


def test_metrics_of_an_empty_store_is_an_empty_exposition(
    client: Any, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_store(monkeypatch, tmp_path / "empty.db")
    response = client.get("/mlinfra/metrics", headers=auth)
    assert response.status_code == 200
    assert response.text == ""


# --------------------------------------------------------------------------- plugin registration and links


def test_airflow_lists_the_plugin_with_its_app_nav_entry_and_links(client: Any, auth: dict[str, str]) -> None:
    plugins = {p["name"]: p for p in client.get("/api/v2/plugins", headers=auth).json()["plugins"]}

    mlinfra = plugins["mlinfra"]
    assert [a["url_prefix"] for a in mlinfra["fastapi_apps"]] == ["/mlinfra"]
    view = mlinfra["external_views"][0]
    assert (view["name"], view["href"], view["url_route"], view["destination"]) == (
        "ML Fleet",
        "/mlinfra/fleet",
        "ml-fleet",
        "nav",
    )
    assert len(mlinfra["global_operator_extra_links"]) == 3


def _key(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> Any:
    from airflow.models.taskinstancekey import TaskInstanceKey

    return TaskInstanceKey(dag_id, task_id, run_id, 1, map_index)


class _Op:
    def __init__(self, task_type: str = "_PythonDecoratedOperator"):
        self.task_type = task_type


def test_extra_links_resolve_runs_to_the_fleet_page_report_and_audit_entry(filled: dict[str, Any]) -> None:
    from mlinfra.ui.links import DailyReportLink, DeploymentAuditLink, FleetModelLink

    deploy_run = "manual__2026-11-20T10:00:00+00:00"
    from mlinfra.reports.records import report_records

    report_run = report_records(filled["store"])[-1]["run_id"]
    scale = filled["scale_events"][0]

    assert FleetModelLink().get_link(_Op(), ti_key=_key("model_deploy", "promote", deploy_run)) == (
        "/mlinfra/fleet#model-half-plus-two"
    )
    assert (
        DailyReportLink()
        .get_link(_Op(), ti_key=_key("metrics_report", "build_report", report_run))
        .endswith("/report.html")
    )
    assert (
        DeploymentAuditLink().get_link(
            _Op("ScaleDeploymentOperator"), ti_key=_key("infra_health_sweep", "scale", scale["run_id"], 0)
        )
        == f"/mlinfra/audit/serving/resnet50-classifier#scale-{scale['ts']}"
    )


def test_extra_links_stay_off_other_tasks_and_runs_without_rows(filled: dict[str, Any]) -> None:
    from mlinfra.ui.links import DailyReportLink, DeploymentAuditLink, FleetModelLink

    other = _key("infra_health_sweep", "write_sweep", "scheduled__2026-11-20T10:00:00+00:00")
    assert FleetModelLink().get_link(_Op(), ti_key=other) == ""
    assert DailyReportLink().get_link(_Op(), ti_key=other) == ""
    assert DeploymentAuditLink().get_link(_Op(), ti_key=other) == ""
    # A report run that has not written its row yet: no button rather than a dead link.
    assert DailyReportLink().get_link(_Op(), ti_key=_key("metrics_report", "build_report", "manual__x")) == ""
    # The ML Fleet button of a deploy run shows the page even before the run's row exists.
    assert FleetModelLink().get_link(_Op(), ti_key=_key("model_deploy", "validate_request", "manual__x")) == (
        "/mlinfra/fleet"
    )


def test_the_templates_read_a_dict_s_keys_as_jinja_does() -> None:
    from types import SimpleNamespace

    from mlinfra.ui.app import _environment

    env = _environment()
    page = env.from_string(
        "{{ d.name }}|{{ d.missing }}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.get('name') }}|{{ o.name }}"
    )
    # A key named like a dict method does not hide the method, as in Jinja's own lookup.
    d = {"name": "m", "items": "x", "get": "y"}
    assert page.render(d=d, o=SimpleNamespace(name="o")) == "m||name=m;items=x;get=y;|m|o"
