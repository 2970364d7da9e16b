"""Publishing: files through ObjectStoragePath, atomic replacement, the store row, configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from mlinfra.exceptions import StoreError
from mlinfra.reports.publish import default_reports_base, publish_report, reports_base
from mlinfra.reports.records import report_records
from mlinfra.store import MetricsStore
from tests.reports.conftest import DAY, Filled


@pytest.mark.slow
def test_publish_writes_one_folder_and_a_row(filled: Filled, tmp_path: Path) -> None:
    base = ObjectStoragePath(tmp_path.as_uri())
    start, end = filled.day(2)
    result = publish_report(filled.store, filled.fleet, start, end, base=base, run_id="backfill__x")
    folder = tmp_path / "2026-03-03"
    assert result["path"] == folder.as_uri()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-03-03"]
    assert sorted(p.name for p in folder.iterdir()) == ["report.csv", "report.html", "report.json"]
    data = json.loads((folder / "report.json").read_text())
    assert data["status"] == result["status"] == "complete"
    (row,) = report_records(filled.store, start, end)
    assert row["path"] == folder.as_uri()
    assert row["run_id"] == "backfill__x"
    assert row["summary"]["requests"] == data["cost"]["requests"]


@pytest.mark.slow
def test_rerun_replaces_a_corrupt_report_and_leftovers_and_touches_no_other_day(
    filled: Filled, tmp_path: Path
) -> None:
    base = ObjectStoragePath(tmp_path.as_uri())
    d1, d2 = filled.day(1), filled.day(2)
    publish_report(filled.store, filled.fleet, *d1, base=base)
    other = tmp_path / "2026-03-02"
    other_before = {p.name: p.read_bytes() for p in other.iterdir()}
    publish_report(filled.store, filled.fleet, *d2, base=base)
    folder = tmp_path / "2026-03-03"
    good = (folder / "report.json").read_bytes()
    # An earlier attempt died half way: a truncated report and a temporary file.
    (folder / "report.json").write_bytes(good[: len(good) // 3])
    (folder / "report.html").write_text("<html><body>half")
    (folder / ".tmp-deadbeef-report.json").write_text("{")
    publish_report(filled.store, filled.fleet, *d2, base=base)
    assert (folder / "report.json").read_bytes() == good
    assert sorted(p.name for p in folder.iterdir()) == ["report.csv", "report.html", "report.json"]
    assert (folder / "report.html").read_text().rstrip().endswith("</html>")
    assert {p.name: p.read_bytes() for p in other.iterdir()} == other_before
    assert len(report_records(filled.store, d2[0], d2[1])) == 1


@pytest.mark.slow
def test_empty_interval_is_published_as_empty(filled: Filled, tmp_path: Path) -> None:
    start = filled.history.end + 3 * DAY
    result = publish_report(
        filled.store, filled.fleet, start, start + DAY, base=ObjectStoragePath(tmp_path.as_uri())
    )
    assert result["status"] == "empty"
    assert result["sweeps_found"] == 0
    assert json.loads((tmp_path / "2026-03-08" / "report.json").read_text())["status"] == "empty"


@pytest.mark.slow
def test_unreachable_store_fails_naming_the_connection(filled: Filled, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLINFRA_STORE",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 9,
                "login": "u",
                "password": "s3cret",
                "schema": "metrics",
                "extra": {"connect_timeout": 3},
            }
        ),
    )
    store = MetricsStore.from_connection()
    with pytest.raises(StoreError, match="connection 'mlinfra_store'") as err:
        publish_report(store, filled.fleet, 0, DAY, base=ObjectStoragePath(tmp_path.as_uri()))
    assert "s3cret" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("airflow_loaded")
def test_reports_base_lookup_order(monkeypatch, tmp_path: Path) -> None:
    variables = {"mlinfra_reports_base": "file:///srv/from-variable/"}
    got = reports_base(variable_get=lambda key, default=None: variables.get(key, default))
    assert str(got) == "file:///srv/from-variable"
    monkeypatch.setenv("MLINFRA_REPORTS_BASE", "file:///srv/from-env")
    assert str(reports_base(variable_get=lambda key, default=None: default)) == "file:///srv/from-env"
    monkeypatch.delenv("MLINFRA_REPORTS_BASE")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert default_reports_base() == (tmp_path / "reports").as_uri()
    assert (
        str(reports_base(variable_get=lambda key, default=None: default)) == (tmp_path / "reports").as_uri()
    )
