"""Sweep: a dag.test() run of infra_health_sweep against a no-op DAG of the same shape.

Both DAGs run in fresh interpreters, alternating, against the same Airflow metadata DB.
The sweep talks to real things: the host (psutil), NVML (absent here: the collector
reports down), the Kubernetes API stand-in (a process, through the real client and the
provider's hook), the TF Serving stand-in (gRPC + monitoring endpoint) and a SQLite
store. Each child reports the wall time of ``dag.test()`` itself and its peak RSS.
Targets: wall ratio <= 1.3; peak memory ratio <= 1.2 (no TensorFlow in the sweep).

It also prints the GPU collector's cost per GPU per sweep against the raw NVML calls it
makes (bench/bench_gpu.py: on the scripted fake, and on the real pynvml over the C
driver stand-in; target <= 1.2), alone with ``--gpu``; the per-task peak RSS ratios
alone with ``--tasks``:

    PYTHONPATH=. .venv/bin/python bench/bench_sweep.py --rounds 5
    PYTHONPATH=.:plugins .venv/bin/python bench/bench_sweep.py --gpu
    PYTHONPATH=.:plugins .venv/bin/python bench/bench_sweep.py --tasks collect_kubernetes plan_scaling
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench_gpu  # noqa: E402 - after ROOT is importable

NOOP_DAG = """
from datetime import datetime, timedelta
from airflow.sdk import dag, task

@dag(dag_id="noop_sweep", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["bench"],
     default_args={"owner": "bench", "retries": 2, "retry_delay": timedelta(seconds=20)})
def noop_sweep():
    @task
    def collect(name: str) -> dict:
        return {"collector": name, "up": True, "samples": 0}

    @task(trigger_rule="all_done")
    def write_sweep(summaries: list) -> dict:
        return {"collectors": len(summaries)}

    @task
    def evaluate_rules(sweep: dict) -> dict:
        return {"firing": []}

    @task
    def plan_scaling(rules: dict) -> list:
        return []

    @task
    def scale(namespace: str, deployment: str) -> None:
        return None

    summaries = [collect.override(task_id=f"collect_{n}")(n) for n in ("gpu", "host", "kubernetes", "serving")]
    scale.expand_kwargs(plan_scaling(evaluate_rules(write_sweep(summaries))))

noop_sweep()
"""

CHILD = """
import json, resource, sys, time
from datetime import datetime, timedelta, timezone
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags[sys.argv[2]]
when = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc) + timedelta(minutes=5 * int(sys.argv[3]))
t = time.perf_counter()
run = dag.test(logical_date=when)
elapsed = time.perf_counter() - t
print("BENCH " + json.dumps({"wall": elapsed, "state": str(run.state),
      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "tensorflow": "tensorflow" in sys.modules}))
"""


def child(env: dict[str, str], folder: Path, dag_id: str, k: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), dag_id, str(k)],
        capture_output=True,
        text=True,
        # dag.test() serializes the DAG into the dags-folder bundle, which must hold its file.
        env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)},
        timeout=300,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("BENCH ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{dag_id} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][6:])
    if result["state"] not in ("success", "DagRunState.SUCCESS"):
        raise RuntimeError(f"{dag_id} ended {result['state']}")
    return result


TASKS = (
    "collect_gpu",
    "collect_host",
    "collect_kubernetes",
    "collect_serving",
    "write_sweep",
    "evaluate_rules",
    "plan_scaling",
)


def task_peak_mb(env: dict[str, str], folder: Path, dag_id: str, task_id: str) -> float:
    """Peak RSS of one task run the way an executor runs it: its own process (airflow tasks test)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "tasks", "test", dag_id, task_id, "2026-11-20T12:00:00+00:00"],
        env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{dag_id}.{task_id} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        )
    return usage.ru_maxrss / 1024


