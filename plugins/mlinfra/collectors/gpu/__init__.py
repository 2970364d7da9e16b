"""The GPU collector: NVML readings (:mod:`.nvml`), per-pod attribution (:mod:`.attribution`),
XID counters kept across sweeps and dcgm-exporter names (:mod:`.sweep_step`, :mod:`.dcgm`).

The collector task runs :func:`run` on the GPU node; the sweep's write task then runs
:func:`finish_gpu_samples` over the whole sweep, where the Kubernetes collector's pods,
the store's previous counters and the fleet's ``gpu.metric_names`` are at hand::

    >>> from tests.support.fake_pynvml import FakeNVML
    >>> result = run(nvml=FakeNVML.scenario("no_driver"))
    >>> result.up, result.errors[0].startswith("NVML is not available")
    (False, True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.collectors.base import CollectorResult, run_collector
from mlinfra.collectors.gpu.nvml import CLOCK_EVENT_REASONS, DEFAULT_WINDOW, GPM_METRICS, collect_gpu_samples
from mlinfra.collectors.gpu.sweep_step import finish_gpu_samples

if TYPE_CHECKING:
    from mlinfra.config import Fleet

__all__ = ["CLOCK_EVENT_REASONS", "GPM_METRICS", "collect_gpu_samples", "finish_gpu_samples", "run"]

# Where the host's /proc is when it is mounted into the container (instead of hostPID).
HOST_PROC_ENV = "MLINFRA_HOST_PROC"


def run(
    fleet: Fleet | None = None,
    *,
    nvml: Any = None,
    host: str | None = None,
    proc_root: Path | None = None,
    window: float | None = None,
) -> CollectorResult:
    """The GPU collector as the sweep runs it: never raises, reports ``mlinfra_collector_up``.

    ``fleet.gpu.sample_window`` (default 1 s) is how long it listens for XID events;
    ``proc_root`` (default ``$MLINFRA_HOST_PROC`` or ``/proc``) is where process
    cgroups are read. A feature that cannot work here (no host ``/proc``) is named
    once in the result's ``skipped`` and the collector stays up.
    """
    if window is None:
        window = fleet.gpu.sample_window if fleet is not None else DEFAULT_WINDOW
    root = proc_root if proc_root is not None else Path(os.environ.get(HOST_PROC_ENV) or "/proc")
    notes: list[str] = []

    def collect() -> list[Any]:
        return collect_gpu_samples(nvml, host=host, proc_root=root, window=window, notes=notes)

    result = run_collector("gpu", collect)
    result.skipped.extend(notes)
    return result
