"""The report's GPU section: utilization, memory, temperature, throttling, power and energy
of each GPU (by host and GPU index) over ``[start, end)``.

Each sweep stands for one ``step``: throttled time, energy and GPU-hours are sums over
the sweeps found, and a GPU that was down is counted, not guessed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from mlinfra.reports.figures import finite, maximum, mean, percentile
from mlinfra.reports.report import GPUFigures, finite_or_none
from mlinfra.reports.series_reads import read_series
from mlinfra.store import MetricsStore

# Clock event reasons that mean "slowed down" (NVML also reports idle, application
# clock settings, sync boost and display clocks, which are not throttling).
THROTTLE_REASONS = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake"}
)
GPU_METRICS = (
    "ml_gpu_utilization_percent",
    "ml_gpu_memory_used_bytes",
    "ml_gpu_memory_total_bytes",
    "ml_gpu_temperature_celsius",
    "ml_gpu_power_usage_watts",
    "ml_gpu_up",
)

GPUKey = tuple[str, str]  # (host, gpu_id)


@dataclass(frozen=True, slots=True)
class _Observed:
    """What the store holds about the GPUs in the interval, read once."""

    values: dict[str, dict[GPUKey, dict[float, float]]]  # metric -> GPU -> sweep time -> value
    info: dict[GPUKey, dict[str, set[str]]]  # GPU -> "name" / "uuid" -> the values seen
    reasons: dict[GPUKey, dict[str, dict[float, float]]]  # GPU -> clock event reason -> time -> 0/1

    def of(self, metric: str, key: GPUKey) -> dict[float, float]:
        return self.values[metric].get(key, {})


def gpu_figures(
    store: MetricsStore, start: float, end: float, step: float
) -> tuple[list[GPUFigures], dict[str, Any], dict[float, float]]:
    """Per-GPU figures, their time series, and how many GPUs reported per sweep."""
    seen = _observe(store, start, end)
    keys = sorted(set().union(*(set(v) for v in seen.values.values()), set(seen.reasons)), key=_gpu_sort)
    out = []
    series: dict[str, Any] = {}
    seen_by_t: dict[float, float] = defaultdict(float)
    for key in keys:
        util = seen.of("ml_gpu_utilization_percent", key)
        for t, v in util.items():
            if math.isfinite(v):
                seen_by_t[t] += 1
        out.append(_figures_of(key, seen, step))
        mem = seen.of("ml_gpu_memory_used_bytes", key)
        ts = sorted(set(util) | set(mem))
        series[f"{key[0]}:{key[1]}"] = {
            "t": ts,
            "utilization_percent": [util.get(t) for t in ts],
            "memory_used_bytes": [mem.get(t) for t in ts],
        }
    return out, series, dict(seen_by_t)


def _observe(store: MetricsStore, start: float, end: float) -> _Observed:
    values: dict[str, dict[GPUKey, dict[float, float]]] = {}
    info: dict[GPUKey, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for metric in GPU_METRICS:
        per: dict[GPUKey, dict[float, float]] = defaultdict(dict)
        for labels, pts in read_series(store, metric, start, end):
            key = _gpu_key(labels)
            if key is None:
                continue
            for k in ("name", "uuid"):
                if k in labels:
                    info[key][k].add(labels[k])
            for t, v in pts:
                per[key][t] = v
        values[metric] = per
    reasons: dict[GPUKey, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for labels, pts in read_series(store, "ml_gpu_clock_event_reason", start, end):
        key = _gpu_key(labels)
        if key is None or "reason" not in labels:
            continue
        for t, v in pts:
            reasons[key][labels["reason"]][t] = v
    return _Observed(values, info, reasons)


def _figures_of(key: GPUKey, seen: _Observed, step: float) -> GPUFigures:
    util = list(seen.of("ml_gpu_utilization_percent", key).values())
    mem = list(seen.of("ml_gpu_memory_used_bytes", key).values())
    watts = finite(list(seen.of("ml_gpu_power_usage_watts", key).values()))
    by_reason = seen.reasons.get(key, {})
    clock_seconds = {
        r: sum(1 for v in pts.values() if v == 1.0) * step for r, pts in sorted(by_reason.items())
    }
    throttled = {
        t for r, pts in by_reason.items() if r in THROTTLE_REASONS for t, v in pts.items() if v == 1.0
    }
    return GPUFigures(
        host=key[0],
        gpu_id=key[1],
        name=",".join(sorted(seen.info[key]["name"])) or None,
        uuid=",".join(sorted(seen.info[key]["uuid"])) or None,
        samples=sum(1 for v in util if math.isfinite(v)),
        down_sweeps=sum(1 for v in seen.of("ml_gpu_up", key).values() if v == 0.0),
        utilization_avg=finite_or_none(mean(util)),
        utilization_p95=finite_or_none(percentile(util, 0.95)),
        utilization_max=finite_or_none(maximum(util)),
        memory_peak_bytes=finite_or_none(maximum(mem)),
        memory_total_bytes=finite_or_none(maximum(list(seen.of("ml_gpu_memory_total_bytes", key).values()))),
        temperature_max_celsius=finite_or_none(
            maximum(list(seen.of("ml_gpu_temperature_celsius", key).values()))
        ),
        throttle_seconds=len(throttled) * step,
        clock_event_seconds=clock_seconds,
        power_avg_watts=finite_or_none(mean(watts)),
        energy_wh=math.fsum(watts) * step / 3600.0 if watts else None,
    )


def _gpu_key(labels: dict[str, str]) -> GPUKey | None:
    if "gpu_id" not in labels:
        return None
    return labels.get("host", ""), labels["gpu_id"]


def _gpu_sort(key: GPUKey) -> tuple[str, int, str]:
    host, gpu = key
    return (host, int(gpu) if gpu.isdigit() else 1 << 30, gpu)
