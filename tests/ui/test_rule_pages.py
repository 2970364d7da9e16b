"""The backtest page and the "why it fired" page (the app through FastAPI's test client, no Airflow DB)."""

from __future__ import annotations

import html
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mlinfra.config import load_fleet
from mlinfra.promql.engine import LocalEngine
from mlinfra.rules.backtest import backtest
from mlinfra.rules.evaluate import evaluate_groups
from mlinfra.rules.files import load_rule_file
from mlinfra.rules.state import StoreAlertStates
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore
from mlinfra.ui.rule_pages import PageInputError, parse_when, rule_files

T0 = 1_800_000_000.0
MIN = 60.0
RULES = """
groups:
  - name: gpu
    rules:
      - alert: Hot
        expr: sum by (host) (temp) > 150
        for: 10m
        labels: {severity: page}
"""
# Host n1's two GPUs: hot (sum 190) from minute 10 to 40 and at 60-65; n2 never.
TEMPS = {
    ("n1", "0"): lambda m: 95.0 if 10 <= m < 40 or 60 <= m < 66 else 50.0,
    ("n1", "1"): lambda m: 95.0 if 10 <= m < 40 or 60 <= m < 66 else 50.0,
    ("n2", "0"): lambda m: 40.0,
}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "alert_rules"
    folder.mkdir()
    (folder / "gpu.yaml").write_text(textwrap.dedent(RULES))
    (folder / "README.txt").write_text("not a rule file")
    return folder


@pytest.fixture
def history(sqlite_store: MetricsStore) -> MetricsStore:
    sqlite_store.write_samples(
        Sample("temp", {"host": host, "gpu": gpu}, f(m), T0 + m * MIN)
        for (host, gpu), f in TEMPS.items()
        for m in range(90)
    )
    return sqlite_store


