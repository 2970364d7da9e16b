"""The NVML driver stand-in (``libnvidia-ml.c``): build it, and collect through the real pynvml.

``fake_pynvml`` replaces the ``pynvml`` module, so pynvml's own code (ctypes structs,
string decoding, ``@throwOnVersionMismatch``, "function not found" for a symbol the
driver lacks) never runs in a test. This stand-in sits one layer lower: a C library with
the driver's ABI that pynvml loads as ``libnvidia-ml.so.1`` through ``LD_LIBRARY_PATH``.
pynvml keeps the library it loaded for the life of the process, so collections through
it run in a child process (:func:`collect_through_pynvml`).

    libdir = build(tmp_path, header=nvml_header())  # or old_driver=True
    samples = collect_through_pynvml(libdir, lost_midway=5)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlinfra.samples import Sample

SOURCE = Path(__file__).with_name("libnvidia-ml.c")
LIBRARY = "libnvidia-ml.so.1"  # the name pynvml's _LoadNvmlLibrary asks the dynamic loader for
ROOT = Path(__file__).resolve().parents[3]
# A shared library; warnings are errors, so a signature that drifts from nvml.h's types shows.
_CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror")


# Where TensorFlow's wheel ships NVIDIA's nvml.h (its CUDA headers), under the package.
_TF_NVML_H = "include/third_party/gpus/cuda/nvml/include/nvml.h"


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def nvml_header() -> Path | None:
    """NVIDIA's ``nvml.h`` as TensorFlow ships it (a pinned dependency), found without importing it."""
    spec = importlib.util.find_spec("tensorflow")
    for root in (spec.submodule_search_locations or []) if spec else []:
        header = Path(root) / _TF_NVML_H
        if header.is_file():
            return header
    return None


def build(
    dest: Path,
    *,
    old_driver: bool = False,
    cc: str | None = None,
    header: Path | None = None,
    source: Path = SOURCE,
) -> Path:
    """Compile the stand-in into ``dest/libnvidia-ml.so.1``; returns ``dest`` (the directory to load from).

    With ``header`` (NVIDIA's ``nvml.h``) the stand-in is compiled against it, so any
    signature or struct that differs from NVIDIA's declarations fails the build.
    """
    cc = cc or compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc or gcc) on PATH to build the NVML driver stand-in")
    dest.mkdir(parents=True, exist_ok=True)
    flags = ["-DNVML_STUB_BEFORE_R535"] if old_driver else []
    if header is not None:
        flags += ["-DNVML_STUB_WITH_HEADER", f"-I{header.parent}"]
    out = subprocess.run(
        [cc, *_CFLAGS, *flags, "-o", str(dest / LIBRARY), str(source)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"building the NVML driver stand-in failed:\n{out.stderr[-4000:]}")
    return dest


def environment(
    libdir: Path,
    *,
    lost_on_open: int | None = None,
    lost_midway: int | None = None,
    xids: Sequence[tuple[int, int]] = (),
    mig: int | None = None,
) -> dict[str, str]:
    """This process's environment with ``libdir`` first on the loader's path and the stand-in's
    script (``xids``: (GPU index, XID) raised in that order; ``mig``: the GPU split into
    MIG devices, see libnvidia-ml.c)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVML_STUB_")}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libdir), env.get("LD_LIBRARY_PATH")]))
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "plugins"), str(ROOT), env.get("PYTHONPATH")])
    )
    if lost_on_open is not None:
        env["NVML_STUB_LOST_ON_OPEN"] = str(lost_on_open)
    if lost_midway is not None:
        env["NVML_STUB_LOST_MIDWAY"] = str(lost_midway)
    if mig is not None:
        env["NVML_STUB_MIG"] = str(mig)
    if xids:
        env["NVML_STUB_XIDS"] = ",".join(f"{gpu}:{xid}" for gpu, xid in xids)
    return env


# The child: the collector with nvml=None imports the real pynvml, which loads the stand-in.
_CHILD = """
import json, sys
from mlinfra.collectors.base import PartialCollection
from mlinfra.collectors.gpu.nvml import collect_gpu_samples
window = float(sys.argv[1])
try:
    samples = collect_gpu_samples(host="node-a", process_name=lambda pid: f"proc-{pid}", window=window)
    problems = []
except PartialCollection as e:
    samples, problems = e.samples, e.errors
import pynvml
with open("/proc/self/maps") as maps:
    loaded = sorted({line.split()[-1] for line in maps if line.rstrip().endswith("libnvidia-ml.so.1")})
print(json.dumps({"samples": [s.to_json() for s in samples], "problems": problems, "loaded": loaded,
                  "pynvml": pynvml.__file__}))
"""


def collect_through_pynvml(libdir: Path, *, window: float = 0.0, **script: Any) -> dict[str, Any]:
    """One ``collect_gpu_samples(window=window)`` through the real pynvml over the stand-in in ``libdir``.

    Returns ``{"samples": [Sample], "problems": [str], "loaded": [the library files the
    process mapped], "pynvml": its module file}``.
    """
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(window)],
        env=environment(libdir, **script),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the collection through pynvml failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["samples"] = [Sample.from_json(row) for row in result["samples"]]
    return result
