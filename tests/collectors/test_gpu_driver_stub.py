"""The GPU collector through the real pynvml, over a stand-in for the driver's NVML library.

Every other GPU test hands the collector ``fake_pynvml``, which replaces pynvml. Here the
collector imports pynvml itself, and pynvml loads ``tests/support/nvml_driver``'s C
library as ``libnvidia-ml.so.1``: pynvml's structs, string decoding, version checks and
"function not found" run for real. The stand-in answers with the fake's ``eight_gpus``
values, so both paths must give the same samples; where they differ, the fake has
drifted from what pynvml does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlinfra.collectors.gpu import collect_gpu_samples
from mlinfra.samples import Sample
from tests.support.fake_pynvml import (
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_GPU_IS_LOST,
    FakeMIG,
    FakeNVML,
    FakeProcess,
)
from tests.support.integration import require_binary, unavailable
from tests.support.nvml_driver import SOURCE, build, collect_through_pynvml, nvml_header

pytest.importorskip("pynvml")


@pytest.fixture(scope="module")
def drivers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cc = require_binary("a C compiler (builds the NVML driver stand-in)", ["cc", "gcc"])
    header = nvml_header()
    if header is None:
        unavailable(
            "NVIDIA's nvml.h", "not found in the tensorflow package (the stand-in is checked against it)"
        )
    root = tmp_path_factory.mktemp("nvml-driver")
    # Compiled against nvml.h: a signature or struct that differs from NVIDIA's fails the build.
    return {
        "current": build(root / "current", cc=cc, header=header),
        "before_r535": build(root / "before_r535", old_driver=True, cc=cc, header=header),
    }


def test_the_build_checks_the_stand_in_against_nvml_h(tmp_path: Path) -> None:
    """Not a formality: a stand-in whose signature differs from nvml.h's does not build."""
    cc = require_binary("a C compiler (builds the NVML driver stand-in)", ["cc", "gcc"])
    header = nvml_header()
    if header is None:
        unavailable("NVIDIA's nvml.h", "not found in the tensorflow package")
    assert header is not None
    drifted = tmp_path / "libnvidia-ml.c"
    source = SOURCE.read_text()
    signature = "nvmlTemperatureSensors_t sensor, unsigned int *temp)"
    assert signature in source
    drifted.write_text(source.replace(signature, "nvmlTemperatureSensors_t sensor, int *temp)"))
    with pytest.raises(RuntimeError, match="conflicting types for .nvmlDeviceGetTemperature"):
        build(tmp_path / "out", cc=cc, header=header, source=drifted)
    build(tmp_path / "without-header", cc=cc, source=drifted)  # the local declarations cannot tell


def through_the_fake(
    overrides: dict[int, dict[str, object]] | None = None, window: float = 0
) -> list[Sample]:
    nvml = FakeNVML.scenario("eight_gpus", overrides=overrides)
    return collect_gpu_samples(nvml, host="node-a", process_name=lambda pid: f"proc-{pid}", window=window)


def canonical(samples: list[Sample]) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in samples)


def through_pynvml(libdir: Path, **script: Any) -> list[Sample]:
    result = collect_through_pynvml(libdir, **script)
    # The library the process mapped is the stand-in, loaded by the installed pynvml.
    assert result["loaded"] == [str(libdir / "libnvidia-ml.so.1")]
    assert "site-packages" in result["pynvml"]
    assert result["problems"] == []
    return result["samples"]


def test_eight_gpus_read_through_pynvml_equal_the_fakes(drivers: dict[str, Path]) -> None:
    real = through_pynvml(drivers["current"])
    assert canonical(real) == canonical(through_the_fake())
    # Not two empty lists: every GPU is up with its processes and its own figures.
    ups = {s.labels["gpu_id"]: s.value for s in real if s.name == "ml_gpu_up"}
    assert ups == {str(i): 1.0 for i in range(8)}
    temps = {s.labels["gpu_id"]: s.value for s in real if s.name == "ml_gpu_temperature_celsius"}
    assert temps == {str(i): 45.0 + i for i in range(8)}
    procs = [s for s in real if s.name == "ml_gpu_process_memory_used_bytes"]
    assert sorted(s.labels["pid"] for s in procs) == ["4000", "4002", "4004", "4006"]
    # Per-process utilisation came through pynvml's c_nvmlProcessUtilizationSample_t.
    sm = {s.labels["pid"]: s.value for s in real if s.name == "ml_gpu_process_sm_utilization_percent"}
    assert sm == {"4000": 20.0, "4002": 22.0, "4004": 24.0, "4006": 26.0}
    assert len([s for s in real if s.name == "ml_gpu_nvlink_up"]) == 8 * 18
    assert {s.value for s in real if s.name == "ml_gpu_mig_mode_enabled"} == {0.0}
    # pynvml decodes the driver's C strings; a bytes value would show as "b'...'".
    assert {s.labels["name"] for s in real if s.name == "ml_gpu_up"} == {"NVIDIA H100 80GB HBM3"}
    driver = [s.labels for s in real if s.name == "ml_gpu_driver_info"]
    assert driver == [{"driver_version": "550.54.15", "cuda_version": "12.4", "host": "node-a"}]


def test_a_gpu_lost_on_open_through_pynvml(drivers: dict[str, Path]) -> None:
    real = through_pynvml(drivers["current"], lost_on_open=2)
    fake = through_the_fake({2: {"errors": {"nvmlDeviceGetHandleByIndex": NVML_ERROR_GPU_IS_LOST}}})
    assert canonical(real) == canonical(fake)
    assert [s.value for s in real if s.name == "ml_gpu_up" and s.labels["gpu_id"] == "2"] == [0.0]
    assert not [s for s in real if s.labels.get("gpu_id") == "2" and s.name != "ml_gpu_up"]


