"""A scripted stand-in for the ``pynvml`` module, for machines without an NVIDIA GPU.

It has the functions :mod:`mlinfra.collectors.gpu` calls, under their real names,
the real constants, and an exception hierarchy built the way ``pynvml`` builds
its own: ``NVMLError(NVML_ERROR_NOT_SUPPORTED)`` comes out as an
``NVMLError_NotSupported``. Values are in NVML's own units (milliwatts, KB/s,
bytes), so a test sees the collector's conversions.

    >>> nvml = FakeNVML.scenario("eight_gpus")
    >>> nvml.nvmlInit()
    >>> nvml.nvmlDeviceGetCount()
    8
    >>> h = nvml.nvmlDeviceGetHandleByIndex(3)
    >>> nvml.nvmlDeviceGetPowerUsage(h)  # milliwatts
    160000
    >>> nvml.nvmlShutdown()
    >>> nvml.init_calls, nvml.shutdown_calls
    (1, 1)

Scripting your own::

    gpus = [FakeGPU(index=0, temperature=91, errors={"nvmlDeviceGetPcieThroughput": NVML_ERROR_NOT_SUPPORTED})]
    nvml = FakeNVML(gpus)
    nvml = FakeNVML.scenario("eight_gpus", overrides={2: {"temperature": 95}})

``FakeGPU.errors`` maps an NVML function name to the error code it raises for that
GPU (``nvmlDeviceGetHandleByIndex`` included: that is how a lost GPU looks).
``FakeNVML(missing=...)`` removes module attributes, as an older ``pynvml`` lacks them.

MIG, GPM, per-process utilisation and XID events (scenarios ``mig``, ``pods``,
``xid``)::

    gpu = FakeGPU(index=0, mig_enabled=True, migs=[FakeMIG(slot=0, gpu_instance=1, profile="3g.40gb", ...)])
    gpu = FakeGPU(index=0, xid_events=[79, 13])   # raised while the next sweep listens
    gpu = FakeGPU(index=0, gpm={2: 55.0})          # NVML_GPM_METRIC_SM_UTIL = 55 %

Each scripted behaviour cites the part of ``nvml.h`` (the NVML API reference) it follows.
"""

from __future__ import annotations

import string
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

# Error codes and constants, as in pynvml / nvml.h.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_NVLINK_MAX_LINKS = 18
NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_PSTATE_UNKNOWN = 32
NVML_GPM_METRICS_GET_VERSION = 1
NVML_GPM_METRIC_GRAPHICS_UTIL = 1
NVML_GPM_METRIC_SM_UTIL = 2
NVML_GPM_METRIC_SM_OCCUPANCY = 3
NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
NVML_GPM_METRIC_MAX = 477
# nvmlEventType* bit masks (nvml.h "Event Types").
nvmlEventTypeSingleBitEccError = 0x1
nvmlEventTypeDoubleBitEccError = 0x2
nvmlEventTypePState = 0x4
nvmlEventTypeXidCriticalError = 0x8
nvmlEventTypeClock = 0x10

nvmlClocksEventReasonGpuIdle = 0x1
nvmlClocksEventReasonApplicationsClocksSetting = 0x2
nvmlClocksEventReasonSwPowerCap = 0x4
nvmlClocksEventReasonHwSlowdown = 0x8
nvmlClocksEventReasonSyncBoost = 0x10
nvmlClocksEventReasonSwThermalSlowdown = 0x20
nvmlClocksEventReasonHwThermalSlowdown = 0x40
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
nvmlClocksEventReasonDisplayClockSetting = 0x100

