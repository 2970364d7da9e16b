"""DAG parse time: dags/ against a folder of as many trivial DAGs, side by side in one run.

Each measurement is a fresh interpreter parsing the folder with Airflow's DagBag (what
the dag-processor does), so module caches of one side cannot help the other. The two
sides alternate, and the median of each is compared. Target: ratio <= 1.5.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRIVIAL = """
from datetime import datetime
from airflow.sdk import dag, task

@dag(dag_id="trivial_{i}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["t"])
def trivial():
    @task
    def noop() -> None:
        return None
    noop()

trivial()
"""

PROBE = """
import json, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t2 = time.perf_counter()
assert not bag.import_errors, bag.import_errors
print(json.dumps({"airflow_import": t1 - t0, "parse": t2 - t1, "dags": len(bag.dags)}))
"""


def measure(folder: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(rounds: int = 7) -> dict[str, float]:
    dag_files = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    with tempfile.TemporaryDirectory() as tmp:
        trivial = Path(tmp) / "trivial"
        trivial.mkdir()
        for i in range(len(dag_files)):
            (trivial / f"trivial_{i}.py").write_text(TRIVIAL.replace("{i}", str(i)))
        env = {**os.environ, "AIRFLOW_HOME": str(Path(tmp) / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        ours, base = [], []
        measure(ROOT / "dags", env)  # warm the OS page cache for both sides
        measure(trivial, env)
        for _ in range(rounds):
            ours.append(measure(ROOT / "dags", env)["parse"])
            base.append(measure(trivial, env)["parse"])
    result = {
        "dag_files": len(dag_files),
        "ours_median_s": statistics.median(ours),
        "trivial_median_s": statistics.median(base),
    }
    result["ratio"] = result["ours_median_s"] / result["trivial_median_s"]
    print(
        f"DAG parse: {len(dag_files)} files, ours {result['ours_median_s'] * 1000:.1f} ms vs trivial "
        f"{result['trivial_median_s'] * 1000:.1f} ms (median of {rounds}) -> ratio {result['ratio']:.2f} (target <= 1.5)"
    )
    return result


if __name__ == "__main__":
    main()
