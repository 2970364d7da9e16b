"""GPU telemetry from NVML: the one module of the project that talks to ``pynvml``.

Size: over 600 lines on purpose: every NVML call and its error mapping stays in this one
module (as in gpustat's ``nvml.py``), so no other module needs to know NVML's failure modes.

It reads, per GPU, utilisation, memory, temperature, power, energy, clocks and their
event reasons, performance state, fan, ECC, remapped rows and retired pages, PCIe
throughput and replays, NVLink state, MIG instances (memory and, through GPM, engine
activity), the compute processes (memory and utilisation, with their container from
``/proc/<pid>/cgroup``) and the XID errors raised while the sweep listens.

``pynvml`` is imported inside :func:`collect_gpu_samples`, never at module import,
because DAG files import :mod:`mlinfra` while they are parsed. Tests hand in the
scripted stand-in of the module instead::

    >>> from tests.support.fake_pynvml import FakeNVML
    >>> nvml = FakeNVML.scenario("eight_gpus")
    >>> samples = collect_gpu_samples(nvml, host="gpu-node-1", window=0)
    >>> sorted({s.labels["gpu_id"] for s in samples if s.name == "ml_gpu_up"})
    ['0', '1', '2', '3', '4', '5', '6', '7']
    >>> nvml.shutdown_calls
    1

What each NVML outcome becomes (the same rules as gpustat's ``nvml.py``):

* a field the device does not support (``NVMLError_NotSupported``,
  ``NVMLError_NoPermission``, a function missing from an older driver) is left
  out: no sample rather than a misleading zero, and the collector stays up;
* a GPU that is lost (``NVMLError_GpuIsLost`` on any call, or ``NVMLError_Unknown``
  when opening it) is reported as ``ml_gpu_up{gpu_id=...} 0`` alone (what was read
  before the loss is dropped) and the other GPUs still report in full;
* no NVML library or no driver raises
  :class:`~mlinfra.exceptions.CollectorUnavailable`, which the sweep records as
  ``mlinfra_collector_up{collector="gpu"} 0`` with the reason;
* any other NVML error on one field drops that field and ends the collection with
  :class:`~mlinfra.collectors.base.PartialCollection`, so it is seen, not hidden.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mlinfra.collectors.base import PartialCollection
from mlinfra.collectors.gpu.attribution import host_proc_problem, read_container
from mlinfra.exceptions import CollectorError, CollectorUnavailable
from mlinfra.samples import Sample

log = logging.getLogger(__name__)

__all__ = ["CLOCK_EVENT_REASONS", "GPM_METRICS", "collect_gpu_samples"]

# Bits of nvmlDeviceGetCurrentClocksEventReasons (nvml.h, nvmlClocksEventReason*).
# Written out rather than read from the module: older pynvml releases only have the
# nvmlClocksThrottleReason* spellings, and the bit values are part of the C ABI.
CLOCK_EVENT_REASONS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake": 0x80,
    "display_clock_setting": 0x100,
}

# (bit, {"reason": name}) per clock event reason: each GPU's label dict is ``labels | reason``.
_REASON_LABELS = tuple((bit, {"reason": reason}) for reason, bit in CLOCK_EVENT_REASONS.items())

# nvml.h enum values the collector passes to NVML or compares with. Written out rather
# than read from the module, as the bits above: they are part of the C ABI, so a pynvml
# either has these very values or lacks the name (reading them cost a getattr each per sweep).
_SUCCESS = 0  # NVML_SUCCESS
_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
_CLOCK_SM = 1  # NVML_CLOCK_SM
_CLOCK_MEM = 2  # NVML_CLOCK_MEM
_ECC_CORRECTED = 0  # NVML_MEMORY_ERROR_TYPE_CORRECTED
_ECC_UNCORRECTED = 1  # NVML_MEMORY_ERROR_TYPE_UNCORRECTED
_VOLATILE_ECC = 0  # NVML_VOLATILE_ECC
_PCIE_TX_BYTES = 0  # NVML_PCIE_UTIL_TX_BYTES
_PCIE_RX_BYTES = 1  # NVML_PCIE_UTIL_RX_BYTES
_MIG_ENABLE = 1  # NVML_DEVICE_MIG_ENABLE
_RETIRED_SINGLE_BIT = 0  # NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
_RETIRED_DOUBLE_BIT = 1  # NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
_EVENT_XID_CRITICAL = 0x8  # nvmlEventTypeXidCriticalError
# These two follow the pynvml release, so they are read from the module; nvml.h's value
# where it lacks the name.
_NVML_H: dict[str, int] = {
    # per nvml.h up to r550; newer headers say more, the loop stops at the first invalid link
    "NVML_NVLINK_MAX_LINKS": 18,
    # the version of pynvml's c_nvmlGpmMetricsGet_t
    "NVML_GPM_METRICS_GET_VERSION": 1,
}
# gpuInstanceId / computeInstanceId of a process that is not in a MIG instance.
_NO_INSTANCE = 0xFFFFFFFF
# nvmlPstates_t: P0..P15, 32 = unknown.
_PSTATE_UNKNOWN = 32

# GPM metric ids (nvml.h nvmlGpmMetricId_t) -> our metric suffix; Hopper and later.
GPM_METRICS: dict[str, int] = {
    "graphics_active_percent": 1,  # NVML_GPM_METRIC_GRAPHICS_UTIL
    "sm_active_percent": 2,  # NVML_GPM_METRIC_SM_UTIL
    "sm_occupancy_percent": 3,  # NVML_GPM_METRIC_SM_OCCUPANCY
    "tensor_active_percent": 5,  # NVML_GPM_METRIC_ANY_TENSOR_UTIL
}

# isinstance() with a tuple made once rather than an ``X | Y`` union built at each call.
_TEXT = (str, bytes)
_SEQUENCE = (list, tuple)

# What _GPUReader.field returns instead of a value: the device cannot tell
# (_MISSING), or this driver / pynvml does not have the function at all (_ABSENT,
# the cue to try an older name of the same call).
_MISSING = object()
_ABSENT = object()


class _GPULost(Exception):
    """Internal: the GPU stopped answering; carries the NVML error."""

    def __init__(self, error: Exception):
        self.error = error
        super().__init__(str(error))


class _NVMLErrors:
    """The exception classes of one NVML module (the real one or the fake), by role."""

    def __init__(self, nvml: Any):
        self._nvml = nvml
        cls = self._cls
        self.base: tuple[type[Exception], ...] = cls("NVMLError")
        # "this device cannot tell you": omit the field.
        self.unsupported = cls("NVMLError_NotSupported") + cls("NVMLError_NoPermission")
        # "this driver has no such function": omit the field, or try an older name.
        self.absent = (
            cls("NVMLError_FunctionNotFound")
            # pynvml raises this (not an NVMLError) when an unversioned function is
            # missing from an older driver, e.g. nvmlDeviceGetComputeRunningProcesses.
            + cls("NVMLLibraryMismatchError")
        )
        # "the device is gone": the whole GPU is reported down. NVML also answers
        # Unknown for a GPU that fell off the bus, but only opening the device says
        # so reliably; Unknown on one field is treated as any other field error.
        self.lost = cls("NVMLError_GpuIsLost")
        self.not_found = cls("NVMLError_NotFound")
        self.timeout = cls("NVMLError_Timeout")
        self.invalid = cls("NVMLError_InvalidArgument")
        # Functions and constants, looked up once per sweep rather than once per GPU and call.
        self.fns = _Names(nvml)
        # Asked once per sweep rather than by a log.debug() call per unsupported field.
        self.debug = log.isEnabledFor(logging.DEBUG)

    def _cls(self, name: str) -> tuple[type[Exception], ...]:
        found = getattr(self._nvml, name, None)
        return (found,) if isinstance(found, type) and issubclass(found, Exception) else ()

    # The two below only matter when something fails (opening a GPU, nvmlInit): looked up then.

    @cached_property
    def lost_on_open(self) -> tuple[type[Exception], ...]:
        return self.lost + self._cls("NVMLError_Unknown")

    @cached_property
    def no_driver(self) -> tuple[type[Exception], ...]:
        return self._cls("NVMLError_LibraryNotFound") + self._cls("NVMLError_DriverNotLoaded")

    def const(self, name: str) -> int:
        """The constant ``nvml.<name>``, or nvml.h's value (``_NVML_H``) when this pynvml lacks it."""
        value = self.fns[name]
        return value if isinstance(value, int) else _NVML_H[name]

    def required(self, name: str) -> Callable[..., Any]:
        """``nvml.<name>`` that every pynvml has; lacking it raises ``AttributeError``, as ``nvml.<name>`` does."""
        return self.fns[name] or getattr(self._nvml, name)


