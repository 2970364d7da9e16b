"""report.json / report.csv / report.html from a real report of generated data."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import sys

import pytest

from mlinfra.reports.aggregate import build_report
from mlinfra.reports.render import render_all, render_csv, render_html, render_json
from tests.reports.conftest import DAY, Filled


@pytest.mark.slow
def test_json_is_deterministic_and_strict(filled: Filled) -> None:
    start, end = filled.day(1)
    a = render_json(build_report(filled.store, filled.fleet, start, end))
    b = render_json(build_report(filled.store, filled.fleet, start, end))
    assert a == b
    text = a.decode()
    assert "NaN" not in text
    assert "Infinity" not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["interval"] == {
        "start": "2026-03-02T00:00:00Z",
        "end": "2026-03-03T00:00:00Z",
        "seconds": 86400.0,
    }


@pytest.mark.slow
def test_csv_has_one_figure_per_row_matching_the_json(filled: Filled) -> None:
    start, end = filled.day(2)
    report = build_report(filled.store, filled.fleet, start, end)
    rows = list(csv.DictReader(io.StringIO(render_csv(report).decode())))
    data = report.to_dict()
    by_key = {(r["section"], r["entity"], r["metric"]): r for r in rows}
    m = data["models"][1]
    assert float(by_key[("model", m["name"], "latency_p99_ms")]["value"]) == m["latency_p99_ms"]
    assert by_key[("model", m["name"], "latency_p99_ms")]["unit"] == "ms"
    g = data["gpus"][0]
    assert float(by_key[("gpu", f"{g['host']}:{g['gpu_id']}", "energy_wh")]["value"]) == g["energy_wh"]
    assert float(by_key[("cost", "fleet", "total")]["value"]) == data["cost"]["total"]


@pytest.mark.slow
def test_html_embeds_three_charts_and_names_gaps(filled: Filled) -> None:
    start, end = filled.day(1)
    html = render_html(build_report(filled.store, filled.fleet, start, end)).decode()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "2026-03-02T03:00:00Z" in html  # the gap is named
    assert "GPUHot" in html
    assert "rolled_back" in html


@pytest.mark.slow
def test_empty_interval_renders_every_section_as_empty(filled: Filled) -> None:
    start = filled.history.end + DAY
    files = render_all(build_report(filled.store, filled.fleet, start, start + DAY))
    html = files["report.html"].decode()
    assert "no sweeps were recorded" in html
    assert "No GPU samples in this interval." in html
    assert "No deployments recorded in this interval." in html
    assert json.loads(files["report.json"])["status"] == "empty"
    assert list(files) == ["report.csv", "report.html", "report.json"]  # JSON last: the commit point


def test_rendering_modules_do_not_import_matplotlib_until_drawing() -> None:
    import subprocess

    code = "import sys, mlinfra.reports.publish, mlinfra.reports.render; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
