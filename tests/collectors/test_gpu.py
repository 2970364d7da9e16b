"""The GPU collector against the scripted fake pynvml, and against the real one."""

from __future__ import annotations

import logging
import sys

import pytest

from mlinfra.collectors import PartialCollection, gpu
from mlinfra.collectors.gpu import CLOCK_EVENT_REASONS, collect_gpu_samples
from mlinfra.exceptions import CollectorError, CollectorUnavailable
from mlinfra.samples import Sample
from tests.support import fake_pynvml
from tests.support.fake_pynvml import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_TIMEOUT,
    NVML_ERROR_UNKNOWN,
    FakeGPU,
    FakeNVML,
    FakeProcess,
)

GiB = 1024**3
PER_GPU_METRICS = {
    "ml_gpu_utilization_percent",
    "ml_gpu_memory_utilization_percent",
    "ml_gpu_memory_used_bytes",
    "ml_gpu_memory_total_bytes",
    "ml_gpu_memory_free_bytes",
    "ml_gpu_temperature_celsius",
    "ml_gpu_power_usage_watts",
    "ml_gpu_power_limit_watts",
    "ml_gpu_sm_clock_mhz",
    "ml_gpu_memory_clock_mhz",
    "ml_gpu_clock_event_reason",
    "ml_gpu_ecc_errors_total",
    "ml_gpu_pcie_tx_bytes_per_second",
    "ml_gpu_pcie_rx_bytes_per_second",
    "ml_gpu_processes",
    "ml_gpu_up",
}


def names(pid: int) -> str:
    return f"proc-{pid}"


def collect(nvml: FakeNVML) -> list[Sample]:
    return collect_gpu_samples(nvml, host="node-a", process_name=names)


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0].value


def of_gpu(samples: list[Sample], gpu_id: str) -> list[Sample]:
    return [s for s in samples if s.labels.get("gpu_id") == gpu_id]


# -- the fake itself behaves like pynvml ----------------------------------------


def test_fake_errors_map_codes_to_subclasses_like_pynvml() -> None:
    pynvml = pytest.importorskip("pynvml")
    for code in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_GPU_IS_LOST, fake_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND):
        fake, real = fake_pynvml.NVMLError(code), pynvml.NVMLError(code)
        assert type(fake).__name__ == type(real).__name__
        assert str(fake) == str(real)
        assert fake.value == real.value == code
    # The subclasses take no code, as in pynvml: the class is the code.
    not_supported = fake_pynvml.ERROR_CLASSES["NVMLError_NotSupported"]()
    assert isinstance(not_supported, fake_pynvml.NVMLError)
    assert not_supported.value == NVML_ERROR_NOT_SUPPORTED


def test_fake_rejects_calls_before_init() -> None:
    nvml = FakeNVML.scenario("single_gpu")
    with pytest.raises(fake_pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="eight_gpus"):
        FakeNVML.scenario("nine_gpus")


# -- scenarios --------------------------------------------------------------------


