"""What each metric family is: its Prometheus TYPE and HELP, for ``/mlinfra/metrics``.

The store keeps samples by name; Prometheus (and whoever reads the exposition) also
wants to know what a family is. Known names get their type and a sentence; others get
a type from the naming conventions (``*_total`` counters, ``_bucket``/``_sum``/``_count``
triples histograms, the rest gauges) and a sentence naming where they come from.

    >>> print(typed_exposition([Sample("ml_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, 5.0)]).decode(), end="")
    # HELP ml_cpu_seconds_total Seconds each CPU spent in each mode (node-exporter's node_cpu_seconds_total).
    # TYPE ml_cpu_seconds_total counter
    ml_cpu_seconds_total{cpu="0",mode="idle"} 5.0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from mlinfra.export import SampleCollector
from mlinfra.samples import Sample

# name -> (type, help). Types as the source system declares them (node-exporter,
# kube-state-metrics, TF Serving, NVML/dcgm-exporter conventions).
FAMILIES: dict[str, tuple[str, str]] = {
    "ml_cpu_seconds_total": (
        "counter",
        "Seconds each CPU spent in each mode (node-exporter's node_cpu_seconds_total).",
    ),
    "ml_cpu_usage_percent": (
        "gauge",
        "Busy share of CPU time between the last two sweeps, per core and for all cores.",
    ),
    "ml_cpu_count": ("gauge", "Logical CPUs of the host."),
    "ml_cpu_load_average": ("gauge", "Load average over 1, 5 and 15 minutes."),
    "ml_memory_usage_bytes": (
        "gauge",
        "Memory and swap by type (total, used, available, swap_used, swap_total).",
    ),
    "ml_memory_usage_percent": ("gauge", "Memory in use, percent of total."),
    "ml_disk_usage_bytes": ("gauge", "Filesystem size, used and free bytes per mount."),
    "ml_disk_usage_percent": ("gauge", "Filesystem use, percent of its size."),
    "ml_host_boot_time_seconds": ("gauge", "When the host booted, seconds since the epoch."),
    "ml_gpu_utilization_percent": ("gauge", "GPU busy time over the last sample period, percent (NVML)."),
    "ml_gpu_memory_utilization_percent": ("gauge", "GPU memory controller busy time, percent (NVML)."),
    "ml_gpu_memory_used_bytes": ("gauge", "GPU framebuffer memory in use."),
    "ml_gpu_memory_free_bytes": ("gauge", "GPU framebuffer memory free."),
    "ml_gpu_memory_total_bytes": ("gauge", "GPU framebuffer memory in all."),
    "ml_gpu_temperature_celsius": ("gauge", "GPU core temperature."),
    "ml_gpu_power_usage_watts": ("gauge", "GPU power draw."),
    "ml_gpu_power_limit_watts": ("gauge", "GPU power limit."),
    "ml_gpu_sm_clock_mhz": ("gauge", "GPU SM clock."),
    "ml_gpu_memory_clock_mhz": ("gauge", "GPU memory clock."),
    "ml_gpu_up": ("gauge", "1 when NVML could read the GPU, 0 when it was lost."),
    "ml_gpu_count": ("gauge", "GPUs NVML reports on the host."),
    "ml_gpu_driver_info": ("gauge", "Always 1; the driver and CUDA versions are labels."),
    "ml_gpu_processes": ("gauge", "Processes using the GPU."),
    "ml_gpu_process_memory_used_bytes": ("gauge", "GPU memory used by one process."),
    "ml_gpu_clock_event_reason": (
        "gauge",
        "1 while the GPU clock is held down for this reason (throttling).",
    ),
    "ml_gpu_energy_joules_total": ("counter", "Energy the GPU used since the driver loaded (NVML, mJ -> J)."),
    "ml_gpu_performance_state": ("gauge", "GPU performance state: 0 (P0, fastest) to 15."),
    "ml_gpu_fan_speed_percent": ("gauge", "GPU fan speed, percent of its maximum."),
    "ml_gpu_pcie_tx_bytes_per_second": ("gauge", "PCIe bytes sent per second (NVML's 20 ms sample)."),
    "ml_gpu_pcie_rx_bytes_per_second": ("gauge", "PCIe bytes received per second (NVML's 20 ms sample)."),
    "ml_gpu_pcie_replay_errors_total": (
        "counter",
        "PCIe replays (link retransmissions) since the driver loaded.",
    ),
    "ml_gpu_nvlink_up": ("gauge", "1 while the NVLink link is active."),
    "ml_gpu_ecc_errors_total": ("counter", "ECC errors since the driver loaded (volatile), by type."),
    "ml_gpu_remapped_rows_total": ("counter", "Memory rows remapped (Ampere and later), by type."),
    "ml_gpu_row_remap_pending": ("gauge", "1 when a row remap waits for a GPU reset."),
    "ml_gpu_row_remap_failed": ("gauge", "1 when a row remap failed: the GPU needs service."),
    "ml_gpu_retired_pages": ("gauge", "Memory pages retired (before Ampere), by cause."),
    "ml_gpu_retired_pages_pending": ("gauge", "1 when a page retirement waits for a reboot."),
    "ml_gpu_xid_errors_total": ("counter", "XID errors seen while the sweeps listened, by code."),
    "ml_gpu_xid_events_observed": ("gauge", "XID errors seen in this sweep's listening window, by code."),
    "ml_gpu_xid_last_code": (
        "gauge",
        "Code of the last XID error seen (dcgm-exporter's DCGM_FI_DEV_XID_ERRORS).",
    ),
    "ml_gpu_mig_mode_enabled": ("gauge", "1 when MIG is on for the GPU."),
    "ml_gpu_mig_memory_used_bytes": ("gauge", "Memory in use in one MIG instance."),
    "ml_gpu_mig_memory_total_bytes": ("gauge", "Memory of one MIG instance."),
    "ml_gpu_mig_memory_free_bytes": ("gauge", "Memory free in one MIG instance."),
    "ml_gpu_graphics_active_percent": (
        "gauge",
        "Time the graphics/compute engine was active (GPM), percent.",
    ),
    "ml_gpu_sm_active_percent": ("gauge", "SMs busy over the sample window (GPM), percent."),
    "ml_gpu_sm_occupancy_percent": ("gauge", "Warps resident vs the maximum (GPM), percent."),
    "ml_gpu_tensor_active_percent": ("gauge", "Time the tensor cores were busy (GPM), percent."),
    "ml_gpu_mig_graphics_active_percent": ("gauge", "Engine activity of one MIG instance (GPM), percent."),
    "ml_gpu_mig_sm_active_percent": ("gauge", "SM activity of one MIG instance (GPM), percent."),
    "ml_gpu_mig_sm_occupancy_percent": ("gauge", "SM occupancy of one MIG instance (GPM), percent."),
    "ml_gpu_mig_tensor_active_percent": ("gauge", "Tensor core activity of one MIG instance (GPM), percent."),
    "ml_gpu_process_sm_utilization_percent": ("gauge", "SM busy percent of one GPU process (NVML samples)."),
    "ml_gpu_process_memory_utilization_percent": (
        "gauge",
        "Memory-controller busy percent of one GPU process (NVML samples).",
    ),
    "kube_pod_info": ("gauge", "Always 1; the pod's UID is a label (kube-state-metrics)."),
    "kube_pod_container_info": ("gauge", "Always 1; the container's id is a label (kube-state-metrics)."),
    "kube_deployment_spec_replicas": ("gauge", "Desired pods of a Deployment (kube-state-metrics)."),
    "kube_deployment_status_replicas": ("gauge", "Pods of a Deployment (kube-state-metrics)."),
    "kube_deployment_status_replicas_available": (
        "gauge",
        "Available pods of a Deployment (kube-state-metrics).",
    ),
    "kube_deployment_status_replicas_ready": ("gauge", "Ready pods of a Deployment (kube-state-metrics)."),
    "kube_deployment_status_replicas_unavailable": (
        "gauge",
        "Unavailable pods of a Deployment (kube-state-metrics).",
    ),
    "kube_deployment_status_replicas_updated": (
        "gauge",
        "Updated pods of a Deployment (kube-state-metrics).",
    ),
    "kube_deployment_metadata_generation": ("gauge", "Sequence number of the Deployment's desired state."),
    "kube_deployment_status_observed_generation": ("gauge", "Generation the Deployment controller has seen."),
    "kube_pod_status_phase": ("gauge", "1 for the pod's current phase (kube-state-metrics)."),
    "kube_pod_container_status_ready": ("gauge", "1 when the container passes its readiness probe."),
    "kube_pod_container_status_restarts_total": ("counter", "Container restarts (kube-state-metrics)."),
    "kube_pod_container_status_waiting_reason": ("gauge", "1 while the container waits for this reason."),
    # A counter in TF Serving, but without the _total suffix that prometheus_client's text
    # format needs to write "TYPE ... counter" for this sample name: left untyped, as scraped.
    ":tensorflow:serving:request_count": (
        "unknown",
        "Predict requests TF Serving answered, by status (a counter; TF Serving's name).",
    ),
    "mlinfra_collector_up": (
        "gauge",
        "1 when the collector read its source in the last sweep, 0 when it failed.",
    ),
    "mlinfra_collector_target_up": ("gauge", "1 when one target of a collector answered."),
    "mlinfra_collector_duration_seconds": ("gauge", "How long the collector took in the last sweep."),
    "mlinfra_serving_up": ("gauge", "1 when TF Serving answered the status request."),
    "mlinfra_serving_model_version_available": (
        "gauge",
        "1 when the model version is AVAILABLE in TF Serving.",
    ),
    "mlinfra_serving_model_version_state": ("gauge", "1 for the model version's current TF Serving state."),
    "mlinfra_serving_status_latency_seconds": (
        "gauge",
        "How long TF Serving took to answer the status request.",
    ),
    "mlinfra_latest_sweep_timestamp_seconds": ("gauge", "When the sweep these samples come from ran."),
}
_SUFFIXES = ("_bucket", "_sum", "_count")


def _origin(name: str) -> str:
    if name.startswith("ml_gpu_"):
        return "the GPU collector (NVML)"
    if name.startswith("ml_"):
        return "the host collector"
    if name.startswith("kube_"):
        return "the Kubernetes collector (kube-state-metrics name)"
    if name.startswith(":tensorflow:"):
        return "TF Serving's own metrics"
    if name.startswith("mlinfra_"):
        return "mlinfra itself"
    return "a recording rule or an unknown source"


def describe(name: str) -> tuple[str, str]:
    """``(type, help)`` of the family ``name``; only ``*_total`` names can be counters."""
    kind, text = FAMILIES.get(name) or (
        "counter" if name.endswith("_total") else "gauge",
        f"{name} from {_origin(name)}.",
    )
    if kind == "counter" and not name.endswith("_total"):
        kind = "unknown"
    return kind, text


class TypedSampleCollector(Collector):
    """:class:`~mlinfra.export.SampleCollector`'s families, each with its type and help."""

    def __init__(self, samples: Iterable[Sample]):
        self._untyped = list(SampleCollector(samples).collect())

    def collect(self) -> Iterator[Metric]:
        by_name = {f.name: f for f in self._untyped}
        # Histograms arrive as three separate names: group X_bucket (with le), X_sum, X_count as X.
        histograms = {
            n[: -len("_bucket")]
            for n, f in by_name.items()
            if n.endswith("_bucket") and all("le" in s.labels for s in f.samples)
        }
        done: set[str] = set()
        for name, family in by_name.items():
            base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), None)
            if base in histograms:
                if base in done:
                    continue
                done.add(base)
                text = FAMILIES.get(base, ("histogram", f"{base} from {_origin(base)}."))[1]
                out = Metric(base, text, "histogram")
                for part in (by_name[base + suffix] for suffix in _SUFFIXES if base + suffix in by_name):
                    for s in part.samples:
                        out.add_sample(s.name, s.labels, s.value)
                yield out
                continue
            kind, text = describe(name)
            # prometheus_client names a counter family without _total and writes it back.
            out = Metric(name[: -len("_total")] if kind == "counter" else name, text, kind)
            for s in family.samples:
                out.add_sample(s.name, s.labels, s.value)
            yield out


def typed_exposition(samples: Iterable[Sample]) -> bytes:
    """``samples`` in the Prometheus text format, every family with ``# HELP`` and ``# TYPE``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TypedSampleCollector(samples))
    return generate_latest(registry)
