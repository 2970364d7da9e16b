"""MIG, per-pod attribution, XID counters across sweeps and dcgm names, with the scripted NVML fake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlinfra.collectors import gpu
from mlinfra.collectors.gpu.attribution import NO_HOST_PROC, pod_of_cgroup
from mlinfra.collectors.gpu.nvml import collect_gpu_samples
from mlinfra.collectors.gpu.sweep_step import finish_gpu_samples
from mlinfra.config import load_fleet
from mlinfra.samples import Sample
from mlinfra.store import MetricsStore
from tests.support.fake_pynvml import NVML_ERROR_GPU_IS_LOST, FakeGPU, FakeNVML, FakeProcess

GiB = 1024**3
POD_A = "0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c"
POD_B = "11111111-2222-3333-4444-555555555555"
CID_A = "a" * 64
CID_B = "b" * 64


def collect(nvml: FakeNVML, proc_root: Path | None = None, **kw: object) -> list[Sample]:
    return collect_gpu_samples(
        nvml, host="node-a", process_name=lambda pid: f"proc-{pid}", proc_root=proc_root, window=0, **kw
    )


def find(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def one(samples: list[Sample], name: str, **labels: str) -> Sample:
    found = find(samples, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {len(found)}"
    return found[0]


# -- MIG ---------------------------------------------------------------------------


def test_mig_on_lists_instances_with_their_own_figures_and_no_copy_of_the_parent() -> None:
    nvml = FakeNVML.scenario("mig")
    samples = collect_gpu_samples(nvml, host="node-a", window=0.5, sleep=lambda s: None, proc_root=None)

    assert one(samples, "ml_gpu_mig_mode_enabled", gpu_id="0").value == 1
    assert one(samples, "ml_gpu_mig_mode_enabled", gpu_id="1").value == 0
    instances = find(samples, "ml_gpu_mig_memory_total_bytes", gpu_id="0")
    # Slot 2 is empty (NotFound): three instances, each labelled by profile and ids.
    assert sorted(
        (s.labels["mig_profile"], s.labels["gpu_instance"], s.labels["compute_instance"]) for s in instances
    ) == [
        ("2g.20gb", "5", "0"),
        ("2g.20gb", "6", "0"),
        ("3g.40gb", "1", "0"),
    ]
    assert one(samples, "ml_gpu_mig_memory_used_bytes", gpu_instance="1").value == 30 * GiB
    assert one(samples, "ml_gpu_mig_memory_free_bytes", gpu_instance="5").value == 19 * GiB
    # Per-instance activity from GPM; instance 6 has none: absent, not the parent's.
    assert one(samples, "ml_gpu_mig_sm_active_percent", gpu_instance="1").value == 96.5
    assert one(samples, "ml_gpu_mig_tensor_active_percent", gpu_instance="1").value == 60.0
    assert not find(samples, "ml_gpu_mig_tensor_active_percent", gpu_instance="5")
    assert not [s for s in samples if s.labels.get("gpu_instance") == "6" and "active" in s.name]
    # The MIG-enabled parent has no utilisation (NVML: not supported) and no whole-GPU GPM.
    assert not find(samples, "ml_gpu_utilization_percent", gpu_id="0")
    assert not find(samples, "ml_gpu_sm_active_percent", gpu_id="0")
    assert one(samples, "ml_gpu_memory_used_bytes", gpu_id="0").value == 31 * GiB
    # The process is placed in its instance.
    proc = one(samples, "ml_gpu_process_memory_used_bytes", pid="500")
    assert (proc.labels["gpu_instance"], proc.labels["compute_instance"]) == ("1", "0")
    # MIG off: utilisation and whole-GPU GPM, no instance series.
    assert one(samples, "ml_gpu_utilization_percent", gpu_id="1").value == 70
    assert one(samples, "ml_gpu_sm_active_percent", gpu_id="1").value == 65.0
    assert not [s for s in samples if s.labels.get("gpu_id") == "1" and "gpu_instance" in s.labels]
    # Every GPM sample allocated was freed.
    assert nvml.gpm_samples
    assert all(g.freed for g in nvml.gpm_samples)


def test_gpm_window_is_waited_out_once_for_all_gpus() -> None:
    slept: list[float] = []
    ticks = iter([100.0, 100.1, 100.2, 100.3, 100.4])
    nvml = FakeNVML.scenario("mig")
    collect_gpu_samples(
        nvml, host="h", window=2.0, sleep=slept.append, clock=lambda: next(ticks), proc_root=None
    )
    # Started at 100.0; the XID wait timed out; 100.2 when it sleeps the rest of the window.
    assert slept == [pytest.approx(1.8)]


def test_no_gpm_support_no_window_no_gpm_series() -> None:
    nvml = FakeNVML([FakeGPU(index=0, utilization=5)])
    slept: list[float] = []
    samples = collect_gpu_samples(nvml, host="h", window=1.0, sleep=slept.append, proc_root=None)
    assert slept == []
    assert not [s for s in samples if "active" in s.name]
    assert one(samples, "ml_gpu_utilization_percent").value == 5


# -- per-pod attribution ---------------------------------------------------------------

CGROUPS = {
    # containerd, systemd driver, cgroup v2
    "v2": (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_A.replace('-', '_')}.slice/"
        f"cri-containerd-{CID_A}.scope\n"
    ),
    # containerd, cgroupfs driver, cgroup v1
    "v1": (
        f"12:memory:/kubepods/besteffort/pod{POD_A}/{CID_A}\n"
        f"11:cpu,cpuacct:/kubepods/besteffort/pod{POD_A}/{CID_A}\n1:name=systemd:/kubepods/besteffort/pod{POD_A}/{CID_A}\n"
    ),
    # CRI-O, systemd driver, cgroup v1, guaranteed QoS (no QoS slice)
    "crio_v1": f"4:pids:/kubepods.slice/kubepods-pod{POD_A.replace('-', '_')}.slice/crio-{CID_A}.scope\n",
    # CRI-O, cgroupfs driver, cgroup v2
    "crio_v2": f"0::/kubepods/burstable/pod{POD_A}/crio-{CID_A}\n",
}


@pytest.mark.parametrize("layout", sorted(CGROUPS))
def test_cgroup_layouts_name_the_pod_and_container(layout: str) -> None:
    ref = pod_of_cgroup(CGROUPS[layout])
    assert ref is not None
    assert (ref.pod_uid, ref.container_id) == (POD_A, CID_A)


def test_cgroups_outside_kubernetes_name_no_pod() -> None:
    assert pod_of_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert pod_of_cgroup("0::/system.slice/docker-" + "c" * 64 + ".scope\n") is None


def fake_proc(root: Path, cgroups: dict[int, str], init: str = "0::/init.scope\n") -> Path:
    for pid, text in {1: init, **cgroups}.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cgroup").write_text(text)
    return root


def kube_samples() -> list[Sample]:
    """What the Kubernetes collector writes for the two pods (kube-state-metrics names)."""
    base_a = {
        "namespace": "serving",
        "pod": "resnet50-classifier-7d9f-abcde",
        "deployment": "resnet50-classifier",
    }
    base_b = {"namespace": "batch", "pod": "notebook-0"}
    return [
        Sample("kube_pod_info", {**base_a, "uid": POD_A}, 1),
        Sample(
            "kube_pod_container_info",
            {**base_a, "uid": POD_A, "container": "serving", "container_id": f"containerd://{CID_A}"},
            1,
        ),
        Sample("kube_pod_info", {**base_b, "uid": POD_B}, 1),
        Sample(
            "kube_pod_container_info",
            {**base_b, "uid": POD_B, "container": "jupyter", "container_id": f"cri-o://{CID_B}"},
            1,
        ),
    ]


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_processes_in_pods_and_outside_kubernetes(
    tmp_path: Path, sqlite_store: MetricsStore, layout: str
) -> None:
    proc = fake_proc(
        tmp_path,
        {
            1001: CGROUPS[layout],
            1002: f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_B.replace('-', '_')}.slice/crio-{CID_B}.scope\n",
            1003: "0::/system.slice/sshd.service\n",  # a process on the host, outside Kubernetes
        },
    )
    nvml = FakeNVML.scenario("pods")
    samples = collect(nvml, proc_root=proc)
    a = one(samples, "ml_gpu_process_memory_used_bytes", pid="1001")
    assert (a.labels["pod_uid"], a.labels["container_id"]) == (POD_A, CID_A)
    host_proc = one(samples, "ml_gpu_process_memory_used_bytes", pid="1003")
    assert "pod_uid" not in host_proc.labels
    assert host_proc.value == GiB
    # Per-process utilisation from NVML's samples; none for a process without samples.
    assert one(samples, "ml_gpu_process_sm_utilization_percent", pid="1001").value == 50
    assert one(samples, "ml_gpu_process_memory_utilization_percent", pid="1002").value == 5
    assert not find(samples, "ml_gpu_process_sm_utilization_percent", pid="1003")

    fleet = load_fleet()
    store = sqlite_store
    done = finish_gpu_samples(store, 1_800_000_000, samples + kube_samples(), fleet)
    a = one(done, "ml_gpu_process_memory_used_bytes", pid="1001")
    assert {k: a.labels[k] for k in ("pod", "namespace", "container", "model")} == {
        "pod": "resnet50-classifier-7d9f-abcde",
        "namespace": "serving",
        "container": "serving",
        "model": "resnet50-classifier",
    }
    assert "container_id" not in a.labels
    assert (
        one(done, "ml_gpu_process_sm_utilization_percent", pid="1001").labels["model"]
        == "resnet50-classifier"
    )
    b = one(done, "ml_gpu_process_memory_used_bytes", pid="1002")
    assert (b.labels["pod"], b.labels["namespace"], b.labels["container"]) == (
        "notebook-0",
        "batch",
        "jupyter",
    )
    assert "model" not in b.labels  # not a fleet model
    outside = one(done, "ml_gpu_process_memory_used_bytes", pid="1003")
    assert not {"pod", "namespace", "container", "model"} & set(outside.labels)


def test_a_pod_the_sweep_did_not_list_keeps_its_uid(tmp_path: Path, sqlite_store: MetricsStore) -> None:
    proc = fake_proc(tmp_path, {1001: CGROUPS["v2"]})
    nvml = FakeNVML([FakeGPU(index=0, processes=[FakeProcess(pid=1001, used_memory=GiB)])])
    store = sqlite_store
    done = finish_gpu_samples(store, 1_800_000_000, collect(nvml, proc_root=proc), load_fleet())
    s = one(done, "ml_gpu_process_memory_used_bytes", pid="1001")
    assert (s.labels["pod_uid"], s.labels["container_id"]) == (POD_A, CID_A)
    assert "pod" not in s.labels


def test_without_the_hosts_proc_attribution_is_off_said_once_and_the_rest_kept(tmp_path: Path) -> None:
    # In a container without hostPID, pid 1 is the container's own entry point and the
    # pids NVML gives name other processes: their cgroups must not be read.
    proc = fake_proc(
        tmp_path,
        {1001: CGROUPS["v2"], 1002: CGROUPS["v1"]},
        init=f"0::/kubepods.slice/kubepods-pod{POD_B.replace('-', '_')}.slice/cri-containerd-{CID_B}.scope\n",
    )
    nvml = FakeNVML.scenario("pods")
    result = gpu.run(nvml=nvml, host="node-a", proc_root=proc, window=0)
    assert result.up, result.errors
    assert result.skipped == [NO_HOST_PROC]
    procs = find(result.samples, "ml_gpu_process_memory_used_bytes")
    assert len(procs) == 3
    assert not [s for s in procs if "pod_uid" in s.labels]
    assert one(result.samples, "ml_gpu_utilization_percent").value == 80


# -- XID counters across sweeps ---------------------------------------------------------


def sweep_once(store: MetricsStore, nvml: FakeNVML, ts: float) -> list[Sample]:
    samples = finish_gpu_samples(store, ts, collect(nvml), load_fleet())
    store.write_sweep(ts, samples)
    return samples


def test_xid_counters_grow_by_the_events_seen_across_sweeps(sqlite_store: MetricsStore) -> None:
    store = sqlite_store
    nvml = FakeNVML.scenario("xid")
    t0 = 1_800_000_000.0

    first = sweep_once(store, nvml, t0)
    assert one(first, "ml_gpu_xid_errors_total", gpu_id="0", xid="79").value == 2
    assert one(first, "ml_gpu_xid_errors_total", gpu_id="0", xid="13").value == 1
    assert one(first, "ml_gpu_xid_last_code", gpu_id="0").value == 13
    assert not find(first, "ml_gpu_xid_errors_total", gpu_id="1")
    assert nvml.event_sets
    assert all(e.freed for e in nvml.event_sets)

    nvml.gpus[0].xid_events = [79]
    nvml.gpus[1].xid_events = [48]
    second = sweep_once(store, nvml, t0 + 300)
    assert one(second, "ml_gpu_xid_errors_total", gpu_id="0", xid="79").value == 3
    assert one(second, "ml_gpu_xid_errors_total", gpu_id="0", xid="13").value == 1  # carried forward
    assert one(second, "ml_gpu_xid_errors_total", gpu_id="1", xid="48").value == 1
    assert one(second, "ml_gpu_xid_last_code", gpu_id="0").value == 79

    # A quiet sweep keeps every counter; a re-run of the second sweep derives the same figures.
    third = sweep_once(store, nvml, t0 + 600)
    assert one(third, "ml_gpu_xid_errors_total", gpu_id="0", xid="79").value == 3
    nvml.gpus[0].xid_events = [79]
    nvml.gpus[1].xid_events = [48]
    again = finish_gpu_samples(store, t0 + 300, collect(nvml), load_fleet())
    assert one(again, "ml_gpu_xid_errors_total", gpu_id="0", xid="79").value == 3


def test_xid_listening_uses_the_window_as_timeout() -> None:
    nvml = FakeNVML.scenario("xid")
    ticks = iter([10.0, 10.25, 10.25, 10.25, 10.25, 10.25, 10.25])
    collect_gpu_samples(
        nvml, host="h", window=0.5, clock=lambda: next(ticks), sleep=lambda s: None, proc_root=None
    )
    assert nvml.wait_timeouts[0] == 250


# -- a GPU lost in the middle of a sweep ---------------------------------------------------


@pytest.mark.parametrize(
    "call", ["nvmlGpmSampleGet", "nvmlDeviceGetMigDeviceHandleByIndex", "nvmlDeviceGetProcessUtilization"]
)
def test_gpu_lost_mid_sweep_is_down_alone(call: str) -> None:
    gpus = [
        FakeGPU(
            index=0, utilization=9, gpm={2: 1.0}, processes=[FakeProcess(pid=7, used_memory=GiB, sm_util=3)]
        ),
        FakeGPU(index=1, mig_enabled=True),
    ]
    target = 1 if call == "nvmlDeviceGetMigDeviceHandleByIndex" else 0
    gpus[target].errors[call] = NVML_ERROR_GPU_IS_LOST
    if call == "nvmlDeviceGetMigDeviceHandleByIndex":
        from tests.support.fake_pynvml import FakeMIG

        gpus[1].migs = [FakeMIG(slot=0, gpu_instance=1)]
    nvml = FakeNVML(gpus)
    samples = collect_gpu_samples(nvml, host="h", window=0.1, sleep=lambda s: None, proc_root=None)
    lost = [s for s in samples if s.labels.get("gpu_id") == str(target)]
    assert [(s.name, s.value) for s in lost] == [("ml_gpu_up", 0.0)]
    other = str(1 - target)
    assert one(samples, "ml_gpu_up", gpu_id=other).value == 1
    assert all(g.freed for g in nvml.gpm_samples)
    assert nvml.shutdown_calls == 1


# -- dcgm names ------------------------------------------------------------------------------


def test_dcgm_names_are_added_with_dcgm_labels_and_units(tmp_path: Path, sqlite_store: MetricsStore) -> None:
    fleet = load_fleet()
    fleet = fleet.model_copy(update={"gpu": fleet.gpu.model_copy(update={"metric_names": "dcgm"})})
    proc = fake_proc(tmp_path, {1001: CGROUPS["v2"]})
    nvml = FakeNVML(
        [
            FakeGPU(
                index=0,
                utilization=77,
                memory_used=2 * GiB,
                clock_event_reasons=0x4 | 0x40,
                processes=[FakeProcess(pid=1001, used_memory=GiB)],
                xid_events=[79],
            ),
            FakeGPU(index=1, mig_enabled=True, migs=[]),
        ]
    )
    store = sqlite_store
    samples = collect(nvml, proc_root=proc) + kube_samples()
    done = finish_gpu_samples(store, 1_800_000_000, samples, fleet)

    util = one(done, "DCGM_FI_DEV_GPU_UTIL")
    assert util.value == 77
    assert util.labels == {
        "gpu": "0",
        "UUID": nvml.gpus[0].uuid,
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "node-a",
        "pod": "resnet50-classifier-7d9f-abcde",
        "namespace": "serving",
        "container": "serving",
    }
    assert one(done, "DCGM_FI_DEV_FB_USED", gpu="0").value == 2048  # MiB
    assert one(done, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", gpu="0").value == 0x44
    assert one(done, "DCGM_FI_DEV_XID_ERRORS", gpu="0").value == 79
    assert one(done, "DCGM_EXP_XID_ERRORS_COUNT", gpu="0", xid="79").value == 1
    # Our names stay.
    assert one(done, "ml_gpu_utilization_percent", gpu_id="0").value == 77
    # GPU 1 has no pod: no pod labels.
    assert "pod" not in one(done, "DCGM_FI_DEV_FB_USED", gpu="1").labels

    plain = finish_gpu_samples(store, 1_800_000_000, samples, load_fleet())
    assert not [s for s in plain if s.name.startswith("DCGM_")]


def test_dcgm_mig_instances_carry_gpu_instance_labels() -> None:
    from mlinfra.collectors.gpu.dcgm import dcgm_samples

    samples = collect_gpu_samples(
        FakeNVML.scenario("mig"), host="n", window=0.5, sleep=lambda s: None, proc_root=None
    )
    fb = [s for s in dcgm_samples(samples) if s.name == "DCGM_FI_DEV_FB_USED" and "GPU_I_ID" in s.labels]
    assert sorted((s.labels["GPU_I_PROFILE"], s.labels["GPU_I_ID"], s.value) for s in fb) == [
        ("2g.20gb", "5", 1024.0),
        ("2g.20gb", "6", 0.0),
        ("3g.40gb", "1", 30 * 1024.0),
    ]
