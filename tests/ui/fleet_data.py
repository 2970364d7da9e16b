"""A store filled the way the sweep, the rules, the deploys and the reports fill it, for UI tests.

Written through the real writers (``MetricsStore.write_sweep``, ``StoreAlertStates``,
``DeploymentRecords``, ``upsert_report_record``, ``ScaleRecords``), so the page is
tested against the rows those features really write.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from mlinfra.samples import Sample
from mlinfra.store import MetricsStore
from mlinfra.store_values import to_ms

STEP = 300.0
HOURS = 6


def gpu_samples(t: float, host: str = "gpu-node-1", gpus: int = 2) -> list[Sample]:
    """Plausible, deterministic GPU readings at ``t`` (GPU 1 runs hot)."""
    out = []
    for i in range(gpus):
        labels = {"host": host, "gpu_id": str(i), "name": "NVIDIA A100-SXM4-40GB", "uuid": f"GPU-{i:04d}"}
        phase = t / 3600.0 + i
        util = 45 + 35 * math.sin(phase) + (20 if i == 1 else 0)
        out += [
            Sample("ml_gpu_utilization_percent", labels, max(0.0, min(100.0, util))),
            Sample("ml_gpu_memory_used_bytes", labels, (18 + 10 * (1 + math.sin(phase / 2)) + 6 * i) * 2**30),
            Sample("ml_gpu_memory_total_bytes", labels, 40 * 2**30),
            Sample("ml_gpu_temperature_celsius", labels, 55 + 12 * math.sin(phase) + 18 * i),
            Sample("ml_gpu_up", labels, 1),
        ]
    return out


def cluster_samples(
    half_plus_two: tuple[int, int] = (3, 3), resnet: tuple[int, int] = (2, 1)
) -> list[Sample]:
    out = []
    for deployment, (desired, available) in (
        ("half-plus-two", half_plus_two),
        ("resnet50-classifier", resnet),
    ):
        labels = {"namespace": "serving", "deployment": deployment}
        out += [
            Sample("kube_deployment_spec_replicas", labels, desired),
            Sample("kube_deployment_status_replicas_available", labels, available),
            Sample("kube_deployment_status_replicas_ready", labels, available),
        ]
    out += [
        Sample("mlinfra_serving_up", {"model": "half-plus-two"}, 1),
        Sample(
            "mlinfra_serving_model_version_available",
            {"model": "half-plus-two", "model_name": "half_plus_two", "version": "2"},
            1,
        ),
        Sample(
            "mlinfra_serving_model_version_available",
            {"model": "half-plus-two", "model_name": "half_plus_two", "version": "1"},
            0,
        ),
        Sample("mlinfra_serving_up", {"model": "resnet50-classifier"}, 1),
        Sample("ml_cpu_usage_percent", {"host": "gpu-node-1", "job": "node"}, 37.5),
    ]
    return out


def fill_store(store: MetricsStore, now: float, *, hours: int = HOURS) -> dict[str, Any]:
    """Sweeps every 5 minutes for ``hours`` up to ``now``, one firing and one pending alert,
    three deploys, two reports and two scale events. Returns what tests assert on."""
    from mlinfra.deploy.records import DeploymentRecords
    from mlinfra.reports.records import upsert_report_record
    from mlinfra.rules.alerts import ActiveAlert
    from mlinfra.rules.state import StoreAlertStates

    end = now - (now % STEP)
    for k in range(int(hours * 3600 / STEP), -1, -1):
        t = end - k * STEP
        store.write_sweep(t, gpu_samples(t) + cluster_samples(), run_id=f"scheduled__{_iso(t)}")

    firing = ActiveAlert(
        labels={"alertname": "ReplicasUnavailable", "severity": "critical", "namespace": "serving",
                "deployment": "resnet50-classifier"},
        annotations={"summary": "resnet50-classifier has 1 of 2 replicas available",
                     "description": "Pods are not ready for more than 10 minutes."},
        state="firing", active_at=end - 1800, fired_at=end - 1200, value=1.0,
    )  # fmt: skip
    pending = ActiveAlert(
        labels={"alertname": "GPUHot", "severity": "warning", "host": "gpu-node-1", "gpu_id": "1"},
        annotations={"summary": "GPU 1 on gpu-node-1 is at 85 °C"},
        state="pending", active_at=end - 300, value=85.0,
    )  # fmt: skip
    StoreAlertStates(store).save(
        "kubernetes.yaml",
        "kubernetes",
        end,
        {firing.fingerprint: firing},
        [],
        run_id=f"scheduled__{_iso(end)}",
    )
    StoreAlertStates(store).save("gpu.yaml", "gpu", end, {pending.fingerprint: pending}, [])

    records = DeploymentRecords(store)
    smoke = {
        "model": "half-plus-two",
        "version": 2,
        "passed": True,
        "slo_p99_ms": 50,
        "duration_s": 1.2,
        "protocols": {"grpc": {"requests": 15, "p50_ms": 3.1, "p99_ms": 7.9}, "rest": {"requests": 15, "p50_ms": 4.0, "p99_ms": 9.4}},
        "cases": [],
        "problems": [],
    }  # fmt: skip
    deploys = [
        ("manual__2026-11-20T08:00:00+00:00", 1, "succeeded", None),
        (
            "manual__2026-11-20T09:00:00+00:00",
            3,
            "rolled_back",
            "smoke_test: p99 latency 91.0 ms > SLO 50 ms",
        ),
        ("manual__2026-11-20T10:00:00+00:00", 2, "succeeded", None),
    ]
    for run_id, version, outcome, reason in deploys:
        records.start(
            run_id,
            model="half-plus-two",
            version=version,
            image="tensorflow/serving:2.14.1",
            namespace="serving",
            deployment="half-plus-two",
            replicas=3,
            triggered_by="admin",
        )
        records.finish(
            run_id, outcome, reason, smoke={**smoke, "version": version, "passed": outcome == "succeeded"}
        )

    day = 86400.0
    today = end - (end % day)
    for start in (today - 2 * day, today - day):
        upsert_report_record(
            store, start, start + day, f"file:///nonexistent/reports/{_day(start)}", {"status": "complete"},
            run_id=f"scheduled__{_iso(start)}",
        )  # fmt: skip

    events = [
        {"ts": to_ms(end - 3600), "model": "resnet50-classifier", "namespace": "serving",
         "deployment": "resnet50-classifier", "from_replicas": 2, "to_replicas": 4, "reason": "avg GPU 88% > 70% target",
         "trigger": "metric", "run_id": f"scheduled__{_iso(end - 3600)}", "dry_run": False,
         "decision": json.dumps({"desired": 4, "current": 2})},
        {"ts": to_ms(end - 600), "model": "half-plus-two", "namespace": "serving", "deployment": "half-plus-two",
         "from_replicas": 3, "to_replicas": 2, "reason": "manual", "trigger": "manual",
         "run_id": "manual__2026-11-20T11:00:00+00:00", "dry_run": True, "decision": None},
    ]  # fmt: skip
    create_scale_events(store, events)
    return {"end": end, "deploys": deploys, "scale_events": events}


def create_scale_events(store: MetricsStore, rows: list[dict[str, Any]]) -> None:
    """Record ``rows`` (``ts`` in ms, as the table keeps it) through the scaling feature's writer."""
    from mlinfra.scaling.records import ScaleRecords

    records = ScaleRecords(store)
    for r in rows:
        records.record_event(
            **{k: v for k, v in r.items() if k not in ("ts", "decision")},
            ts=r["ts"] / 1000.0,
            outcome="dry_run" if r["dry_run"] else "available",
            decision=json.loads(r["decision"]) if r["decision"] else None,
        )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