class _Names(dict[str, Any]):
    """``names[name]`` is ``nvml.<name>``, or ``None`` when this driver's pynvml lacks it.

    A dict that fills itself on first use: each name costs one ``getattr`` per sweep
    and a dict look-up after that.
    """

    def __init__(self, nvml: Any):
        super().__init__()
        self._nvml = nvml

    def __missing__(self, name: str) -> Any:
        found = self[name] = getattr(self._nvml, name, None)
        return found


class _GPUReader:
    """Reads one GPU; every NVML call goes through :meth:`field`."""

    def __init__(self, errs: _NVMLErrors, index: int, problems: list[str]):
        self.errs = errs
        self.fns = errs.fns
        self.index = index
        self.problems = problems

    def field(self, what: str, name: str, *args: Any, quiet: tuple[type[Exception], ...] = ()) -> Any:
        """``nvml.<name>(*args)``; ``_MISSING`` when the device does not support it, ``_ABSENT``
        when the function does not exist in this driver or pynvml.

        Raises :class:`_GPULost` when the GPU is lost; ``quiet`` errors mean "no
        value" for this call; any other NVML error is noted in ``problems`` and the
        field is left out.
        """
        fn = self.fns[name]
        if fn is None:
            return _ABSENT
        try:
            return fn(*args)
        except self.errs.lost as e:
            raise _GPULost(e) from e
        except quiet:
            return _MISSING
        except self.errs.absent as e:
            if self.errs.debug:
                log.debug("gpu %d: %s not in this driver: %s", self.index, what, e)
            return _ABSENT
        except self.errs.unsupported as e:
            if self.errs.debug:
                log.debug("gpu %d: %s not available: %s", self.index, what, e)
            return _MISSING
        except self.errs.base as e:
            self.problems.append(f"gpu {self.index} {what}: {type(e).__name__}: {e}")
            return _MISSING


