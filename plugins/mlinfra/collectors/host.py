"""Host telemetry (CPU, memory, disks, network) from psutil.

``psutil`` is passed in, so tests hand in a small stand-in::

    >>> import psutil
    >>> samples = collect_host_samples(psutil, host="node-1")
    >>> idle = next(s for s in samples if s.name == "ml_cpu_seconds_total" and s.labels["mode"] == "idle")
    >>> idle.value > 0, sorted(idle.labels)
    (True, ['cpu', 'host', 'mode'])

CPU is read as node-exporter reads it: counters of seconds per core and mode
(``ml_cpu_seconds_total{cpu, mode}``), never a percentage sampled over a fraction of
a second. Such a sample would only see the sweep's own start-up (several task
processes starting on a few cores) and read near 100 % on an idle machine.
``ml_cpu_usage_percent`` is derived from the change of those counters since the
previous sweep by :func:`cpu_usage_from_counters` (the sweep's write step does it,
with the previous counters from the store), so it covers the whole interval.

The host is read in independent sections (CPU, load, memory, disk usage, disk IO,
network, boot time). A section that fails costs only its own samples: the others
are kept and the failure ends the collection with
:class:`~mlinfra.collectors.base.PartialCollection`, so the sweep records the
collector as down with the reason. A mount that cannot be read for lack of
permission (or that vanished while being read) is skipped quietly: that is a
property of the machine, not a failure.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from mlinfra.collectors.base import CollectorResult, PartialCollection, run_collector
from mlinfra.samples import Sample

if TYPE_CHECKING:
    from mlinfra.config import Fleet

log = logging.getLogger(__name__)

__all__ = ["CPU_MODES", "PSEUDO_FILESYSTEMS", "collect_host_samples", "cpu_usage_from_counters", "run"]

# psutil's cpu_times fields exported as modes. guest and guest_nice are left out as
# node-exporter leaves them out of node_cpu_seconds_total: the kernel already counts
# them in user and nice.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# Time a core spends in these modes is not busy (psutil.cpu_percent and top agree).
_IDLE_MODES = frozenset({"idle", "iowait"})

# disk_partitions(all=False) already leaves out most "nodev" filesystems on Linux;
# these can still slip through (snap's squashfs images are always 100 % full,
# container overlays repeat the host's root disk).
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "fuse.lxcfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "securityfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)

# Block devices left out of the IO counters: node_exporter's default
# --collector.diskstats.device-exclude (RAM disks, loop devices, floppies, and
# partitions, whose IO is already counted on their whole disk).
_IO_DEVICE_EXCLUDE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")

_SKIPPED_INTERFACES = frozenset({"lo"})


def _cpu(ps: Any, labels: dict[str, str]) -> list[Sample]:
    out: list[Sample] = []
    for i, times in enumerate(ps.cpu_times(percpu=True)):
        for mode in CPU_MODES:
            value = getattr(times, mode, None)
            if value is not None:  # fields vary by platform (no iowait on macOS)
                out.append(
                    Sample("ml_cpu_seconds_total", {**labels, "cpu": str(i), "mode": mode}, float(value))
                )
    count = ps.cpu_count()
    if count:  # None where the platform cannot tell
        out.append(Sample("ml_cpu_count", labels, count))
    return out


def cpu_usage_from_counters(previous: list[Sample], current: list[Sample]) -> list[Sample]:
    """``ml_cpu_usage_percent{host, core}`` from two readings of ``ml_cpu_seconds_total``.

    The busy share of the time each core accounted between the two readings
    (``core="0"``, ``"1"``, ...) and of all cores together (``core="all"``): a ratio of
    counter changes, so it needs no timestamps and is right for any interval. A core
    missing from either reading, or whose counters went backwards (a reboot), gives
    no figure rather than a wrong one. The samples carry the current readings'
    timestamps.

    >>> def read(idle, user, ts):
    ...     return [Sample("ml_cpu_seconds_total", {"host": "h", "cpu": "0", "mode": m}, v, ts)
    ...             for m, v in (("idle", idle), ("user", user))]
    >>> [(s.labels["core"], s.value) for s in cpu_usage_from_counters(read(100, 10, 1.0), read(190, 20, 2.0))]
    [('0', 10.0), ('all', 10.0)]
    """

    def by_core(samples: list[Sample]) -> dict[tuple[str, str], tuple[dict[str, float], float | None]]:
        cores: dict[tuple[str, str], tuple[dict[str, float], float | None]] = {}
        for s in samples:
            if s.name != "ml_cpu_seconds_total" or "cpu" not in s.labels or "mode" not in s.labels:
                continue
            key = (s.labels.get("host", ""), s.labels["cpu"])
            modes, _ = cores.setdefault(key, ({}, s.timestamp))
            modes[s.labels["mode"]] = s.value
        return cores

    before, after = by_core(previous), by_core(current)
    out: list[Sample] = []
    totals: dict[str, list[float]] = {}  # host -> [busy seconds, all seconds]
    timestamps: dict[str, float | None] = {}
    for (host, cpu), (now_modes, ts) in sorted(
        after.items(), key=lambda kv: (kv[0][0], _core_order(kv[0][1]))
    ):
        then_modes = before.get((host, cpu), ({}, None))[0]
        modes = set(now_modes) & set(then_modes)
        deltas = {m: now_modes[m] - then_modes[m] for m in modes}
        total = sum(deltas.values())
        if not modes or total <= 0 or any(d < 0 for d in deltas.values()):
            continue
        busy = sum(d for m, d in deltas.items() if m not in _IDLE_MODES)
        labels = {"host": host, "core": cpu} if host else {"core": cpu}
        out.append(Sample("ml_cpu_usage_percent", labels, 100.0 * busy / total, ts))
        acc = totals.setdefault(host, [0.0, 0.0])
        acc[0] += busy
        acc[1] += total
        timestamps[host] = ts
    for host, (busy, total) in totals.items():
        labels = {"host": host, "core": "all"} if host else {"core": "all"}
        out.append(Sample("ml_cpu_usage_percent", labels, 100.0 * busy / total, timestamps[host]))
    return out


def _core_order(cpu: str) -> tuple[int, str]:
    return (int(cpu), "") if cpu.isdigit() else (1 << 30, cpu)


def _load(ps: Any, labels: dict[str, str]) -> list[Sample]:
    one, five, fifteen = ps.getloadavg()
    return [
        Sample("ml_cpu_load_average", {**labels, "period": period}, value)
        for period, value in (("1m", one), ("5m", five), ("15m", fifteen))
    ]


def _memory(ps: Any, labels: dict[str, str]) -> list[Sample]:
    vm = ps.virtual_memory()
    swap = ps.swap_memory()
    values = {
        "total": vm.total,
        "used": vm.used,
        "available": vm.available,
        "swap_used": swap.used,
        "swap_total": swap.total,
    }
    out = [Sample("ml_memory_usage_bytes", {**labels, "type": k}, v) for k, v in values.items()]
    out.append(Sample("ml_memory_usage_percent", labels, vm.percent))
    return out


def _disk_usage(ps: Any, labels: dict[str, str]) -> list[Sample]:
    out: list[Sample] = []
    for part in ps.disk_partitions(all=False):
        if part.fstype in PSEUDO_FILESYSTEMS:
            continue
        try:
            usage = ps.disk_usage(part.mountpoint)
        except (PermissionError, FileNotFoundError) as e:
            log.debug("skipping mount %s (%s): %s", part.mountpoint, part.device, e)
            continue
        disk = {**labels, "mountpoint": part.mountpoint, "device": part.device}
        for kind in ("total", "used", "free"):
            out.append(Sample("ml_disk_usage_bytes", {**disk, "type": kind}, getattr(usage, kind)))
        out.append(Sample("ml_disk_usage_percent", disk, usage.percent))
    return out


def _disk_io(ps: Any, labels: dict[str, str]) -> list[Sample]:
    # None (not {}) when the kernel exposes no counters, e.g. in some containers.
    counters = ps.disk_io_counters(perdisk=True) or {}
    out: list[Sample] = []
    for device, io in sorted(counters.items()):
        if _IO_DEVICE_EXCLUDE.match(device):
            continue
        dev = {**labels, "device": device}
        out += [
            Sample("ml_disk_read_bytes_total", dev, io.read_bytes),
            Sample("ml_disk_write_bytes_total", dev, io.write_bytes),
            Sample("ml_disk_read_ops_total", dev, io.read_count),
            Sample("ml_disk_write_ops_total", dev, io.write_count),
        ]
    return out


def _network(ps: Any, labels: dict[str, str]) -> list[Sample]:
    counters = ps.net_io_counters(pernic=True) or {}
    out: list[Sample] = []
    for interface, nic in sorted(counters.items()):
        if interface in _SKIPPED_INTERFACES:
            continue
        i = {**labels, "interface": interface}
        out += [
            Sample("ml_network_receive_bytes_total", i, nic.bytes_recv),
            Sample("ml_network_transmit_bytes_total", i, nic.bytes_sent),
            Sample("ml_network_receive_errors_total", i, nic.errin),
            Sample("ml_network_transmit_errors_total", i, nic.errout),
            Sample("ml_network_receive_drops_total", i, nic.dropin),
            Sample("ml_network_transmit_drops_total", i, nic.dropout),
        ]
    return out


def _boot_time(ps: Any, labels: dict[str, str]) -> list[Sample]:
    return [Sample("ml_host_boot_time_seconds", labels, ps.boot_time())]


def collect_host_samples(ps: Any = psutil, *, host: str | None = None) -> list[Sample]:
    """Read this host's CPU counters, memory, disks and network through ``ps`` (psutil).

    Never blocks: every CPU figure is a counter (see :func:`cpu_usage_from_counters`).
    Every sample carries ``host`` (default: this host's name).

    Raises :class:`PartialCollection` (with every sample the other sections read)
    when a section fails.
    """
    labels = {"host": host or socket.gethostname()}
    sections: list[tuple[str, Callable[[], list[Sample]]]] = [
        ("cpu", lambda: _cpu(ps, labels)),
        ("load average", lambda: _load(ps, labels)),
        ("memory", lambda: _memory(ps, labels)),
        ("disk usage", lambda: _disk_usage(ps, labels)),
        ("disk io", lambda: _disk_io(ps, labels)),
        ("network", lambda: _network(ps, labels)),
        ("boot time", lambda: _boot_time(ps, labels)),
    ]
    samples: list[Sample] = []
    errors: list[str] = []
    for section, read in sections:
        try:
            samples += read()
        except Exception as e:
            log.debug("host section %s failed", section, exc_info=True)
            errors.append(f"{section}: {type(e).__name__}: {e}")
    if errors:
        raise PartialCollection(samples, errors)
    return samples


def run(
    fleet: Fleet | None = None,
    *,
    ps: Any = psutil,
    host: str | None = None,
) -> CollectorResult:
    """The host collector as the sweep runs it: never raises, reports ``mlinfra_collector_up``.

    ``fleet`` is accepted for the common collector signature; the host needs nothing from it.

    >>> result = run()
    >>> result.up, result.samples[-2].name
    (True, 'mlinfra_collector_up')
    """
    return run_collector("host", lambda: collect_host_samples(ps, host=host))
