"""GPU telemetry from NVML: the one module of the project that talks to ``pynvml``.

``pynvml`` is imported inside :func:`collect_gpu_samples`, never at module import,
because DAG files import :mod:`mlinfra` while they are parsed. Tests hand in the
scripted stand-in of the module instead::

    >>> from tests.support.fake_pynvml import FakeNVML
    >>> nvml = FakeNVML.scenario("eight_gpus")
    >>> samples = collect_gpu_samples(nvml, host="gpu-node-1")
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
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlinfra.collectors.base import CollectorResult, PartialCollection, run_collector
from mlinfra.exceptions import CollectorError, CollectorUnavailable
from mlinfra.samples import Sample

if TYPE_CHECKING:
    from mlinfra.config import Fleet

log = logging.getLogger(__name__)

__all__ = ["CLOCK_EVENT_REASONS", "collect_gpu_samples", "run"]

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

# Constants as nvml.h defines them; used only when the module lacks the name.
_NVML_TEMPERATURE_GPU = 0
_NVML_CLOCK_SM = 1
_NVML_CLOCK_MEM = 2
_NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
_NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
_NVML_VOLATILE_ECC = 0
_NVML_PCIE_UTIL_TX_BYTES = 0
_NVML_PCIE_UTIL_RX_BYTES = 1

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
        def cls(name: str) -> tuple[type[Exception], ...]:
            found = getattr(nvml, name, None)
            return (found,) if isinstance(found, type) and issubclass(found, Exception) else ()

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
        self.lost_on_open = self.lost + cls("NVMLError_Unknown")
        self.no_driver = cls("NVMLError_LibraryNotFound") + cls("NVMLError_DriverNotLoaded")


class _GPUReader:
    """Reads one GPU; every NVML call goes through :meth:`field`."""

    def __init__(self, nvml: Any, errs: _NVMLErrors, index: int, problems: list[str]):
        self.nvml = nvml
        self.errs = errs
        self.index = index
        self.problems = problems

    def field(self, what: str, fn: Callable[..., Any] | None, *args: Any) -> Any:
        """``fn(*args)``; ``_MISSING`` when the device does not support it, ``_ABSENT``
        when the function does not exist in this driver or pynvml.

        Raises :class:`_GPULost` when the GPU is lost; any other NVML error is
        noted in ``problems`` and the field is left out.
        """
        if fn is None:
            return _ABSENT
        try:
            return fn(*args)
        except self.errs.lost as e:
            raise _GPULost(e) from e
        except self.errs.absent as e:
            log.debug("gpu %d: %s not in this driver: %s", self.index, what, e)
            return _ABSENT
        except self.errs.unsupported as e:
            log.debug("gpu %d: %s not available: %s", self.index, what, e)
            return _MISSING
        except self.errs.base as e:
            self.problems.append(f"gpu {self.index} {what}: {type(e).__name__}: {e}")
            return _MISSING

    def fn(self, name: str) -> Callable[..., Any] | None:
        return getattr(self.nvml, name, None)


def _const(nvml: Any, name: str, default: int) -> int:
    value = getattr(nvml, name, default)
    return value if isinstance(value, int) else default


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


def _driver_samples(nvml: Any, errs: _NVMLErrors, host: str) -> list[Sample]:
    reader = _GPUReader(nvml, errs, -1, [])
    try:
        driver = reader.field("driver version", reader.fn("nvmlSystemGetDriverVersion"))
        cuda = reader.field("cuda version", reader.fn("nvmlSystemGetCudaDriverVersion"))
    except _GPULost:
        return []
    if not isinstance(driver, str | bytes):
        return []
    # NVML encodes CUDA 12.4 as 12040.
    cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else "unknown"
    labels = {"driver_version": _text(driver), "cuda_version": cuda_version, "host": host}
    return [Sample("ml_gpu_driver_info", labels, 1)]


def _gpu_samples(
    nvml: Any,
    errs: _NVMLErrors,
    index: int,
    host: str,
    process_name: Callable[[int], str],
    problems: list[str],
) -> list[Sample]:
    """All samples of GPU ``index``; a lost GPU gives ``ml_gpu_up 0`` alone."""
    r = _GPUReader(nvml, errs, index, problems)
    labels: dict[str, str] = {"gpu_id": str(index), "host": host}
    out: list[Sample] = []

    def add(name: str, value: Any, scale: float = 1.0, **extra: str) -> None:
        if value is not _MISSING and value is not _ABSENT and value is not None:
            out.append(Sample(name, {**labels, **extra}, float(value) * scale))

    try:
        # Without a handle and a UUID nothing else can be read or labelled: any
        # NVML error here reports the GPU down. Lost/unknown is what a dead GPU
        # says; anything else (no permission to the device, ...) is also noted
        # as a problem, since it is a configuration to fix rather than a fault.
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        labels["uuid"] = _text(nvml.nvmlDeviceGetUUID(handle))
    except errs.base as e:
        if not isinstance(e, errs.lost_on_open):
            problems.append(f"gpu {index}: cannot open the device: {type(e).__name__}: {e}")
        log.warning("gpu %d on %s is down: %s: %s", index, host, type(e).__name__, e)
        return [Sample("ml_gpu_up", labels, 0)]

    try:
        name = r.field("name", r.fn("nvmlDeviceGetName"), handle)
        labels["name"] = _text(name) if isinstance(name, str | bytes) else "unknown"

        util = r.field("utilization", r.fn("nvmlDeviceGetUtilizationRates"), handle)
        if util is not _MISSING and util is not _ABSENT:
            add("ml_gpu_utilization_percent", util.gpu)
            add("ml_gpu_memory_utilization_percent", util.memory)

        mem = r.field("memory info", r.fn("nvmlDeviceGetMemoryInfo"), handle)
        if mem is not _MISSING and mem is not _ABSENT:
            add("ml_gpu_memory_used_bytes", mem.used)
            add("ml_gpu_memory_total_bytes", mem.total)
            add("ml_gpu_memory_free_bytes", mem.free)

        temp_sensor = _const(nvml, "NVML_TEMPERATURE_GPU", _NVML_TEMPERATURE_GPU)
        add(
            "ml_gpu_temperature_celsius",
            r.field("temperature", r.fn("nvmlDeviceGetTemperature"), handle, temp_sensor),
        )

        # NVML reports power in milliwatts.
        add("ml_gpu_power_usage_watts", r.field("power usage", r.fn("nvmlDeviceGetPowerUsage"), handle), 1e-3)
        limit = r.field("power limit", r.fn("nvmlDeviceGetEnforcedPowerLimit"), handle)
        add("ml_gpu_power_limit_watts", limit, 1e-3)

        sm = _const(nvml, "NVML_CLOCK_SM", _NVML_CLOCK_SM)
        memclk = _const(nvml, "NVML_CLOCK_MEM", _NVML_CLOCK_MEM)
        add("ml_gpu_sm_clock_mhz", r.field("sm clock", r.fn("nvmlDeviceGetClockInfo"), handle, sm))
        add(
            "ml_gpu_memory_clock_mhz", r.field("memory clock", r.fn("nvmlDeviceGetClockInfo"), handle, memclk)
        )

        reasons = r.field("clock event reasons", r.fn("nvmlDeviceGetCurrentClocksEventReasons"), handle)
        if reasons is _ABSENT:
            # Drivers before r535 (and older pynvml) only have the older name of the call.
            reasons = r.field(
                "clock throttle reasons", r.fn("nvmlDeviceGetCurrentClocksThrottleReasons"), handle
            )
        if isinstance(reasons, int):
            for reason, bit in CLOCK_EVENT_REASONS.items():
                add("ml_gpu_clock_event_reason", 1 if reasons & bit else 0, reason=reason)

        # Volatile counters (errors since the driver was loaded), as DCGM exporter's
        # *_VOL_TOTAL fields: they move as errors happen, whereas the aggregate
        # (lifetime, infoROM) counts are only brought up to date now and then. A
        # driver reload resets them, which rate()/increase() treat as a counter reset.
        volatile = _const(nvml, "NVML_VOLATILE_ECC", _NVML_VOLATILE_ECC)
        for kind, code in (
            (
                "corrected",
                _const(nvml, "NVML_MEMORY_ERROR_TYPE_CORRECTED", _NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ),
            (
                "uncorrected",
                _const(nvml, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", _NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
            ),
        ):
            count = r.field(f"{kind} ecc errors", r.fn("nvmlDeviceGetTotalEccErrors"), handle, code, volatile)
            add("ml_gpu_ecc_errors_total", count, type=kind)

        # NVML reports PCIe throughput in KB/s (KiB, per nvml.h); each call samples 20 ms.
        for direction, const_name, default in (
            ("tx", "NVML_PCIE_UTIL_TX_BYTES", _NVML_PCIE_UTIL_TX_BYTES),
            ("rx", "NVML_PCIE_UTIL_RX_BYTES", _NVML_PCIE_UTIL_RX_BYTES),
        ):
            counter = _const(nvml, const_name, default)
            kbps = r.field(f"pcie {direction}", r.fn("nvmlDeviceGetPcieThroughput"), handle, counter)
            add(f"ml_gpu_pcie_{direction}_bytes_per_second", kbps, 1024.0)

        procs = r.field("compute processes", r.fn("nvmlDeviceGetComputeRunningProcesses"), handle)
        if procs is _ABSENT:
            # Drivers older than r510 lack the v3 call that the unversioned name maps to.
            procs = r.field("compute processes", r.fn("nvmlDeviceGetComputeRunningProcesses_v2"), handle)
        if isinstance(procs, list | tuple):
            add("ml_gpu_processes", len(procs))
            for p in procs:
                # usedGpuMemory is None where the driver cannot tell (Windows WDDM).
                add(
                    "ml_gpu_process_memory_used_bytes",
                    p.usedGpuMemory,
                    pid=str(p.pid),
                    process=process_name(p.pid),
                )
    except _GPULost as e:
        # Samples read before the loss are dropped: half a GPU is worse than a clear "down".
        log.warning("gpu %d on %s was lost: %s: %s", index, host, type(e.error).__name__, e.error)
        return [Sample("ml_gpu_up", labels, 0)]

    out.append(Sample("ml_gpu_up", labels, 1))
    return out


def collect_gpu_samples(
    nvml: Any = None,
    *,
    host: str | None = None,
    process_name: Callable[[int], str] | None = None,
) -> list[Sample]:
    """Read every GPU NVML can see and return its samples.

    ``nvml`` is the ``pynvml`` module (imported here when left out) or a stand-in
    with the same functions; ``host`` labels every sample (default: this host's
    name); ``process_name`` maps a pid to a name (default: psutil, ``"unknown"``
    for a pid it cannot see).

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
    errs = _NVMLErrors(nvml)
    try:
        nvml.nvmlInit()
    except errs.no_driver as e:
        raise CollectorUnavailable(
            f"NVML is not available on {host}: {e} (no NVIDIA driver loaded or libnvidia-ml.so.1 not found)"
        ) from e
    except errs.base as e:
        raise CollectorError(f"nvmlInit failed on {host}: {type(e).__name__}: {e}") from e

    problems: list[str] = []
    try:
        count = nvml.nvmlDeviceGetCount()
        samples = [Sample("ml_gpu_count", {"host": host}, count)]
        samples += _driver_samples(nvml, errs, host)
        for index in range(count):
            samples += _gpu_samples(nvml, errs, index, host, process_name or _default_process_name, problems)
    finally:
        try:
            nvml.nvmlShutdown()
        except errs.base as e:
            log.warning("nvmlShutdown failed on %s: %s", host, e)
    if problems:
        raise PartialCollection(samples, problems)
    return samples


def run(fleet: Fleet | None = None, *, nvml: Any = None, host: str | None = None) -> CollectorResult:
    """The GPU collector as the sweep runs it: never raises, reports ``mlinfra_collector_up``.

    ``fleet`` is accepted for the common collector signature; NVML needs nothing from it.

    >>> from tests.support.fake_pynvml import FakeNVML
    >>> result = run(nvml=FakeNVML.scenario("no_driver"))
    >>> result.up, result.errors[0].startswith("NVML is not available")
    (False, True)
    """
    return run_collector("gpu", lambda: collect_gpu_samples(nvml, host=host))