@pytest.fixture
def client(history: MetricsStore, rules_dir: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from mlinfra.ui.app import create_app

    app = create_app(store=lambda: history, fleet=load_fleet, auth=lambda: None, rules_dir=rules_dir)
    with TestClient(app, root_path="/mlinfra") as c:
        yield c


def _window(**extra: str) -> dict[str, str]:
    return {
        "file": "gpu.yaml",
        "start": "2027-01-15T08:00:00Z",
        "end": "2027-01-15T09:29:00Z",
        "step": "5m",
        **extra,
    }


def test_the_page_offers_the_rule_folder_files_and_runs_nothing_without_one(client: Any) -> None:
    page = client.get("/mlinfra/backtest")
    assert page.status_code == 200
    assert '<option value="gpu.yaml">gpu.yaml</option>' in page.text
    assert "README.txt" not in page.text
    assert 'id="episodes"' not in page.text


def test_the_timeline_and_table_are_the_cli_backtest(
    client: Any, history: MetricsStore, rules_dir: Path
) -> None:
    assert parse_when("start", "2027-01-15T08:00:00Z", 0) == T0  # the window above starts at T0
    page = client.get("/mlinfra/backtest", params=_window())
    assert page.status_code == 200, page.text
    engine = LocalEngine(history)
    expected = backtest(
        load_rule_file(rules_dir / "gpu.yaml", engine=engine), engine, start=T0, end=T0 + 89 * MIN, step=300
    )
    # n1: pending 10, firing 20, resolved 40; pending again at 60, dropped at 70 (never fired).
    assert [(e.pending_from, e.firing_from, e.resolved_at) for e in expected.episodes] == [
        (T0 + 10 * MIN, T0 + 20 * MIN, T0 + 40 * MIN),
        (T0 + 60 * MIN, None, T0 + 70 * MIN),
    ]
    text = page.text
    assert "18 evaluations every 300s" in text
    assert "2 alert episodes, 1 fired" in text
    rows = [
        (k, html.unescape(r))
        for k, r in re.findall(r"<tr class=\"(fired|pending-only)\">(.*?)</tr>", text, re.S)
    ]
    assert [r[0] for r in rows] == ["fired", "pending-only"]
    assert "2027-01-15T08:10:00Z" in rows[0][1]
    assert "2027-01-15T08:20:00Z" in rows[0][1]
    assert "2027-01-15T08:40:00Z" in rows[0][1]
    assert "190/190/190" in rows[0][1]
    assert '{host="n1", severity="page"}' in rows[0][1]
    # The chart: one lane (n1), a pending and a firing bar for the first episode, a pending bar for the second.
    bars = re.findall(
        r'<rect class="timeline-(pending|firing)" data-state="\w+" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"',
        text,
    )
    assert [b[0] for b in bars] == ["pending", "firing", "pending"]
    x = [float(b[1]) for b in bars]
    w = [float(b[2]) for b in bars]
    assert x[0] + w[0] == pytest.approx(x[1], abs=0.2)  # firing starts where pending ends
    assert w[1] == pytest.approx(2 * w[0], abs=0.3)  # 20 minutes firing, 10 pending
    assert x[0] < x[1] < x[2]


def test_bad_input_is_a_400_that_says_what_is_accepted(client: Any) -> None:
    unknown = client.get("/mlinfra/backtest", params=_window(file="../secrets.yaml"))
    assert unknown.status_code == 400
    assert "is not a rule file of" in unknown.text
    assert "gpu.yaml" in unknown.text
    bad_step = client.get("/mlinfra/backtest", params=_window(step="often"))
    assert bad_step.status_code == 400
    assert "often" in bad_step.text
    bad_time = client.get("/mlinfra/backtest", params=_window(start="yesterday"))
    assert bad_time.status_code == 400
    assert "RFC 3339" in bad_time.text
    with pytest.raises(PageInputError, match="epoch seconds"):
        parse_when("start", "soon", 0)


def test_rule_files_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert rule_files(tmp_path / "none") == []


def test_the_fleet_page_links_each_alert_to_why_it_fired(
    client: Any, history: MetricsStore, rules_dir: Path
) -> None:
    engine = LocalEngine(history)
    groups = load_rule_file(rules_dir / "gpu.yaml", engine=engine)
    states = StoreAlertStates(history)
    for m in range(0, 35, 5):  # pending at 10, firing at 20: explanations stored at both transitions
        evaluate_groups(groups, engine, at=T0 + m * MIN, store=history, states=states)

    fleet = client.get("/mlinfra/fleet")
    assert fleet.status_code == 200
    assert 'href="/mlinfra/backtest"' in fleet.text
    links = re.findall(r'<a class="why" href="([^"]+)">why it fired</a>', fleet.text)
    assert len(links) == 1
    link = html.unescape(links[0])
    assert link.startswith("/mlinfra/alerts/Hot/why?labels=")
    query = parse_qs(urlsplit(link).query)
    assert json.loads(query["labels"][0])["host"] == "n1"
    assert float(query["at"][0]) == T0 + 30 * MIN  # the alert row's evaluation

    why = client.get(link)
    assert why.status_code == 200, why.text
    assert why.status_code == 200
    text = why.text
    assert "pending → <b>firing</b> at 2027-01-15 08:20:00 UTC" in text
    assert "sum by (host) (temp) &gt; 150" in text
    assert 'data-field="comparison">190.0 &gt; 150.0<' in text
    assert 'data-field="pending-since">2027-01-15 08:10:00 UTC (for: 600s)' in text
    # The aggregation's inputs of host n1, largest first: both GPUs at 95, never n2's.
    assert text.count('host="n1"') >= 2
    assert 'host="n2"' not in text


def test_why_with_labels_of_no_alert_says_so(client: Any) -> None:
    page = client.get("/mlinfra/alerts/Hot/why", params={"labels": json.dumps({"host": "n9"})})
    assert page.status_code == 200
    assert "No explained transition of Hot with these labels" in page.text
    bad = client.get("/mlinfra/alerts/Hot/why", params={"labels": "[1]"})
    assert bad.status_code == 400
    assert "JSON object" in bad.text
