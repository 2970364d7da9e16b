"""The GPU collector's cost per GPU per sweep against the raw NVML calls it makes.

The calls (name and arguments, in order) are recorded from one collection and replayed
bare each round, so the difference is the collector's own work: labels, conversions,
samples, error mapping. The replay is the cheapest caller there is (functions looked up
once, a bare try per call). Blocks of rounds alternate between the two sides (and which
goes first); the figure is the median of the 30 blocks' ratios. Target: <= 1.2.

Two NVMLs, neither of them a GPU:

* **fake**: ``tests/support/fake_pynvml``, the scripted stand-in for the pynvml module
  the tests use; a call costs a few microseconds of Python.
* **pynvml over the driver stand-in**: the real pynvml loading
  ``tests/support/nvml_driver``'s C library as ``libnvidia-ml.so.1`` (in a child
  process, since pynvml keeps the library it loaded). A raw call is pynvml's ctypes
  wrapper and a C function that answers at once: about a microsecond, the least any
  NVML call costs.

On a GPU each call goes into the driver, and ``nvmlDeviceGetPcieThroughput`` alone
samples a counter over 20 ms (nvml.h), twice per GPU; there the collector's own work
is a far smaller share. On a machine with a GPU, ``--real`` measures against the
driver's own NVML (``scripts/gpu_check.sh`` runs it).

    PYTHONPATH=.:plugins .venv/bin/python bench/bench_gpu.py [--real]
"""

from __future__ import annotations

import contextlib
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCKS = 30


class _Recording:
    """Wraps an NVML module; logs each ``nvml*`` call's name and arguments."""

    def __init__(self, nvml: Any):
        self.nvml, self.log = nvml, []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.nvml, name)
        if not (name.startswith("nvml") and callable(value)):
            return value

        def call(*args: Any) -> Any:
            self.log.append((name, args))
            return value(*args)

        return call


def _collect(nvml: Any) -> None:
    from mlinfra.collectors.gpu.nvml import collect_gpu_samples

    # A partial collection costs the same as a full one.
    with contextlib.suppress(Exception):
        collect_gpu_samples(nvml, host="bench", process_name=str, proc_root=None, window=0)


def side_by_side(
    fresh: Callable[[], Any], errors: tuple[type[Exception], ...], gpus: int, block: int = 30
) -> dict[str, float]:
    """Collector vs replay of its recorded calls on ``fresh()`` NVMLs; seconds per GPU per sweep."""
    recorder = _Recording(fresh())
    _collect(recorder)
    calls = recorder.log
    names = sorted({name for name, _ in calls})

    def replay(nvml: Any) -> None:
        # As a caller of NVML would at best: each function looked up once (the collector
        # does too), errors caught with a bare try (no context manager per call).
        fns = {name: getattr(nvml, name) for name in names}
        for name, args in calls:
            try:  # noqa: SIM105 - a suppress() per call is the cost this avoids
                fns[name](*args)
            except errors:
                pass

    # Side by side in small blocks that alternate which side goes first, so a change of
    # machine load hits both sides alike; the ratio is the median of the blocks' ratios.
    collector_s, raw_s, ratios = [], [], []
    for b in range(BLOCKS):
        sides: list[tuple[Callable[[Any], None], list[float]]] = [(_collect, collector_s), (replay, raw_s)]
        spent: dict[Callable[[Any], None], float] = {}
        for run, out in sides if b % 2 == 0 else sides[::-1]:
            nvmls = [fresh() for _ in range(block)]
            # As timeit does: no garbage collection inside the timed loop.
            gc.collect()
            gc.disable()
            try:
                t = time.perf_counter()
                for nvml in nvmls:
                    run(nvml)
                spent[run] = (time.perf_counter() - t) / block / gpus
            finally:
                gc.enable()
            out.append(spent[run])
        ratios.append(spent[_collect] / spent[replay])
    q = statistics.quantiles(ratios, n=4)
    return {
        "collector_s_per_gpu": statistics.median(collector_s),
        "raw_nvml_s_per_gpu": statistics.median(raw_s),
        "nvml_calls_per_gpu": len(calls) / gpus,
        "ratio": statistics.median(ratios),
        "ratio_q1": q[0],
        "ratio_q3": q[2],
    }


def report(res: dict[str, float], what: str) -> None:
    print(
        f"GPU collector ({what}): {res['collector_s_per_gpu'] * 1e6:.0f} us per GPU per sweep vs "
        f"{res['raw_nvml_s_per_gpu'] * 1e6:.0f} us for its {res['nvml_calls_per_gpu']:.0f} raw NVML calls per GPU "
        f"-> ratio {res['ratio']:.2f} (median of {BLOCKS} alternating blocks; quartiles "
        f"{res['ratio_q1']:.2f}-{res['ratio_q3']:.2f}; target <= 1.2)"
    )


def fake_cost(scenario: str = "eight_gpus") -> dict[str, float]:
    from tests.support.fake_pynvml import FakeNVML, NVMLError, NVMLLibraryMismatchError

    res = side_by_side(
        lambda: FakeNVML.scenario(scenario),
        (NVMLError, NVMLLibraryMismatchError),
        len(FakeNVML.scenario(scenario).gpus),
    )
    report(res, f"{scenario}, fake pynvml")
    return res


def loaded_pynvml_cost(block: int = 30) -> dict[str, float]:
    """The side-by-side measurement on the real pynvml and whatever ``libnvidia-ml.so.1`` it loads."""
    import pynvml

    pynvml.nvmlInit()
    gpus = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
    return side_by_side(lambda: pynvml, (pynvml.NVMLError, pynvml.NVMLLibraryMismatchError), gpus, block)


def pynvml_cost() -> dict[str, float] | None:
    from tests.support.nvml_driver import build, compiler, environment, nvml_header

    if compiler() is None:
        print("GPU collector (pynvml over the driver stand-in): skipped, no C compiler to build the stand-in")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        libdir = build(Path(tmp), header=nvml_header())
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child"],
            env=environment(libdir),
            capture_output=True,
            text=True,
            timeout=600,
        )
    lines = [x for x in out.stdout.splitlines() if x.startswith("BENCH ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the pynvml side failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    res: dict[str, float] = json.loads(lines[-1][6:])
    report(res, "eight GPUs, the real pynvml over the C driver stand-in")
    return res


def main() -> dict[str, Any]:
    return {"fake": fake_cost(), "pynvml": pynvml_cost()}


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print("BENCH " + json.dumps(loaded_pynvml_cost()))
    elif sys.argv[1:] == ["--real"]:
        # On a machine with a GPU (scripts/gpu_check.sh): the driver's own NVML. A sweep
        # takes tens of milliseconds per GPU there, so blocks of two rounds.
        report(loaded_pynvml_cost(block=2), "the real pynvml and this machine's NVIDIA driver")
    else:
        main()