def test_eight_gpus_each_labelled_and_converted() -> None:
    nvml = FakeNVML.scenario("eight_gpus")
    samples = collect(nvml)

    ups = [s for s in samples if s.name == "ml_gpu_up"]
    assert [s.value for s in ups] == [1.0] * 8
    assert {tuple(sorted(s.labels)) for s in ups} == {("gpu_id", "host", "name", "uuid")}
    assert len({s.labels["uuid"] for s in ups}) == 8
    assert value(samples, "ml_gpu_count", host="node-a") == 8
    assert value(samples, "ml_gpu_driver_info", driver_version="550.54.15", cuda_version="12.4") == 1

    for i in range(8):
        g = of_gpu(samples, str(i))
        assert {s.name for s in g} >= PER_GPU_METRICS
        assert all(s.labels["host"] == "node-a" and s.labels["name"] == "NVIDIA H100 80GB HBM3" for s in g)
        assert value(g, "ml_gpu_utilization_percent") == 10 * i + 5
        assert value(g, "ml_gpu_memory_utilization_percent") == 5 * i + 1
        assert value(g, "ml_gpu_memory_used_bytes") == (i + 1) * 8 * GiB
        assert value(g, "ml_gpu_memory_total_bytes") == 80 * GiB
        assert value(g, "ml_gpu_memory_free_bytes") == 80 * GiB - (i + 1) * 8 * GiB
        assert value(g, "ml_gpu_temperature_celsius") == 45 + i
        # NVML reports milliwatts.
        assert value(g, "ml_gpu_power_usage_watts") == pytest.approx(100 + 20 * i)
        assert value(g, "ml_gpu_power_limit_watts") == pytest.approx(700)
        assert value(g, "ml_gpu_sm_clock_mhz") == 1980 - 10 * i
        assert value(g, "ml_gpu_memory_clock_mhz") == 2619
        # NVML reports KB/s.
        assert value(g, "ml_gpu_pcie_tx_bytes_per_second") == 1000 * (i + 1) * 1024
        assert value(g, "ml_gpu_pcie_rx_bytes_per_second") == 2000 * (i + 1) * 1024
        assert value(g, "ml_gpu_ecc_errors_total", type="corrected") == i  # volatile, not aggregate (100 + i)
        assert value(g, "ml_gpu_ecc_errors_total", type="uncorrected") == (1 if i == 5 else 0)
        reasons = {s.labels["reason"]: s.value for s in g if s.name == "ml_gpu_clock_event_reason"}
        assert set(reasons) == set(CLOCK_EVENT_REASONS)
        expected_on = {0: {"gpu_idle"}, 7: {"sw_power_cap"}}.get(i, set())
        assert {r for r, v in reasons.items() if v == 1} == expected_on
        if i % 2 == 0:
            assert value(g, "ml_gpu_processes") == 1
            pid = str(4000 + i)
            assert (
                value(g, "ml_gpu_process_memory_used_bytes", pid=pid, process=f"proc-{pid}")
                == (i + 1) * 4 * GiB
            )
        else:
            assert value(g, "ml_gpu_processes") == 0
            assert not [s for s in g if s.name == "ml_gpu_process_memory_used_bytes"]
    assert (nvml.init_calls, nvml.shutdown_calls, nvml.initialized) == (1, 1, 0)


