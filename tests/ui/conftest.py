"""Browser fixtures: one `make demo` and one Chromium per module, a signed-in page.

Module-scoped, never session-scoped: Playwright's sync API keeps an event loop running
in the main thread while it is open, which would break every later test that calls
``asyncio.run`` (triggers, DAG tests), and the demo's Airflow would load the rest of
the suite. The browser tests therefore live in one module (starting a demo takes
minutes on two cores). Each test gets its preconditions from fixtures or :class:`Demo`
helpers (``ensure_deployed``), never from an earlier test, so they pass alone and in
any order.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.integration import require_binary, unavailable
from tests.support.process_group import stop_group
from tests.ui.browser_support import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    ROOT,
    START_TIMEOUT_S,
    UI_TIMEOUT_MS,
    Demo,
    free_port,
    sign_in,
    wait_for,
    write_demo_fleet,
)


def airflow_database(postgres: Any) -> str:
    """A fresh database for the demo's Airflow metadata on the suite's real PostgreSQL.

    `make demo` keeps Airflow's metadata in SQLite, as `make run` does. Under the browser
    tests' load, Airflow 3.3 on SQLite (four processes writing one file) answered some
    concurrent writes with 500/503 (an action-log INSERT waiting out the busy timeout; a
    backfill creation that failed half-way), and once its scheduler died on the runs that
    backfill had removed (``ObjectDeletedError``); ``airflow standalone`` does not restart
    it, so every later run waited forever. Those are Airflow's limits with SQLite, not the
    demo's: the tests give it PostgreSQL, as the compose stack and the backfill
    integration test do. Everything else is the demo as shipped.
    """
    import secrets

    import sqlalchemy as sa

    database = f"airflow_demo_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    return sa.make_url(postgres.url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Demo]:
    from tests.support.tf_serving_standin import require_tensorflow

    require_binary("Chromium", ["/usr/bin/chromium", "chromium"])
    require_tensorflow()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("Playwright", "the playwright package is not installed")

    directory = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {
        **os.environ,
        "MLINFRA_DEMO_DIR": str(directory),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "MLINFRA_DEMO_READY_TIMEOUT": str(START_TIMEOUT_S),
        # A copy of include/fleet.yaml that the canary tests switch to a canary strategy.
        "MLINFRA_FLEET_FILE": str(write_demo_fleet(directory)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_database(postgres),
    }
    env.pop("AIRFLOW_HOME", None)  # the demo's own, under its directory
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "AIRFLOW__CORE__EXECUTOR"):
        env.pop(key, None)
    log = directory / "demo.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "demo.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        passwords = directory / "airflow" / "simple_auth_manager_passwords.json.generated"

        def api_up() -> bool:
            if process.poll() is not None:
                pytest.fail(
                    f"make demo exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}"
                )
            return passwords.exists() and httpx.get(f"{base}/api/v2/version", timeout=5).status_code == 200

        wait_for("the demo's Airflow API server", api_up, START_TIMEOUT_S, log=log)
        handle = Demo(base, json.loads(passwords.read_text())["admin"], directory, log, process)
        for dag_id in sorted(p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_")):
            wait_for(
                f"DAG {dag_id} parsed and unpaused",
                lambda d=dag_id: not handle.api("GET", f"/dags/{d}")["is_paused"],
                START_TIMEOUT_S,
                log=log,
            )
        yield handle
    finally:
        stop_group(process.pid, leader=process)
        pgids = directory / "pgids"
        for pgid in pgids.read_text().split() if pgids.exists() else []:
            stop_group(int(pgid), timeout=10)


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    """Debian's Chromium through Playwright (one for the session)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    return context.new_page()


@pytest.fixture(scope="module")
def page(browser: Any, demo: Demo) -> Iterator[Any]:
    """A signed-in page: every browser test starts from here, in any order."""
    pg = new_page(browser)
    sign_in(pg, demo)
    try:
        yield pg
    finally:
        pg.context.close()


@pytest.fixture
def fresh_page(browser: Any) -> Iterator[Any]:
    """A page with no session (nobody signed in)."""
    pg = new_page(browser)
    try:
        yield pg
    finally:
        pg.context.close()
