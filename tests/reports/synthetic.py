"""Generated fleet history with its ground truth, for report tests and the benchmark.

:class:`SyntheticHistory` yields, per 5-minute slot, the samples a sweep would have
stored *and* the true per-slot figures they came from (requests served in that slot,
per-bucket latency observations, replicas, GPU readings). Tests compute the
expected report figures from the truth, never from the store, so they check the
report's arithmetic independently of it.

Built in: counters that reset (a process restart), gap windows (no sweep at all,
while counters keep counting), a GPU that disappears for a while (``ml_gpu_up 0``),
NaN readings, and two TF Serving entrypoints per model whose histograms must be
summed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlinfra.samples import Sample
from mlinfra.store import MetricsStore, samples_table, sweeps_table

STEP = 300.0
LE_US = [1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0, 100000.0, 200000.0, 500000.0]
REASONS = ("gpu_idle", "sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "sync_boost")
ENTRYPOINTS = ("REST", "GRPC")


def rnd(*key: Any) -> float:
    """A deterministic number in [0, 1) for ``key`` (stable across processes)."""
    return (zlib.crc32(repr(key).encode()) % 1_000_003) / 1_000_003


@dataclass
class ModelTruth:
    requests: float
    errors: float
    buckets: list[float]  # observations per bucket (not cumulative), last = above the highest le
    desired: float
    available: float
    pods: float


@dataclass
class GPUTruth:
    up: bool
    util: float
    mem: float
    temp: float
    power: float
    reasons: dict[str, int]


@dataclass
class Slot:
    t: float
    stored: bool
    samples: list[Sample]
    models: dict[str, ModelTruth]
    gpus: dict[tuple[str, str], GPUTruth]
    hosts: dict[str, tuple[float, float, float]]  # cpu %, memory %, memory used bytes


@dataclass
class SyntheticHistory:
    """``days`` days of sweeps from ``start`` (UTC midnight) for ``models`` and ``gpus``.

    ``models``: (name, namespace, deployment). ``gaps``: [from, to) windows with no
    sweep. ``resets``: (model, t) process restarts. ``gpu_absent``: (host, gpu, from,
    to) windows where the GPU reports ``ml_gpu_up 0`` only. ``nan_util``: times
    whose utilization readings are NaN.
    """

    start: float
    days: int
    models: Sequence[tuple[str, str, str]]
    gpus: Sequence[tuple[str, str]] = (("gpu-node-1", "0"), ("gpu-node-1", "1"))
    hosts: Sequence[str] = ("gpu-node-1",)
    gaps: Sequence[tuple[float, float]] = ()
    resets: Sequence[tuple[str, float]] = ()
    gpu_absent: Sequence[tuple[str, str, float, float]] = ()
    nan_util: Sequence[float] = ()
    seed: int = 1
    _counters: dict[Any, float] = field(default_factory=dict, repr=False)

    @property
    def end(self) -> float:
        return self.start + self.days * 86400

    def slots(self) -> Iterator[Slot]:
        self._counters = {}
        n = int((self.end - self.start) / STEP)
        for k in range(n):
            yield self._slot(self.start + k * STEP)

    def _slot(self, t: float) -> Slot:
        stored = not any(a <= t < b for a, b in self.gaps)
        samples: list[Sample] = []
        models: dict[str, ModelTruth] = {}
        hour = int((t % 86400) // 3600)
        for name, ns, dep in self.models:
            if any(m == name and rt == t for m, rt in self.resets):
                for key in [k for k in self._counters if k[0] == name]:
                    self._counters[key] = 0.0
            per_entry: list[tuple[str, float, list[float]]] = []
            total_req = 0.0
            total_buckets = [0.0] * (len(LE_US) + 1)
            for entry in ENTRYPOINTS:
                n = float(int(20 + 80 * rnd(self.seed, name, entry, t)))
                # Mostly fast, a tail that moves with the hour of day.
                weights = [
                    (0.2 + rnd(self.seed, name, entry, t, i)) * 0.45 ** (i * (1.3 - hour / 48))
                    for i in range(len(LE_US) + 1)
                ]
                total_w = sum(weights)
                counts = [math.floor(n * w / total_w) for w in weights]
                counts[0] += n - sum(counts)
                per_entry.append((entry, n, counts))
                total_req += n
                total_buckets = [a + b for a, b in zip(total_buckets, counts, strict=True)]
            errors = float(int(total_req * 0.02 * rnd(self.seed, name, "err", t)))
            for key, inc in (((name, "OK"), total_req - errors), ((name, "INVALID_ARGUMENT"), errors)):
                self._counters[key] = self._counters.get(key, 1000.0) + inc
            for entry, _, counts in per_entry:
                cumulative = 0.0
                for i, le in enumerate([*LE_US, math.inf]):
                    cumulative += counts[i]
                    key = (name, entry, le)
                    self._counters[key] = self._counters.get(key, 500.0 * (i + 1)) + cumulative
            desired = float(2 + (hour // 6) % 3)
            available = desired - 1 if int(t / STEP) % 7 == 0 else desired
            pods = desired + 1 if int(t / STEP) % 11 == 0 else desired
            models[name] = ModelTruth(total_req, errors, total_buckets, desired, available, pods)
            served = name.replace("-", "_")
            for status in ("OK", "INVALID_ARGUMENT"):
                samples.append(
                    Sample(
                        ":tensorflow:serving:request_count",
                        {"model": name, "model_name": served, "status": status},
                        self._counters[(name, status)],
                    )
                )
            for entry in ENTRYPOINTS:
                for le in [*LE_US, math.inf]:
                    samples.append(
                        Sample(
                            ":tensorflow:serving:request_latency_bucket",
                            {
                                "model": name,
                                "model_name": served,
                                "API": "predict",
                                "entrypoint": entry,
                                "le": "+Inf" if math.isinf(le) else f"{le:.10g}",
                            },
                            self._counters[(name, entry, le)],
                        )
                    )
            kube = {"namespace": ns, "deployment": dep}
            samples += [
                Sample("kube_deployment_spec_replicas", kube, desired),
                Sample("kube_deployment_status_replicas_available", kube, available),
                Sample("kube_deployment_status_replicas", kube, pods),
            ]
        gpus: dict[tuple[str, str], GPUTruth] = {}
        for host, gpu in self.gpus:
            labels = {"host": host, "gpu_id": gpu, "uuid": f"GPU-{host}-{gpu}", "name": "NVIDIA H100"}
            if any(h == host and g == gpu and a <= t < b for h, g, a, b in self.gpu_absent):
                gpus[(host, gpu)] = GPUTruth(False, math.nan, math.nan, math.nan, math.nan, {})
                samples.append(Sample("ml_gpu_up", {"host": host, "gpu_id": gpu}, 0))
                continue
            util = math.nan if t in self.nan_util else round(100 * rnd(self.seed, host, gpu, "u", t), 1)
            mem = float(int(80 * 2**30 * rnd(self.seed, host, gpu, "m", t)))
            temp = float(int(40 + 45 * rnd(self.seed, host, gpu, "t", t)))
            power = round(100 + 600 * rnd(self.seed, host, gpu, "p", t), 2)
            reasons = {r: int(rnd(self.seed, host, gpu, r, t) < 0.15) for r in REASONS}
            gpus[(host, gpu)] = GPUTruth(True, util, mem, temp, power, reasons)
            samples += [
                Sample("ml_gpu_up", labels, 1),
                Sample("ml_gpu_utilization_percent", labels, util),
                Sample("ml_gpu_memory_used_bytes", labels, mem),
                Sample("ml_gpu_memory_total_bytes", labels, 80 * 2**30),
                Sample("ml_gpu_temperature_celsius", labels, temp),
                Sample("ml_gpu_power_usage_watts", labels, power),
            ]
            samples += [
                Sample("ml_gpu_clock_event_reason", {**labels, "reason": r}, v) for r, v in reasons.items()
            ]
        hosts: dict[str, tuple[float, float, float]] = {}
        for host in self.hosts:
            cpu = round(100 * rnd(self.seed, host, "cpu", t), 2)
            mem_pct = round(30 + 60 * rnd(self.seed, host, "mem", t), 2)
            mem_used = float(int(256 * 2**30 * mem_pct / 100))
            hosts[host] = (cpu, mem_pct, mem_used)
            samples += [
                Sample("ml_cpu_usage_percent", {"host": host, "core": "all"}, cpu),
                Sample("ml_cpu_usage_percent", {"host": host, "core": "0"}, 100.0),  # must not count
                Sample("ml_memory_usage_percent", {"host": host}, mem_pct),
                Sample("ml_memory_usage_bytes", {"host": host, "type": "used"}, mem_used),
                Sample("ml_memory_usage_bytes", {"host": host, "type": "total"}, 256 * 2**30),
            ]
        return Slot(t, stored, samples, models, gpus, hosts)


def load(store: MetricsStore, history: SyntheticHistory) -> list[Slot]:
    """Store every stored slot of ``history`` (bulk: one transaction a day); returns all slots."""
    store.create_schema()
    ids: dict[Any, int] = {}
    slots: list[Slot] = []
    pending_samples: list[dict[str, Any]] = []
    pending_sweeps: list[dict[str, Any]] = []

    def flush() -> None:
        if not pending_sweeps:
            return
        with store.engine.begin() as conn:
            for i in range(0, len(pending_samples), 20000):
                conn.execute(sa.insert(samples_table), pending_samples[i : i + 20000])
            conn.execute(sa.insert(sweeps_table), pending_sweeps)
        pending_samples.clear()
        pending_sweeps.clear()

    for slot in history.slots():
        slots.append(slot)
        if not slot.stored:
            continue
        if any(s.series_key not in ids for s in slot.samples):
            flush()
            store.write_sweep(slot.t, slot.samples, run_id=f"gen__{slot.t:.0f}")
            for series in store.select_series(None):
                ids[(series.name, tuple(sorted(series.labels.items())))] = series.id
            continue
        ms = round(slot.t * 1000)
        pending_samples.extend(
            {"series_id": ids[s.series_key], "ts": ms, "value": None if math.isnan(s.value) else s.value}
            for s in slot.samples
        )
        pending_sweeps.append(
            {
                "ts": ms,
                "run_id": f"gen__{slot.t:.0f}",
                "written_at": datetime.now(UTC),
                "samples": len(slot.samples),
                "summary": None,
            }
        )
        if len(pending_sweeps) >= 288:
            flush()
    flush()
    return slots


# ---------------------------------------------------------------------- the other features' records


def record_events(store: MetricsStore, events: dict[str, list[dict[str, Any]]]) -> None:
    """Write alert transitions, scale events and deployments through their owners' writers.

    ``events`` maps a table name to rows as :func:`tests.reports.expected.daily_events`
    lays them out (times of transitions and scale events in ms, deploy times as datetimes).
    """
    from mlinfra.deploy.records import DeploymentRecords
    from mlinfra.rules.alerts import Transition
    from mlinfra.rules.state import StoreAlertStates
    from mlinfra.scaling.records import ScaleRecords

    by_eval: dict[tuple[str, int], list[Transition]] = {}
    for r in events.get("mlinfra_alert_transitions", []):
        by_eval.setdefault((r["group"], r["ts"]), []).append(
            Transition(
                fingerprint=r["fingerprint"],
                labels={"alertname": r["alert"], **r["labels"]},
                from_state=r["from_state"],
                to_state=r["to_state"],
                ts=r["ts"] / 1000.0,
                value=r["value"],
                active_at=r["active_at"] / 1000.0,
            )
        )
    states = StoreAlertStates(store)
    for (group, ts), transitions in sorted(by_eval.items(), key=lambda kv: kv[0][1]):
        states.save(f"{group}.yaml", group, ts / 1000.0, {}, transitions, run_id=f"sweep__{ts // 1000}")
    scale = ScaleRecords(store)
    for r in events.get("mlinfra_scale_events", []):
        scale.record_event(**{**r, "ts": r["ts"] / 1000.0})
    deploys = DeploymentRecords(store)
    for r in events.get("mlinfra_deployments", []):
        deploys.start(
            r["run_id"],
            model=r["model"],
            version=int(r["version"]),
            image=r["image"],
            triggered_by=r["triggered_by"],
            started_at=r["started_at"],
        )
        deploys.finish(
            r["run_id"],
            r["outcome"],
            r["reason"],
            ended_at=r["ended_at"],
            smoke=r["smoke"],
            rollback=r["rollback"],
        )
