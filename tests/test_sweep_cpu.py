"""The sweep's write step: CPU usage derived from the counters of consecutive sweeps."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest

from mlinfra.collectors.base import CollectorResult
from mlinfra.config import load_fleet
from mlinfra.samples import Sample
from mlinfra.store import LabelMatcher, MetricsStore
from mlinfra.sweep import collect_and_stage, write_sweep

FLEET = load_fleet(check_expressions=False)


def _cpu_all(store: MetricsStore, start: float, end: float) -> list[float]:
    rows = store.query_range("ml_cpu_usage_percent", [LabelMatcher("core", "=", "all")], start, end)
    return [v for _, points in rows for _, v in points]


def _sweep(store: MetricsStore, ts: float, run: Any = None) -> dict[str, Any]:
    kwargs = {"run": run} if run else {}
    summary = collect_and_stage("host", fleet=FLEET, store=store, run_id=f"r{ts}", ts=ts, **kwargs)
    return write_sweep(
        store=store,
        run_id=f"r{ts}",
        ts=ts,
        summaries=[summary],
        fleet=FLEET,
        export=lambda samples: None,
        expected=("host",),
        now=lambda: ts,
    )


def _scripted(idle: float, user: float) -> Any:
    def run(name: str, fleet: Any) -> CollectorResult:
        samples = [
            Sample("ml_cpu_seconds_total", {"host": "h", "cpu": "0", "mode": "idle"}, idle),
            Sample("ml_cpu_seconds_total", {"host": "h", "cpu": "0", "mode": "user"}, user),
        ]
        return CollectorResult(collector="host", samples=samples, up=True, duration_seconds=0.01)

    return run


def test_usage_comes_from_the_previous_sweep_and_a_rerun_gives_the_same(sqlite_store: MetricsStore) -> None:
    t0 = 1_800_000_000.0
    _sweep(sqlite_store, t0, _scripted(idle=1000, user=100))
    assert _cpu_all(sqlite_store, t0 - 1, t0 + 1) == []  # the first sweep has nothing to compare with

    _sweep(sqlite_store, t0 + 300, _scripted(idle=1270, user=130))
    assert _cpu_all(sqlite_store, t0 + 299, t0 + 301) == [pytest.approx(10.0)]

    _sweep(sqlite_store, t0 + 300, _scripted(idle=1270, user=130))  # the same run again
    assert _cpu_all(sqlite_store, t0 + 299, t0 + 301) == [pytest.approx(10.0)]


def test_a_previous_sweep_too_long_ago_is_not_averaged_over(sqlite_store: MetricsStore) -> None:
    t0 = 1_800_000_000.0
    _sweep(sqlite_store, t0, _scripted(idle=1000, user=100))
    _sweep(sqlite_store, t0 + 7200, _scripted(idle=8000, user=800))
    assert _cpu_all(sqlite_store, t0 + 7199, t0 + 7201) == []


def _busy_percent(before: Any, after: Any) -> float:
    # The kernel's own accounting over the same window, as top computes it.
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    total = sum(after) - sum(before) - (after.guest + after.guest_nice - before.guest - before.guest_nice)
    return 100.0 * (1 - idle / total)


@pytest.mark.slow
def test_real_sweeps_read_the_machine_not_their_own_start(sqlite_store: MetricsStore) -> None:
    """Three real host sweeps 5 s apart; CPU read as the machine's share, not the sweep's burst."""
    readings: list[float] = []
    truth_before = psutil.cpu_times()
    t = time.time()
    for i in range(3):
        if i:
            time.sleep(5)
        t = time.time()
        summary = _sweep(sqlite_store, t)
        assert summary["collectors"]["host"]["up"], summary
    truth = _busy_percent(truth_before, psutil.cpu_times())
    readings = _cpu_all(sqlite_store, t - 60, t + 1)

    print(f"CPU readings {readings} vs kernel {truth:.1f} %")
    assert len(readings) == 2
    # Each reading covers its whole interval, so together they match the kernel's figure
    # for the window (a 0.2 s sample taken during a sweep's start-up would not).
    assert sum(readings) / 2 == pytest.approx(truth, abs=12.0), (readings, truth)
    if truth < 10.0:
        # The machine was idle: its sweeps must say so (the old sample said ~100 %).
        assert max(readings) < 20.0, (readings, truth)
