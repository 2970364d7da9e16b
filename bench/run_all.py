"""Run every benchmark in bench/ and print its side-by-side ratios (`make bench`).

Each benchmark measures its own baseline or peer in the same run; nothing here is a
pass/fail test. The newcomer path (bench/newcomer.py) clones and installs, so it runs
only when asked: `python bench/newcomer.py [--cold]`.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCHMARKS = [
    "bench_dag_parse",
    "bench_store",
    "bench_sweep",
    "bench_fleet",
    "bench_rules",
    "bench_deploy",
    "bench_deploy_e2e",
    "bench_canary",
    "bench_reports",
]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        if not (ROOT / "bench" / f"{name}.py").exists():
            continue
        print(f"== {name}", flush=True)
        start = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as e:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"{name} failed: {type(e).__name__}: {e}")
        print(f"   ({time.monotonic() - start:.0f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