def _text(value: Any) -> str:
    # pynvml decodes C strings itself since 11.x; older releases return bytes.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _default_process_name(pid: int) -> str:
    import psutil

    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        # Gone already, or in another PID namespace (a container sees the host's pids).
        return "unknown"


def _present(value: Any) -> bool:
    return value is not _MISSING and value is not _ABSENT and value is not None


def _driver_samples(nvml: Any, errs: _NVMLErrors, host: str) -> list[Sample]:
    reader = _GPUReader(errs, -1, [])
    try:
        driver = reader.field("driver version", "nvmlSystemGetDriverVersion")
        cuda = reader.field("cuda version", "nvmlSystemGetCudaDriverVersion")
    except _GPULost:
        return []
    if not isinstance(driver, _TEXT):
        return []
    # NVML encodes CUDA 12.4 as 12040.
    cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else "unknown"
    labels = {"driver_version": _text(driver), "cuda_version": cuda_version, "host": host}
    return [Sample("ml_gpu_driver_info", labels, 1)]


@dataclass
class _MIG:
    """One MIG device (a GPU instance with one compute instance) of a GPU."""

    handle: Any
    labels: dict[str, str]
    gpu_instance: int
    gpm_first: Any = None


class _GPU:
    """One GPU through the phases of a sweep: open, read, listen, finish.

    ``labels`` is complete (gpu_id, host, uuid, name) once :meth:`_Sweep.open` has
    read the name, and from then on it is shared, not copied, by every sample
    :meth:`add` makes: nothing changes a sample's labels in place.
    """

    # A plain class: a dataclass's __init__ with default factories costs as much as a few samples.
    def __init__(self, index: int, labels: dict[str, str], reader: _GPUReader):
        self.index = index
        self.labels = labels
        self.reader = reader
        self.handle: Any = None
        self.lost = False
        self.samples: list[Sample] = []
        self.migs: list[_MIG] = []
        self.gpm_first: Any = None
        self.xids: list[int] = []
        self.watched = False

    def add(self, name: str, value: Any, scale: float = 1.0) -> None:
        """A sample of the GPU's own labels, unless ``value`` is missing."""
        if value is not _MISSING and value is not _ABSENT and value is not None:
            self.samples.append(_sample(name, self.labels, float(value) * scale))

    def add_labelled(self, name: str, value: Any, labels: dict[str, str]) -> None:
        """A sample of ``labels`` (all strings; kept, not copied), unless ``value`` is missing."""
        if value is not _MISSING and value is not _ABSENT and value is not None:
            self.samples.append(_sample(name, labels, float(value)))


# Labels here are strings by construction (gpu ids, pids and link numbers are str()-ed).
_sample = Sample.of


def _mig_profile(name: Any, attrs: Any) -> str:
    # A MIG device is named "<GPU name> MIG 1g.10gb" (nvidia-smi -L shows the same).
    m = re.search(r"MIG (\S+)$", _text(name)) if isinstance(name, _TEXT) else None
    if m:
        return m.group(1)
    if _present(attrs):
        slices = getattr(attrs, "gpuInstanceSliceCount", None)
        mem_mb = getattr(attrs, "memorySizeMB", None)
        if slices and mem_mb:
            return f"{slices}g.{round(mem_mb / 1024)}gb"
    return "unknown"


