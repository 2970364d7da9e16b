"""The Airflow UI in a real browser: Chromium (Debian's) driven by Playwright, against `make demo`.

The fixture runs ``scripts/demo.sh`` (what ``make demo`` runs): ``airflow standalone``
in a temporary ``AIRFLOW_HOME`` with this checkout's dags/ and plugins/, wired to the
Kubernetes and TF Serving stand-ins. The tests then walk the newcomer's path, in
order, and save a screenshot of every step under ``test-artifacts/browser/``:

1. sign in;
2. the deploy form refuses an invalid value;
3. trigger ``model_deploy`` from the form with valid values and see the run succeed,
   with the shipped fleet file's SLO and smoke file (only the demo's own settings);
4. open "ML Fleet" from Airflow's navigation and see the new version and replicas;
5. from the embedded page, Scale opens a form prefilled with the current replicas; a
   manual scale with a hold succeeds and the next sweep's autoscaler leaves it alone;
6. start a backfill of ``metrics_report`` from the backfill dialog and see its runs;
7. inside Airflow's navigation (a sandboxed frame), a report link opens the complete
   day's report and a run link opens the run in Airflow.

Later steps build on earlier ones (a browser journey), so run the module as a whole.
Every wait is bounded; a failure message carries the run's task states and the log tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.integration import require_binary, unavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A shared 2-core machine: starting Airflow and TensorFlow takes minutes, not seconds.
START_TIMEOUT_S = 480
RUN_TIMEOUT_S = 420
UI_TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, *, interval: float = 2.0, log: Path | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log and log.exists() else ""
    pytest.fail(f"{what}: not reached after {timeout:.0f}s (last: {last!r})\n{tail}")


@dataclass
class Demo:
    base: str
    password: str
    directory: Path
    log: Path
    process: subprocess.Popen[bytes]

    def token(self) -> str:
        r = httpx.post(
            f"{self.base}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(
            method,
            f"{self.base}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=30,
            **kwargs,
        )
        r.raise_for_status()
        return r.json()

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(
            self.api("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50})[
                "dag_runs"
            ]
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def wait_run(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT_S) -> str:
        def done() -> str | None:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        return str(wait_for(f"{dag_id} run {run_id} to finish", done, timeout, log=self.log))


def stop_group(pgid: int, timeout: float = 60) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
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
        for dag_id in ("model_deploy", "metrics_report", "infra_health_sweep"):
            wait_for(
                f"DAG {dag_id} parsed",
                lambda d=dag_id: handle.api("GET", f"/dags/{d}"),
                START_TIMEOUT_S,
                log=log,
            )
        yield handle
    finally:
        stop_group(process.pid)
        pgids = directory / "pgids"
        for pgid in pgids.read_text().split() if pgids.exists() else []:
            stop_group(int(pgid), timeout=10)


@pytest.fixture(scope="module")
def page(demo: Demo) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(UI_TIMEOUT_MS)
        pg = context.new_page()
        try:
            yield pg
        finally:
            context.close()
            browser.close()


def shot(page: Any, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def open_trigger_dialog(page: Any, demo: Demo, dag_id: str) -> Any:
    page.goto(f"{demo.base}/dags/{dag_id}")
    page.get_by_role("button", name=re.compile(r"^Trigger")).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"{dag_id}").first.wait_for()
    return dialog


# --------------------------------------------------------------------------- the journey


def test_01_sign_in(page: Any, demo: Demo) -> None:
    page.goto(f"{demo.base}/")
    page.wait_for_url(re.compile(r"/auth/login"))
    shot(page, "01-sign-in")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(demo.password)
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(re.compile(rf"^{re.escape(demo.base)}/?$"))
    nav = page.get_by_role("link", name="ML Fleet")
    nav.wait_for()
    shot(page, "02-home")


def test_02_deploy_form_refuses_an_invalid_image_tag(page: Any, demo: Demo) -> None:
    runs_before = len(demo.runs("model_deploy"))
    dialog = open_trigger_dialog(page, demo, "model_deploy")
    dialog.locator("input[name=element_version]").fill("2")
    dialog.locator("input[name=element_image_tag]").fill("not a tag!")
    dialog.get_by_role("button", name="Trigger", exact=True).click()

    page.get_by_text("Failed to Trigger Dag").first.wait_for()
    # The dialog stays open with the server's reason at its top.
    reason = dialog.get_by_text(re.compile(r"not a tag!")).first
    reason.scroll_into_view_if_needed()
    shot(page, "03-deploy-form-refuses-invalid-tag")
    assert dialog.is_visible(), "the trigger dialog closed although the value was refused"
    assert "image_tag" in dialog.inner_text()
    assert len(demo.runs("model_deploy")) == runs_before, "a run was created from an invalid form"
    dialog.get_by_role("button", name="Close").click()


def test_03_deploy_from_the_form_succeeds(page: Any, demo: Demo) -> None:
    dialog = open_trigger_dialog(page, demo, "model_deploy")
    dialog.locator("input[name=element_version]").fill("2")
    dialog.locator("input[name=element_image_tag]").fill("2.14.1")
    shot(page, "04-deploy-form-valid", full_page=True)
    dialog.get_by_role("button", name="Trigger", exact=True).click()

    page.wait_for_url(re.compile(r"/dags/model_deploy/runs/"))
    run_id = page.url.split("/runs/", 1)[1].split("/")[0]
    from urllib.parse import unquote

    run_id = unquote(run_id)
    state = demo.wait_run("model_deploy", run_id)
    page.reload()
    page.get_by_text("success").first.wait_for()
    shot(page, "05-deploy-run-succeeded", full_page=True)
    assert state == "success", (
        f"deploy run {run_id}: {state}; tasks: {demo.task_states('model_deploy', run_id)}"
    )
    # The plugin's global extra link on the deploy's tasks points at the model on the fleet page.
    links = demo.api("GET", f"/dags/model_deploy/dagRuns/{run_id}/taskInstances/promote/links")["extra_links"]
    assert links.get("ML Fleet: model") == "/mlinfra/fleet#model-half-plus-two"


def test_04_ml_fleet_shows_the_new_version_and_replicas(page: Any, demo: Demo) -> None:
    # A sweep after the deploy reads the cluster and TF Serving again.
    run = demo.api("POST", "/dags/infra_health_sweep/dagRuns", json={"logical_date": None, "conf": {}})
    assert demo.wait_run("infra_health_sweep", run["dag_run_id"]) == "success"

    page.goto(f"{demo.base}/")
    page.get_by_role("link", name="ML Fleet").click()
    page.wait_for_url(re.compile(r"/plugin/ml-fleet"))
    frame = page.frame_locator("iframe")
    row = frame.locator("#model-half-plus-two")
    row.wait_for()
    version = row.locator("[data-field=version]")
    replicas = row.locator("[data-field=replicas]")

    def shows_deploy() -> bool:
        if version.inner_text().strip() == "v2" and replicas.inner_text().strip() == "1 / 1":
            return True
        page.reload()
        row.wait_for()
        return False

    wait_for("the fleet page showing v2 on 1 / 1 replicas", shows_deploy, 120, interval=5)
    assert frame.locator("#demo-banner").inner_text().startswith("Simulated cluster.")
    assert row.locator("[data-field=health]").inner_text() == "healthy"
    assert frame.locator("#gpus .gpu").count() == 2  # the demo's simulated GPUs
    shot(page, "06-ml-fleet-in-airflow")
    # The page itself, whole (inside Airflow it scrolls within its frame).
    page.goto(f"{demo.base}/mlinfra/fleet")
    page.locator("#model-half-plus-two").wait_for()
    shot(page, "07-ml-fleet-page", full_page=True)


def test_05_a_held_manual_scale_from_the_prefilled_form_survives_the_next_sweep(
    page: Any, demo: Demo
) -> None:
    page.goto(f"{demo.base}/plugin/ml-fleet")
    frame = page.frame_locator("iframe")
    row = frame.locator("#model-half-plus-two")
    row.wait_for()
    current = row.locator("[data-field=replicas]").inner_text().split("/")[1].strip()
    row.locator("[data-action=model_scale]").click()
    form = frame.locator("#trigger-form")
    form.wait_for()
    assert frame.locator("input[name=replicas]").input_value() == current  # prefilled from the page
    frame.locator("input[name=replicas]").fill("2")
    frame.locator("input[name=reason]").fill("browser test: launch")
    frame.locator("input[name=hold]").fill("1h")
    shot(page, "10-scale-form-prefilled")
    form.get_by_role("button").click()

    # The form posts to Airflow's API with the session, then opens the run in Airflow's own page.
    page.wait_for_url(re.compile(r"/dags/model_scale/runs/"), timeout=UI_TIMEOUT_MS)
    from urllib.parse import unquote

    run_id = unquote(page.url.split("/runs/", 1)[1].split("/")[0])
    assert demo.wait_run("model_scale", run_id) == "success", demo.task_states("model_scale", run_id)

    sweep = demo.api("POST", "/dags/infra_health_sweep/dagRuns", json={"logical_date": None, "conf": {}})
    assert demo.wait_run("infra_health_sweep", sweep["dag_run_id"]) == "success"
    decisions = demo.api(
        "GET",
        f"/dags/infra_health_sweep/dagRuns/{sweep['dag_run_id']}/taskInstances/plan_scaling/xcomEntries/decisions",
    )["value"]
    decisions = json.loads(decisions) if isinstance(decisions, str) else decisions
    hpt = next(d for d in decisions if d["model"] == "half-plus-two")
    assert hpt["reason"].startswith("skipped: held at 2 replicas by a manual scale until "), hpt
    fleet = httpx.get(
        f"{demo.base}/mlinfra/api/fleet", headers={"Authorization": f"Bearer {demo.token()}"}, timeout=30
    ).json()
    assert next(m for m in fleet["models"] if m["name"] == "half-plus-two")["replicas"]["desired"] == 2


def test_06_backfill_metrics_report_from_the_dialog(page: Any, demo: Demo) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first, last = today - timedelta(days=4), today - timedelta(days=2)
    dialog = open_trigger_dialog(page, demo, "metrics_report")
    dialog.get_by_text("Backfill", exact=True).click()
    pickers = dialog.get_by_test_id("datetime-input")
    for index, day in ((0, first), (1, last)):
        pickers.nth(index).click()
        popover = page.locator("[data-scope=popover][data-part=content][data-state=open]")
        popover.get_by_placeholder("YYYY/MM/DD").fill(day.strftime("%Y/%m/%d"))
        popover.get_by_placeholder("HH:mm").fill("00:00")
        popover.get_by_placeholder("HH:mm").press("Enter")
        page.keyboard.press("Escape")
    dialog.get_by_text("3 runs will be triggered").wait_for()
    shot(page, "08-backfill-dialog")
    dialog.get_by_role("button", name="Run Backfill").click()

    def backfill_runs() -> list[dict[str, Any]]:
        return [r for r in demo.runs("metrics_report") if r["run_type"] == "backfill"]

    runs = wait_for(
        "three backfill runs of metrics_report", lambda: len(backfill_runs()) >= 3 and backfill_runs(), 120
    )
    starts = sorted(r["data_interval_start"][:10] for r in runs)
    assert starts == [(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(3)]

    page.goto(f"{demo.base}/dags/metrics_report/runs")
    page.get_by_text(re.compile(r"backfill__")).first.wait_for()
    shot(page, "09-backfill-runs", full_page=True)


def test_07_links_inside_airflows_navigation_open_the_report_and_the_run(page: Any, demo: Demo) -> None:
    day = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")  # seeded whole: complete

    def backfill_done() -> bool:
        runs = [r for r in demo.runs("metrics_report") if r["run_type"] == "backfill"]
        return bool(runs) and all(r["state"] in ("success", "failed") for r in runs)

    wait_for("the backfill runs to finish", backfill_done, RUN_TIMEOUT_S, interval=5)
    page.goto(f"{demo.base}/")
    page.get_by_role("link", name="ML Fleet").click()
    page.wait_for_url(re.compile(r"/plugin/ml-fleet"))
    frame = page.frame_locator("iframe")
    frame.locator("#models").wait_for()
    shot(page, "11-ml-fleet-in-airflow", full_page=True)

    # A report link: the report opens in the frame (popups and top navigation are blocked there).
    frame.locator(f'a[href$="/reports/{day}/report.html"]').first.click()
    frame.get_by_text("Data interval").first.wait_for()
    assert "complete" in frame.locator("body").inner_text()
    shot(page, "12-complete-day-report-in-airflow", full_page=True)
    page.goto(f"{demo.base}/mlinfra/reports/{day}/report.html")
    shot(page, "13-complete-day-report", full_page=True)

    # A run link: Airflow's own page moves to the run.
    page.goto(f"{demo.base}/plugin/ml-fleet")
    frame = page.frame_locator("iframe")
    link = frame.locator("a[data-airflow][href*='/dags/model_deploy/runs/']").first
    href = link.get_attribute("href")
    assert href
    link.click()
    page.wait_for_url(re.compile(re.escape(href) + "$"), timeout=UI_TIMEOUT_MS)
    shot(page, "14-run-opened-from-the-embedded-page")