def test_a_gpu_lost_mid_sweep_through_pynvml(drivers: dict[str, Path]) -> None:
    real = through_pynvml(drivers["current"], lost_midway=5)
    fake = through_the_fake({5: {"errors": {"nvmlDeviceGetUtilizationRates": NVML_ERROR_GPU_IS_LOST}}})
    assert canonical(real) == canonical(fake)
    gpu5 = [s for s in real if s.labels.get("gpu_id") == "5"]
    assert [(s.name, s.value) for s in gpu5] == [("ml_gpu_up", 0.0)]
    assert sum(1 for s in real if s.name == "ml_gpu_up" and s.value == 1.0) == 7


def test_a_driver_before_r535_through_pynvml(drivers: dict[str, Path]) -> None:
    """Without the newer symbols pynvml raises FunctionNotFound (clock event reasons) and, for
    the unversioned process call, NVMLLibraryMismatchError: the collector falls back to the
    older calls and reads the same figures."""
    real = through_pynvml(drivers["before_r535"])
    missing = {
        "nvmlDeviceGetCurrentClocksEventReasons": NVML_ERROR_FUNCTION_NOT_FOUND,
        "nvmlDeviceGetComputeRunningProcesses": NVML_ERROR_FUNCTION_NOT_FOUND,
    }
    fake = through_the_fake({i: {"errors": dict(missing)} for i in range(8)})
    assert canonical(real) == canonical(fake) == canonical(through_the_fake())


def test_xid_events_through_pynvml(drivers: dict[str, Path]) -> None:
    """Events come back as pynvml's c_nvmlEventData_t, whose device is a ctypes pointer the
    collector hands back to nvmlDeviceGetUUID to find the GPU."""
    raised = [(3, 79), (5, 13), (3, 79), (3, 48)]
    real = through_pynvml(drivers["current"], xids=raised)
    fake = through_the_fake({3: {"xid_events": [79, 79, 48]}, 5: {"xid_events": [13]}})
    assert canonical(real) == canonical(fake)
    seen = {
        (s.labels["gpu_id"], s.labels["xid"]): s.value for s in real if s.name == "ml_gpu_xid_events_observed"
    }
    assert seen == {("3", "79"): 2.0, ("3", "48"): 1.0, ("5", "13"): 1.0}
    last = {s.labels["gpu_id"]: s.value for s in real if s.name == "ml_gpu_xid_last_code"}
    assert last == {"3": 48.0, "5": 13.0}


def test_gpm_activity_over_a_window_through_pynvml(drivers: dict[str, Path]) -> None:
    """With a listening window: the event set waits it out, and GPM's two samples span it,
    through pynvml's c_nvmlGpmMetricsGet_t (one struct of NVML_GPM_METRIC_MAX metrics)."""
    real = through_pynvml(drivers["current"], window=0.2)
    assert canonical(real) == canonical(through_the_fake(window=0.2))
    tensor = {s.labels["gpu_id"]: s.value for s in real if s.name == "ml_gpu_tensor_active_percent"}
    assert tensor == {str(i): 3.0 * i + 1 for i in range(8)}


GiB = 1024**3


def test_mig_through_pynvml(drivers: dict[str, Path]) -> None:
    """GPU 1 split into MIG devices: pynvml's MIG handles, instance ids and per-instance GPM,
    against the fake's mig layout on the same GPU."""
    real = through_pynvml(drivers["current"], window=0.2, mig=1)
    migs = [
        FakeMIG(
            slot=0,
            gpu_instance=1,
            profile="3g.40gb",
            memory_total=40 * GiB,
            memory_used=30 * GiB,
            gpm={1: 97.0, 2: 96.5, 5: 60.0},
        ),
        FakeMIG(
            slot=1,
            gpu_instance=5,
            profile="2g.20gb",
            memory_total=20 * GiB,
            memory_used=GiB,
            gpm={1: 3.0, 2: 2.0},
        ),
        FakeMIG(slot=3, gpu_instance=6, profile="2g.20gb", memory_total=20 * GiB, memory_used=0, gpm=None),
    ]
    split = {
        "mig_enabled": True,
        "migs": migs,
        "processes": [FakeProcess(pid=500, used_memory=30 * GiB, gpu_instance=1, compute_instance=0)],
    }
    assert canonical(real) == canonical(through_the_fake({1: split}, window=0.2))
    gpu1 = [s for s in real if s.labels.get("gpu_id") == "1"]
    # NVML has no utilisation for a MIG-enabled GPU: absent, not a copy of anything.
    assert not [s for s in gpu1 if s.name == "ml_gpu_utilization_percent"]
    used = {s.labels["gpu_instance"]: s.value for s in gpu1 if s.name == "ml_gpu_mig_memory_used_bytes"}
    assert used == {"1": 30 * GiB, "5": float(GiB), "6": 0.0}
    profiles = {
        s.labels["gpu_instance"]: s.labels["mig_profile"]
        for s in gpu1
        if s.name == "ml_gpu_mig_memory_total_bytes"
    }
    assert profiles == {"1": "3g.40gb", "5": "2g.20gb", "6": "2g.20gb"}
    sm = {s.labels["gpu_instance"]: s.value for s in gpu1 if s.name == "ml_gpu_mig_sm_active_percent"}
    assert sm == {"1": 96.5, "5": 2.0}  # instance 6 has no GPM: absent
    (proc,) = [s for s in gpu1 if s.name == "ml_gpu_process_memory_used_bytes"]
    assert (proc.labels["pid"], proc.labels["gpu_instance"], proc.labels["compute_instance"]) == (
        "500",
        "1",
        "0",
    )
