"""The host collector against real psutil, and against a small scripted stand-in."""

from __future__ import annotations

import logging
import time
from collections import namedtuple
from typing import Any

import psutil
import pytest

from mlinfra.collectors import PartialCollection, host
from mlinfra.collectors.host import CPU_MODES, collect_host_samples, cpu_usage_from_counters
from mlinfra.samples import Sample

# The shapes psutil returns (only the fields the collector reads, plus a few).
svmem = namedtuple("svmem", "total available percent used free")
sswap = namedtuple("sswap", "total used free percent")
sdiskpart = namedtuple("sdiskpart", "device mountpoint fstype opts")
sdiskusage = namedtuple("sdiskusage", "total used free percent")
sdiskio = namedtuple("sdiskio", "read_count write_count read_bytes write_bytes")
snetio = namedtuple("snetio", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")
scputimes = namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")

GiB = 1024**3


class FakePsutil:
    """Just the psutil functions the host collector calls, with scripted answers."""

    def __init__(self, **failures: BaseException):
        self.failures = failures  # psutil function name -> exception it raises
        self.cpu_times_calls: list[dict[str, Any]] = []
        self.partitions_all: list[bool] = []
        self.partitions = [
            sdiskpart("/dev/nvme0n1p2", "/", "ext4", "rw"),
            sdiskpart("/dev/nvme1n1", "/data", "xfs", "rw"),
            sdiskpart("/dev/sdb1", "/secret", "ext4", "rw"),
            sdiskpart("/dev/loop3", "/snap/core/1", "squashfs", "ro"),
            sdiskpart("tmpfs", "/run/user/1000", "tmpfs", "rw"),
        ]
        self.usage = {
            "/": sdiskusage(100 * GiB, 40 * GiB, 60 * GiB, 40.0),
            "/data": sdiskusage(1000 * GiB, 900 * GiB, 100 * GiB, 90.0),
            "/snap/core/1": sdiskusage(GiB, GiB, 0, 100.0),
            "/run/user/1000": sdiskusage(GiB, 0, GiB, 0.0),
        }

    def _maybe_fail(self, name: str) -> None:
        if name in self.failures:
            raise self.failures[name]

    def cpu_times(self, percpu: bool = False) -> list[scputimes]:
        self.cpu_times_calls.append({"percpu": percpu})
        self._maybe_fail("cpu_times")
        # Core i: user 10*(i+1) s, idle 1000 s, guest 5 s (already inside user).
        return [scputimes(10.0 * (i + 1), 0.0, 2.0, 1000.0, 1.0, 0.0, 0.5, 0.0, 5.0, 0.0) for i in range(4)]

    def cpu_count(self, logical: bool = True) -> int:
        return 4

    def getloadavg(self) -> tuple[float, float, float]:
        self._maybe_fail("getloadavg")
        return (1.5, 1.0, 0.5)

    def virtual_memory(self) -> svmem:
        self._maybe_fail("virtual_memory")
        return svmem(64 * GiB, 48 * GiB, 25.0, 14 * GiB, 40 * GiB)

    def swap_memory(self) -> sswap:
        return sswap(8 * GiB, GiB, 7 * GiB, 12.5)

    def disk_partitions(self, all: bool = False) -> list[sdiskpart]:
        self.partitions_all.append(all)
        self._maybe_fail("disk_partitions")
        return self.partitions

    def disk_usage(self, path: str) -> sdiskusage:
        if path == "/secret":
            raise PermissionError(13, "Permission denied", path)
        return self.usage[path]

    def disk_io_counters(self, perdisk: bool = False) -> dict[str, sdiskio] | None:
        self._maybe_fail("disk_io_counters")
        return {
            "nvme0n1": sdiskio(10, 20, 4096, 8192),
            "nvme0n1p2": sdiskio(9, 19, 4000, 8000),  # a partition: counted in its disk
            "sdb": sdiskio(1, 2, 3, 4),
            "loop3": sdiskio(5, 0, 500, 0),
            "zram0": sdiskio(5, 5, 5, 5),
        }

    def net_io_counters(self, pernic: bool = False) -> dict[str, snetio]:
        self._maybe_fail("net_io_counters")
        return {
            "lo": snetio(9, 9, 1, 1, 0, 0, 0, 0),
            "eth0": snetio(1000, 2000, 10, 20, 1, 2, 3, 4),
        }

    def boot_time(self) -> float:
        return 1_700_000_000.0


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0].value


