"""Tests of tests/support/services.py: each launcher starts a real server, and cleans up."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.support import services
from tests.support.services import (
    PostgresServer,
    ServerHandle,
    postgres_server,
    prometheus_server,
    pushgateway_server,
    wait_for_query,
)

# Session-scoped launcher; to be hoisted into tests/conftest.py.


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
def test_postgres_round_trip_through_sqlalchemy(postgres: PostgresServer) -> None:
    engine = sa.create_engine(postgres.url)
    try:
        metadata = sa.MetaData()
        table = sa.Table(
            "round_trip",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("value", sa.Float),
        )
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"name": "a", "value": 1.5}, {"name": "b", "value": float("nan")}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.value).order_by(table.c.id)).all()
            server = conn.execute(sa.text("SELECT current_database(), current_user, version()")).one()
    finally:
        engine.dispose()

    assert rows[0] == ("a", 1.5)
    assert rows[1][0] == "b"
    assert rows[1][1] != rows[1][1]  # NaN round-trips as NaN
    assert server[0] == postgres.database
    assert server[1] == postgres.user
    assert server[2].startswith("PostgreSQL")


@pytest.mark.integration
def test_postgres_requires_the_password_on_loopback(postgres: PostgresServer) -> None:
    import psycopg2

    wrong = sa.engine.make_url(postgres.url).set(password="wrong")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=wrong.host,
            port=wrong.port,
            user=wrong.username,
            password=wrong.password,
            dbname=wrong.database,
        )
    psycopg2.connect(postgres.dsn).close()


@pytest.mark.integration
def test_postgres_server_stops_and_removes_its_directory() -> None:
    with postgres_server(database="other") as pg:
        assert port_open(pg.port)
        workdir = pg.workdir
    assert not port_open(pg.port)
    assert not workdir.exists()


@pytest.mark.integration
def test_pushgateway_and_prometheus_stop_and_clean_up() -> None:
    with pushgateway_server() as gw, prometheus_server({"gateway": gw.url}) as prom:
        assert httpx.get(f"{gw.url}/-/ready").status_code == 200
        wait_for_query(prom.url, 'up{job="gateway"}', lambda r: len(r) == 1 and r[0]["value"][1] == "1")
        ports, dirs = (gw.port, prom.port), (gw.workdir, prom.workdir)
    assert not any(port_open(p) for p in ports)
    assert not any(d.exists() for d in dirs)


@pytest.mark.integration
def test_prometheus_loads_rule_files(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n- name: t\n  rules:\n  - record: mlinfra:test:one\n    expr: vector(1)\n"
        "  - alert: AlwaysFiring\n    expr: vector(1)\n"
    )
    with prometheus_server(rule_files=[rules]) as prom:
        wait_for_query(prom.url, "mlinfra:test:one", lambda r: len(r) == 1)
        alerts = wait_for_query(prom.url, 'ALERTS{alertname="AlwaysFiring"}', lambda r: len(r) == 1)
    assert alerts[0]["metric"]["alertstate"] == "firing"


@pytest.mark.integration
def test_alertmanager_accepts_an_alert(alertmanager: ServerHandle) -> None:
    alert = [{"labels": {"alertname": "MlinfraTest", "severity": "info"}, "annotations": {}}]

    assert httpx.post(f"{alertmanager.url}/api/v2/alerts", json=alert).status_code == 200
    listed = httpx.get(f"{alertmanager.url}/api/v2/alerts", params={"filter": "alertname=MlinfraTest"}).json()
    assert [a["labels"]["alertname"] for a in listed] == ["MlinfraTest"]
    status = httpx.get(f"{alertmanager.url}/api/v2/status").json()
    assert status["cluster"]["status"] == "disabled"


@pytest.mark.integration
def test_wait_for_query_times_out_with_the_last_result() -> None:
    with prometheus_server() as prom, pytest.raises(TimeoutError, match="does_not_exist"):
        wait_for_query(prom.url, "does_not_exist", lambda r: len(r) > 0, timeout=0.5)


def test_missing_binary_skips_naming_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLINFRA_REQUIRE_INTEGRATION", raising=False)

    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus-pushgateway"):
        services._find_binary("Pushgateway", ["no-such-pushgateway"], apt_package="prometheus-pushgateway")


def test_missing_binary_fails_when_integration_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLINFRA_REQUIRE_INTEGRATION", "1")

    with pytest.raises(pytest.fail.Exception, match="apt-get install postgresql"):
        services._find_binary("PostgreSQL", ["/nonexistent/initdb"], apt_package="postgresql")


@pytest.mark.integration
def test_a_server_that_cannot_start_reports_its_log_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    # A flag Prometheus rejects: the launcher must fail fast with Prometheus's own complaint.
    monkeypatch.setattr(services, "PORT_ATTEMPTS", 1)
    binary = services._find_binary("Prometheus", ["prometheus"], apt_package="prometheus")
    with (
        services._workdir("broken") as workdir,
        pytest.raises(services.ServiceStartError, match=r"(?s)exited with status.*no-such-flag"),
        services._serve_http(
            "Prometheus", workdir, lambda port: [binary, "--no-such-flag"], "/-/ready", timeout=10
        ),
    ):
        pass
