"""The Airflow UI in a real browser: Chromium (Debian's) driven by Playwright, against `make demo`.

The session fixtures (``tests/ui/conftest.py``) run ``scripts/demo.sh`` (what ``make
demo`` runs): ``airflow standalone`` in a temporary ``AIRFLOW_HOME`` with this checkout's
dags/ and plugins/, wired to the Kubernetes and TF Serving stand-ins. The tests walk a
newcomer's path and save a screenshot of every step under ``test-artifacts/browser/``:

- sign in;
- the deploy form refuses an invalid value;
- trigger ``model_deploy`` from the form with valid values and see the run succeed,
  with the shipped fleet file's SLO and smoke file (only the demo's own settings);
- deploy the documented tag the demo's registry refuses: the run fails, rolls back, and
  the Deployment and TF Serving keep the version that served before;
- open "ML Fleet" from Airflow's navigation and see the deployed version and replicas;
- from the embedded page, Scale opens a form prefilled with the current replicas; a
  manual scale with a hold succeeds and the next sweep's autoscaler leaves it alone;
- start a backfill of ``metrics_report`` from the backfill dialog and see its runs;
- inside Airflow's navigation (a sandboxed frame), a report link opens a complete
  day's report and a run link opens the run in Airflow;
- Admin -> Connections -> Add offers mlinfra's TF Serving connection type with its own
  fields (the provider entry point in ``pyproject.toml``).

Each test gets what it needs from fixtures and the :class:`Demo` helpers (a signed-in
page, a deploy that succeeded, a written report), never from an earlier test: they pass
alone and in any order. Every wait is bounded; a failure message carries the run's task
states and the log tail.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.ui.browser_support import (
    ARTIFACTS,
    UI_TIMEOUT_MS,
    Demo,
    open_trigger_dialog,
    shot,
    sign_in,
    wait_for,
)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- the journey


def test_01_sign_in(fresh_page: Any, demo: Demo) -> None:
    sign_in(fresh_page, demo, screenshots=True)
    nav = fresh_page.get_by_role("link", name="ML Fleet")
    nav.wait_for()
    shot(fresh_page, "02-home")


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


def test_03b_a_deploy_of_an_image_the_registry_refuses_rolls_back(page: Any, demo: Demo) -> None:
    """The README's documented failing tag: ErrImagePull, rollback, the previous version keeps serving."""
    before = demo.deployment()
    image_before = before["spec"]["template"]["spec"]["containers"][0]["image"]
    rest = demo.cluster_env()["MLINFRA_DEMO_TF_SERVING_REST"]

    def available_versions() -> list[int]:
        # TF Serving itself, not the last sweep's snapshot (which may predate another deploy).
        status = httpx.get(f"{rest}/v1/models/half_plus_two", timeout=30).json()["model_version_status"]
        return sorted(int(v["version"]) for v in status if v["state"] == "AVAILABLE")

    serving_before = available_versions()
    dialog = open_trigger_dialog(page, demo, "model_deploy")
    dialog.locator("input[name=element_version]").fill("3")
    dialog.locator("input[name=element_image_tag]").fill("does-not-exist")
    dialog.get_by_role("button", name="Trigger", exact=True).click()

    page.wait_for_url(re.compile(r"/dags/model_deploy/runs/"))
    run_id = unquote(page.url.split("/runs/", 1)[1].split("/")[0])
    assert demo.wait_run("model_deploy", run_id) == "failed", demo.task_states("model_deploy", run_id)
    states = demo.task_states("model_deploy", run_id)
    assert states.get("rollback") == "success", states
    page.reload()
    page.get_by_text("failed").first.wait_for()
    shot(page, "05b-deploy-of-a-refused-image-rolled-back", full_page=True)

    after = demo.deployment()
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == image_before
    assert after["status"].get("availableReplicas") == after["spec"]["replicas"]
    model = demo.fleet_model()
    assert model["deploy_badge"] == {"outcome": "rolled_back", "version": 3}, model["deploy_badge"]
    assert re.search(r"ErrImagePull|ImagePullBackOff", (model["last_deploy"] or {}).get("reason") or ""), (
        model["last_deploy"]
    )
    available = available_versions()
    assert 3 not in available
    assert serving_before, "TF Serving served no version before the deploy"
    assert max(serving_before) in available, (available, serving_before)  # the previous version serves


