"""``make demo`` only: a simulated GPU node behind the real GPU collector.

``scripts/demo.sh`` puts this folder first on ``PYTHONPATH``, so the sweep's
``import pynvml`` finds this module instead of NVIDIA's: the collector code runs
unchanged against the project's scripted NVML fake (``tests/support/fake_pynvml.py``)
with two GPUs whose readings drift with the clock. Never on PYTHONPATH elsewhere.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tests.support.fake_pynvml import FakeGPU, FakeNVML

GPUS = 2
GIB = 1024**3


def readings(t: float, index: int) -> dict[str, int]:
    """Deterministic, plausible readings of GPU ``index`` at time ``t`` (GPU 1 runs busier and hotter)."""
    phase = t / 2400.0 + 1.7 * index
    util = 48 + 30 * math.sin(phase) + 8 * math.sin(phase * 5.3) + 14 * index
    util = max(2.0, min(99.0, util))
    return {
        "utilization": round(util),
        "memory_utilization": round(util * 0.6),
        "memory_used": round((22 + 14 * (1 + math.sin(phase / 2.2)) + 8 * index) * GIB),
        "temperature": round(38 + util * 0.42 + 6 * index),
        "power_usage": round((90 + util * 5.5) * 1000),
    }


def fake_gpus(t: float) -> list[FakeGPU]:
    return [FakeGPU(index=i, name="NVIDIA H100 80GB HBM3 (simulated)", **readings(t, i)) for i in range(GPUS)]


_nvml = FakeNVML(fake_gpus(time.time()))


def nvmlInit() -> None:
    _nvml.gpus = fake_gpus(time.time())
    _nvml.nvmlInit()


def __getattr__(name: str) -> Any:
    return getattr(_nvml, name)
