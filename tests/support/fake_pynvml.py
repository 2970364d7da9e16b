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
"""

from __future__ import annotations

import string
import sys
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
    # NVML function name -> error code that function raises for this GPU.
    errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.uuid:
            self.uuid = f"GPU-00000000-0000-0000-0000-{self.index:012d}"


@dataclass(frozen=True)
class _Handle:
    index: int


def _eight_gpus() -> list[FakeGPU]:
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
                processes=[FakeProcess(pid=4000 + i, used_memory=(i + 1) * 4 * 1024**3)]
                if i % 2 == 0
                else [],
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
        if name.startswith(("NVML", "nvmlClocks")) and hasattr(module, name):
            return getattr(module, name)
        raise AttributeError(name)

    # -- helpers --------------------------------------------------------------

    def _call(self, fn: str, handle: _Handle | None = None) -> FakeGPU | None:
        self.calls.append((fn, handle.index if handle else None))
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if handle is None:
            return None
        gpu = self.gpus[handle.index]
        if fn in gpu.errors:
            raise NVMLError(gpu.errors[fn])
        return gpu

    def _gpu(self, fn: str, handle: _Handle) -> FakeGPU:
        gpu = self._call(fn, handle)
        assert gpu is not None
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

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> _Struct:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return _Struct(gpu=gpu.utilization, memory=gpu.memory_utilization)

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> _Struct:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        return _Struct(total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used)

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
            _Struct(
                pid=p.pid, usedGpuMemory=p.used_memory, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF
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
