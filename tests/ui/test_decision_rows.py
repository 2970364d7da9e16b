"""Scale decisions on the audit page: readable rows, RFC 3339 times, nothing cut off."""

from __future__ import annotations

import time
from typing import Any

from mlinfra.config import load_fleet
from mlinfra.scaling.decision import decide
from mlinfra.store import MetricsStore
from mlinfra.ui.decision_rows import decision_rows

T = 1_800_000_000.0


def test_a_sweep_decision_reads_as_rows() -> None:
    model = load_fleet().model("resnet50-classifier")
    d = decide(model.scaling, model=model.name, at=T, current=2, metric=140.0, last_action_at=T - 600,
               namespace="serving", deployment=model.kubernetes.deployment).to_dict()  # fmt: skip
    rows = dict(decision_rows(d))

    assert rows["decided at"] == "2027-01-15T08:00:00Z"
    assert rows["action"] == "scale"
    assert rows["target"] == "avg(ml_gpu_utilization_percent) (value) = 70"
    assert (rows["current"], rows["metric"]) == ("2", "140")
    assert rows["last scale action"] == "2027-01-15T07:50:00Z"
    assert rows["policy"].startswith("min 2, max 8, tolerance 0.1")
    assert "cooldown 3m" in rows["policy"]
    assert not any("1800000000" in text or "{" in text for _, text in decision_rows(d))


def test_a_manual_request_shows_who_and_the_hold() -> None:
    rows = dict(
        decision_rows(
            {
                "request": {"model": "m", "replicas": 3, "reason": "launch", "hold": "2h"},
                "by": "admin",
                "policy": {"min_replicas": 1, "max_replicas": 4},
                "hold_until": T + 7200,
            }  # fmt: skip
        )
    )
    assert rows == {
        "requested": "model=m, replicas=3, reason=launch, hold=2h",
        "by": "admin",
        "hold": "until 2027-01-15T10:00:00Z",
        "policy": "min 1, max 4",
    }
    assert dict(decision_rows({"request": {}, "hold_until": None}))["hold"].startswith("none")
    assert decision_rows(None) == []


def test_the_audit_page_shows_decisions_as_rows(sqlite_store: MetricsStore) -> None:
    from fastapi.testclient import TestClient

    from mlinfra.ui.app import create_app
    from tests.ui.fleet_data import fill_store

    fill_store(sqlite_store, time.time(), hours=1)
    app = create_app(store=lambda: sqlite_store, fleet=load_fleet, auth=lambda: None)
    html: Any = TestClient(app, root_path="/mlinfra").get("/audit/serving/resnet50-classifier").text
    assert '<dl class="decision">' in html
    cells = html.split('<dl class="decision">')[1:]
    assert all("{&#34;" not in c.split("</dl>")[0] and '{"' not in c.split("</dl>")[0] for c in cells)
