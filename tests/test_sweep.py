"""The sweep's write step: retried from any failure point, it never loses the samples it wrote."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mlinfra.collectors.base import CollectorResult
from mlinfra.config import Fleet, load_fleet
from mlinfra.exceptions import ExportError, StoreError
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore
from mlinfra.sweep import collect_and_stage, write_sweep

TS = 1_800_000_000.0
RUN = "scheduled__2027-01-15T08:00:00+00:00"


def _result(name: str, value: float) -> CollectorResult:
    return CollectorResult(
        name, [Sample(f"ml_{name}_value", {"n": "0"}, value)], up=True, duration_seconds=0.1
    )


def _stage_all(store: MetricsStore, fleet: Fleet) -> list[dict[str, Any]]:
    return [
        collect_and_stage(
            name, fleet=fleet, store=store, run_id=RUN, ts=TS, run=lambda n, _f: _result(n, 1.0)
        )
        for name in ("gpu", "host")
    ]


def _values(store: MetricsStore) -> dict[str, float]:
    return {
        s.name + str(sorted(s.labels.items())): pts[-1][1] for s, pts in store.query_range(None, (), TS, TS)
    }


@pytest.fixture
def fleet() -> Fleet:
    return load_fleet()


def _refused(_samples: list[Sample]) -> int:
    raise ExportError("Pushgateway http://127.0.0.1:9 (job='mlinfra_sweep'): unreachable: refused")


def test_a_pushgateway_outage_keeps_the_sweep_and_lets_the_run_go_on(sqlite_store, fleet) -> None:
    summaries = _stage_all(sqlite_store, fleet)

    summary = write_sweep(
        store=sqlite_store,
        run_id=RUN,
        ts=TS,
        summaries=summaries,
        fleet=fleet,
        expected=("gpu", "host"),
        export=_refused,
    )

    assert summary["down"] == []
    assert summary["exported"] is None
    assert "unreachable: refused" in summary["export_error"]
    assert _values(sqlite_store)["ml_gpu_value[('n', '0')]"] == 1.0
    assert sqlite_store.sweep_at(TS).summary["export_error"] == summary["export_error"]


def test_a_retry_after_a_late_failure_rewrites_the_same_sweep(sqlite_store, fleet, monkeypatch) -> None:
    summaries = _stage_all(sqlite_store, fleet)
    undisturbed = None

    # Retention fails after the sweep was committed (the store went away mid-task).
    def broken(_cutoff: float) -> tuple[int, int]:
        raise StoreError("metrics store sqlite: disk I/O error")

    monkeypatch.setattr(sqlite_store, "apply_retention", broken)
    with pytest.raises(StoreError):
        write_sweep(
            store=sqlite_store,
            run_id=RUN,
            ts=TS,
            summaries=summaries,
            fleet=fleet,
            expected=("gpu", "host"),
            export=lambda s: len(s),
        )
    undisturbed = _values(sqlite_store)
    monkeypatch.undo()

    # Airflow's retry of write_sweep, with the same XCom summaries.
    retried = write_sweep(
        store=sqlite_store,
        run_id=RUN,
        ts=TS,
        summaries=summaries,
        fleet=fleet,
        expected=("gpu", "host"),
        export=lambda s: len(s),
    )

    assert retried["down"] == []
    assert _values(sqlite_store) == undisturbed
    assert "mlinfra_collector_up[('collector', 'gpu')]" not in undisturbed  # no made-up "down" sample
    assert set(sqlite_store.staged(RUN)) == {"gpu", "host"}  # kept for a re-run


def test_running_a_finished_write_again_keeps_the_sweep(sqlite_store, fleet) -> None:
    summaries = _stage_all(sqlite_store, fleet)
    kw: dict[str, Any] = {"store": sqlite_store, "run_id": RUN, "ts": TS, "summaries": summaries}
    first = write_sweep(**kw, fleet=fleet, expected=("gpu", "host"), export=lambda s: len(s))
    before = _values(sqlite_store)

    again = write_sweep(**kw, fleet=fleet, expected=("gpu", "host"), export=lambda s: len(s))

    assert again == first
    assert _values(sqlite_store) == before


def test_a_collector_that_staged_nothing_is_down_whatever_its_summary_says(sqlite_store, fleet) -> None:
    summaries = _stage_all(sqlite_store, fleet)
    summaries.append({"collector": "serving", "up": True, "samples": 3})

    summary = write_sweep(
        store=sqlite_store,
        run_id=RUN,
        ts=TS,
        summaries=summaries,
        fleet=fleet,
        expected=("gpu", "host", "serving"),
        export=lambda s: None,
    )

    assert summary["down"] == ["serving"]
    assert _values(sqlite_store)["mlinfra_collector_up[('collector', 'serving')]"] == 0.0


def test_running_the_write_again_after_an_export_failure_pushes_the_stored_sweep(sqlite_store, fleet) -> None:
    summaries = _stage_all(sqlite_store, fleet)
    kw: dict[str, Any] = {"store": sqlite_store, "run_id": RUN, "ts": TS, "summaries": summaries}
    write_sweep(**kw, fleet=fleet, expected=("gpu", "host"), export=_refused)
    pushed: list[list[Sample]] = []

    again = write_sweep(
        **kw, fleet=fleet, expected=("gpu", "host"), export=lambda s: pushed.append(s) or len(s)
    )

    assert "export_error" not in again
    assert again["exported"] == 2
    assert sorted(s.name for s in pushed[0]) == ["ml_gpu_value", "ml_host_value"]
    assert sqlite_store.sweep_at(TS).summary == again


def test_rerunning_one_collector_and_the_write_keeps_the_other_collectors(sqlite_store, fleet) -> None:
    summaries = _stage_all(sqlite_store, fleet)
    kw: dict[str, Any] = {"store": sqlite_store, "run_id": RUN, "ts": TS, "fleet": fleet}
    write_sweep(**kw, summaries=summaries, expected=("gpu", "host"), export=lambda s: None)

    # The user clears collect_host (it read a bad value) and write_sweep: only host stages again.
    host = collect_and_stage(
        "host", fleet=fleet, store=sqlite_store, run_id=RUN, ts=TS, run=lambda n, _f: _result(n, 2.0)
    )
    again = write_sweep(**kw, summaries=[summaries[0], host], expected=("gpu", "host"), export=lambda s: None)

    assert again["down"] == []
    assert _values(sqlite_store)["ml_gpu_value[('n', '0')]"] == 1.0
    assert _values(sqlite_store)["ml_host_value[('n', '0')]"] == 2.0


# ---------------------------------------------------------------------- staleness markers

TS2 = TS + 300  # the next scheduled sweep: the first sweep's samples are still inside the lookback


def _sweep(store: MetricsStore, fleet: Fleet, ts: float, run: Any, pushed: list[Sample]) -> dict[str, Any]:
    run_id = f"scheduled__{ts}"
    summaries = [
        collect_and_stage(name, fleet=fleet, store=store, run_id=run_id, ts=ts, run=run)
        for name in ("gpu", "host")
    ]
    return write_sweep(
        store=store,
        run_id=run_id,
        ts=ts,
        summaries=summaries,
        fleet=fleet,
        expected=("gpu", "host"),
        export=lambda samples: pushed.extend(samples) or len(samples),
    )


def test_a_gpu_lost_between_two_sweeps_is_gone_from_instant_queries_at_once(sqlite_store, fleet) -> None:
    from mlinfra.collectors import gpu
    from mlinfra.promql.engine import LocalEngine
    from tests.support.fake_pynvml import FakeNVML

    def sweep_with(nvml: FakeNVML, ts: float, pushed: list[Sample]) -> dict[str, Any]:
        def run(name: str, _fleet: Fleet) -> CollectorResult:
            if name == "gpu":
                return gpu.run(nvml=nvml, host="node-a", window=0.0)
            return _result(name, 1.0)

        return _sweep(sqlite_store, fleet, ts, run, pushed)

    first: list[Sample] = []
    sweep_with(FakeNVML.scenario("lost_gpu", overrides={2: {"errors": {}}}), TS, first)
    pushed: list[Sample] = []
    summary = sweep_with(FakeNVML.scenario("lost_gpu"), TS2, pushed)

    engine = LocalEngine(sqlite_store)
    util = 'ml_gpu_utilization_percent{host="node-a"}'
    assert sorted(s.labels["gpu_id"] for s in engine.instant(util, TS2 - 1)) == ["0", "1", "2", "3"]
    # Without the marker, GPU 2's sample of the first sweep (inside the 5-minute lookback) would answer.
    assert sorted(s.labels["gpu_id"] for s in engine.instant(util, TS2)) == ["0", "1", "3"]
    assert [s.value for s in engine.instant('ml_gpu_up{gpu_id="2"}', TS2)] == [0.0]  # the lost-GPU record
    counts = {s.labels["gpu_id"]: s.value for s in engine.instant(f"count_over_time({util}[10m])", TS2)}
    assert counts == {"0": 2.0, "1": 2.0, "2": 1.0, "3": 2.0}  # the marker is no sample
    assert summary["stale_markers"] > 0
    assert summary["samples"] == len({s.series_key for s in pushed})
    # Nothing pushes a marker: the series is simply missing from the replaced group.
    assert not any(math.isnan(s.value) for s in pushed)
    assert not [s for s in pushed if s.name == "ml_gpu_utilization_percent" and s.labels["gpu_id"] == "2"]

    # The GPU back in the third sweep: its series again; what is marked now is the lost-GPU
    # record (``ml_gpu_up`` without the GPU's identity labels), gone as the GPU came back.
    third = sweep_with(FakeNVML.scenario("lost_gpu", overrides={2: {"errors": {}}}), TS2 + 300, [])
    assert sorted(s.labels["gpu_id"] for s in engine.instant(util, TS2 + 300)) == ["0", "1", "2", "3"]
    assert third["stale_markers"] == 1
    up = engine.instant('ml_gpu_up{gpu_id="2"}', TS2 + 300)
    assert [(s.value, "uuid" in s.labels) for s in up] == [(1.0, True)]


def test_a_failed_collector_marks_its_series_stale_as_a_failed_scrape_does(sqlite_store, fleet) -> None:
    from mlinfra.promql.engine import LocalEngine

    _sweep(sqlite_store, fleet, TS, lambda n, _f: _result(n, 1.0), [])
    # Another writer at the first sweep's time (a recording rule): not the sweep's to mark.
    sqlite_store.write_samples([Sample("job:gpu:avg", {}, 3.0, TS)])

    def gpu_down(name: str, _fleet: Fleet) -> CollectorResult:
        if name == "gpu":
            up = Sample("mlinfra_collector_up", {"collector": "gpu"}, 0)
            return CollectorResult("gpu", [up], up=False, duration_seconds=0.1, errors=["NVML gone"])
        return _result(name, 2.0)

    summary = _sweep(sqlite_store, fleet, TS2, gpu_down, [])
    engine = LocalEngine(sqlite_store)
    assert summary["down"] == ["gpu"]
    assert engine.instant("ml_gpu_value", TS2) == []
    assert [s.value for s in engine.instant("ml_host_value", TS2)] == [2.0]
    assert [s.value for s in engine.instant('mlinfra_collector_up{collector="gpu"}', TS2)] == [0.0]
    assert [s.value for s in engine.instant("job:gpu:avg", TS2)] == [3.0]
    # Re-running the second sweep writes the same markers again.
    assert _sweep(sqlite_store, fleet, TS2, gpu_down, [])["stale_markers"] == summary["stale_markers"] == 1
    assert engine.instant("ml_gpu_value", TS2) == []