class _Sweep:
    """Reads every GPU of one ``nvmlInit`` .. ``nvmlShutdown``; see :func:`collect_gpu_samples`."""

    def __init__(
        self,
        nvml: Any,
        host: str,
        process_name: Callable[[int], str],
        proc_root: Path | None,
        window: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        wall_clock: Callable[[], float],
    ):
        self.nvml = nvml
        self.errs = _NVMLErrors(nvml)
        self.host = host
        self.process_name = process_name
        self.proc_root = proc_root
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.problems: list[str] = []
        self.notes: list[str] = []  # degraded features, said once (e.g. no host /proc)
        self.event_set: Any = None
        self._proc_checked = False
        self._proc_problem: str | None = None

    # -- phase 1: open each GPU, start listening and the first GPM sample ------------

    def open(self, index: int) -> _GPU:
        errs = self.errs
        r = _GPUReader(errs, index, self.problems)
        gpu = _GPU(index, {"gpu_id": str(index), "host": self.host}, r)
        try:
            # Without a handle and a UUID nothing else can be read or labelled: any
            # NVML error here reports the GPU down. Lost/unknown is what a dead GPU
            # says; anything else (no permission to the device, ...) is also noted
            # as a problem, since it is a configuration to fix rather than a fault.
            gpu.handle = errs.required("nvmlDeviceGetHandleByIndex")(index)
            gpu.labels["uuid"] = _text(errs.required("nvmlDeviceGetUUID")(gpu.handle))
        except errs.base as e:
            if not isinstance(e, errs.lost_on_open):
                self.problems.append(f"gpu {index}: cannot open the device: {type(e).__name__}: {e}")
            log.warning("gpu %d on %s is down: %s: %s", index, self.host, type(e).__name__, e)
            gpu.lost = True
            return gpu
        try:
            name = r.field("name", "nvmlDeviceGetName", gpu.handle)
            gpu.labels["name"] = _text(name) if isinstance(name, _TEXT) else "unknown"
            if self.event_set is not None:
                done = r.field(
                    "xid events", "nvmlDeviceRegisterEvents", gpu.handle, _EVENT_XID_CRITICAL, self.event_set
                )
                gpu.watched = done is not _MISSING and done is not _ABSENT
            self._open_migs(gpu, r)
            self._gpm_first(gpu, r)
        except _GPULost as e:
            self._lose(gpu, e)
        return gpu

    def _open_migs(self, gpu: _GPU, r: _GPUReader) -> None:
        mode = r.field("mig mode", "nvmlDeviceGetMigMode", gpu.handle)
        if not isinstance(mode, _SEQUENCE):
            return  # not a MIG-capable GPU
        enabled = mode[0] == _MIG_ENABLE
        gpu.add("ml_gpu_mig_mode_enabled", 1 if enabled else 0)
        if not enabled:
            return
        count = r.field("mig device count", "nvmlDeviceGetMaxMigDeviceCount", gpu.handle)
        for i in range(count if isinstance(count, int) else 0):
            # Slots without a MIG device answer NotFound (nvml.h): the layout has gaps.
            mig = r.field(
                f"mig device {i}",
                "nvmlDeviceGetMigDeviceHandleByIndex",
                gpu.handle,
                i,
                quiet=self.errs.not_found,
            )
            if not _present(mig):
                continue
            gi = r.field("gpu instance id", "nvmlDeviceGetGpuInstanceId", mig)
            ci = r.field("compute instance id", "nvmlDeviceGetComputeInstanceId", mig)
            if not isinstance(gi, int) or not isinstance(ci, int):
                continue
            name = r.field("mig name", "nvmlDeviceGetName", mig)
            attrs = _MISSING
            if not (isinstance(name, _TEXT) and " MIG " in _text(name)):
                attrs = r.field("mig attributes", "nvmlDeviceGetAttributes", mig)
            labels = {
                **gpu.labels,
                "mig_profile": _mig_profile(name, attrs),
                "gpu_instance": str(gi),
                "compute_instance": str(ci),
            }
            gpu.migs.append(_MIG(mig, labels, gi))

    def _gpm_supported(self, gpu: _GPU, r: _GPUReader) -> bool:
        support = r.field("gpm support", "nvmlGpmQueryDeviceSupport", gpu.handle)
        return _present(support) and bool(getattr(support, "isSupportedDevice", 0))

    def _gpm_first(self, gpu: _GPU, r: _GPUReader) -> None:
        # GPM figures are the activity between two samples: the first is taken here,
        # the second after the listening window, so the figure covers that window.
        if self.window <= 0 or not self._gpm_supported(gpu, r):
            return
        if gpu.migs:
            for mig in gpu.migs:
                mig.gpm_first = self._gpm_sample(r, gpu, mig.gpu_instance)
        else:
            gpu.gpm_first = self._gpm_sample(r, gpu, None)

    def _gpm_sample(self, r: _GPUReader, gpu: _GPU, gpu_instance: int | None) -> Any:
        sample = r.field("gpm sample alloc", "nvmlGpmSampleAlloc")
        if not _present(sample):
            return None
        try:
            if gpu_instance is None:
                got = r.field("gpm sample", "nvmlGpmSampleGet", gpu.handle, sample)
            else:
                got = r.field("gpm mig sample", "nvmlGpmMigSampleGet", gpu.handle, gpu_instance, sample)
        except _GPULost:
            self._gpm_free(sample)
            raise
        if not _present(got):
            self._gpm_free(sample)
            return None
        return sample

    def _gpm_free(self, sample: Any) -> None:
        if sample is None:
            return
        free = self.errs.fns["nvmlGpmSampleFree"]
        if free is not None:
            try:
                free(sample)
            except self.errs.base as e:
                log.debug("nvmlGpmSampleFree: %s", e)

    # -- phase 2: everything that is read once ----------------------------------------

    def read(self, gpu: _GPU) -> None:
        if gpu.lost:
            return
        r = gpu.reader
        try:
            self._read_device(gpu, r)
            self._read_health(gpu, r)
            self._read_processes(gpu, r)
            for mig in gpu.migs:
                mem = r.field("mig memory info", "nvmlDeviceGetMemoryInfo", mig.handle)
                if _present(mem):
                    gpu.add_labelled("ml_gpu_mig_memory_used_bytes", mem.used, mig.labels)
                    gpu.add_labelled("ml_gpu_mig_memory_total_bytes", mem.total, mig.labels)
                    gpu.add_labelled("ml_gpu_mig_memory_free_bytes", mem.free, mig.labels)
        except _GPULost as e:
            self._lose(gpu, e)

    def _read_device(self, gpu: _GPU, r: _GPUReader) -> None:
        h, add, field = gpu.handle, gpu.add, r.field
        # NotSupported on a MIG-enabled GPU (nvml.h): left out, never a stale figure.
        util = field("utilization", "nvmlDeviceGetUtilizationRates", h)
        if _present(util):
            add("ml_gpu_utilization_percent", util.gpu)
            add("ml_gpu_memory_utilization_percent", util.memory)
        mem = field("memory info", "nvmlDeviceGetMemoryInfo", h)
        if _present(mem):
            add("ml_gpu_memory_used_bytes", mem.used)
            add("ml_gpu_memory_total_bytes", mem.total)
            add("ml_gpu_memory_free_bytes", mem.free)
        add(
            "ml_gpu_temperature_celsius",
            field("temperature", "nvmlDeviceGetTemperature", h, _TEMPERATURE_GPU),
        )
        # NVML reports power in milliwatts, energy in millijoules since the driver loaded.
        add("ml_gpu_power_usage_watts", field("power usage", "nvmlDeviceGetPowerUsage", h), 1e-3)
        limit = field("power limit", "nvmlDeviceGetEnforcedPowerLimit", h)
        add("ml_gpu_power_limit_watts", limit, 1e-3)
        energy = field("total energy", "nvmlDeviceGetTotalEnergyConsumption", h)
        add("ml_gpu_energy_joules_total", energy, 1e-3)
        add("ml_gpu_sm_clock_mhz", field("sm clock", "nvmlDeviceGetClockInfo", h, _CLOCK_SM))
        add("ml_gpu_memory_clock_mhz", field("memory clock", "nvmlDeviceGetClockInfo", h, _CLOCK_MEM))
        pstate = field("performance state", "nvmlDeviceGetPerformanceState", h)
        if isinstance(pstate, int) and pstate != _PSTATE_UNKNOWN:
            add("ml_gpu_performance_state", pstate)
        # NotSupported on passively cooled data-centre boards.
        add("ml_gpu_fan_speed_percent", field("fan speed", "nvmlDeviceGetFanSpeed", h))

        reasons = field("clock event reasons", "nvmlDeviceGetCurrentClocksEventReasons", h)
        if reasons is _ABSENT:
            # Drivers before r535 (and older pynvml) only have the older name of the call.
            reasons = field("clock throttle reasons", "nvmlDeviceGetCurrentClocksThrottleReasons", h)
        if isinstance(reasons, int):
            labels, samples = gpu.labels, gpu.samples
            for bit, reason in _REASON_LABELS:
                value = 1.0 if reasons & bit else 0.0
                samples.append(_sample("ml_gpu_clock_event_reason", labels | reason, value))

        # NVML reports PCIe throughput in KB/s (KiB, per nvml.h); each call samples 20 ms.
        tx = field("pcie tx", "nvmlDeviceGetPcieThroughput", h, _PCIE_TX_BYTES)
        add("ml_gpu_pcie_tx_bytes_per_second", tx, 1024.0)
        rx = field("pcie rx", "nvmlDeviceGetPcieThroughput", h, _PCIE_RX_BYTES)
        add("ml_gpu_pcie_rx_bytes_per_second", rx, 1024.0)
        add("ml_gpu_pcie_replay_errors_total", field("pcie replays", "nvmlDeviceGetPcieReplayCounter", h))

        # Links are numbered from 0; the first link the GPU lacks answers InvalidArgument,
        # a GPU without NVLink answers NotSupported on link 0.
        for link in range(self.errs.const("NVML_NVLINK_MAX_LINKS")):
            state = field(f"nvlink {link}", "nvmlDeviceGetNvLinkState", h, link, quiet=self.errs.invalid)
            if not isinstance(state, int):
                break
            gpu.add_labelled("ml_gpu_nvlink_up", 1 if state else 0, {**gpu.labels, "link": str(link)})

    def _read_health(self, gpu: _GPU, r: _GPUReader) -> None:
        h, add, add_labelled, field = gpu.handle, gpu.add, gpu.add_labelled, r.field
        labels = gpu.labels
        # Volatile counters (errors since the driver was loaded), as DCGM exporter's
        # *_VOL_TOTAL fields: they move as errors happen, whereas the aggregate
        # (lifetime, infoROM) counts are only brought up to date now and then. A
        # driver reload resets them, which rate()/increase() treat as a counter reset.
        ecc = "nvmlDeviceGetTotalEccErrors"
        count = field("corrected ecc errors", ecc, h, _ECC_CORRECTED, _VOLATILE_ECC)
        add_labelled("ml_gpu_ecc_errors_total", count, {**labels, "type": "corrected"})
        count = field("uncorrected ecc errors", ecc, h, _ECC_UNCORRECTED, _VOLATILE_ECC)
        add_labelled("ml_gpu_ecc_errors_total", count, {**labels, "type": "uncorrected"})
        # Row remapping (Ampere and later) replaced page retirement (before Ampere):
        # each GPU answers one of the two, NotSupported to the other.
        rows = field("remapped rows", "nvmlDeviceGetRemappedRows", h)
        if isinstance(rows, _SEQUENCE) and len(rows) == 4:
            correctable, uncorrectable, pending, failure = rows
            add_labelled("ml_gpu_remapped_rows_total", correctable, {**labels, "type": "correctable"})
            add_labelled("ml_gpu_remapped_rows_total", uncorrectable, {**labels, "type": "uncorrectable"})
            add("ml_gpu_row_remap_pending", 1 if pending else 0)
            add("ml_gpu_row_remap_failed", 1 if failure else 0)
        retired = "nvmlDeviceGetRetiredPages"
        pages = field("retired pages single_bit_ecc", retired, h, _RETIRED_SINGLE_BIT)
        if isinstance(pages, _SEQUENCE):
            add_labelled("ml_gpu_retired_pages", len(pages), {**labels, "cause": "single_bit_ecc"})
        pages = field("retired pages double_bit_ecc", retired, h, _RETIRED_DOUBLE_BIT)
        if isinstance(pages, _SEQUENCE):
            add_labelled("ml_gpu_retired_pages", len(pages), {**labels, "cause": "double_bit_ecc"})
        pending_pages = field("retired pages pending", "nvmlDeviceGetRetiredPagesPendingStatus", h)
        if isinstance(pending_pages, int):
            add("ml_gpu_retired_pages_pending", 1 if pending_pages else 0)

    def _read_processes(self, gpu: _GPU, r: _GPUReader) -> None:
        h = gpu.handle
        procs = r.field("compute processes", "nvmlDeviceGetComputeRunningProcesses", h)
        if procs is _ABSENT:
            # Drivers older than r510 lack the v3 call that the unversioned name maps to.
            procs = r.field("compute processes", "nvmlDeviceGetComputeRunningProcesses_v2", h)
        if not isinstance(procs, _SEQUENCE):
            return
        gpu.add("ml_gpu_processes", len(procs))
        if not procs:
            return
        # Per-process SM / memory-controller busy percent over the driver's recent
        # samples (NotSupported on MIG, NotFound when no sample is newer than asked).
        since_us = int((self.wall_clock() - max(self.window, 1.0)) * 1e6)
        util = r.field(
            "process utilization",
            "nvmlDeviceGetProcessUtilization",
            h,
            max(since_us, 0),
            quiet=self.errs.not_found,
        )
        per_pid: dict[int, list[Any]] = {}
        for u in util if isinstance(util, _SEQUENCE) else ():
            per_pid.setdefault(int(u.pid), []).append(u)
        for p in procs:
            labels = {**gpu.labels, "pid": str(p.pid), "process": self.process_name(p.pid)}
            gi = getattr(p, "gpuInstanceId", _NO_INSTANCE)
            ci = getattr(p, "computeInstanceId", _NO_INSTANCE)
            if gi not in (None, _NO_INSTANCE):
                labels["gpu_instance"] = str(gi)
                labels["compute_instance"] = str(ci)
            if self.proc_root is not None:
                labels.update(self._container_labels(int(p.pid)))
            # usedGpuMemory is None where the driver cannot tell (Windows WDDM).
            gpu.add_labelled("ml_gpu_process_memory_used_bytes", p.usedGpuMemory, labels)
            seen = per_pid.get(int(p.pid))
            if seen:
                sm = sum(u.smUtil for u in seen) / len(seen)
                gpu.add_labelled("ml_gpu_process_sm_utilization_percent", sm, labels)
                mem = sum(u.memUtil for u in seen) / len(seen)
                gpu.add_labelled("ml_gpu_process_memory_utilization_percent", mem, labels)

    def _container_labels(self, pid: int) -> dict[str, str]:
        if self.proc_root is None:
            return {}
        if not self._proc_checked:
            self._proc_checked = True
            self._proc_problem = host_proc_problem(self.proc_root)
            if self._proc_problem:
                self.notes.append(self._proc_problem)
        if self._proc_problem:
            return {}
        ref = read_container(self.proc_root, pid)
        if ref is None:
            return {}
        out = {"pod_uid": ref.pod_uid}
        if ref.container_id:
            out["container_id"] = ref.container_id
        return out

    # -- phase 3: listen for XID events for the window, then the second GPM sample --------

    def listen(self, gpus: list[_GPU], started: float) -> None:
        by_uuid = {g.labels.get("uuid"): g for g in gpus if not g.lost}
        deadline = started + self.window
        if self.event_set is not None and any(g.watched for g in gpus):
            while True:
                remaining = deadline - self.clock()
                try:
                    # A timeout of 0 still returns an event already queued (nvml.h).
                    event = self.nvml.nvmlEventSetWait(self.event_set, max(0, math.ceil(remaining * 1000)))
                except self.errs.timeout:
                    break
                except self.errs.base as e:
                    self.problems.append(f"xid events: {type(e).__name__}: {e}")
                    break
                self._record_event(event, by_uuid)
                if remaining <= 0:
                    continue  # drain what is queued; Timeout ends it
        remaining = deadline - self.clock()
        if remaining > 0 and any(g.gpm_first is not None or any(m.gpm_first for m in g.migs) for g in gpus):
            self.sleep(remaining)

    def _record_event(self, event: Any, by_uuid: dict[str | None, _GPU]) -> None:
        try:
            uuid = _text(self.nvml.nvmlDeviceGetUUID(event.device))
        except self.errs.base as e:
            self.problems.append(f"xid event {getattr(event, 'eventData', '?')}: device unknown: {e}")
            return
        gpu = by_uuid.get(uuid)
        if gpu is not None:
            gpu.xids.append(int(event.eventData))
            log.warning("gpu %d on %s: XID %d", gpu.index, self.host, event.eventData)

    def finish(self, gpu: _GPU) -> list[Sample]:
        """The GPU's samples: GPM figures and XIDs added, or ``ml_gpu_up 0`` alone if it was lost."""
        if not gpu.lost:
            r = gpu.reader
            try:
                if gpu.gpm_first is not None:
                    self._gpm_metrics(gpu, r, None, gpu.gpm_first, gpu.labels, "ml_gpu_")
                for mig in gpu.migs:
                    if mig.gpm_first is not None:
                        self._gpm_metrics(gpu, r, mig.gpu_instance, mig.gpm_first, mig.labels, "ml_gpu_mig_")
            except _GPULost as e:
                self._lose(gpu, e)
        self._free_gpm(gpu)
        if gpu.lost:
            return [Sample("ml_gpu_up", gpu.labels, 0)]
        if gpu.watched and gpu.xids:
            counts: dict[int, int] = {}
            for xid in gpu.xids:
                counts[xid] = counts.get(xid, 0) + 1
            for xid, n in sorted(counts.items()):
                gpu.add_labelled("ml_gpu_xid_events_observed", n, {**gpu.labels, "xid": str(xid)})
            gpu.add("ml_gpu_xid_last_code", gpu.xids[-1])
        gpu.samples.append(_sample("ml_gpu_up", gpu.labels, 1.0))
        return gpu.samples

    def _gpm_metrics(
        self,
        gpu: _GPU,
        r: _GPUReader,
        gpu_instance: int | None,
        first: Any,
        labels: dict[str, str],
        prefix: str,
    ) -> None:
        second = self._gpm_sample(r, gpu, gpu_instance)
        if second is None:
            return
        try:
            request = self.nvml.c_nvmlGpmMetricsGet_t()
            request.version = self.errs.const("NVML_GPM_METRICS_GET_VERSION")
            request.numMetrics = len(GPM_METRICS)
            request.sample1, request.sample2 = first, second
            for i, metric_id in enumerate(GPM_METRICS.values()):
                request.metrics[i].metricId = metric_id
            got = r.field("gpm metrics", "nvmlGpmMetricsGet", request)
            if _present(got):
                for i, suffix in enumerate(GPM_METRICS):
                    metric = got.metrics[i]
                    # Each metric has its own return code: one the GPU lacks is left out.
                    if metric.nvmlReturn == _SUCCESS and math.isfinite(metric.value):
                        gpu.add_labelled(prefix + suffix, metric.value, labels)
        finally:
            self._gpm_free(second)

    def _free_gpm(self, gpu: _GPU) -> None:
        if gpu.gpm_first is not None:
            self._gpm_free(gpu.gpm_first)
            gpu.gpm_first = None
        for mig in gpu.migs:
            self._gpm_free(mig.gpm_first)
            mig.gpm_first = None

    def _lose(self, gpu: _GPU, e: _GPULost) -> None:
        # Samples read before the loss are dropped: half a GPU is worse than a clear "down".
        log.warning("gpu %d on %s was lost: %s: %s", gpu.index, self.host, type(e.error).__name__, e.error)
        gpu.lost = True
        gpu.samples.clear()

    # -- the event set ------------------------------------------------------------------

    def create_event_set(self) -> None:
        create = getattr(self.nvml, "nvmlEventSetCreate", None)
        if create is None or self.window < 0:
            return
        try:
            self.event_set = create()
        except self.errs.base as e:
            self.problems.append(f"xid events: nvmlEventSetCreate: {type(e).__name__}: {e}")

    def free_event_set(self) -> None:
        if self.event_set is None:
            return
        try:
            self.nvml.nvmlEventSetFree(self.event_set)
        except self.errs.base as e:
            log.debug("nvmlEventSetFree: %s", e)
        self.event_set = None