def main(rounds: int = 5, tasks: tuple[str, ...] = TASKS, task_rounds: int = 3) -> dict[str, float]:
    """``rounds`` dag.test() runs of each DAG (0: none), then each of ``tasks`` in its own process."""
    from tests.support.tf_serving_standin import start_tf_serving_standin

    if rounds:
        bench_gpu.main()

    with tempfile.TemporaryDirectory() as tmp_s, start_tf_serving_standin() as serving:
        tmp = Path(tmp_s)
        noop_dir = tmp / "noop"
        noop_dir.mkdir()
        (noop_dir / "noop_sweep.py").write_text(NOOP_DAG)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(tmp / "home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW_CONN_MLINFRA_STORE": json.dumps({"conn_type": "sqlite", "host": str(tmp / "store.db")}),
            # The checkout's own package first: an environment may have another copy on its path.
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        }
        env.update(dict([serving.connection_env("tf_serving_half_plus_two")]))
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        kube = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.k8s_standin",
                "--kubeconfig",
                str(tmp / "kubeconfig"),
                "--seed-fleet",
                str(ROOT / "include" / "fleet.yaml"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert kube.stdout is not None
            for line in kube.stdout:
                if line.startswith("AIRFLOW_CONN_KUBERNETES_DEFAULT="):
                    name, value = line.strip().split("=", 1)
                    env[name] = shlex.split(value)[0]
                    break
            sweep_dir = ROOT / "dags"
            child(env, sweep_dir, "infra_health_sweep", 0)  # warm-up: page cache, first schema creation
            child(env, noop_dir, "noop_sweep", 0)
            sweep, noop = [], []
            for k in range(1, rounds + 1):
                sweep.append(child(env, sweep_dir, "infra_health_sweep", k))
                noop.append(child(env, noop_dir, "noop_sweep", k))
            per_task = {}
            for t in tasks:
                ours, base = [], []
                for _ in range(task_rounds):  # alternating, so a busy moment hits both sides
                    ours.append(task_peak_mb(env, sweep_dir, "infra_health_sweep", t))
                    base.append(task_peak_mb(env, noop_dir, "noop_sweep", t))
                per_task[t] = (statistics.median(ours), statistics.median(base))
                print(
                    f"  task {t:<19} peak RSS {per_task[t][0]:6.0f} MB vs no-op {per_task[t][1]:6.0f} MB -> "
                    f"{per_task[t][0] / per_task[t][1]:.2f} (target <= 1.2; median of {task_rounds})",
                    flush=True,
                )
        finally:
            kube.terminate()
            kube.wait(timeout=10)
    if not rounds:
        return {"task_rss_ratio_max": max(a / b for a, b in per_task.values())}
    res = {
        "sweep_wall_s": statistics.median(r["wall"] for r in sweep),
        "noop_wall_s": statistics.median(r["wall"] for r in noop),
        "sweep_rss_mb": statistics.median(r["maxrss_mb"] for r in sweep),
        "noop_rss_mb": statistics.median(r["maxrss_mb"] for r in noop),
        "tensorflow_loaded": any(r["tensorflow"] for r in sweep),
    }
    res["wall_ratio"] = res["sweep_wall_s"] / res["noop_wall_s"]
    res["rss_ratio"] = res["sweep_rss_mb"] / res["noop_rss_mb"]
    res["task_rss_ratio_max"] = max(a / b for a, b in per_task.values())
    print(
        f"sweep dag.test(): {res['sweep_wall_s']:.2f}s vs no-op {res['noop_wall_s']:.2f}s -> ratio "
        f"{res['wall_ratio']:.2f} (target <= 1.3); peak RSS {res['sweep_rss_mb']:.0f} MB vs "
        f"{res['noop_rss_mb']:.0f} MB -> ratio {res['rss_ratio']:.2f} (all tasks in one process); "
        f"worst single task (own process, as an executor runs it) {res['task_rss_ratio_max']:.2f} (target <= 1.2); "
        f"tensorflow imported: {res['tensorflow_loaded']} (median of {rounds})"
    )
    return res


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="only the GPU collector's cost per GPU")
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=TASKS,
        help="only the per-task peak RSS of these tasks (no dag.test rounds)",
    )
    parser.add_argument("--task-rounds", type=int, default=3)
    args = parser.parse_args()
    if args.gpu:
        bench_gpu.main()
    elif args.tasks:
        main(0, tuple(args.tasks), args.task_rounds)
    else:
        main(args.rounds, TASKS, args.task_rounds)