def test_lost_gpu_is_down_and_the_others_complete(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNVML.scenario("lost_gpu")
    with caplog.at_level(logging.WARNING, logger="mlinfra.collectors.gpu"):
        result = gpu.run(nvml=nvml, host="node-a")

    assert result.up, result.errors  # a lost GPU is a record, not a collector failure
    lost = of_gpu(result.samples, "2")
    assert lost == [Sample("ml_gpu_up", {"gpu_id": "2", "host": "node-a"}, 0)]
    for i in ("0", "1", "3"):
        g = of_gpu(result.samples, i)
        assert value(g, "ml_gpu_up") == 1
        assert {s.name for s in g} >= PER_GPU_METRICS
    assert value(result.samples, "ml_gpu_count") == 4
    assert "gpu 2" in caplog.text
    assert "GPU is lost" in caplog.text
    assert nvml.shutdown_calls == 1


def test_unknown_error_on_opening_a_gpu_is_a_lost_gpu() -> None:
    nvml = FakeNVML.scenario("lost_gpu", overrides={2: {"errors": {"nvmlDeviceGetUUID": NVML_ERROR_UNKNOWN}}})
    samples = collect(nvml)  # no PartialCollection: a lost GPU is not a collector problem
    assert [(s.name, s.value) for s in of_gpu(samples, "2")] == [("ml_gpu_up", 0.0)]
    assert value(samples, "ml_gpu_up", gpu_id="3") == 1


def test_no_permission_to_open_a_gpu_is_down_and_reported() -> None:
    nvml = FakeNVML.scenario(
        "lost_gpu", overrides={2: {"errors": {"nvmlDeviceGetHandleByIndex": NVML_ERROR_NO_PERMISSION}}}
    )
    with pytest.raises(PartialCollection) as info:
        collect(nvml)
    assert info.value.errors == [
        "gpu 2: cannot open the device: NVMLError_NoPermission: Insufficient Permissions"
    ]
    assert value(info.value.samples, "ml_gpu_up", gpu_id="2") == 0
    assert value(info.value.samples, "ml_gpu_up", gpu_id="1") == 1


def test_unknown_error_on_one_field_drops_only_that_field() -> None:
    nvml = FakeNVML.scenario(
        "single_gpu", overrides={0: {"errors": {"nvmlDeviceGetPcieThroughput": NVML_ERROR_UNKNOWN}}}
    )
    with pytest.raises(PartialCollection) as info:
        collect(nvml)
    assert value(info.value.samples, "ml_gpu_up") == 1
    assert value(info.value.samples, "ml_gpu_utilization_percent") == 42
    assert not [s for s in info.value.samples if s.name.startswith(("ml_gpu_pcie_tx", "ml_gpu_pcie_rx"))]
    assert len(info.value.errors) == 2  # tx and rx


def test_gpu_lost_in_the_middle_of_a_read_is_reported_down_with_its_identity() -> None:
    nvml = FakeNVML.scenario(
        "lost_gpu", overrides={1: {"errors": {"nvmlDeviceGetPowerUsage": NVML_ERROR_GPU_IS_LOST}}}
    )
    samples = collect(nvml)
    g1 = of_gpu(samples, "1")
    assert [(s.name, s.value) for s in g1] == [("ml_gpu_up", 0.0)]
    assert g1[0].labels["uuid"] == nvml.gpus[1].uuid
    assert value(samples, "ml_gpu_up", gpu_id="0") == 1


def test_unsupported_fields_are_omitted_not_zero() -> None:
    nvml = FakeNVML.scenario("unsupported_fields")
    result = gpu.run(nvml=nvml, host="node-a")
    assert result.up, result.errors
    g = of_gpu(result.samples, "0")
    present = {s.name for s in g}
    for missing in (
        "ml_gpu_ecc_errors_total",
        "ml_gpu_pcie_tx_bytes_per_second",
        "ml_gpu_pcie_rx_bytes_per_second",
        "ml_gpu_power_limit_watts",
        "ml_gpu_clock_event_reason",
        "ml_gpu_processes",  # NoPermission, as for an unprivileged container
        "ml_gpu_process_memory_used_bytes",
    ):
        assert missing not in present
    assert value(g, "ml_gpu_up") == 1
    assert value(g, "ml_gpu_utilization_percent") == 33
    assert value(g, "ml_gpu_temperature_celsius") == 61
    assert value(g, "ml_gpu_power_usage_watts") == pytest.approx(95.5)
    assert value(g, "ml_gpu_memory_total_bytes") == 12 * GiB
    assert g[0].labels["name"] == "NVIDIA GeForce RTX 3060"
    # "Not supported" is an answer: no retry under an older function name.
    called = {fn for fn, _ in nvml.calls}
    assert not called & {
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        "nvmlDeviceGetComputeRunningProcesses_v2",
    }


def test_old_driver_falls_back_to_throttle_reasons_and_v2_processes() -> None:
    nvml = FakeNVML.scenario("old_driver")
    samples = collect(nvml)
    assert value(samples, "ml_gpu_clock_event_reason", reason="hw_slowdown") == 1
    assert value(samples, "ml_gpu_processes") == 1
    assert value(samples, "ml_gpu_process_memory_used_bytes", pid="77") == 2 * GiB
    assert value(samples, "ml_gpu_driver_info", cuda_version="11.4", driver_version="470.239.06") == 1
    called = {fn for fn, _ in nvml.calls}
    assert {"nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetComputeRunningProcesses_v2"} <= called


def test_pynvml_without_the_event_reasons_name_uses_the_throttle_name() -> None:
    nvml = FakeNVML.scenario("single_gpu", missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    nvml.gpus[0].clock_event_reasons = fake_pynvml.nvmlClocksEventReasonHwThermalSlowdown
    samples = collect(nvml)
    assert value(samples, "ml_gpu_clock_event_reason", reason="hw_thermal_slowdown") == 1
    assert ("nvmlDeviceGetCurrentClocksThrottleReasons", 0) in nvml.calls


def test_process_memory_unknown_to_the_driver_is_omitted_but_counted() -> None:
    nvml = FakeNVML([FakeGPU(index=0, processes=[FakeProcess(pid=9, used_memory=None)])])
    samples = collect(nvml)
    assert value(samples, "ml_gpu_processes") == 1
    assert not [s for s in samples if s.name == "ml_gpu_process_memory_used_bytes"]


def test_unexpected_field_error_keeps_the_rest_and_is_reported() -> None:
    nvml = FakeNVML.scenario(
        "eight_gpus", overrides={4: {"errors": {"nvmlDeviceGetTemperature": NVML_ERROR_TIMEOUT}}}
    )
    with pytest.raises(PartialCollection) as info:
        collect(nvml)
    assert info.value.errors == ["gpu 4 temperature: NVMLError_Timeout: Timeout"]
    g4 = of_gpu(info.value.samples, "4")
    assert value(g4, "ml_gpu_up") == 1
    assert "ml_gpu_temperature_celsius" not in {s.name for s in g4}
    assert value(info.value.samples, "ml_gpu_temperature_celsius", gpu_id="5") == 50
    assert nvml.shutdown_calls == 1


def test_shutdown_happens_even_when_the_device_count_fails() -> None:
    class CountFails(FakeNVML):
        def nvmlDeviceGetCount(self) -> int:
            raise fake_pynvml.NVMLError(fake_pynvml.NVML_ERROR_UNKNOWN)

    nvml = CountFails.scenario("single_gpu")
    result = gpu.run(nvml=nvml)
    assert not result.up
    assert "Unknown Error" in result.errors[0]
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [("no_driver", "Driver Not Loaded"), ("no_library", "NVML Shared Library Not Found")],
)
def test_no_driver_marks_the_collector_down_with_the_reason(
    scenario: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = FakeNVML.scenario(scenario)
    with caplog.at_level(logging.WARNING, logger="mlinfra.collectors.base"):
        result = gpu.run(nvml=nvml, host="node-a")

    assert not result.up
    assert len(result.errors) == 1
    assert reason in result.errors[0]
    assert "node-a" in result.errors[0]
    assert [(s.name, s.labels, s.value) for s in result.samples][0] == (
        "mlinfra_collector_up",
        {"collector": "gpu"},
        0.0,
    )
    assert not [s for s in result.samples if s.name.startswith("ml_gpu")]
    assert "collector gpu unavailable" in caplog.text
    assert reason in caplog.text
    assert nvml.shutdown_calls == 0  # nothing to shut down after a failed init


def test_no_driver_raises_collector_unavailable() -> None:
    with pytest.raises(CollectorUnavailable, match="no NVIDIA driver"):
        collect(FakeNVML.scenario("no_driver"))


def test_other_init_failures_are_collector_errors() -> None:
    nvml = FakeNVML(init_error=fake_pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    with pytest.raises(CollectorError, match="nvmlInit failed") as info:
        collect(nvml)
    assert not isinstance(info.value, CollectorUnavailable)


def test_missing_pynvml_module_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    result = gpu.run()
    assert not result.up
    assert "pynvml" in result.errors[0]


def test_importing_the_collector_does_not_import_pynvml() -> None:
    import subprocess

    code = "import sys, mlinfra.collectors.gpu; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the real NVML ---------------------------------------------------------------


def test_real_pynvml() -> None:
    """On a machine without a GPU: down with the reason; with one: up with live GPUs."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        has_gpu, init_error = False, e
    else:
        has_gpu, init_error = True, None
        pynvml.nvmlShutdown()

    result = gpu.run()
    if has_gpu:
        assert result.up, result.errors
        ups = [s for s in result.samples if s.name == "ml_gpu_up"]
        assert any(s.value == 1 for s in ups)
        total = [s for s in result.samples if s.name == "ml_gpu_memory_total_bytes"]
        assert total
        assert all(s.value > 0 for s in total)
    else:
        assert not result.up
        assert isinstance(init_error, pynvml.NVMLError_LibraryNotFound | pynvml.NVMLError_DriverNotLoaded)
        assert "NVML is not available" in result.errors[0]
        assert str(init_error) in result.errors[0]
        assert value(result.samples, "mlinfra_collector_up", collector="gpu") == 0
