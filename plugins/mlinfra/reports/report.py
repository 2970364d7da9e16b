"""The typed report of one interval: what :func:`~mlinfra.reports.aggregate.build_report`
returns and :mod:`mlinfra.reports.render` writes out.

:meth:`Report.to_dict` is what ``report.json`` holds: times as ISO 8601 UTC, floats
rounded to 10 significant digits, NaN and infinities as ``None``::

    >>> clean({"p99": 12.345678901234, "gap": float("nan"), "at": [iso(1_700_006_400)]})
    {'p99': 12.3456789, 'gap': None, 'at': ['2023-11-15T00:00:00Z']}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ModelFigures:
    name: str
    in_fleet: bool
    requests: float
    errors: float
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    slo_p99_latency_ms: float | None
    availability: float | None
    availability_sweeps: int
    replicas_min: float | None
    replicas_avg: float | None
    replicas_max: float | None
    gpu_hours: float | None
    cpu_hours: float | None
    cost: float | None
    cost_per_1000_predictions: float | None
    deployments: list[dict[str, Any]] = field(default_factory=list)
    deployment_outcomes: dict[str, int] = field(default_factory=dict)
    scale_events: list[dict[str, Any]] = field(default_factory=list)
    scale_ups: int = 0
    scale_downs: int = 0


@dataclass(frozen=True, slots=True)
class GPUFigures:
    host: str
    gpu_id: str
    name: str | None
    uuid: str | None
    samples: int
    down_sweeps: int
    utilization_avg: float | None
    utilization_p95: float | None
    utilization_max: float | None
    memory_peak_bytes: float | None
    memory_total_bytes: float | None
    temperature_max_celsius: float | None
    throttle_seconds: float
    clock_event_seconds: dict[str, float]
    power_avg_watts: float | None
    energy_wh: float | None


@dataclass(frozen=True, slots=True)
class HostFigures:
    host: str
    samples: int
    cpu_avg_percent: float | None
    cpu_p95_percent: float | None
    memory_peak_percent: float | None
    memory_peak_bytes: float | None


@dataclass(frozen=True, slots=True)
class AlertFigures:
    alert: str
    fired: int
    firing_seconds: float
    any_firing_seconds: float
    top_label_sets: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class CostFigures:
    currency: str
    gpu_hour_price: float
    cpu_hour_price: float
    gpu_hours: float  # charged: per sweep, the larger of GPUs allocated and GPUs metered
    cpu_hours: float
    gpu_hours_allocated: float  # GPUs requested by the serving pods (pods x resources.gpus)
    gpu_hours_metered: float  # GPUs the GPU collector saw up (the report's GPU table)
    gpu_hours_source: str  # "allocated" | "metered" | "none"
    gpu_cost: float
    cpu_cost: float
    total: float
    requests: float
    cost_per_1000_predictions: float | None


@dataclass(frozen=True, slots=True)
class Gap:
    start: float
    end: float
    missing_sweeps: int


@dataclass(frozen=True, slots=True)
class Completeness:
    step_seconds: float
    sweeps_expected: int
    sweeps_found: int
    coverage: float
    gaps: list[Gap]


@dataclass(frozen=True, slots=True)
class Report:
    """Every figure of one interval; :meth:`to_dict` is what ``report.json`` holds."""

    start: float
    end: float
    status: str  # complete | partial | empty
    message: str
    completeness: Completeness
    models: list[ModelFigures]
    gpus: list[GPUFigures]
    hosts: list[HostFigures]
    alerts: list[AlertFigures]
    cost: CostFigures
    timeseries: dict[str, Any]

    @property
    def folder_name(self) -> str:
        """``2026-11-20`` for a day that starts at midnight UTC, else ``<start>--<end>``."""
        s, e = datetime.fromtimestamp(self.start, UTC), datetime.fromtimestamp(self.end, UTC)
        if s.time() == datetime.min.time() and self.end - self.start == 86400:
            return s.strftime("%Y-%m-%d")
        return f"{s:%Y-%m-%dT%H%M%SZ}--{e:%Y-%m-%dT%H%M%SZ}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data: times as ISO 8601 UTC, NaN/inf as ``None``, floats to 10 digits."""
        data = asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        data["interval"] = {
            "start": iso(self.start),
            "end": iso(self.end),
            "seconds": self.end - self.start,
        }
        del data["start"], data["end"]
        for gap in data["completeness"]["gaps"]:
            gap["start"], gap["end"] = iso(gap["start"]), iso(gap["end"])
        return clean(data)

    def summary(self) -> dict[str, Any]:
        """The headline figures kept in the store's ``mlinfra_reports`` row."""
        return clean(
            {
                "status": self.status,
                "message": self.message,
                "sweeps_expected": self.completeness.sweeps_expected,
                "sweeps_found": self.completeness.sweeps_found,
                "gaps": len(self.completeness.gaps),
                "requests": self.cost.requests,
                "cost": self.cost.total,
                "currency": self.cost.currency,
                "cost_per_1000_predictions": self.cost.cost_per_1000_predictions,
                "alerts_fired": sum(a.fired for a in self.alerts),
                "deployments": sum(len(m.deployments) for m in self.models),
                "scale_events": sum(len(m.scale_events) for m in self.models),
            }
        )


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def clean(value: Any) -> Any:
    """Recursively: non-finite floats -> None, floats to 10 significant digits (stable JSON)."""
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def finite_or_none(v: float) -> float | None:
    """``v``, or ``None`` for NaN and infinities (a figure with no data)."""
    return v if math.isfinite(v) else None
