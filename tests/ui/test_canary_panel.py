"""A model's canary panel on the ML Fleet page and in its JSON, from rows written by CanaryRecords itself."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlinfra.config import Fleet, load_fleet, parse_fleet
from mlinfra.deploy.canary.records import CanaryRecords
from mlinfra.store import MetricsStore
from mlinfra.ui.canary_panel import RECENT_S, canary_panel, canary_panels, waiting_for
from mlinfra.ui.fleet import read_fleet_view

FLEET = Path(__file__).resolve().parents[2] / "include" / "fleet.yaml"
STEPS = [
    {"weight": 20},
    {"analysis": "serving-health"},
    {"pause": "approval"},
    {"weight": 50},
    {"pause": "5m"},
]
RUN = "manual__2026-01-02T03:04:05+00:00"


def canary_fleet() -> Fleet:
    """The shipped fleet with half-plus-two on the canary strategy above."""
    data = yaml.safe_load(FLEET.read_text())
    data["models"][0]["deploy"] = {"strategy": "canary", "steps": STEPS}
    return parse_fleet(yaml.safe_dump(data, sort_keys=False), "fleet.yaml")


@pytest.fixture
def records(sqlite_store: MetricsStore) -> CanaryRecords:
    return CanaryRecords(sqlite_store)


def at_the_first_gate(records: CanaryRecords, run_id: str = RUN) -> None:
    """Weight 20 applied (1 canary pod next to 4), the analysis passed, waiting at approval gate 1."""
    records.start(
        run_id, model="half-plus-two", stable_version=1, canary_version=2, steps=5, stable_replicas=4
    )
    records.save_state(run_id, step=0, entered=True, weight=20, canary_replicas=1)
    records.save_state(run_id, step=1, entered=False, pause_until=None)
    records.add_measurement(
        run_id, step=1, seq=0, metric="error-ratio", verdict="successful", weight=20, value=0.002,
        stable_value=0.0015, detail={"reason": "failure condition 'result > 0.01' does not hold for result 0.002"},
    )  # fmt: skip
    records.add_measurement(
        run_id, step=1, seq=0, metric="latency-vs-stable", verdict="inconclusive", weight=20, value=0.031,
        stable_value=0.030, detail={"reason": "baseline: 12 canary samples < min_samples 50"},
    )  # fmt: skip
    records.save_state(run_id, step=2, phase="paused", gate=1)


@pytest.fixture
def client(sqlite_store: MetricsStore) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from mlinfra.ui.app import create_app

    app = create_app(store=lambda: sqlite_store, fleet=canary_fleet, auth=lambda: None)
    with TestClient(app, root_path="/mlinfra") as c:
        yield c


def test_a_model_without_a_canary_run_has_no_panel(sqlite_store: MetricsStore, client: Any) -> None:
    view = read_fleet_view(sqlite_store, canary_fleet())
    assert [m["canary"] for m in view["models"]] == [None, None]
    assert [m["canary"] for m in client.get("/api/fleet").json()["models"]] == [None, None]
    assert 'id="canary-' not in client.get("/fleet").text


def test_a_run_at_an_approval_gate_shows_its_steps_share_measurements_and_how_to_approve(
    records: CanaryRecords,
) -> None:
    at_the_first_gate(records)

    panel = canary_panel(records, canary_fleet().model("half-plus-two"), now=time.time())

    assert panel is not None
    assert (panel["phase"], panel["current"], panel["steps"], panel["weight"]) == ("paused", 3, 5, 20)
    assert (panel["canary_replicas"], panel["stable_replicas"], panel["share"]) == (1, 4, 0.2)
    assert [(s["description"], s["state"]) for s in panel["step_list"]] == [
        ("weight 20%", "done"),
        ("analysis serving-health", "done"),
        ("approval (gate 1)", "current"),
        ("weight 50%", "pending"),
        ("pause 300s", "pending"),
    ]
    assert [
        (m["number"], m["analysis"], m["metric"], m["verdict"], m["value"], m["stable_value"])
        for m in panel["measurements"]
    ] == [
        (2, "serving-health", "error-ratio", "successful", 0.002, 0.0015),
        (2, "serving-health", "latency-vs-stable", "inconclusive", 0.031, 0.030),
    ]
    assert panel["measurements"][1]["reason"] == "baseline: 12 canary samples < min_samples 50"
    waiting = panel["waiting"]
    assert (waiting["kind"], waiting["gate"], waiting["task_id"]) == ("approval", 1, "approve_1")
    run = "manual__2026-01-02T03%3A04%3A05%2B00%3A00"
    assert waiting["task_path"] == f"/dags/model_deploy/runs/{run}/tasks/approve_1/required_actions"
    assert (
        waiting["api_path"]
        == f"/api/v2/dags/model_deploy/dagRuns/{run}/taskInstances/approve_1/-1/hitlDetails"
    )
    assert panel["reason"] is None
    assert panel["ended"] is False


def test_the_page_and_the_json_show_the_panel(records: CanaryRecords, client: Any) -> None:
    at_the_first_gate(records)

    page = client.get("/fleet")
    data = client.get("/api/fleet").json()

    assert page.status_code == 200
    row = re.search(
        r'<tr class="canary-row" id="canary-half-plus-two".*?</div>\s*</td>\s*</tr>', page.text, re.S
    )
    assert row is not None, "half-plus-two has a canary row"
    text = html.unescape(row.group(0))
    assert 'data-field="canary-phase">paused<' in text
    assert "step 3 of 5" in text
    assert "weight 20%" in text
    assert "1 canary / 4 stable pods: 20.0 %" in text
    assert "/tasks/approve_1/required_actions" in text
    assert "/required_actions?response_received=false" in text
    assert text.count('class="pill successful"') == 1
    assert text.count('class="pill inconclusive"') == 1
    assert "0.0020" in text
    assert "0.0015" in text
    assert 'id="canary-resnet50-classifier"' not in page.text
    panel = data["models"][0]["canary"]
    assert (panel["run_id"], panel["phase"], len(panel["measurements"])) == (RUN, "paused", 2)
    assert data["models"][1]["canary"] is None


def test_an_aborted_run_shows_its_reason_until_a_day_has_passed(records: CanaryRecords) -> None:
    at_the_first_gate(records)
    records.finish(RUN, "aborted", reason="approval gate 1: Reject by alice")
    model = canary_fleet().model("half-plus-two")

    panel = canary_panel(records, model, now=time.time())

    assert panel is not None
    assert (panel["phase"], panel["reason"], panel["waiting"], panel["ended"]) == (
        "aborted", "approval gate 1: Reject by alice", None, True,
    )  # fmt: skip
    assert [s["state"] for s in panel["step_list"]] == [
        "done",
        "done",
        "aborted",
        "not reached",
        "not reached",
    ]
    assert canary_panel(records, model, now=time.time() + RECENT_S + 60) is None


def test_a_promoted_run_has_every_step_done(records: CanaryRecords) -> None:
    at_the_first_gate(records)
    records.save_state(RUN, step=5, phase="promoting", gate=None)
    model = canary_fleet().model("half-plus-two")
    promoting = canary_panel(records, model, now=time.time())
    assert promoting is not None
    assert promoting["waiting"]["kind"] == "promotion"
    assert promoting["current"] is None

    records.finish(RUN, "promoted", reason="promoted to version 2 after 5 step(s)")
    panel = canary_panel(records, model, now=time.time())

    assert panel is not None
    assert {s["state"] for s in panel["step_list"]} == {"done"}
    assert panel["reason"] == "promoted to version 2 after 5 step(s)"


def test_the_latest_run_is_shown(records: CanaryRecords) -> None:
    at_the_first_gate(records, "manual__old")
    records.finish("manual__old", "aborted", reason="old")
    at_the_first_gate(records, "manual__new")

    panel = canary_panel(records, canary_fleet().model("half-plus-two"), now=time.time())

    assert panel is not None
    assert panel["run_id"] == "manual__new"


def test_what_a_running_run_waits_for(records: CanaryRecords) -> None:
    at_the_first_gate(records)
    model = canary_fleet().model("half-plus-two")
    now = time.time()

    records.save_state(RUN, phase="running", gate=None, step=3, entered=True, weight=50, canary_replicas=4)
    waiting = canary_panel(records, model, now=now)["waiting"]  # type: ignore[index]
    assert waiting["kind"] == "rollout"
    assert "4 pod(s) (weight 50%)" in waiting["text"]

    records.save_state(RUN, step=4, entered=True, pause_until=now + 300)
    assert canary_panel(records, model, now=now)["waiting"] == {  # type: ignore[index]
        "kind": "pause", "text": "the pause's end", "until": now + 300,
    }  # fmt: skip

    records.save_state(RUN, step=1, entered=True, pause_until=now + 30)
    waiting = canary_panel(records, model, now=now)["waiting"]  # type: ignore[index]
    assert (waiting["kind"], waiting["until"]) == ("analysis", now + 30)
    assert "next round of analysis serving-health" in waiting["text"]

    records.save_state(RUN, step=3, entered=False, pause_until=None)
    assert canary_panel(records, model, now=now)["waiting"]["kind"] == "start"  # type: ignore[index]

    records.save_state(RUN, phase="aborting", reason="analysis serving-health failed")
    assert canary_panel(records, model, now=now)["waiting"]["kind"] == "abort"  # type: ignore[index]


def test_steps_the_fleet_file_no_longer_has_are_not_described(records: CanaryRecords) -> None:
    at_the_first_gate(records)
    rolling = load_fleet(FLEET).model("half-plus-two")  # the strategy was changed back since

    panel = canary_panel(records, rolling, now=time.time())

    assert panel is not None
    assert panel["step_list"] == []
    assert (panel["current"], panel["steps"]) == (3, 5)
    assert [m["analysis"] for m in panel["measurements"]] == [None, None]
    run = records.get(RUN)
    assert run is not None
    records.save_state(RUN, phase="running", gate=None)
    assert waiting_for(records.get(RUN), None, now=time.time())["kind"] == "step"  # type: ignore[arg-type]


def test_the_fleet_s_panels_in_one_read_are_each_model_s_panel(records: CanaryRecords) -> None:
    at_the_first_gate(records, "manual__old")
    records.finish("manual__old", "aborted", reason="old")
    at_the_first_gate(records, "manual__new")
    records.start("manual__r", model="resnet50-classifier", stable_version=1, canary_version=2, steps=5)
    records.finish("manual__r", "promoted", reason="done")
    fleet = canary_fleet()
    now = time.time()

    for when in (now, now + RECENT_S + 60):
        panels = canary_panels(records, fleet.models, now=when)
        assert panels == {m.name: canary_panel(records, m, now=when) for m in fleet.models}
    assert panels == {"half-plus-two": panels["half-plus-two"], "resnet50-classifier": None}
    now_panels = canary_panels(records, fleet.models, now=now)
    assert now_panels["half-plus-two"]["run_id"] == "manual__new"  # type: ignore[index]
    assert len(now_panels["half-plus-two"]["measurements"]) == 2  # type: ignore[index]
    assert now_panels["resnet50-classifier"]["phase"] == "promoted"  # type: ignore[index]
