"""Host telemetry (CPU, memory, disks, network) from psutil.

``psutil`` is passed in, so tests hand in a small stand-in::

    >>> import psutil
    >>> samples = collect_host_samples(psutil, host="node-1", cpu_interval=0.05)
    >>> cpu_all = next(s for s in samples if s.name == "ml_cpu_usage_percent" and s.labels["core"] == "all")
    >>> 0.0 <= cpu_all.value <= 100.0, cpu_all.labels["host"]
    (True, 'node-1')

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

__all__ = ["PSEUDO_FILESYSTEMS", "collect_host_samples", "run"]

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


def _cpu(ps: Any, labels: dict[str, str], cpu_interval: float) -> list[Sample]:
    # One blocking measurement over cpu_interval; "all" is derived from it rather
    # than measured again (a second call would sleep a second interval).
    per_core = ps.cpu_percent(interval=cpu_interval, percpu=True)
    out = [Sample("ml_cpu_usage_percent", {**labels, "core": str(i)}, v) for i, v in enumerate(per_core)]
    if per_core:
        out.append(Sample("ml_cpu_usage_percent", {**labels, "core": "all"}, sum(per_core) / len(per_core)))
    count = ps.cpu_count()
    if count:  # None where the platform cannot tell
        out.append(Sample("ml_cpu_count", labels, count))
    return out


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


def collect_host_samples(
    ps: Any = psutil, *, host: str | None = None, cpu_interval: float = 0.2
) -> list[Sample]:
    """Read this host's CPU, memory, disks and network through ``ps`` (psutil).

    Blocks for ``cpu_interval`` seconds: CPU percentages are measured over that
    window. Every sample carries ``host`` (default: this host's name).

    Raises :class:`PartialCollection` (with every sample the other sections read)
    when a section fails.
    """
    labels = {"host": host or socket.gethostname()}
    sections: list[tuple[str, Callable[[], list[Sample]]]] = [
        ("cpu", lambda: _cpu(ps, labels, cpu_interval)),
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
    cpu_interval: float = 0.2,
) -> CollectorResult:
    """The host collector as the sweep runs it: never raises, reports ``mlinfra_collector_up``.

    ``fleet`` is accepted for the common collector signature; the host needs nothing from it.

    >>> result = run(cpu_interval=0.01)
    >>> result.up, result.samples[-2].name
    (True, 'mlinfra_collector_up')
    """
    return run_collector("host", lambda: collect_host_samples(ps, host=host, cpu_interval=cpu_interval))
