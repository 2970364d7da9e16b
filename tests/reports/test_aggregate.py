"""build_report against figures computed independently from the generated history's ground truth."""

from __future__ import annotations

import json

import pytest

from mlinfra.config import load_fleet
from mlinfra.exceptions import StoreError
from mlinfra.reports.aggregate import build_report
from mlinfra.reports.render import render_json
from mlinfra.store import MetricsStore
from tests.reports.conftest import DAY, Filled, fill, make_history
from tests.reports.expected import check_report, expected_day


@pytest.mark.slow
@pytest.mark.parametrize("day", [1, 2, 3])
def test_every_figure_matches_the_ground_truth(filled: Filled, day: int) -> None:
    start, end = filled.day(day)
    data = build_report(filled.store, filled.fleet, start, end).to_dict()
    problems = check_report(data, expected_day(filled.slots, filled.fleet, start, end))
    assert problems == []


@pytest.mark.slow
def test_a_day_with_a_gap_names_it_and_is_partial(filled: Filled) -> None:
    start, end = filled.day(1)
    report = build_report(filled.store, filled.fleet, start, end)
    assert report.status == "partial"
    data = report.to_dict()
    assert data["completeness"]["gaps"] == [
        {"start": "2026-03-02T03:00:00Z", "end": "2026-03-02T04:30:00Z", "missing_sweeps": 18}
    ]
    assert data["completeness"]["sweeps_found"] == 288 - 18
    assert "18 missing in 1 gap" in report.message


@pytest.mark.slow
def test_counter_reset_does_not_lose_or_invent_requests(filled: Filled) -> None:
    start, end = filled.day(1)
    models = {m.name: m for m in build_report(filled.store, filled.fleet, start, end).models}
    truth = sum(s.models["half-plus-two"].requests for s in filled.slots if start <= s.t < end)
    assert models["half-plus-two"].requests == truth


@pytest.mark.slow
def test_gpu_that_went_away_is_counted_down_not_zero(filled: Filled) -> None:
    start, end = filled.day(1)
    gpus = {(g.host, g.gpu_id): g for g in build_report(filled.store, filled.fleet, start, end).gpus}
    lost = gpus[("gpu-node-2", "0")]
    assert lost.down_sweeps == 36
    assert lost.samples == 288 - 18 - 36 - 1  # gap, absence, one NaN reading (the other fell in the absence)
    # NaN readings are left out of the statistics rather than counted as zero.
    assert gpus[("gpu-node-1", "0")].samples == 288 - 18 - 2


@pytest.mark.slow
def test_days_are_independent_of_each_other(filled: Filled) -> None:
    start, end = filled.day(2)
    whole = build_report(filled.store, filled.fleet, start, end)
    first = build_report(filled.store, filled.fleet, start, start + DAY / 2)
    second = build_report(filled.store, filled.fleet, start + DAY / 2, end)
    for w, a, b in zip(whole.models, first.models, second.models, strict=True):
        assert w.requests == pytest.approx(a.requests + b.requests)
    assert whole.cost.total == pytest.approx(first.cost.total + second.cost.total)


@pytest.mark.slow
def test_empty_interval_says_so_and_keeps_every_section(filled: Filled) -> None:
    start = filled.history.end + 10 * DAY
    report = build_report(filled.store, filled.fleet, start, start + DAY)
    data = report.to_dict()
    assert data["status"] == "empty"
    assert "no sweeps were recorded" in data["message"]
    assert data["completeness"]["gaps"] == [
        {"start": "2026-03-15T00:00:00Z", "end": "2026-03-16T00:00:00Z", "missing_sweeps": 288}
    ]
    assert [m["name"] for m in data["models"]] == ["half-plus-two", "resnet50-classifier"]
    assert all(m["requests"] == 0 and m["latency_p99_ms"] is None for m in data["models"])
    assert data["gpus"] == []
    assert data["hosts"] == []
    assert data["alerts"] == []
    assert data["cost"]["total"] == 0
    assert data["cost"]["cost_per_1000_predictions"] is None


@pytest.mark.slow
def test_missing_feature_tables_give_empty_sections(tmp_path) -> None:
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'bare.db'}")
    history = make_history(days=2)
    slots = fill(store, history, events=False)
    start, end = history.start + DAY, history.end
    data = build_report(store, load_fleet(), start, end).to_dict()
    assert data["alerts"] == []
    assert all(m["deployments"] == [] and m["scale_events"] == [] for m in data["models"])
    exp = expected_day(slots, load_fleet(), start, end)
    assert check_report(data, exp, with_events=False) == []


@pytest.mark.slow
def test_same_data_gives_identical_json_whatever_the_storage_order(filled: Filled, tmp_path) -> None:
    # A second store filled independently (series get other ids): the bytes must not change.
    other = MetricsStore.from_url(f"sqlite:///{tmp_path / 'other.db'}")
    fill(other, make_history())
    start, end = filled.day(1)
    a = render_json(build_report(filled.store, filled.fleet, start, end))
    b = render_json(build_report(other, filled.fleet, start, end))
    assert a == b
    assert json.loads(a)["status"] == "partial"


@pytest.mark.slow
def test_unreachable_store_names_the_connection(filled: Filled) -> None:
    store = MetricsStore.from_url(
        "postgresql+psycopg2://u:secret@127.0.0.1:9/nowhere?connect_timeout=3",
        description="connection 'mlinfra_store' (postgresql://u:***@127.0.0.1:9/nowhere)",
    )
    with pytest.raises(StoreError, match="connection 'mlinfra_store'") as err:
        build_report(store, filled.fleet, 0, DAY)
    assert "secret" not in str(err.value)


@pytest.mark.slow
def test_reversed_interval_is_refused(filled: Filled) -> None:
    with pytest.raises(ValueError, match="empty or reversed"):
        build_report(filled.store, filled.fleet, DAY, 0)