_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Same mechanics as ``pynvml.NVMLError``: the code picks the subclass."""

    _valClassMapping: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


class NVMLLibraryMismatchError(Exception):
    pass


def _make_error_classes() -> dict[str, Any]:
    """NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost, exactly as pynvml names them."""
    module = sys.modules[__name__]
    made: dict[str, Any] = {}
    for const in [n for n in dir(module) if n.startswith("NVML_ERROR_")]:
        name = "NVMLError_" + string.capwords(const.replace("NVML_ERROR_", ""), "_").replace("_", "")
        code = getattr(module, const)

        def gen_new(val: int) -> Any:
            def new(typ: type[NVMLError], *args: Any) -> NVMLError:
                return NVMLError.__new__(typ, val)

            return new

        cls = type(name, (NVMLError,), {"__new__": gen_new(code)})
        cls.__module__ = __name__
        setattr(module, name, cls)
        NVMLError._valClassMapping[code] = cls
        made[name] = cls
    return made


ERROR_CLASSES = _make_error_classes()

# For type checkers and readers; the classes themselves were set by the call above.
NVMLError_NotSupported: Any = ERROR_CLASSES["NVMLError_NotSupported"]
NVMLError_NoPermission: Any = ERROR_CLASSES["NVMLError_NoPermission"]
NVMLError_GpuIsLost: Any = ERROR_CLASSES["NVMLError_GpuIsLost"]
NVMLError_Unknown: Any = ERROR_CLASSES["NVMLError_Unknown"]
NVMLError_LibraryNotFound: Any = ERROR_CLASSES["NVMLError_LibraryNotFound"]
NVMLError_DriverNotLoaded: Any = ERROR_CLASSES["NVMLError_DriverNotLoaded"]
NVMLError_FunctionNotFound: Any = ERROR_CLASSES["NVMLError_FunctionNotFound"]
NVMLError_Uninitialized: Any = ERROR_CLASSES["NVMLError_Uninitialized"]


class _Struct:
    """Like pynvml's ``nvmlFriendlyObject``: attributes from keyword arguments."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


@dataclass
class FakeProcess:
    pid: int
    used_memory: int | None  # bytes; None as on Windows WDDM
    # nvmlProcessInfo_t.gpuInstanceId / computeInstanceId: 0xFFFFFFFF outside MIG.
    gpu_instance: int = 0xFFFFFFFF
    compute_instance: int = 0xFFFFFFFF
    # nvmlProcessUtilizationSample_t smUtil / memUtil; None: the driver has no sample
    # for this process (it has not run a kernel since the time asked about).
    sm_util: int | None = None
    mem_util: int | None = None


@dataclass
class FakeMIG:
    """One MIG device: a GPU instance with one compute instance (nvml.h "Multi Instance GPU")."""

    slot: int  # index for nvmlDeviceGetMigDeviceHandleByIndex
    gpu_instance: int
    compute_instance: int = 0
    profile: str = "1g.10gb"
    memory_total: int = 10 * 1024**3
    memory_used: int = 0
    uuid: str = ""
    # GPM metric id -> value for this GPU instance (nvmlGpmMigSampleGet); None: no GPM.
    gpm: dict[int, float] | None = None


@dataclass
class FakeGPU:
    """One scripted GPU; values in NVML's units."""

    index: int
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    utilization: int = 0  # percent
    memory_utilization: int = 0  # percent
    memory_total: int = 80 * 1024**3  # bytes
    memory_used: int = 0  # bytes
    temperature: int = 40  # Celsius
    power_usage: int = 70_000  # milliwatts
    power_limit: int = 700_000  # milliwatts
    sm_clock: int = 1980  # MHz
    memory_clock: int = 2619  # MHz
    clock_event_reasons: int = 0  # bit mask
    ecc_corrected: int = 0  # volatile count
    ecc_uncorrected: int = 0
    ecc_corrected_aggregate: int = 0
    ecc_uncorrected_aggregate: int = 0
    pcie_tx: int = 0  # KB/s
    pcie_rx: int = 0  # KB/s
    processes: list[FakeProcess] = field(default_factory=list)
    energy: int = 1_000_000  # millijoules since the driver loaded
    pcie_replays: int = 0
    performance_state: int = 0  # P0
    fan_speed: int | None = None  # percent; None: passively cooled (NotSupported)
    nvlink: list[int] = field(default_factory=list)  # state per link; empty: no NVLink
    # (correctable, uncorrectable, pending, failure); None: before Ampere (NotSupported)
    remapped_rows: tuple[int, int, int, int] | None = (0, 0, 0, 0)
    # cause -> retired page addresses; None: Ampere and later (NotSupported)
    retired_pages: dict[int, list[int]] | None = None
    # None: not MIG-capable (nvmlDeviceGetMigMode is NotSupported).
    mig_enabled: bool | None = None
    migs: list[FakeMIG] = field(default_factory=list)
    max_migs: int = 7
    # GPM metric id -> value over the whole GPU; None: before Hopper (no GPM).
    gpm: dict[int, float] | None = None
    # XIDs this GPU raises while the next sweep listens (consumed by nvmlEventSetWait).
    xid_events: list[int] = field(default_factory=list)
    # NVML function name -> error code that function raises for this GPU.
    errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.uuid:
            self.uuid = f"GPU-00000000-0000-0000-0000-{self.index:012d}"
        for mig in self.migs:
            if not mig.uuid:
                mig.uuid = f"MIG-00000000-0000-0000-{self.index:04d}-{mig.slot:012d}"


