"""The demo's seeded history: two whole days, so complete reports with model figures exist at once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from mlinfra.config import load_fleet
from mlinfra.reports.aggregate import build_report
from mlinfra.store import MetricsStore

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_050_000.0  # 2027-01-15 21:53 UTC
DAY = 86400.0


@pytest.fixture(scope="module")
def demo_cluster() -> Any:
    return _load("demo_cluster", ROOT / "scripts" / "demo_cluster.py")


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_seed_gives_two_complete_days_with_model_gpu_host_and_cost_figures(
    demo_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo process imports its simulated NVML as pynvml; another test may have imported
    # the real (or the test suite's fake) one first.
    monkeypatch.setitem(sys.modules, "pynvml", _load("pynvml", ROOT / "scripts" / "demo_nvml" / "pynvml.py"))
    fleet = load_fleet()
    written = demo_cluster.seed_history(tmp_path / "store.db", fleet, NOW)
    store = MetricsStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    today = NOW - NOW % DAY
    assert written == (NOW - (today - 2 * DAY)) // 300

    for day_start in (today - 2 * DAY, today - DAY):
        report = build_report(store, fleet, day_start, day_start + DAY)
        assert report.status == "complete", report.message
        hpt = next(m for m in report.models if m.name == "half-plus-two")
        assert hpt.requests > 100_000
        assert hpt.latency_p99_ms is not None
        assert hpt.latency_p99_ms < fleet.model("half-plus-two").slo.p99_latency_ms
        assert hpt.availability == 1.0
        assert len(report.gpus) == 2
        # Two GPUs seen all day cost at least 48 GPU-hours: the cost agrees with the GPU table.
        assert report.cost.gpu_hours == pytest.approx(48.0)
        assert report.cost.gpu_cost > 0
        assert report.hosts
        assert report.hosts[0].cpu_avg_percent is not None

    assert demo_cluster.seed_history(tmp_path / "store.db", fleet, NOW) == 0  # once only
