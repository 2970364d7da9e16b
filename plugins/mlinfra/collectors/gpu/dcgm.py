"""The GPU samples again under NVIDIA dcgm-exporter's names, units and labels.

With ``gpu.metric_names: dcgm`` in the fleet file, every GPU sample that has a
dcgm-exporter counterpart (``etc/default-counters.csv`` and the DCP fields) is also
written under that name, so dashboards and alerts made for dcgm-exporter work::

    >>> s = Sample("ml_gpu_memory_used_bytes", {"gpu_id": "0", "uuid": "GPU-1", "host": "n1", "name": "H100"}, 2 * 1024**2)
    >>> [(d.name, d.value, d.labels["Hostname"]) for d in dcgm_samples([s])]
    [('DCGM_FI_DEV_FB_USED', 2.0, 'n1')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mlinfra.samples import Sample

__all__ = ["DCGM_NAMES", "dcgm_samples"]

MiB = 1024.0**2

# our name (+ the label value that picks the dcgm field) -> (dcgm name, factor from our unit to dcgm's)
DCGM_NAMES: dict[tuple[str, str | None], tuple[str, float]] = {
    ("ml_gpu_utilization_percent", None): ("DCGM_FI_DEV_GPU_UTIL", 1.0),
    ("ml_gpu_memory_utilization_percent", None): ("DCGM_FI_DEV_MEM_COPY_UTIL", 1.0),
    ("ml_gpu_memory_used_bytes", None): ("DCGM_FI_DEV_FB_USED", 1 / MiB),  # MiB
    ("ml_gpu_memory_free_bytes", None): ("DCGM_FI_DEV_FB_FREE", 1 / MiB),
    ("ml_gpu_memory_total_bytes", None): ("DCGM_FI_DEV_FB_TOTAL", 1 / MiB),
    ("ml_gpu_temperature_celsius", None): ("DCGM_FI_DEV_GPU_TEMP", 1.0),
    ("ml_gpu_power_usage_watts", None): ("DCGM_FI_DEV_POWER_USAGE", 1.0),
    ("ml_gpu_power_limit_watts", None): ("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", 1.0),
    ("ml_gpu_energy_joules_total", None): ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1000.0),  # mJ
    ("ml_gpu_sm_clock_mhz", None): ("DCGM_FI_DEV_SM_CLOCK", 1.0),
    ("ml_gpu_memory_clock_mhz", None): ("DCGM_FI_DEV_MEM_CLOCK", 1.0),
    ("ml_gpu_fan_speed_percent", None): ("DCGM_FI_DEV_FAN_SPEED", 1.0),
    ("ml_gpu_performance_state", None): ("DCGM_FI_DEV_PSTATE", 1.0),
    ("ml_gpu_pcie_tx_bytes_per_second", None): ("DCGM_FI_PROF_PCIE_TX_BYTES", 1.0),
    ("ml_gpu_pcie_rx_bytes_per_second", None): ("DCGM_FI_PROF_PCIE_RX_BYTES", 1.0),
    ("ml_gpu_pcie_replay_errors_total", None): ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 1.0),
    ("ml_gpu_ecc_errors_total", "corrected"): ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 1.0),
    ("ml_gpu_ecc_errors_total", "uncorrected"): ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 1.0),
    ("ml_gpu_remapped_rows_total", "correctable"): ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 1.0),
    ("ml_gpu_remapped_rows_total", "uncorrectable"): ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 1.0),
    ("ml_gpu_row_remap_pending", None): ("DCGM_FI_DEV_ROW_REMAP_PENDING", 1.0),
    ("ml_gpu_row_remap_failed", None): ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 1.0),
    ("ml_gpu_retired_pages", "single_bit_ecc"): ("DCGM_FI_DEV_RETIRED_SBE", 1.0),
    ("ml_gpu_retired_pages", "double_bit_ecc"): ("DCGM_FI_DEV_RETIRED_DBE", 1.0),
    ("ml_gpu_retired_pages_pending", None): ("DCGM_FI_DEV_RETIRED_PENDING", 1.0),
    # dcgm-exporter's XID field is the last XID's code (a gauge); its newer counter per
    # code is DCGM_EXP_XID_ERRORS_COUNT{xid}.
    ("ml_gpu_xid_last_code", None): ("DCGM_FI_DEV_XID_ERRORS", 1.0),
    ("ml_gpu_xid_errors_total", None): ("DCGM_EXP_XID_ERRORS_COUNT", 1.0),
    # DCP (profiling) fields are ratios 0..1; GPM gives percent.
    ("ml_gpu_graphics_active_percent", None): ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.01),
    ("ml_gpu_sm_active_percent", None): ("DCGM_FI_PROF_SM_ACTIVE", 0.01),
    ("ml_gpu_sm_occupancy_percent", None): ("DCGM_FI_PROF_SM_OCCUPANCY", 0.01),
    ("ml_gpu_tensor_active_percent", None): ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.01),
    # MIG instances: the same dcgm names, told apart by GPU_I_ID / GPU_I_PROFILE.
    ("ml_gpu_mig_memory_used_bytes", None): ("DCGM_FI_DEV_FB_USED", 1 / MiB),
    ("ml_gpu_mig_memory_free_bytes", None): ("DCGM_FI_DEV_FB_FREE", 1 / MiB),
    ("ml_gpu_mig_memory_total_bytes", None): ("DCGM_FI_DEV_FB_TOTAL", 1 / MiB),
    ("ml_gpu_mig_graphics_active_percent", None): ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.01),
    ("ml_gpu_mig_sm_active_percent", None): ("DCGM_FI_PROF_SM_ACTIVE", 0.01),
    ("ml_gpu_mig_sm_occupancy_percent", None): ("DCGM_FI_PROF_SM_OCCUPANCY", 0.01),
    ("ml_gpu_mig_tensor_active_percent", None): ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.01),
}
# The label whose value picks the dcgm field, per our name.
_SELECTOR = {
    "ml_gpu_ecc_errors_total": "type",
    "ml_gpu_remapped_rows_total": "type",
    "ml_gpu_retired_pages": "cause",
}


def _clock_event_mask(samples: Iterable[Sample]) -> dict[tuple[str, ...], tuple[Mapping[str, str], float]]:
    from mlinfra.collectors.gpu.nvml import CLOCK_EVENT_REASONS

    masks: dict[tuple[str, ...], tuple[Mapping[str, str], float]] = {}
    for s in samples:
        if s.name != "ml_gpu_clock_event_reason" or s.labels.get("reason") not in CLOCK_EVENT_REASONS:
            continue
        key = (s.labels.get("host", ""), s.labels.get("gpu_id", ""))
        base = {k: v for k, v in s.labels.items() if k != "reason"}
        mask = masks.get(key, (base, 0.0))[1]
        if s.value:
            mask += CLOCK_EVENT_REASONS[s.labels["reason"]]
        masks[key] = (base, mask)
    return masks


def _dcgm_labels(
    labels: Mapping[str, str], pods: Mapping[tuple[str, str, str, str], tuple[str, str, str]]
) -> dict[str, str]:
    gpu_id = labels.get("gpu_id", "")
    out = {
        "gpu": gpu_id,
        "UUID": labels.get("uuid", ""),
        "device": f"nvidia{gpu_id}",
        "modelName": labels.get("name", ""),
        "Hostname": labels.get("host", ""),
    }
    if "gpu_instance" in labels:
        out["GPU_I_PROFILE"] = labels.get("mig_profile", "")
        out["GPU_I_ID"] = labels["gpu_instance"]
    if "xid" in labels:
        out["xid"] = labels["xid"]
    key = (labels.get("host", ""), gpu_id, labels.get("gpu_instance", ""), labels.get("compute_instance", ""))
    pod = pods.get(key)
    if pod is not None:
        out["pod"], out["namespace"], out["container"] = pod
    return out


def dcgm_samples(
    samples: Iterable[Sample], pods: Mapping[tuple[str, str, str, str], tuple[str, str, str]] | None = None
) -> list[Sample]:
    """dcgm-exporter's samples for ``samples`` (ours are kept by the caller).

    ``pods`` maps (host, gpu_id, gpu_instance, compute_instance) to the one
    (pod, namespace, container) using that GPU or MIG instance; as in dcgm-exporter,
    a device used by several pods (time-slicing) gets no pod labels here: the
    per-process series say which pod uses what.
    """
    samples = list(samples)
    pods = pods or {}
    out: list[Sample] = []
    for s in samples:
        selector = _SELECTOR.get(s.name)
        key = (s.name, s.labels.get(selector) if selector else None)
        found = DCGM_NAMES.get(key)
        if found is None:
            continue
        name, factor = found
        out.append(Sample(name, _dcgm_labels(s.labels, pods), s.value * factor, s.timestamp))
    for base, mask in _clock_event_mask(samples).values():
        out.append(Sample("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", _dcgm_labels(base, pods), mask))
    return out