def named(samples: list[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.name == name]


# -- real psutil ---------------------------------------------------------------------


def test_real_host_values_are_sensible() -> None:
    started = time.monotonic()
    samples = collect_host_samples(host="node-a")
    later = collect_host_samples(host="node-a")

    assert time.monotonic() - started < 5  # no sleeping to sample a percentage
    assert all(s.labels["host"] == "node-a" for s in samples)
    counters = named(samples, "ml_cpu_seconds_total")
    assert {s.labels["cpu"] for s in counters} == {str(i) for i in range(psutil.cpu_count())}
    assert {s.labels["mode"] for s in counters} <= set(CPU_MODES)
    assert value(samples, "ml_cpu_seconds_total", cpu="0", mode="idle") > 0
    assert not named(samples, "ml_cpu_usage_percent")  # derived between sweeps, not sampled
    usage = cpu_usage_from_counters(counters, named(later, "ml_cpu_seconds_total"))
    assert all(0.0 <= s.value <= 100.0 for s in usage)
    assert value(samples, "ml_cpu_count") == psutil.cpu_count()
    assert {s.labels["period"] for s in named(samples, "ml_cpu_load_average")} == {"1m", "5m", "15m"}
    assert all(s.value >= 0 for s in named(samples, "ml_cpu_load_average"))

    assert value(samples, "ml_memory_usage_bytes", type="total") == psutil.virtual_memory().total
    assert 0 < value(samples, "ml_memory_usage_bytes", type="available") <= psutil.virtual_memory().total
    assert 0.0 <= value(samples, "ml_memory_usage_percent") <= 100.0
    assert value(samples, "ml_memory_usage_bytes", type="swap_total") == psutil.swap_memory().total

    for s in named(samples, "ml_disk_usage_percent"):
        assert 0.0 <= s.value <= 100.0
        d = {"mountpoint": s.labels["mountpoint"], "device": s.labels["device"]}
        assert value(samples, "ml_disk_usage_bytes", type="used", **d) <= value(
            samples, "ml_disk_usage_bytes", type="total", **d
        )
    assert all(s.value >= 0 for s in samples if s.name.endswith("_total"))
    assert "lo" not in {s.labels.get("interface") for s in samples}
    assert 0 < value(samples, "ml_host_boot_time_seconds") < time.time()


def test_real_run_is_up() -> None:
    result = host.run()
    assert result.up, result.errors
    assert value(result.samples, "mlinfra_collector_up", collector="host") == 1


# -- scripted psutil ---------------------------------------------------------------


def test_cpu_is_read_as_counters_per_core_and_mode() -> None:
    ps = FakePsutil()
    samples = collect_host_samples(ps, host="h")

    assert ps.cpu_times_calls == [{"percpu": True}]
    assert value(samples, "ml_cpu_seconds_total", cpu="2", mode="user") == 30.0
    assert value(samples, "ml_cpu_seconds_total", cpu="0", mode="idle") == 1000.0
    assert {s.labels["mode"] for s in named(samples, "ml_cpu_seconds_total")} == set(CPU_MODES)
    assert len(named(samples, "ml_cpu_seconds_total")) == 4 * len(CPU_MODES)  # no guest: inside user
    assert value(samples, "ml_cpu_count") == 4


def counters(host: str, per_core: dict[str, dict[str, float]], ts: float) -> list[Sample]:
    return [
        Sample("ml_cpu_seconds_total", {"host": host, "cpu": cpu, "mode": mode}, v, ts)
        for cpu, modes in per_core.items()
        for mode, v in modes.items()
    ]


def test_usage_is_the_busy_share_of_the_change_since_the_previous_reading() -> None:
    before = counters("h", {"0": {"user": 100, "system": 50, "idle": 1000, "iowait": 10},
                            "1": {"user": 10, "system": 5, "idle": 2000, "iowait": 0}}, 1.0)  # fmt: skip
    # Over 300 s: core 0 spent 30 s user, 15 s system, 250 s idle, 5 s iowait (15 % busy);
    # core 1 spent 3 s busy and 297 s idle (1 %). Since boot core 0 was ~13 % busy: not asked.
    after = counters("h", {"0": {"user": 130, "system": 65, "idle": 1250, "iowait": 15},
                           "1": {"user": 12, "system": 6, "idle": 2297, "iowait": 0}}, 301.0)  # fmt: skip
    usage = {s.labels["core"]: s for s in cpu_usage_from_counters(before, after)}

    assert usage["0"].value == pytest.approx(15.0)
    assert usage["1"].value == pytest.approx(1.0)
    assert usage["all"].value == pytest.approx(8.0)
    assert usage["all"].labels == {"host": "h", "core": "all"}
    assert usage["all"].timestamp == 301.0


def test_no_previous_reading_a_reset_or_another_host_gives_no_figure() -> None:
    now = counters("h", {"0": {"user": 5, "idle": 50}}, 2.0)
    assert cpu_usage_from_counters([], now) == []
    assert cpu_usage_from_counters(counters("h", {"0": {"user": 500, "idle": 5000}}, 1.0), now) == []
    assert cpu_usage_from_counters(counters("other", {"0": {"user": 1, "idle": 1}}, 1.0), now) == []
    assert cpu_usage_from_counters(now, now) == []  # no time passed: no share to take


def test_scripted_values_and_labels() -> None:
    samples = collect_host_samples(FakePsutil(), host="h")

    assert value(samples, "ml_cpu_load_average", period="5m") == 1.0
    assert value(samples, "ml_memory_usage_bytes", type="used") == 14 * GiB
    assert value(samples, "ml_memory_usage_bytes", type="available") == 48 * GiB
    assert value(samples, "ml_memory_usage_bytes", type="swap_used") == GiB
    assert value(samples, "ml_memory_usage_percent") == 25.0
    assert (
        value(samples, "ml_disk_usage_bytes", mountpoint="/data", device="/dev/nvme1n1", type="free")
        == 100 * GiB
    )
    assert value(samples, "ml_disk_usage_percent", mountpoint="/data") == 90.0
    assert value(samples, "ml_disk_read_bytes_total", device="nvme0n1") == 4096
    assert value(samples, "ml_disk_write_ops_total", device="sdb") == 2
    assert value(samples, "ml_network_receive_bytes_total", interface="eth0") == 2000
    assert value(samples, "ml_network_transmit_bytes_total", interface="eth0") == 1000
    assert value(samples, "ml_network_receive_errors_total", interface="eth0") == 1
    assert value(samples, "ml_network_transmit_drops_total", interface="eth0") == 4
    assert value(samples, "ml_host_boot_time_seconds") == 1_700_000_000.0


def test_pseudo_filesystems_loop_devices_partitions_and_lo_are_left_out() -> None:
    ps = FakePsutil()
    samples = collect_host_samples(ps, host="h")

    assert ps.partitions_all == [False]
    assert {s.labels["mountpoint"] for s in named(samples, "ml_disk_usage_percent")} == {"/", "/data"}
    io_devices = {s.labels["device"] for s in samples if s.name.startswith("ml_disk_") and "_total" in s.name}
    assert io_devices == {"nvme0n1", "sdb"}
    assert {s.labels["interface"] for s in samples if s.name.startswith("ml_network_")} == {"eth0"}


def test_permission_error_on_one_mount_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="mlinfra.collectors.host"):
        result = host.run(ps=FakePsutil(), host="h")

    assert result.up, result.errors
    mounts = {s.labels["mountpoint"] for s in result.samples if s.name.startswith("ml_disk_usage")}
    assert mounts == {"/", "/data"}
    assert "/secret" in caplog.text
    assert "Permission denied" in caplog.text


