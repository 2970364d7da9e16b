"""Shared fixtures. The environment is set by the root ``conftest.py``, before anything imports Airflow.

Unit tests need no network and no Airflow database; integration tests (marked
``integration``) start real servers from ``tests/support`` and skip, or under
``MLINFRA_REQUIRE_INTEGRATION=1`` fail, when a component cannot be found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlinfra.store import MetricsStore
from tests.support.connections import kube_connection, store_connection
from tests.support.k8s_standin import KubeStandIn
from tests.support.services import (
    PostgresServer,
    ServerHandle,
    alertmanager_server,
    postgres_server,
    prometheus_server,
    pushgateway_server,
)
from tests.support.tf_serving_standin import tf_serving_standin  # noqa: F401  (session fixture)


@pytest.fixture
def airflow_loaded() -> None:
    """Airflow imported, on the suite's AIRFLOW_HOME, before a test points AIRFLOW_HOME elsewhere.

    Airflow reads AIRFLOW_HOME once, at its first import, and configures its metadata DB
    from it. A test that changed it before that import left every later test of the
    process on an empty DB in that test's folder ("no such table: revoked_token").
    """
    import airflow.settings  # noqa: F401


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB (SQLite) under the test AIRFLOW_HOME, migrated once per session."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return home


@pytest.fixture(scope="session")
def deploy_serving(
    tf_serving_standin: object,  # noqa: F811  (the session fixture)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[object]:
    """``(StandinProcess, base path)``: TF Serving for the deploy tests, whose pods the
    Kubernetes stand-in's kubelet runs (tests/deploy/environment.py resets it per test)."""
    from tests.deploy.environment import serving_standin

    # tf_serving_standin (session) has built the cached model this one copies.
    with serving_standin(tmp_path_factory.mktemp("deploy-serving")) as server:
        yield server


# ---------------------------------------------------------------------- connections
# Function-scoped: every test gets its own stand-in and store, so no test sees another's state.


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    """A started Kubernetes stand-in; the Airflow connection ``kubernetes_default`` points at it."""
    with kube_connection(tmp_path, monkeypatch) as standin:
        yield standin


@pytest.fixture
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsStore]:
    """A SQLite store behind the Airflow connection ``mlinfra_store`` (what operators and tasks open)."""
    with store_connection(tmp_path, monkeypatch) as store:
        yield store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[MetricsStore]:
    """A SQLite store of the test's own, with no connection pointing at it."""
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.engine.dispose()


# ---------------------------------------------------------------------- real servers
# Session-scoped: each starts once, on loopback, and only when a test asks for it.


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    return postgres.url


@pytest.fixture(scope="session")
def pushgateway() -> Iterator[ServerHandle]:
    with pushgateway_server() as gw:
        yield gw


@pytest.fixture(scope="session")
def prometheus(pushgateway: ServerHandle) -> Iterator[ServerHandle]:
    with prometheus_server(scrape_targets={"pushgateway": pushgateway.url}) as prom:
        yield prom


@pytest.fixture(scope="session")
def alertmanager() -> Iterator[ServerHandle]:
    with alertmanager_server() as am:
        yield am


# ---------------------------------------------------------------------- marker discipline
# A test that uses one of these starts a server (or Airflow's database) and must be marked
# ``integration``, so that ``make test-fast`` (``-m "not integration"``) stays free of them.
# A test module may define a fixture of the same name (a mock): only the fixtures a test
# really gets count.
SERVER_FIXTURES = frozenset(
    {
        "airflow_db",
        "alertmanager",
        "deploy_serving",
        "kube",
        "postgres",
        "postgres_url",
        "prometheus",
        "pushgateway",
        "tf_serving_standin",
    }
)
SERVER_FIXTURE_MODULES = frozenset({__name__, "tests.support.tf_serving_standin"})


def _servers_used(item: pytest.Function) -> list[str]:
    used = []
    for name, defs in item._fixtureinfo.name2fixturedefs.items():
        if name not in SERVER_FIXTURES:
            continue
        for fixturedef in reversed(defs):  # the test's own, then the ones it overrides and requests
            if getattr(fixturedef.func, "__module__", None) in SERVER_FIXTURE_MODULES:
                used.append(name)
                break
            if name not in fixturedef.argnames:
                break
    return sorted(used)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        f"{item.nodeid} (uses {', '.join(used)})"
        for item in items
        if isinstance(item, pytest.Function)
        and (used := _servers_used(item))
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests start servers but are not marked integration:\n  " + "\n  ".join(sorted(unmarked))
        )
