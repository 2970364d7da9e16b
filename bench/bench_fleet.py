"""A generated fleet of 50 and 500 models: sweep wall time, fleet page p95, bytes per sample.

Stand-ins (tests/support/): the Kubernetes API (a process, seeded with one Deployment
and its pod per model) and the serving fleet (one process, one TF Serving endpoint per
model: its own gRPC and REST ports, ``tests/support/serving_fleet.py``); the fleet file
and the model connections come from ``tests/support/fleet_scale.py``. About 60 series
per model per sweep.

Sweep: each step runs in its own fresh interpreter, as an executor runs a task (Airflow's
own per-task overhead is measured apart, in bench_sweep): the four collectors at once,
then write_sweep, evaluate_rules, plan_scaling; the sweep's wall time is the slowest
collector plus the three others, process start and imports included. Several sweeps
five minutes apart (logical time), the first one a warm-up (the stand-ins' first
connections); the median of the others is printed against the 5-minute cadence (and
the issue's 60 s target).

Fleet page: ``/mlinfra/api/fleet`` and ``/mlinfra/fleet`` (the plugin app, through
FastAPI's test client; Airflow's auth check is left out) over a store holding the
sweeps above plus 30 days of 5-minute history for every series the page reads (the
five "current" metrics of each model; series it does not read are not generated: a
full 30 days of every series of 500 models is 260 million rows). p95 of 40 requests
each, and the SQL the page issues, listed once.

Bytes per stored sample: the samples table and its indexes (SQLite's ``dbstat``)
divided by the rows, on the sweeps' own data (before the synthetic history); on
PostgreSQL too (``--postgres``: tests/support/services.py starts a throwaway one, the
same sweeps' samples are copied there through ``MetricsStore.write_sweep``).

    PYTHONPATH=.:plugins .venv/bin/python bench/bench_fleet.py [--models 50 500] [--sweeps 4] [--postgres]
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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CADENCE_S = 300.0
TARGET_S = 60.0
START = 1_800_000_000.0  # the first sweep's logical time (epoch seconds)
HISTORY_DAYS = 30
PAGE_REQUESTS = 40
COLLECTORS = ("gpu", "host", "kubernetes", "serving")

# One sweep step, as the DAG's task body runs it (dags/infra_health_sweep.py).
STEP = """
import json, sys, time
t0 = time.perf_counter()
from mlinfra.config import load_fleet
from mlinfra.store import MetricsStore
step, run_id, ts, scratch = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
store, fleet = MetricsStore.from_connection(), load_fleet()
t1 = time.perf_counter()
if step.startswith("collect_"):
    from mlinfra.sweep import collect_and_stage
    out = collect_and_stage(step[8:], fleet=fleet, store=store, run_id=run_id, ts=ts)
elif step == "write_sweep":
    from mlinfra.sweep import write_sweep
    summaries = [json.loads(open(f"{scratch}/{c}.json").read()) for c in ("gpu", "host", "kubernetes", "serving")]
    out = write_sweep(store=store, run_id=run_id, ts=ts, summaries=summaries, fleet=fleet, now=lambda: ts)
elif step == "evaluate_rules":
    from mlinfra.rules.evaluate import evaluate_rules_for_sweep
    out = evaluate_rules_for_sweep(store=store, fleet=fleet, at=ts, run_id=run_id, now=lambda: ts)
elif step == "plan_scaling":
    from mlinfra.scaling.plan import plan_scaling
    rules = json.loads(open(f"{scratch}/evaluate_rules.json").read())
    out = plan_scaling(fleet=fleet, store=store, at=ts, run_id=run_id, alerts=rules.get("firing") or [])
    out = {"decisions": len(out["decisions"]), "scale": len(out["scale"])}