@pytest.mark.parametrize(
    ("failing", "section", "lost_metric"),
    [
        ("net_io_counters", "network", "ml_network_receive_bytes_total"),
        ("cpu_times", "cpu", "ml_cpu_seconds_total"),
        ("disk_partitions", "disk usage", "ml_disk_usage_percent"),
        ("virtual_memory", "memory", "ml_memory_usage_percent"),
    ],
)
def test_a_failing_section_keeps_the_others(failing: str, section: str, lost_metric: str) -> None:
    ps = FakePsutil(**{failing: RuntimeError("boom")})
    with pytest.raises(PartialCollection) as info:
        collect_host_samples(ps, host="h")

    assert info.value.errors == [f"{section}: RuntimeError: boom"]
    present = {s.name for s in info.value.samples}
    assert lost_metric not in present
    expected = {
        "ml_cpu_seconds_total",
        "ml_cpu_load_average",
        "ml_memory_usage_percent",
        "ml_disk_usage_percent",
        "ml_disk_read_bytes_total",
        "ml_network_receive_bytes_total",
        "ml_host_boot_time_seconds",
    } - {lost_metric}
    assert expected <= present


def test_run_reports_a_partial_failure_as_down_with_samples(caplog: pytest.LogCaptureFixture) -> None:
    ps = FakePsutil(getloadavg=OSError("getloadavg unavailable"))
    with caplog.at_level(logging.WARNING, logger="mlinfra.collectors.base"):
        result = host.run(ps=ps, host="h")

    assert not result.up
    assert result.errors == ["load average: OSError: getloadavg unavailable"]
    assert value(result.samples, "ml_memory_usage_percent") == 25.0
    assert value(result.samples, "mlinfra_collector_up", collector="host") == 0
    assert "getloadavg unavailable" in caplog.text


def test_no_disk_io_counters_is_not_an_error() -> None:
    ps = FakePsutil()
    ps.disk_io_counters = lambda perdisk=False: None  # type: ignore[method-assign]
    samples = collect_host_samples(ps, host="h")
    assert not [s for s in samples if s.name.startswith("ml_disk_read")]
    assert named(samples, "ml_disk_usage_percent")
