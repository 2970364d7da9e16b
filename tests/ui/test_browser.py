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
  fields (the provider entry point in ``pyproject.toml``);
- a canary deploy stops at its approval gate, which appears in Airflow's Required Actions
  view (Browse menu) with the analysis summary: approved there, the canary is promoted;
  rejected there, or left unanswered past its timeout, it is aborted, the canary removed
  and the stable Deployment's spec byte-identical; gRPC traffic through the Service sees
  no failed request during any of these runs. The demo's fleet file is a copy of
  ``include/fleet.yaml`` (``MLINFRA_FLEET_FILE``) that these tests switch to a canary
  strategy for their own runs only.

Each test gets what it needs from fixtures and the :class:`Demo` helpers (a signed-in
page, a deploy that succeeded, a written report), never from an earlier test: they pass
alone and in any order. Every wait is bounded; a failure message carries the run's task
states and the log tail.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.support.traffic import GrpcTraffic
from tests.ui.browser_support import (
    ARTIFACTS,
    DEMO_VERSIONS,
    RUN_TIMEOUT_S,
    SERVED_MODEL,
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
    demo.wait_deploys_idle()
    before = demo.deployment()
    image_before = before["spec"]["template"]["spec"]["containers"][0]["image"]
    # TF Serving itself, not the last sweep's snapshot (which may predate another deploy).
    serving_before = demo.serving_versions()
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
    available = demo.serving_versions()
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
    # Days the scheduler never runs on its own: at start it runs the latest whole day (today-1,
    # or today-2 if the demo started before midnight), and a backfill skips days that have a
    # run, so a range reaching them would count fewer than three runs after midnight.
    first, last = today - timedelta(days=5), today - timedelta(days=3)
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
    # The run says which day it reported on its own note (the demo defines mlinfra_airflow_api).
    note = demo.api("GET", f"/dags/metrics_report/dagRuns/{report_run}")["note"] or ""
    assert note.startswith(f"Report of **{day}**: complete"), note
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


# --------------------------------------------------------------------------- canary approval gates

# A canary that stops at one approval gate: canary pods for half the traffic, the golden
# set compared with the stable (one round), then the gate; past the gate it is promoted.
CANARY_STEPS: list[dict[str, Any]] = [{"weight": 50}, {"analysis": "golden-agreement"}, {"pause": "approval"}]
GATE = "approve_1"


@dataclass
class CanaryRun:
    """A canary deploy of half-plus-two under way, with gRPC traffic through its Service."""

    run_id: str
    stable: int  # the version served before
    version: int  # the canary's
    spec_before: str  # the stable Deployment's .spec (JSON) before the run
    traffic: GrpcTraffic


@contextmanager
def canary_deploy(demo: Demo, *, approval_timeout: str = "10m") -> Iterator[CanaryRun]:
    """Trigger model_deploy with half-plus-two on CANARY_STEPS; the run is over when the block ends.

    The canary's version is above the stable's and above 3: the other tests deploy 2 and the
    refused image at 3 (which must roll back to something else), whatever the order.
    A run a failed test leaves waiting at its gate is rejected on the way out, so that it is
    aborted (not left for the next deploy to queue behind).
    """
    demo.wait_deploys_idle()
    stable = demo.stable_version()
    version = max(stable + 1, 4)
    assert version in DEMO_VERSIONS, f"no version above {stable} in the demo's model store"
    assert demo.canary_objects() == [], "a canary is left from before"
    spec_before = demo.stable_spec()
    traffic = GrpcTraffic(demo.grpc_target(), "half_plus_two", rate_per_s=10).start()
    run_id = ""
    # The canary's fleet file until the run has ended: its tasks read it.
    with demo.canary_strategy(CANARY_STEPS, approval_timeout=approval_timeout):
        try:
            run_id = demo.trigger(
                "model_deploy", {"model": SERVED_MODEL, "version": version, "image_tag": "2.14.1"}
            )
            yield CanaryRun(run_id, stable, version, spec_before, traffic)
            demo.wait_run("model_deploy", run_id)
        finally:
            traffic.stop()
            if run_id:
                _end_run(demo, run_id)


def _end_run(demo: Demo, run_id: str) -> None:
    """Best effort after a failure: reject a gate still waiting, wait for the abort."""
    with contextlib.suppress(Exception, pytest.fail.Exception):
        if demo.api("GET", f"/dags/model_deploy/dagRuns/{run_id}")["state"] in ("success", "failed"):
            return
        if demo.task_states("model_deploy", run_id).get(GATE) == "awaiting_input":
            demo.api(
                "PATCH",
                f"/dags/model_deploy/dagRuns/{run_id}/taskInstances/{GATE}/-1/hitlDetails",
                json={"chosen_options": ["Reject"]},
            )
        demo.wait_run("model_deploy", run_id)


def wait_for_gate(demo: Demo, run: CanaryRun) -> dict[str, Any]:
    """The gate waits for an answer (awaiting_input); its Human-in-the-loop request."""

    def waiting() -> bool:
        state = demo.api("GET", f"/dags/model_deploy/dagRuns/{run.run_id}")["state"]
        states = demo.task_states("model_deploy", run.run_id)
        if state in ("success", "failed"):
            pytest.fail(f"run {run.run_id} ended {state} before its approval gate: {states}")
        return states.get(GATE) == "awaiting_input"

    wait_for(f"{GATE} of {run.run_id} waiting for an answer", waiting, RUN_TIMEOUT_S, log=demo.log)
    return demo.hitl_detail(run.run_id, GATE)


def answer_in_required_actions(page: Any, demo: Demo, run: CanaryRun, option: str, name: str) -> None:
    """Open the request from Airflow's Required Actions view (Browse menu), check it, choose ``option``."""
    page.goto(f"{demo.base}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Required Actions").click()
    page.wait_for_url(re.compile(r"/required_actions"))
    row = page.get_by_role("row").filter(has_text=run.run_id)
    row.get_by_text("Approval Required").wait_for()
    shot(page, f"{name}-1-required-actions")
    row.get_by_role("button", name="Open Review Drawer").click()
    drawer = page.get_by_role("dialog")
    drawer.get_by_text(f"Canary of {SERVED_MODEL}: go past approval gate 1").first.wait_for()
    # The body: the canary's position and the measurements so far (the golden comparison).
    drawer.get_by_text(f"canary version {run.version} (stable {run.stable})").first.wait_for()
    assert re.search(r"golden\s+0\s+successful", drawer.inner_text()), drawer.inner_text()
    shot(page, f"{name}-2-review")
    drawer.get_by_role("button", name=option, exact=True).click()
    page.get_by_text(f"{GATE} response successful").first.wait_for()
    received = {"Approve": "Approval Received", "Reject": "Rejection Received"}[option]
    page.keyboard.press("Escape")
    row.get_by_text(received).wait_for()
    shot(page, f"{name}-3-answered")


@contextmanager
def shot_on_failure(page: Any, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            shot(page, f"{name}-failed", full_page=True)
        raise


def canary_panel(demo: Demo, run: CanaryRun) -> dict[str, Any]:
    """The ML Fleet page's canary panel of half-plus-two (its latest canary run: this one)."""
    model = demo.fleet_model()
    panel = model["canary"] or {}
    assert panel.get("run_id") == run.run_id, panel
    return {**panel, "deploy_badge": model["deploy_badge"], "last_deploy": model["last_deploy"]}


def assert_aborted_unchanged(demo: Demo, run: CanaryRun, reason: str) -> dict[str, Any]:
    """The run failed with the canary aborted for ``reason``, removed, the stable never written."""
    state = demo.api("GET", f"/dags/model_deploy/dagRuns/{run.run_id}")["state"]
    states = demo.task_states("model_deploy", run.run_id)
    assert state == "failed", states
    assert states["canary_segment_1"] in ("skipped", "upstream_failed"), states
    assert states["canary_conclude"] == "success", states
    assert states["finish"] == "failed", states
    panel = canary_panel(demo, run)
    assert panel["phase"] == "aborted", panel
    assert reason in (panel["reason"] or ""), panel["reason"]
    assert panel["deploy_badge"] == {"outcome": "aborted", "version": run.version}, panel["deploy_badge"]
    assert reason in ((panel["last_deploy"] or {}).get("reason") or ""), panel["last_deploy"]
    assert demo.canary_objects() == []
    assert demo.stable_spec() == run.spec_before, "the stable Deployment's spec changed"
    wait_for(
        f"TF Serving serving version {run.stable} only",
        lambda: demo.serving_versions() == [run.stable],
        120,
        log=demo.log,
    )
    return panel


def assert_no_failed_request(run: CanaryRun) -> None:
    report = run.traffic.stop()
    print(f"gRPC traffic through the Service during {run.run_id}: {report.describe()}")
    assert report.sent > 0, report.describe()
    assert report.failed == 0, report.describe()
    assert set(report.versions) <= {run.stable, run.version}, report.describe()


@pytest.mark.timeout(900)  # the first test of the module also waits for the demo to start
def test_08_an_approved_canary_gate_in_required_actions_promotes(page: Any, demo: Demo) -> None:
    with canary_deploy(demo) as run, shot_on_failure(page, "15-canary-approved"):
        request = wait_for_gate(demo, run)
        assert request["options"] == ["Approve", "Reject"], request
        answer_in_required_actions(page, demo, run, "Approve", "15-canary-approved")

    assert demo.api("GET", f"/dags/model_deploy/dagRuns/{run.run_id}")["state"] == "success", (
        demo.task_states("model_deploy", run.run_id)
    )
    request = demo.hitl_detail(run.run_id, GATE)
    assert request["chosen_options"] == ["Approve"], request
    assert (request["responded_by_user"] or {}).get("name") == "admin", request
    panel = canary_panel(demo, run)
    assert panel["phase"] == "promoted", panel
    assert panel["deploy_badge"] == {"outcome": "succeeded", "version": run.version}, panel["deploy_badge"]
    assert demo.canary_objects() == []
    assert demo.stable_version() == run.version
    wait_for(
        f"TF Serving serving version {run.version} only",
        lambda: demo.serving_versions() == [run.version],
        120,
        log=demo.log,
    )
    assert_no_failed_request(run)


@pytest.mark.timeout(900)
def test_09_a_rejected_canary_gate_aborts_and_leaves_the_stable_alone(page: Any, demo: Demo) -> None:
    with canary_deploy(demo) as run, shot_on_failure(page, "16-canary-rejected"):
        wait_for_gate(demo, run)
        answer_in_required_actions(page, demo, run, "Reject", "16-canary-rejected")

    assert_aborted_unchanged(demo, run, "approval gate 1: Reject by admin")
    assert demo.hitl_detail(run.run_id, GATE)["chosen_options"] == ["Reject"]
    assert_no_failed_request(run)


@pytest.mark.timeout(900)
def test_10_an_unanswered_canary_gate_times_out_and_aborts(page: Any, demo: Demo) -> None:
    with canary_deploy(demo, approval_timeout="10s") as run, shot_on_failure(page, "17-canary-timed-out"):
        wait_for_gate(demo, run)  # and nobody answers

    panel = assert_aborted_unchanged(demo, run, "approval gate 1: no answer before its timeout (10s)")
    assert "the approval timed out" in panel["reason"], panel["reason"]
    request = demo.hitl_detail(run.run_id, GATE)
    assert request["response_received"] is False, request
    assert request["chosen_options"] is None, request
    # Asked once: a timed-out gate is not retried (a retry would ask, and wait, again).
    gate = demo.task_instance("model_deploy", run.run_id, GATE)
    assert (gate["state"], gate["try_number"]) == ("failed", 1), gate
    assert_no_failed_request(run)
    # The Required Actions view says so.
    page.goto(f"{demo.base}/required_actions")
    page.get_by_role("row").filter(has_text=run.run_id).get_by_text("No Response Received").wait_for()
    shot(page, "17-canary-timed-out")