@dataclass(frozen=True)
class _Handle:
    index: int


@dataclass(frozen=True)
class _MigHandle:
    index: int  # the parent GPU's
    slot: int


@dataclass
class _GpmSample:
    """An allocated nvmlGpmSample_t; filled by nvmlGpmSampleGet / nvmlGpmMigSampleGet."""

    values: dict[int, float] | None = None
    freed: bool = False


class _GpmMetric(_Struct):
    pass


class c_nvmlGpmMetricsGet_t:
    """Shape of pynvml's struct: version, numMetrics, sample1, sample2, metrics[NVML_GPM_METRIC_MAX]."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: Any = None
        self.sample2: Any = None
        self.metrics = [_GpmMetric(metricId=0, nvmlReturn=NVML_SUCCESS, value=0.0) for _ in range(16)]


@dataclass
class _EventSet:
    handles: list[_Handle] = field(default_factory=list)
    freed: bool = False


def _eight_gpus() -> list[FakeGPU]:
    """Eight H100 SXM5 boards: passively cooled, 18 NVLinks up, MIG-capable with MIG off, GPM.

    tests/support/nvml_driver/libnvidia-ml.c answers with the same values through the
    real pynvml; tests/collectors/test_gpu_driver_stub.py keeps the two equal.
    """
    gpus = []
    for i in range(8):
        gpus.append(
            FakeGPU(
                index=i,
                utilization=10 * i + 5,
                memory_utilization=5 * i + 1,
                memory_used=(i + 1) * 8 * 1024**3,
                temperature=45 + i,
                power_usage=(100 + 20 * i) * 1000,
                sm_clock=1980 - 10 * i,
                clock_event_reasons=(nvmlClocksEventReasonSwPowerCap if i == 7 else 0)
                | (nvmlClocksEventReasonGpuIdle if i == 0 else 0),
                ecc_corrected=i,
                ecc_uncorrected=1 if i == 5 else 0,
                ecc_corrected_aggregate=100 + i,
                pcie_tx=1000 * (i + 1),
                pcie_rx=2000 * (i + 1),
                processes=[
                    FakeProcess(
                        pid=4000 + i, used_memory=(i + 1) * 4 * 1024**3, sm_util=20 + i, mem_util=10 + i
                    )
                ]
                if i % 2 == 0
                else [],
                nvlink=[1] * 18,
                mig_enabled=False,
                gpm={
                    NVML_GPM_METRIC_GRAPHICS_UTIL: 10.0 * i + 5,
                    NVML_GPM_METRIC_SM_UTIL: 8.0 * i + 4,
                    NVML_GPM_METRIC_SM_OCCUPANCY: 5.0 * i + 2,
                    NVML_GPM_METRIC_ANY_TENSOR_UTIL: 3.0 * i + 1,
                },
            )
        )
    return gpus


def _lost_gpu() -> list[FakeGPU]:
    gpus = [FakeGPU(index=i, utilization=50 + i, memory_used=1024**3) for i in range(4)]
    gpus[2].errors["nvmlDeviceGetHandleByIndex"] = NVML_ERROR_GPU_IS_LOST
    return gpus


def _unsupported_fields() -> list[FakeGPU]:
    unsupported = {
        "nvmlDeviceGetTotalEccErrors": NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetPcieThroughput": NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetEnforcedPowerLimit": NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetCurrentClocksEventReasons": NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetCurrentClocksThrottleReasons": NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetComputeRunningProcesses": NVML_ERROR_NO_PERMISSION,
    }
    return [
        FakeGPU(
            index=0,
            name="NVIDIA GeForce RTX 3060",
            memory_total=12 * 1024**3,
            memory_used=3 * 1024**3,
            utilization=33,
            temperature=61,
            power_usage=95_500,
            errors=dict(unsupported),
        )
    ]


def _mig() -> list[FakeGPU]:
    """GPU 0 split into 3g.40gb + 2 x 2g.20gb (slot 2 empty), GPU 1 MIG-capable but off."""
    migs = [
        FakeMIG(
            slot=0,
            gpu_instance=1,
            profile="3g.40gb",
            memory_total=40 * 1024**3,
            memory_used=30 * 1024**3,
            gpm={
                NVML_GPM_METRIC_GRAPHICS_UTIL: 97.0,
                NVML_GPM_METRIC_SM_UTIL: 96.5,
                NVML_GPM_METRIC_ANY_TENSOR_UTIL: 60.0,
            },
        ),
        FakeMIG(
            slot=1,
            gpu_instance=5,
            profile="2g.20gb",
            memory_total=20 * 1024**3,
            memory_used=1024**3,
            gpm={NVML_GPM_METRIC_GRAPHICS_UTIL: 3.0, NVML_GPM_METRIC_SM_UTIL: 2.0},
        ),
        FakeMIG(
            slot=3, gpu_instance=6, profile="2g.20gb", memory_total=20 * 1024**3, memory_used=0, gpm=None
        ),
    ]
    return [
        FakeGPU(
            index=0,
            mig_enabled=True,
            migs=migs,
            memory_used=31 * 1024**3,
            gpm={NVML_GPM_METRIC_SM_UTIL: 40.0},
            processes=[FakeProcess(pid=500, used_memory=30 * 1024**3, gpu_instance=1, compute_instance=0)],
        ),
        FakeGPU(
            index=1,
            mig_enabled=False,
            utilization=70,
            gpm={NVML_GPM_METRIC_SM_UTIL: 65.0, NVML_GPM_METRIC_ANY_TENSOR_UTIL: 30.0},
        ),
    ]


_SCENARIOS: dict[str, dict[str, Any]] = {
    "single_gpu": {"gpus": lambda: [FakeGPU(index=0, utilization=42)]},
    "eight_gpus": {"gpus": _eight_gpus},
    "lost_gpu": {"gpus": _lost_gpu},
    "unsupported_fields": {"gpus": _unsupported_fields},
    # Driver before r535: no ClocksEvent name, processes only through the _v2 call.
    "old_driver": {
        "gpus": lambda: [
            FakeGPU(
                index=0,
                name="Tesla V100-SXM2-16GB",
                clock_event_reasons=nvmlClocksEventReasonHwSlowdown,
                processes=[FakeProcess(pid=77, used_memory=2 * 1024**3)],
                errors={
                    "nvmlDeviceGetCurrentClocksEventReasons": NVML_ERROR_FUNCTION_NOT_FOUND,
                    "nvmlDeviceGetComputeRunningProcesses": NVML_ERROR_FUNCTION_NOT_FOUND,
                },
            )
        ],
        "driver_version": "470.239.06",
        "cuda_version": 11040,
    },
    "mig": {"gpus": _mig},
    # Two processes from pods, one from the host; see tests/collectors/test_gpu_attribution.py.
    "pods": {
        "gpus": lambda: [
            FakeGPU(
                index=0,
                utilization=80,
                processes=[
                    FakeProcess(pid=1001, used_memory=6 * 1024**3, sm_util=50, mem_util=20),
                    FakeProcess(pid=1002, used_memory=2 * 1024**3, sm_util=10, mem_util=5),
                    FakeProcess(pid=1003, used_memory=1024**3),
                ],
            )
        ]
    },
    "xid": {"gpus": lambda: [FakeGPU(index=0, xid_events=[79, 79, 13]), FakeGPU(index=1)]},
    "no_driver": {"gpus": list, "init_error": NVML_ERROR_DRIVER_NOT_LOADED},
    "no_library": {"gpus": list, "init_error": NVML_ERROR_LIBRARY_NOT_FOUND},
}

SCENARIOS = tuple(_SCENARIOS)


class FakeNVML:
    """Stands in for the ``pynvml`` module; pass it as ``nvml=`` to the GPU collector.

    Tracks ``init_calls``, ``shutdown_calls`` and every call in ``calls``
    (function name, GPU index or ``None``).
    """

    def __init__(
        self,
        gpus: list[FakeGPU] | None = None,
        *,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        init_error: int | None = None,
        missing: tuple[str, ...] = (),
    ):
        self.gpus = list(gpus or [])
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.init_error = init_error
        self.missing = frozenset(missing)
        self.init_calls = 0
        self.shutdown_calls = 0
        self.initialized = 0  # pynvml counts nested inits
        self.calls: list[tuple[str, int | None]] = []
        self.gpm_samples: list[_GpmSample] = []
        self.event_sets: list[_EventSet] = []
        self.wait_timeouts: list[int] = []

    @classmethod
    def scenario(
        cls, name: str, *, overrides: dict[int, dict[str, Any]] | None = None, **kwargs: Any
    ) -> FakeNVML:
        """A named scenario (see ``SCENARIOS``); ``overrides`` replace fields per GPU index."""
        try:
            spec = dict(_SCENARIOS[name])
        except KeyError:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
        gpus = spec.pop("gpus")()
        for index, fields in (overrides or {}).items():
            gpus[index] = replace(gpus[index], **fields)
        return cls(gpus, **{**spec, **kwargs})

    def __getattribute__(self, name: str) -> Any:
        # An older pynvml simply lacks some names; hasattr()/getattr() must see that.
        if not name.startswith("_") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        # Constants and exception classes live at module level, as in pynvml.
        module = sys.modules[__name__]
        if name.startswith(("NVML", "nvmlClocks", "nvmlEventType", "c_nvml")) and hasattr(module, name):
            return getattr(module, name)
        raise AttributeError(name)

    # -- helpers --------------------------------------------------------------

    def _call(self, fn: str, handle: Any = None) -> FakeGPU | None:
        self.calls.append((fn, handle.index if handle else None))
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if handle is None:
            return None
        gpu = self.gpus[handle.index]
        if fn in gpu.errors:
            raise NVMLError(gpu.errors[fn])
        return gpu

    def _gpu(self, fn: str, handle: _Handle | _MigHandle) -> FakeGPU:
        gpu = self._call(fn, handle)
        assert gpu is not None
        return gpu

    def _device(self, fn: str, handle: _Handle | _MigHandle) -> tuple[FakeGPU, FakeMIG | None]:
        """The GPU (errors of a lost parent apply to its MIG devices too) and the MIG device, if any."""
        gpu = self._gpu(fn, handle)
        if isinstance(handle, _MigHandle):
            return gpu, next(m for m in gpu.migs if m.slot == handle.slot)
        return gpu, None

    def _not_on_mig(self, fn: str, handle: _Handle | _MigHandle) -> FakeGPU:
        # nvml.h: most device queries answer NVML_ERROR_NOT_SUPPORTED for a MIG device handle.
        gpu = self._gpu(fn, handle)
        if isinstance(handle, _MigHandle):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    # -- the pynvml API -------------------------------------------------------

    def nvmlInit(self) -> None:
        self.init_calls += 1
        self.calls.append(("nvmlInit", None))
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.calls.append(("nvmlShutdown", None))
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        self.shutdown_calls += 1
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._call("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._call("nvmlSystemGetCudaDriverVersion")
        return self.cuda_version

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        if not 0 <= index < len(self.gpus):
            self._call("nvmlDeviceGetHandleByIndex")
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        handle = _Handle(index)
        self._call("nvmlDeviceGetHandleByIndex", handle)
        return handle

    def nvmlDeviceGetUUID(self, handle: _Handle | _MigHandle) -> str:
        gpu, mig = self._device("nvmlDeviceGetUUID", handle)
        return mig.uuid if mig else gpu.uuid

    def nvmlDeviceGetName(self, handle: _Handle | _MigHandle) -> str:
        # nvml.h: a MIG device's name is "<GPU name> MIG <profile>", as nvidia-smi -L shows.
        gpu, mig = self._device("nvmlDeviceGetName", handle)
        return f"{gpu.name} MIG {mig.profile}" if mig else gpu.name

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle | _MigHandle) -> _Struct:
        gpu = self._not_on_mig("nvmlDeviceGetUtilizationRates", handle)
        # nvml.h: "On MIG-enabled GPUs, querying device utilization rates is not currently supported."
        if gpu.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return _Struct(gpu=gpu.utilization, memory=gpu.memory_utilization)

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle | _MigHandle, version: int | None = None) -> _Struct:
        # nvml.h: on a MIG device handle, the memory of that GPU instance.
        gpu, mig = self._device("nvmlDeviceGetMemoryInfo", handle)
        total, used = (mig.memory_total, mig.memory_used) if mig else (gpu.memory_total, gpu.memory_used)
        return _Struct(total=total, used=used, free=total - used)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_usage

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit

    def nvmlDeviceGetPowerManagementLimit(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementLimit", handle).power_limit

    def nvmlDeviceGetClockInfo(self, handle: _Handle, type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        if type == NVML_CLOCK_SM:
            return gpu.sm_clock
        if type == NVML_CLOCK_MEM:
            return gpu.memory_clock
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", handle).clock_event_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksThrottleReasons", handle).clock_event_reasons

    def nvmlDeviceGetTotalEccErrors(self, handle: _Handle, errorType: int, counterType: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEccErrors", handle)
        table = {
            (NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_VOLATILE_ECC): gpu.ecc_corrected,
            (NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC): gpu.ecc_uncorrected,
            (NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_AGGREGATE_ECC): gpu.ecc_corrected_aggregate,
            (NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_AGGREGATE_ECC): gpu.ecc_uncorrected_aggregate,
        }
        if (errorType, counterType) not in table:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return table[(errorType, counterType)]

    def nvmlDeviceGetPcieThroughput(self, device: _Handle, counter: int) -> int:
        gpu = self._gpu("nvmlDeviceGetPcieThroughput", device)
        if counter == NVML_PCIE_UTIL_TX_BYTES:
            return gpu.pcie_tx
        if counter == NVML_PCIE_UTIL_RX_BYTES:
            return gpu.pcie_rx
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def _processes(self, fn: str, handle: _Handle) -> list[_Struct]:
        gpu = self._gpu(fn, handle)
        return [
            # nvml.h nvmlProcessInfo_t: on a MIG-enabled GPU's handle, every instance's
            # processes with their gpuInstanceId / computeInstanceId; 0xFFFFFFFF otherwise.
            _Struct(
                pid=p.pid,
                usedGpuMemory=p.used_memory,
                gpuInstanceId=p.gpu_instance,
                computeInstanceId=p.compute_instance,
            )
            for p in gpu.processes
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[_Struct]:
        try:
            return self._processes("nvmlDeviceGetComputeRunningProcesses", handle)
        except NVMLError_FunctionNotFound:
            # What pynvml's @throwOnVersionMismatch turns a missing _v3 into.
            raise NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match the NVML lib version."
            ) from None

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: _Handle) -> list[_Struct]:
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v2", handle)

    # -- device health -----------------------------------------------------------

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        # nvml.h: millijoules since the driver was last reloaded; Volta and later.
        return self._not_on_mig("nvmlDeviceGetTotalEnergyConsumption", handle).energy

    def nvmlDeviceGetPcieReplayCounter(self, handle: _Handle) -> int:
        return self._not_on_mig("nvmlDeviceGetPcieReplayCounter", handle).pcie_replays

    def nvmlDeviceGetPerformanceState(self, handle: _Handle) -> int:
        # nvml.h nvmlPstates_t: 0 (P0, maximum performance) .. 15; 32 unknown.
        return self._not_on_mig("nvmlDeviceGetPerformanceState", handle).performance_state

    def nvmlDeviceGetFanSpeed(self, handle: _Handle) -> int:
        # nvml.h: NVML_ERROR_NOT_SUPPORTED when the device has no fan.
        gpu = self._not_on_mig("nvmlDeviceGetFanSpeed", handle)
        if gpu.fan_speed is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.fan_speed

    def nvmlDeviceGetNvLinkState(self, device: _Handle, link: int) -> int:
        # nvml.h: NOT_SUPPORTED without NVLink, INVALID_ARGUMENT for a link the GPU lacks.
        gpu = self._not_on_mig("nvmlDeviceGetNvLinkState", device)
        if not gpu.nvlink:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < len(gpu.nvlink):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return NVML_FEATURE_ENABLED if gpu.nvlink[link] else NVML_FEATURE_DISABLED

    def nvmlDeviceGetRemappedRows(self, device: _Handle) -> tuple[int, int, int, int]:
        # nvml.h: Ampere and later; (corrRows, uncRows, isPending, failureOccurred).
        gpu = self._not_on_mig("nvmlDeviceGetRemappedRows", device)
        if gpu.remapped_rows is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.remapped_rows

    def nvmlDeviceGetRetiredPages(self, device: _Handle, sourceFilter: int) -> list[int]:
        # nvml.h: Kepler to Turing; Ampere and later remap rows instead (NOT_SUPPORTED).
        gpu = self._not_on_mig("nvmlDeviceGetRetiredPages", device)
        if gpu.retired_pages is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return list(gpu.retired_pages.get(sourceFilter, []))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: _Handle) -> int:
        gpu = self._not_on_mig("nvmlDeviceGetRetiredPagesPendingStatus", device)
        if gpu.retired_pages is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return NVML_FEATURE_DISABLED

    def nvmlDeviceGetProcessUtilization(self, handle: _Handle, timeStamp: int) -> list[_Struct]:
        # nvml.h: samples newer than timeStamp (microseconds, CPU clock); NOT_FOUND when
        # there is none; NOT_SUPPORTED on MIG-enabled GPUs. The fake stamps its samples now.
        gpu = self._not_on_mig("nvmlDeviceGetProcessUtilization", handle)
        if gpu.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        now_us = int(time.time() * 1e6)
        found = [
            _Struct(
                pid=p.pid, timeStamp=now_us, smUtil=p.sm_util, memUtil=p.mem_util or 0, encUtil=0, decUtil=0
            )
            for p in gpu.processes
            if p.sm_util is not None and now_us > timeStamp
        ]
        if not found:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return found

    # -- MIG -----------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: _Handle) -> list[int]:
        # nvml.h: [current, pending]; NOT_SUPPORTED on GPUs without MIG (before A100).
        gpu = self._not_on_mig("nvmlDeviceGetMigMode", device)
        if gpu.mig_enabled is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        mode = NVML_DEVICE_MIG_ENABLE if gpu.mig_enabled else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: _Handle) -> int:
        gpu = self._not_on_mig("nvmlDeviceGetMaxMigDeviceCount", device)
        if gpu.mig_enabled is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.max_migs if gpu.mig_enabled else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: _Handle, index: int) -> _MigHandle:
        # nvml.h: NOT_FOUND for an index with no MIG device behind it (the slots have gaps).
        gpu = self._not_on_mig("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if not gpu.mig_enabled or not 0 <= index < gpu.max_migs:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if not any(m.slot == index for m in gpu.migs):
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return _MigHandle(device.index, index)

    def nvmlDeviceGetGpuInstanceId(self, device: _MigHandle) -> int:
        gpu, mig = self._device("nvmlDeviceGetGpuInstanceId", device)
        if mig is None:  # nvml.h: INVALID_ARGUMENT for a handle that is not a MIG device
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return mig.gpu_instance

    def nvmlDeviceGetComputeInstanceId(self, device: _MigHandle) -> int:
        gpu, mig = self._device("nvmlDeviceGetComputeInstanceId", device)
        if mig is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return mig.compute_instance

    def nvmlDeviceGetAttributes(self, device: _MigHandle) -> _Struct:
        gpu, mig = self._device("nvmlDeviceGetAttributes", device)
        if mig is None:
            return _Struct(gpuInstanceSliceCount=0, memorySizeMB=gpu.memory_total // 1024**2)
        slices = int(mig.profile.split("g.")[0])
        return _Struct(gpuInstanceSliceCount=slices, memorySizeMB=mig.memory_total // 1024**2)

    # -- GPM (Hopper and later) ---------------------------------------------------------

    def nvmlGpmQueryDeviceSupport(self, device: _Handle) -> _Struct:
        gpu = self._not_on_mig("nvmlGpmQueryDeviceSupport", device)
        supported = gpu.gpm is not None or any(m.gpm is not None for m in gpu.migs)
        return _Struct(version=1, isSupportedDevice=1 if supported else 0)

    def nvmlGpmSampleAlloc(self) -> _GpmSample:
        self._call("nvmlGpmSampleAlloc")
        sample = _GpmSample()
        self.gpm_samples.append(sample)
        return sample

    def nvmlGpmSampleFree(self, gpmSample: _GpmSample) -> None:
        self._call("nvmlGpmSampleFree")
        if gpmSample.freed:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpmSample.freed = True

    def nvmlGpmSampleGet(self, device: _Handle, gpmSample: _GpmSample) -> _GpmSample:
        # nvml.h: NOT_SUPPORTED on GPUs before Hopper and on MIG-enabled GPUs as a whole.
        gpu = self._not_on_mig("nvmlGpmSampleGet", device)
        if gpu.gpm is None or gpu.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        gpmSample.values = dict(gpu.gpm)
        return gpmSample

    def nvmlGpmMigSampleGet(self, device: _Handle, gpuInstanceId: int, gpmSample: _GpmSample) -> _GpmSample:
        gpu = self._not_on_mig("nvmlGpmMigSampleGet", device)
        mig = next((m for m in gpu.migs if m.gpu_instance == gpuInstanceId), None)
        if mig is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if mig.gpm is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        gpmSample.values = dict(mig.gpm)
        return gpmSample

    def nvmlGpmMetricsGet(self, metricsGet: c_nvmlGpmMetricsGet_t) -> c_nvmlGpmMetricsGet_t:
        # nvml.h: the metrics between sample1 and sample2; each metric carries its own
        # nvmlReturn (NOT_SUPPORTED for one the GPU lacks).
        self._call("nvmlGpmMetricsGet")
        if metricsGet.version != NVML_GPM_METRICS_GET_VERSION:
            raise NVMLError(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        first, second = metricsGet.sample1, metricsGet.sample2
        if not isinstance(first, _GpmSample) or not isinstance(second, _GpmSample) or second.values is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        for metric in metricsGet.metrics[: metricsGet.numMetrics]:
            if metric.metricId in second.values:
                metric.nvmlReturn, metric.value = NVML_SUCCESS, second.values[metric.metricId]
            else:
                metric.nvmlReturn, metric.value = NVML_ERROR_NOT_SUPPORTED, 0.0
        return metricsGet

    # -- events ------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> _EventSet:
        self._call("nvmlEventSetCreate")
        event_set = _EventSet()
        self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(self, handle: _Handle, eventTypes: int, eventSet: _EventSet) -> None:
        # nvml.h: only events that happen after registration are delivered.
        self._not_on_mig("nvmlDeviceRegisterEvents", handle)
        if eventTypes & ~(
            nvmlEventTypeXidCriticalError
            | nvmlEventTypeSingleBitEccError
            | nvmlEventTypeDoubleBitEccError
            | nvmlEventTypePState
            | nvmlEventTypeClock
        ):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        eventSet.handles.append(handle)

    def nvmlEventSetWait(self, eventSet: _EventSet, timeoutms: int) -> _Struct:
        # nvml.h nvmlEventSetWait_v2: the next event of a registered device, or
        # NVML_ERROR_TIMEOUT once timeoutms passed without one. The fake does not
        # sleep: the scripted XIDs are those raised within the wait, all queued at once.
        self._call("nvmlEventSetWait")
        if eventSet.freed:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        self.wait_timeouts.append(timeoutms)
        for handle in eventSet.handles:
            gpu = self.gpus[handle.index]
            if gpu.xid_events:
                xid = gpu.xid_events.pop(0)
                return _Struct(
                    device=handle,
                    eventType=nvmlEventTypeXidCriticalError,
                    eventData=xid,
                    gpuInstanceId=0xFFFFFFFF,
                    computeInstanceId=0xFFFFFFFF,
                )
        raise NVMLError(NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, eventSet: _EventSet) -> None:
        self._call("nvmlEventSetFree")
        eventSet.freed = True
