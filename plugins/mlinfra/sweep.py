"""One health sweep: run the collectors, stage their samples, write and export the sweep.

The DAG ``infra_health_sweep`` runs each collector as its own task (in parallel on
a real executor), then one task writes everything in one store transaction at the
run's logical time. Samples travel between those tasks through the store's staging
table, never through XCom: XCom carries only the per-collector summaries.

The same functions run without Airflow (``mlinfra sweep``)::

    store = MetricsStore.from_url("sqlite:////tmp/store.db")
    summaries = [collect_and_stage(n, fleet=load_fleet(), store=store, run_id="cli", ts=now) for n in COLLECTORS]
    write_sweep(store=store, run_id="cli", ts=now, summaries=summaries, fleet=load_fleet())
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlinfra.collectors.base import CollectorResult
    from mlinfra.config import Fleet
    from mlinfra.samples import Sample
    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)

# Collector name -> module under mlinfra.collectors exposing ``run(fleet) -> CollectorResult``.
# Kept as plain names so that DAG files can lay out tasks without importing any collector.
COLLECTORS: tuple[str, ...] = ("gpu", "host", "kubernetes", "serving")
# How long a run's staged collector output is kept, so that the run's write_sweep can be
# re-run (after clearing a collector task, or a late failure) and rewrite the same sweep.
STAGING_KEEP_SECONDS = 86400.0
# CPU usage is the change of the CPU counters since the previous sweep; after a longer
# gap (the scheduler was down) an average over hours would pass for "now".
CPU_PREVIOUS_MAX_AGE_SECONDS = 3600.0
# The sweep summary's list of the metric names the sweep wrote (see stale_markers).
SWEEP_METRICS_KEY = "metrics"


def run_collector_module(name: str, fleet: Fleet) -> CollectorResult:
    if name not in COLLECTORS:
        raise ValueError(f"unknown collector {name!r}; known: {', '.join(COLLECTORS)}")
    module = importlib.import_module(f"mlinfra.collectors.{name}")
    result: CollectorResult = module.run(fleet)
    return result


def collect_and_stage(
    name: str,
    *,
    fleet: Fleet,
    store: MetricsStore,
    run_id: str,
    ts: float | datetime,
    run: Callable[[str, Fleet], CollectorResult] = run_collector_module,
) -> dict[str, Any]:
    """Run one collector, stage its samples for this run, return its summary (for XCom)."""
    result = run(name, fleet)
    store.stage(run_id, name, ts, result.samples)
    summary = result.summary()
    log.info(
        "collector %s: up=%s samples=%d duration=%.3fs%s%s",
        name,
        result.up,
        len(result.samples),
        result.duration_seconds,
        f" errors={result.errors}" if result.errors else "",
        f" skipped={result.skipped}" if result.skipped else "",
    )
    return summary


def derive_cpu_usage(store: MetricsStore, ts: float | datetime, samples: Sequence[Sample]) -> list[Sample]:
    """``ml_cpu_usage_percent`` for this sweep from its CPU counters and the previous sweep's.

    The previous counters are each series' last stored value before ``ts`` (at most
    :data:`CPU_PREVIOUS_MAX_AGE_SECONDS` old): the store keeps what is needed, and a
    re-run of the same sweep derives the same figure. The first sweep has none.
    """
    from mlinfra.collectors.host import cpu_usage_from_counters
    from mlinfra.samples import Sample
    from mlinfra.store_values import to_ms

    current = [s for s in samples if s.name == "ml_cpu_seconds_total"]
    if not current:
        return []
    at = to_ms(ts) / 1000.0
    previous = []
    for series, points in store.query_range(
        "ml_cpu_seconds_total", (), at - CPU_PREVIOUS_MAX_AGE_SECONDS, at, include_start=True
    ):
        before = [(t, v) for t, v in points if t < at]
        if before:
            previous.append(Sample(series.name, series.labels, before[-1][1], before[-1][0]))
    derived = cpu_usage_from_counters(previous, current)
    if not derived:
        log.info("ml_cpu_usage_percent: no CPU counters from a previous sweep yet (first sweep)")
    return derived


def stale_markers(store: MetricsStore, ts: float | datetime, samples: Sequence[Sample]) -> list[Sample]:
    """A staleness marker at ``ts`` for each series the previous sweep wrote and ``samples`` lacks.

    Prometheus does this on every scrape (scrape/scrape.go, ``scrapeLoop.append``): a
    series of the previous scrape missing from this one gets ``StaleNaN``, so a lost GPU
    or a deleted pod drops out of instant queries at once instead of lingering for the
    5-minute lookback (prometheus.io/docs/prometheus/latest/querying/basics/#staleness).
    A collector that failed counts as one that returned nothing, as a failed scrape does
    in Prometheus ("A failed scrape is the same as an empty scrape, we still call
    sl.append to trigger stale markers", ``scrapeAndReport``): its series are marked,
    and its ``mlinfra_collector_up`` says 0. Each series comes from one collector, so
    one comparison of the whole sweep is that of each collector with its previous run.

    The previous sweep's series are read back from the store (one query at its time),
    limited to the metrics it recorded (:data:`SWEEP_METRICS_KEY`), so that recording
    rules and ``ALERTS`` written at that time are never marked by the sweep. A previous
    sweep written before staleness markers existed has no such record: no markers.
    """
    from mlinfra.samples import STALE_NAN, Sample

    previous = store.latest_sweep(before=ts)
    names = (previous.summary or {}).get(SWEEP_METRICS_KEY) if previous is not None else None
    if previous is None or not names:
        return []
    present = {s.series_key for s in samples}
    gone = [s for s in store.sweep_samples(previous.ts, names=names) if s.series_key not in present]
    if gone:
        log.info("staleness markers for %d series the previous sweep had", len(gone))
    return [Sample(s.name, s.labels, STALE_NAN) for s in gone]


def write_sweep(
    *,
    store: MetricsStore,
    run_id: str,
    ts: float | datetime,
    summaries: Sequence[dict[str, Any] | None],
    fleet: Fleet,
    export: Callable[[list[Sample]], int | None] | None = None,
    expected: Sequence[str] = COLLECTORS,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Write every staged sample of ``run_id`` at ``ts`` (one transaction), export, apply retention.

    A collector whose task failed before staging anything is reported as down
    (``mlinfra_collector_up 0``) instead of silently missing from the sweep.

    Safe to retry from any failure point: the staged samples stay (for
    :data:`STAGING_KEEP_SECONDS`), so a retry, or a re-run after one collector task
    was cleared, rewrites the same sweep. A Pushgateway
    that cannot be reached degrades only the export (``summary["export_error"]``);
    the rules and scaling downstream still run on the store.
    """
    from mlinfra.collectors.gpu.sweep_step import finish_gpu_samples
    from mlinfra.export import push_from_connection
    from mlinfra.samples import Sample

    staged = store.staged(run_id)
    if not staged and (kept := _already_written(store, run_id, ts, export or push_from_connection)):
        return kept
    samples: list[Sample] = [s for name in sorted(staged) for s in staged[name]]
    by_name = {s["collector"]: s for s in summaries if s}
    samples += derive_cpu_usage(store, ts, samples)
    samples = finish_gpu_samples(store, ts, samples, fleet)
    missing = [name for name in expected if name not in staged]
    for name in missing:
        samples.append(Sample("mlinfra_collector_up", {"collector": name}, 0.0))
        by_name[name] = {
            "collector": name,
            "up": False,
            "samples": 0,
            "errors": ["collector task did not stage"],
        }
    markers = stale_markers(store, ts, samples)
    summary: dict[str, Any] = {
        "collectors": {name: by_name[name] for name in sorted(by_name)},
        "down": sorted(name for name, s in by_name.items() if not s.get("up")),
        "skipped": {name: s["skipped"] for name, s in sorted(by_name.items()) if s.get("skipped")},
        "samples": len({s.series_key for s in samples}),
        "stale_markers": len(markers),
        # What the next sweep needs to tell this sweep's series from other writers' at this time.
        SWEEP_METRICS_KEY: sorted({s.name for s in samples}),
    }
    # Pushed before the store write so the stored summary says how the export went; a
    # push is a PUT of the whole group, so a retry pushing again is harmless. Markers are
    # not pushed: a series missing from the group is gone from the Pushgateway.
    summary = _export(summary, samples, export or push_from_connection)
    summary["samples"] = store.write_sweep(ts, [*samples, *markers], run_id=run_id, summary=summary)

    cutoff = now() - fleet.store.retention
    deleted, dropped_series = store.apply_retention(cutoff)
    # This run's staged samples are kept (for STAGING_KEEP_SECONDS): clearing one
    # collector task and write_sweep again must rewrite the sweep with every other
    # collector's samples too, not report them down.
    # By when it was staged, not by logical time: a backfilled or manual run of an old
    # logical time must keep its staging for a re-run too.
    store.clear_staged(staged_before=time.time() - STAGING_KEEP_SECONDS)
    if deleted or dropped_series:
        log.info("retention: deleted %d samples and %d empty series", deleted, dropped_series)
    log.info(
        "sweep %s at %s: %d samples, down=%s, skipped=%s",
        run_id,
        ts,
        summary["samples"],
        summary["down"],
        summary["skipped"],
    )
    return summary


def _already_written(
    store: MetricsStore, run_id: str, ts: float | datetime, export: Callable[[list[Sample]], int | None]
) -> dict[str, Any] | None:
    """The stored summary of this run's sweep, when a re-run after success finds nothing staged.

    Such a re-run (staging already cleared) must not replace the real sweep with "every
    collector down"; re-run by hand once the Pushgateway is back, it pushes what was stored.
    """
    existing = store.sweep_at(ts)
    if existing is None or existing.run_id != run_id or existing.summary is None:
        return None
    log.info("sweep %s at %s is already written and nothing is staged: kept as it is", run_id, ts)
    kept: dict[str, Any] = existing.summary
    if kept.get("export_error"):
        kept = _export(kept, store.sweep_samples(ts), export)
        store.write_sweep(ts, store.sweep_samples(ts, stale=True), run_id=run_id, summary=kept)
    return kept


def _export(
    summary: dict[str, Any], samples: list[Sample], export: Callable[[list[Sample]], int | None]
) -> dict[str, Any]:
    """``summary`` with ``exported`` (and ``export_error`` when the Pushgateway failed)."""
    from mlinfra.exceptions import ExportError

    out = {k: v for k, v in summary.items() if k not in ("exported", "export_error")}
    try:
        out["exported"] = export(samples)
    except ExportError as e:
        # The next sweep's push replaces the whole group, so nothing is lost for good.
        log.warning("export failed, the sweep is stored but not pushed: %s", e)
        out["exported"] = None
        out["export_error"] = str(e)
    if out["exported"] is None and "export_error" not in out:
        log.info("no Airflow connection prometheus_pushgateway: export skipped")
    return out