name = step[8:] if step.startswith("collect_") else step
open(f"{scratch}/{name}.json", "w").write(json.dumps(out, default=str))
print("STEP " + json.dumps({"body_s": time.perf_counter() - t1, "process_s": time.perf_counter() - t0}))
"""


def run_step(env: dict[str, str], step: str, run_id: str, ts: float, scratch: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", STEP, step, run_id, str(ts), str(scratch)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], step: str) -> dict[str, float]:
    out, err = proc.communicate(timeout=600)
    lines = [x for x in out.splitlines() if x.startswith("STEP ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{step} failed:\n{out[-2000:]}\n{err[-3000:]}")
    result: dict[str, float] = json.loads(lines[-1][5:])
    return result


def one_sweep(env: dict[str, str], k: int, scratch: Path) -> dict[str, Any]:
    """Sweep ``k``: the collectors at once (their own processes), then the three others in turn."""
    ts = START + k * CADENCE_S
    run_id = f"scheduled__bench_{k}"
    t = time.perf_counter()
    procs = {c: (time.perf_counter(), run_step(env, f"collect_{c}", run_id, ts, scratch)) for c in COLLECTORS}
    steps: dict[str, float] = {}
    for c, (_, proc) in procs.items():
        steps[f"collect_{c}"] = finish(proc, c)["process_s"]
    for step in ("write_sweep", "evaluate_rules", "plan_scaling"):
        steps[step] = finish(run_step(env, step, run_id, ts, scratch), step)["process_s"]
    wall = time.perf_counter() - t
    summary = json.loads((scratch / "write_sweep.json").read_text())
    # No NVIDIA driver here: the GPU collector reports itself down, as it must.
    if set(summary.get("down") or ()) - {"gpu"}:
        raise RuntimeError(f"sweep {k}: collectors down {summary['down']}: {summary['collectors']}")
    return {"wall": wall, "steps": steps, "samples": summary["samples"]}


@contextmanager
def stand_ins(size: int, tmp: Path) -> Iterator[dict[str, str]]:
    """The fleet file, the serving fleet and the seeded Kubernetes stand-in; yields the env."""
    from tests.support.fleet_scale import GeneratedFleet
    from tests.support.serving_fleet import start_serving_fleet

    fleet = GeneratedFleet(size)
    path = fleet.write(tmp)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        "MLINFRA_FLEET_FILE": str(path),
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_MLINFRA_STORE": json.dumps({"conn_type": "sqlite", "host": str(tmp / "store.db")}),
    }
    with start_serving_fleet(fleet.served_names) as serving:
        env.update(fleet.connection_env(serving))
        kube = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.k8s_standin",
                "--kubeconfig",
                str(tmp / "kubeconfig"),
                "--seed-fleet",
                str(path),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert kube.stdout is not None
            for line in kube.stdout:
                if line.startswith("AIRFLOW_CONN_KUBERNETES_DEFAULT="):
                    name, value = line.strip().split("=", 1)
                    env[name] = shlex.split(value)[0]
                    break
            yield env
        finally:
            kube.terminate()
            kube.wait(timeout=30)


# ---------------------------------------------------------------------------- store figures


def sqlite_bytes_per_sample(db: Path) -> dict[str, float]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM mlinfra_samples").fetchone()[0]
        sizes = dict(
            conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat WHERE name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = 'mlinfra_samples') GROUP BY name"
            ).fetchall()
        )
    total = sum(sizes.values())
    return {
        "rows": rows,
        "bytes": total,
        "bytes_per_sample": total / rows,
        **{f"bytes[{k}]": v for k, v in sizes.items()},
    }


def postgres_bytes_per_sample(sqlite_url: str) -> dict[str, float]:
    """The same sweeps written to a throwaway PostgreSQL through the store, then its relation sizes."""
    import sqlalchemy as sa

    from mlinfra.store import MetricsStore
    from tests.support.services import postgres_server

    source = MetricsStore.from_url(sqlite_url)
    with postgres_server() as pg:
        target = MetricsStore.from_url(pg.url)
        target.create_schema()
        for sweep in source.sweeps(0, START + 10 * 86400):
            target.write_sweep(
                sweep.ts, source.sweep_samples(sweep.ts), run_id=sweep.run_id, summary=sweep.summary
            )
        with target.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM mlinfra_samples")).scalar_one()
            conn.execute(sa.text("VACUUM ANALYZE mlinfra_samples"))
            total = conn.execute(sa.text("SELECT pg_total_relation_size('mlinfra_samples')")).scalar_one()
    return {"rows": rows, "bytes": total, "bytes_per_sample": total / rows}


def add_history(db: Path, days: int, end: float) -> int:
    """5-minute history of every series the fleet page reads, ``days`` back from the first sweep."""
    import random
    import sqlite3

    # What mlinfra.ui.fleet._current_samples reads.
    names = (
        "kube_deployment_spec_replicas",
        "kube_deployment_status_replicas_available",
        "kube_deployment_status_replicas_ready",
        "mlinfra_serving_up",
        "mlinfra_serving_model_version_available",
    )
    rng = random.Random(7)
    with sqlite3.connect(db) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM mlinfra_series WHERE name IN ({','.join('?' * len(names))})", names
            )
        ]
        first = int(end * 1000)
        step = int(CADENCE_S * 1000)
        stamps = range(first - days * 86_400_000, first, step)
        n = 0
        for sid in ids:
            conn.executemany(
                "INSERT OR IGNORE INTO mlinfra_samples (series_id, ts, value) VALUES (?, ?, ?)",
                ((sid, t, float(rng.randint(1, 3))) for t in stamps),
            )
            n += len(stamps)
        conn.commit()
        conn.execute("ANALYZE")
    return n


def page_p95(store_url: str, fleet_file: str) -> dict[str, Any]:
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from mlinfra.config import load_fleet
    from mlinfra.store import MetricsStore
    from mlinfra.ui.app import create_app

    store = MetricsStore.from_url(store_url)
    fleet = load_fleet(fleet_file)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    app = create_app(store=lambda: store, fleet=lambda: fleet, auth=lambda: None)
    out: dict[str, Any] = {}
    with TestClient(app) as client:
        for path in ("/api/fleet", "/fleet"):
            client.get(path).raise_for_status()  # warm-up: templates, schema check
            sa.event.listen(store.engine, "before_cursor_execute", record)
            client.get(path).raise_for_status()
            sa.event.remove(store.engine, "before_cursor_execute", record)
            out[f"queries[{path}]"], statements[:] = list(statements), []
            times = []
            for _ in range(PAGE_REQUESTS):
                t = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - t)
                response.raise_for_status()
            times.sort()
            out[f"p95[{path}]"] = times[int(0.95 * len(times)) - 1]
            out[f"median[{path}]"] = statistics.median(times)
            out[f"bytes[{path}]"] = len(response.content)
    return out


# ---------------------------------------------------------------------------- main


def measure(size: int, sweeps: int, postgres: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-fleet-{size}-") as tmp_s:
        tmp = Path(tmp_s)
        scratch = tmp / "scratch"
        scratch.mkdir()
        t = time.perf_counter()
        # The schema first, as a deployment's setup does: four collector processes creating
        # it at once on a fresh SQLite file race ("table mlinfra_series already exists").
        from mlinfra.store import MetricsStore

        MetricsStore.from_url(f"sqlite:///{tmp / 'store.db'}").create_schema()
        with stand_ins(size, tmp) as env:
            started = time.perf_counter() - t
            runs = [one_sweep(env, k, scratch) for k in range(sweeps)]
        db = tmp / "store.db"
        res: dict[str, Any] = {"models": size, "stand_ins_start_s": started}
        timed = runs[1:] or runs
        res["sweep_wall_s"] = statistics.median(r["wall"] for r in timed)
        res["warmup_sweep_wall_s"] = runs[0]["wall"]
        res["samples_per_sweep"] = timed[-1]["samples"]
        res["steps"] = {s: statistics.median(r["steps"][s] for r in timed) for s in timed[0]["steps"]}
        print(
            f"{size} models: sweep wall {res['sweep_wall_s']:.1f} s (warm-up {res['warmup_sweep_wall_s']:.1f} s): "
            + ", ".join(f"{k} {v:.1f}s" for k, v in res["steps"].items()),
            flush=True,
        )
        res["sqlite"] = sqlite_bytes_per_sample(db)
        if postgres:
            try:
                res["postgres"] = postgres_bytes_per_sample(f"sqlite:///{db}")
            except Exception as e:  # PostgreSQL missing here: the other figures still count
                print(f"PostgreSQL figure not measured: {type(e).__name__}: {e}", flush=True)
        res["history_rows"] = add_history(db, HISTORY_DAYS, START)
        res["page"] = page_p95(f"sqlite:///{db}", env["MLINFRA_FLEET_FILE"])
    return res


def report(res: dict[str, Any]) -> None:
    n = res["models"]
    print(
        f"\n== {n} models ({res['samples_per_sweep']} series per sweep, {res['samples_per_sweep'] / n:.0f} per model)"
    )
    print(
        f"sweep wall {res['sweep_wall_s']:.1f} s vs cadence {CADENCE_S:.0f} s "
        f"({res['sweep_wall_s'] / CADENCE_S:.1%} of it; target < {TARGET_S:.0f} s); "
        f"first sweep (warm-up) {res['warmup_sweep_wall_s']:.1f} s; stand-ins started in {res['stand_ins_start_s']:.0f} s"
    )
    print("  steps (process wall, median): " + ", ".join(f"{k} {v:.1f}s" for k, v in res["steps"].items()))
    sq = res["sqlite"]
    print(
        f"bytes per stored sample: SQLite {sq['bytes_per_sample']:.1f} ({sq['rows']} rows; "
        + ", ".join(f"{k[6:-1]} {v / 1e6:.1f} MB" for k, v in sq.items() if k.startswith("bytes["))
        + ")"
    )
    if "postgres" in res:
        pg = res["postgres"]
        print(
            f"bytes per stored sample: PostgreSQL {pg['bytes_per_sample']:.1f} ({pg['rows']} rows, table + indexes)"
        )
    page = res["page"]
    print(f"fleet page with {HISTORY_DAYS} days of history ({res['history_rows']} history rows added):")
    for path in ("/api/fleet", "/fleet"):
        print(
            f"  {path}: p95 {page[f'p95[{path}]'] * 1000:.0f} ms, median {page[f'median[{path}]'] * 1000:.0f} ms "
            f"(target p95 <= 300 ms), {page[f'bytes[{path}]'] / 1e3:.0f} kB, {len(page[f'queries[{path}]'])} queries"
        )


def print_queries(res: dict[str, Any]) -> None:
    print(f"\nSQL issued by one /api/fleet request ({res['models']} models), in order:")
    for q in res["page"]["queries[/api/fleet]"]:
        print(f"  {q[:220]}")


def main(sizes: Sequence[int] = (50, 500), sweeps: int = 4, postgres: bool = True) -> list[dict[str, Any]]:
    results = []
    for size in sizes:
        res = measure(size, sweeps, postgres)
        report(res)
        results.append(res)
    print_queries(max(results, key=lambda r: r["models"]))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--sweeps", type=int, default=4, help="the first is a warm-up")
    parser.add_argument("--postgres", action="store_true", help="bytes per sample on PostgreSQL too")
    args = parser.parse_args()
    main(args.models, args.sweeps, args.postgres)
