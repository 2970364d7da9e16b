"""Expected report figures computed from a synthetic history's ground truth (numpy, not the report code).

Also the alert / scale / deployment events the tests put into the shared tables,
with the figures they must produce.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tests.reports.synthetic import LE_US, STEP, Slot

THROTTLE = {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake"}


def quantile_from_counts(q: float, per_bucket: list[float]) -> float | None:
    """histogram_quantile over per-bucket (non-cumulative) counts, in ms."""
    bounds = np.array([*LE_US, np.inf])
    cum = np.cumsum(np.array(per_bucket, dtype=float))
    if cum[-1] <= 0:
        return None
    rank = q * cum[-1]
    i = int(np.searchsorted(cum[:-1], rank, side="left"))
    if i == len(bounds) - 1:
        return float(bounds[-2]) / 1000
    lower = 0.0 if i == 0 else bounds[i - 1]
    below = 0.0 if i == 0 else cum[i - 1]
    return float(lower + (bounds[i] - lower) * (rank - below) / (cum[i] - below)) / 1000


def expected_day(slots: list[Slot], fleet: Any, start: float, end: float) -> dict[str, Any]:
    day = [s for s in slots if start <= s.t < end]
    stored = [s for s in day if s.stored]
    models = {}
    resources = {m.name: m.resources for m in fleet.models}
    for name in day[0].models:
        req = sum(s.models[name].requests for s in day)
        err = sum(s.models[name].errors for s in day)
        buckets = list(np.sum([s.models[name].buckets for s in day], axis=0))
        desired = np.array([s.models[name].desired for s in stored])
        ok = sum(1 for s in stored if s.models[name].available >= s.models[name].desired)
        pod_hours = sum(s.models[name].pods for s in stored) * STEP / 3600
        cpu = float(resources[name].cpu)
        cost = pod_hours * resources[name].gpus * fleet.cost.gpu_hour + pod_hours * cpu * fleet.cost.cpu_hour
        models[name] = {
            "requests": req,
            "errors": err,
            "error_rate": err / req,
            "latency_p50_ms": quantile_from_counts(0.5, buckets),
            "latency_p95_ms": quantile_from_counts(0.95, buckets),
            "latency_p99_ms": quantile_from_counts(0.99, buckets),
            "availability": ok / len(stored) if stored else None,
            "replicas_min": float(desired.min()) if stored else None,
            "replicas_avg": float(desired.mean()) if stored else None,
            "replicas_max": float(desired.max()) if stored else None,
            "gpu_hours": pod_hours * resources[name].gpus,
            "cpu_hours": pod_hours * cpu,
            "cost": cost,
            "cost_per_1000_predictions": cost / req * 1000,
        }
    gpus = {}
    for key in day[0].gpus:
        up = [s.gpus[key] for s in stored if s.gpus[key].up]
        util = np.array([g.util for g in up if not math.isnan(g.util)])
        power = np.array([g.power for g in up])
        gpus[f"{key[0]}:{key[1]}"] = {
            "samples": len(util),
            "down_sweeps": sum(1 for s in stored if not s.gpus[key].up),
            "utilization_avg": float(util.mean()) if len(util) else None,
            "utilization_p95": float(np.percentile(util, 95)) if len(util) else None,
            "utilization_max": float(util.max()) if len(util) else None,
            "memory_peak_bytes": max((g.mem for g in up), default=None),
            "temperature_max_celsius": max((g.temp for g in up), default=None),
            "throttle_seconds": STEP
            * sum(1 for g in up if any(g.reasons[r] for r in g.reasons if r in THROTTLE)),
            "clock_event_seconds": {
                r: STEP * sum(g.reasons[r] for g in up) for r in (up[0].reasons if up else {})
            },
            "power_avg_watts": float(power.mean()) if len(power) else None,
            "energy_wh": float(power.sum()) * STEP / 3600 if len(power) else None,
        }
    hosts = {}
    for host in day[0].hosts:
        cpu = np.array([s.hosts[host][0] for s in stored])
        hosts[host] = {
            "cpu_avg_percent": float(cpu.mean()) if len(cpu) else None,
            "cpu_p95_percent": float(np.percentile(cpu, 95)) if len(cpu) else None,
            "memory_peak_percent": max((s.hosts[host][1] for s in stored), default=None),
            "memory_peak_bytes": max((s.hosts[host][2] for s in stored), default=None),
        }
    # GPU-hours charged: per sweep, the larger of GPUs allocated to pods and GPUs seen by NVML.
    allocated = sum(m["gpu_hours"] for m in models.values())
    metered = sum(g["samples"] for g in gpus.values()) * STEP / 3600
    charged = 0.0
    for s in stored:
        pods = sum(s.models[name].pods * resources[name].gpus for name in s.models)
        seen = sum(1 for g in s.gpus.values() if g.up and not math.isnan(g.util))
        charged += max(pods, seen) * STEP / 3600
    total_cost = (
        charged * fleet.cost.gpu_hour + sum(m["cpu_hours"] for m in models.values()) * fleet.cost.cpu_hour
    )
    total_req = sum(m["requests"] for m in models.values())
    slot_times = [s.t for s in day]
    missing = [s.t for s in day if not s.stored]
    return {
        "models": models,
        "gpus": gpus,
        "hosts": hosts,
        "cost": {
            "total": total_cost,
            "requests": total_req,
            "per_1000": total_cost / total_req * 1000,
            "gpu_hours_allocated": allocated,
            "gpu_hours_metered": metered,
        },
        "completeness": {"expected": len(slot_times), "found": len(stored), "missing": missing},
    }


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- events for the shared tables


def daily_events(day_start: float) -> dict[str, list[dict[str, Any]]]:
    """The alert transitions, scale events and deployments written for one day."""
    h = 3600.0

    def tr(alert: str, fp: str, labels: dict[str, str], frm: str, to: str, t: float) -> dict[str, Any]:
        return {
            "group": "gpu",
            "alert": alert,
            "labels": {"alertname": alert, **labels},
            "fingerprint": fp,
            "from_state": frm,
            "to_state": to,
            "ts": round(t * 1000),
            "value": 1.0,
            "active_at": round(t * 1000),
            "run_id": f"sweep__{t:.0f}",
        }

    d = day_start
    gpu0, gpu1, gpu2 = ({"gpu_id": g, "host": "gpu-node-1"} for g in ("0", "1", "2"))
    transitions = [
        tr("GPUHot", "fp-gpu0", gpu0, "inactive", "pending", d + 10 * h),
        tr("GPUHot", "fp-gpu0", gpu0, "pending", "firing", d + 10 * h + 300),
        tr("GPUHot", "fp-gpu0", gpu0, "firing", "inactive", d + 11 * h),
        tr("GPUHot", "fp-gpu2", gpu2, "inactive", "firing", d + 10.5 * h),
        tr("GPUHot", "fp-gpu2", gpu2, "firing", "inactive", d + 10.75 * h),
        # Fires before midnight, resolves the next day at 01:00.
        tr("GPUHot", "fp-gpu1", gpu1, "inactive", "firing", d + 23 * h),
        tr("GPUHot", "fp-gpu1", gpu1, "firing", "inactive", d + 25 * h),
        # Pending only: listed, never fired.
        tr("HighLatency", "fp-lat", {"model": "resnet50-classifier"}, "inactive", "pending", d + 14 * h),
        tr(
            "HighLatency", "fp-lat", {"model": "resnet50-classifier"}, "pending", "inactive", d + 14 * h + 300
        ),
    ]
    scale = [
        {
            "ts": round((d + 6 * h) * 1000),
            "model": "half-plus-two",
            "namespace": "serving",
            "deployment": "half-plus-two",
            "from_replicas": 2,
            "to_replicas": 3,
            "reason": "rps above target",
            "trigger": "metric",
            "run_id": f"sweep__{d + 6 * h:.0f}",
            "dry_run": False,
            "decision": {},
            "outcome": "patched",
        },
        {
            "ts": round((d + 18 * h) * 1000),
            "model": "half-plus-two",
            "namespace": "serving",
            "deployment": "half-plus-two",
            "from_replicas": 3,
            "to_replicas": 2,
            "reason": "rps below target",
            "trigger": "metric",
            "run_id": f"sweep__{d + 18 * h:.0f}",
            "dry_run": False,
            "decision": {},
            "outcome": "patched",
        },
        {
            "ts": round((d + 9 * h) * 1000),
            "model": "resnet50-classifier",
            "namespace": "serving",
            "deployment": "resnet50-classifier",
            "from_replicas": 2,
            "to_replicas": 4,
            "reason": "GPUHot",
            "trigger": "alert",
            "run_id": f"sweep__{d + 9 * h:.0f}",
            "dry_run": True,
            "decision": {},
            "outcome": "dry_run",
        },
        {
            "ts": round((d + 20 * h) * 1000),
            "model": "resnet50-classifier",
            "namespace": "serving",
            "deployment": "resnet50-classifier",
            "from_replicas": 2,
            "to_replicas": 3,
            "reason": "GPUHot",
            "trigger": "alert",
            "run_id": f"sweep__{d + 20 * h:.0f}",
            "dry_run": False,
            "decision": {},
            "outcome": "failed",
        },
    ]
    deployments = [
        {
            "model": "resnet50-classifier",
            "version": str(int(d // 86400)),
            "image": "tensorflow/serving:2.16.1",
            "triggered_by": "alice",
            "run_id": f"deploy_{d:.0f}",
            "started_at": datetime.fromtimestamp(d + 12 * h, UTC),
            "ended_at": datetime.fromtimestamp(d + 12 * h + 240, UTC),
            "outcome": "succeeded",
            "smoke": {},
            "rollback": {},
            "reason": None,
        },
        {
            "model": "half-plus-two",
            "version": "7",
            "image": "tensorflow/serving:2.16.1",
            "triggered_by": "bob",
            "run_id": f"deploy2_{d:.0f}",
            "started_at": datetime.fromtimestamp(d + 15 * h, UTC),
            "ended_at": datetime.fromtimestamp(d + 15 * h + 120, UTC),
            "outcome": "rolled_back",
            "smoke": {},
            "rollback": {},
            "reason": "smoke test failed",
        },
    ]
    return {
        "mlinfra_alert_transitions": transitions,
        "mlinfra_scale_events": scale,
        "mlinfra_deployments": deployments,
    }


# For a day whose previous day had the same events:
EXPECTED_ALERTS = {
    "GPUHot": {
        "fired": 3,  # gpu0 10:05, gpu2 10:30, gpu1 23:00
        # gpu1 00:00-01:00 (from the day before) + gpu0 10:05-11:00 + gpu2 10:30-10:45 + gpu1 23:00-24:00
        "firing_seconds": 3600 + 3300 + 900 + 3600,
        "any_firing_seconds": 3600 + 3300 + 3600,  # gpu2 lies inside gpu0's period
    },
    "HighLatency": {"fired": 0, "firing_seconds": 0, "any_firing_seconds": 0},
}


def check_report(data: dict[str, Any], exp: dict[str, Any], *, with_events: bool = True) -> list[str]:
    """Compare a report.json dict with expected figures; returns the differences (empty = all good)."""
    problems: list[str] = []

    def cmp(where: str, got: Any, want: Any) -> None:
        if want is None or got is None:
            if want is not got and not (want is None and got is None):
                problems.append(f"{where}: got {got!r}, want {want!r}")
            return
        if isinstance(want, dict):
            for k, v in want.items():
                cmp(f"{where}.{k}", (got or {}).get(k), v)
            return
        if not math.isclose(float(got), float(want), rel_tol=1e-8, abs_tol=1e-9):
            problems.append(f"{where}: got {got!r}, want {want!r}")

    models = {m["name"]: m for m in data["models"]}
    for name, want in exp["models"].items():
        for k, v in want.items():
            cmp(f"models[{name}].{k}", models[name][k], v)
    gpus = {f"{g['host']}:{g['gpu_id']}": g for g in data["gpus"]}
    for key, want in exp["gpus"].items():
        for k, v in want.items():
            cmp(f"gpus[{key}].{k}", gpus[key][k], v)
    hosts = {h["host"]: h for h in data["hosts"]}
    for host, want in exp["hosts"].items():
        for k, v in want.items():
            cmp(f"hosts[{host}].{k}", hosts[host][k], v)
    cmp("cost.total", data["cost"]["total"], exp["cost"]["total"])
    cmp("cost.gpu_hours_allocated", data["cost"]["gpu_hours_allocated"], exp["cost"]["gpu_hours_allocated"])
    cmp("cost.gpu_hours_metered", data["cost"]["gpu_hours_metered"], exp["cost"]["gpu_hours_metered"])
    cmp("cost.requests", data["cost"]["requests"], exp["cost"]["requests"])
    cmp("cost.per_1000", data["cost"]["cost_per_1000_predictions"], exp["cost"]["per_1000"])
    c = data["completeness"]
    cmp("completeness.expected", c["sweeps_expected"], exp["completeness"]["expected"])
    cmp("completeness.found", c["sweeps_found"], exp["completeness"]["found"])
    missing = exp["completeness"]["missing"]
    gap_cover = sum(g["missing_sweeps"] for g in c["gaps"])
    if gap_cover != len(missing):
        problems.append(f"completeness.gaps cover {gap_cover} sweeps, want {len(missing)}")
    if missing and (
        c["gaps"][0]["start"] != iso(min(missing)) or c["gaps"][-1]["end"] != iso(max(missing) + STEP)
    ):
        problems.append(
            f"completeness.gaps {c['gaps']} do not name {iso(min(missing))}..{iso(max(missing) + STEP)}"
        )
    if with_events:
        alerts = {a["alert"]: a for a in data["alerts"]}
        for name, want in EXPECTED_ALERTS.items():
            for k, v in want.items():
                cmp(f"alerts[{name}].{k}", alerts.get(name, {}).get(k), v)
        top = alerts["GPUHot"]["top_label_sets"]
        if [s["labels"]["gpu_id"] for s in top] != ["1", "0", "2"]:
            problems.append(f"alerts[GPUHot].top_label_sets order: {top}")
        hpt, rn = models["half-plus-two"], models["resnet50-classifier"]
        if (hpt["scale_ups"], hpt["scale_downs"], len(hpt["scale_events"])) != (1, 1, 2):
            problems.append(f"half-plus-two scale events: {hpt['scale_events']}")
        if (rn["scale_ups"], rn["scale_downs"], len(rn["scale_events"])) != (0, 0, 2):
            problems.append(f"resnet50 scale events (a dry run and a failed one): {rn['scale_events']}")
        if rn["deployment_outcomes"] != {"succeeded": 1} or hpt["deployment_outcomes"] != {"rolled_back": 1}:
            problems.append(f"deployment outcomes: {rn['deployment_outcomes']} {hpt['deployment_outcomes']}")
    return problems