def test_04_ml_fleet_shows_the_new_version_and_replicas(page: Any, demo: Demo) -> None:
    demo.ensure_deployed("2")
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

    # Another test may have scaled it (a held manual scale): compare with the cluster's own count.
    desired = demo.deployment()["spec"]["replicas"]

    def shows_deploy() -> bool:
        if version.inner_text().strip() == "v2" and replicas.inner_text().strip() == f"{desired} / {desired}":
            return True
        page.reload()
        row.wait_for()
        return False

    wait_for(f"the fleet page showing v2 on {desired} / {desired} replicas", shows_deploy, 120, interval=5)
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

    # The scheduler creates backfill runs in its own loop: on a loaded 2-core machine
    # (load average 11 in one rehearsal) that took more than 120 s; a wait, not a timing.
    runs = wait_for(
        "three backfill runs of metrics_report", lambda: len(backfill_runs()) >= 3 and backfill_runs(), 300
    )
    starts = sorted(r["data_interval_start"][:10] for r in runs)
    assert starts == [(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(3)]

    page.goto(f"{demo.base}/dags/metrics_report/runs")
    page.get_by_text(re.compile(r"backfill__")).first.wait_for()
    shot(page, "09-backfill-runs", full_page=True)


def test_07_links_inside_airflows_navigation_open_the_report_and_the_run(page: Any, demo: Demo) -> None:
    # Yesterday is seeded whole, so its report is complete; the backfill test writes older days.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = (today - timedelta(days=1)).strftime("%Y-%m-%d")
    # A manual run at logical date D reports D-1 (its data interval is the day before).
    report_run = demo.trigger("metrics_report", {}, logical_date=today.isoformat())
    assert demo.wait_run("metrics_report", report_run) == "success", demo.task_states(
        "metrics_report", report_run
    )
    demo.ensure_deployed("2")  # a deploy run for the page to link to

    page.goto(f"{demo.base}/")
    page.get_by_role("link", name="ML Fleet").click()
    page.wait_for_url(re.compile(r"/plugin/ml-fleet"))
    frame = page.frame_locator("iframe")
    frame.locator("#models").wait_for()
    shot(page, "11-ml-fleet-in-airflow", full_page=True)

    # A report link: the report opens in the frame (popups and top navigation are blocked there).
    frame.locator(f'a[href$="/reports/{day}/report.html"]').first.click()
    frame.get_by_text("Data interval").first.wait_for()
    body = frame.locator("body").inner_text()
    assert "complete" in body
    assert report_run in body  # the run that wrote it, next to its data interval
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


def test_add_connection_offers_tf_serving_with_its_fields(page: Any, demo: Demo) -> None:
    names = [
        ep.value
        for ep in entry_points(group="apache_airflow_provider")
        if ep.dist and ep.dist.name == "mlinfra"
    ]
    assert names == ["mlinfra.provider:get_provider_info"], (
        "the installed mlinfra has no provider entry point: re-run `make setup`"
    )
    page.goto(f"{demo.base}/connections")
    page.get_by_role("button", name=re.compile(r"Add Connection", re.I)).click()
    form = page.get_by_role("dialog")
    type_select = form.get_by_role("combobox").first
    type_select.click()
    type_select.fill("TensorFlow")
    page.get_by_role("option", name=re.compile(r"TensorFlow Serving")).click()
    # Relabelled standard fields, then the provider's own fields (an accordion, closed at first).
    for label in ("gRPC host", "gRPC port"):
        form.get_by_text(label, exact=True).first.wait_for()
    form.get_by_role("button", name="Extra Fields", exact=True).click()
    for label in ("REST URL", "Timeout (seconds)", "TLS server name", "CA certificate", "Client key"):
        form.get_by_text(label, exact=True).first.wait_for()
    # Hidden by the field behaviour: TF Serving has no login.
    assert form.get_by_text("Login", exact=True).count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "connections-tf-serving.png"), full_page=True)