DEFAULT_WINDOW = 1.0


def collect_gpu_samples(
    nvml: Any = None,
    *,
    host: str | None = None,
    process_name: Callable[[int], str] | None = None,
    proc_root: Path | None = None,
    window: float = DEFAULT_WINDOW,
    notes: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall_clock: Callable[[], float] = time.time,
) -> list[Sample]:
    """Read every GPU NVML can see and return its samples.

    ``nvml`` is the ``pynvml`` module (imported here when left out) or a stand-in
    with the same functions; ``host`` labels every sample (default: this host's
    name); ``process_name`` maps a pid to a name (default: psutil, ``"unknown"``
    for a pid it cannot see); ``proc_root`` is the host's ``/proc`` for per-pod
    attribution (None: no attribution); ``window`` is how long the sweep listens
    for XID events and spans the GPM activity samples, in seconds. Degraded
    features (no host ``/proc``) are appended to ``notes``, once each.

    Raises :class:`CollectorUnavailable` when there is no NVML library or driver,
    :class:`PartialCollection` when some fields failed for reasons other than
    "not supported" (the samples that were read are in it).
    """
    if nvml is None:
        try:
            import pynvml
        except ImportError as e:
            raise CollectorUnavailable(
                f"the pynvml module is not installed ({e}); pip install nvidia-ml-py"
            ) from e
        nvml = pynvml
    host = host or socket.gethostname()
    sweep = _Sweep(
        nvml, host, process_name or _default_process_name, proc_root, window, clock, sleep, wall_clock
    )
    errs = sweep.errs
    try:
        nvml.nvmlInit()
    except errs.no_driver as e:
        raise CollectorUnavailable(
            f"NVML is not available on {host}: {e} (no NVIDIA driver loaded or libnvidia-ml.so.1 not found)"
        ) from e
    except errs.base as e:
        raise CollectorError(f"nvmlInit failed on {host}: {type(e).__name__}: {e}") from e

    gpus: list[_GPU] = []
    try:
        count = nvml.nvmlDeviceGetCount()
        samples = [Sample("ml_gpu_count", {"host": host}, count)]
        samples += _driver_samples(nvml, errs, host)
        started = clock()
        sweep.create_event_set()
        gpus = [sweep.open(index) for index in range(count)]
        for gpu in gpus:
            sweep.read(gpu)
        sweep.listen(gpus, started)
        for gpu in gpus:
            samples += sweep.finish(gpu)
    finally:
        for gpu in gpus:
            sweep._free_gpm(gpu)
        sweep.free_event_set()
        try:
            nvml.nvmlShutdown()
        except errs.base as e:
            log.warning("nvmlShutdown failed on %s: %s", host, e)
    if notes is not None:
        notes.extend(n for n in sweep.notes if n not in notes)
    if sweep.problems:
        raise PartialCollection(samples, sweep.problems)
    return samples
