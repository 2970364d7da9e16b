"""A generated fleet of 50 and 500 models: sweep wall time, plan_scaling against raw reads,
fleet page p95, bytes per sample.

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
full 30 days of every series of 500 models is 260 million rows). p95 and median of 40
requests each against the issue's 300 ms, the CPU time per request and the load average
(on a shared machine the wall time is the CPU time plus the wait for a core), and the
SQL statements one request issues: their count, and each distinct one with how often.

plan_scaling against reading the metrics it plans on: bench_scaling's measurement
(its own store: one sample a minute of every model's target series), at each size.

Bytes per stored sample: the samples table and its indexes (SQLite's ``dbstat``)
divided by the rows, on the sweeps' own data (before the synthetic history); on
PostgreSQL too (``--postgres``: tests/support/services.py starts a throwaway one, the
same sweeps' samples are copied there through ``MetricsStore.write_sweep``).

    PYTHONPATH=.:plugins .venv/bin/python bench/bench_fleet.py [--models 50 500] [--sweeps 4] [--postgres]
        [--save-store DIR]

The page alone, again (after a change to the page), over a store saved by ``--save-store``
(its sweeps and its history as they were: no stand-ins, no sweep, minutes saved)::

    PYTHONPATH=.:plugins .venv/bin/python bench/bench_fleet.py --models 500 --page-only DIR/store-500.db
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
sys.path.insert(0, str(ROOT / "bench"))

from bench_scaling import measure_plan  # noqa: E402 - after the path
from bench_scaling import report as report_plan  # noqa: E402

CADENCE_S = 300.0
TARGET_S = 60.0
START = 1_800_000_000.0  # the first sweep's logical time (epoch seconds)
HISTORY_DAYS = 30
PAGE_REQUESTS = 40
PAGE_TARGET_S = 0.300  # the p95 for the fleet page and its JSON
PAGE_PATHS = ("/api/fleet", "/fleet")
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

    from mlinfra.ui.fleet import CURRENT_METRICS as names  # what the page reads of each model

    rng = random.Random(7)
    with sqlite3.connect(db) as conn:
        # Each series' rows land all over the ts index: a page cache that holds it (SQLite's
        # default is 2 MB) keeps the insert from spilling pages to the WAL row by row.
        conn.execute("PRAGMA cache_size=-1000000")
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


def history_days(db: Path) -> float:
    """Days from the oldest sample to the latest sweep (what a saved store holds)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        (oldest,) = conn.execute("SELECT min(ts) FROM mlinfra_samples").fetchone()
        (latest,) = conn.execute("SELECT max(ts) FROM mlinfra_sweeps").fetchone()
    return 0.0 if oldest is None or latest is None else (latest - oldest) / 86_400_000


def stored_models(db: Path) -> int:
    """Deployments with a ``kube_deployment_spec_replicas`` series: the fleet the store was filled for."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM mlinfra_series WHERE name = 'kube_deployment_spec_replicas'"
        ).fetchone()
    return int(n)


def save_store(db: Path, folder: Path, size: int) -> Path:
    """A consistent copy of the store (SQLite's online backup) for ``--page-only`` runs."""
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"store-{size}.db"
    with sqlite3.connect(db) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


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
        for path in PAGE_PATHS:
            client.get(path).raise_for_status()  # warm-up: templates, schema check
            sa.event.listen(store.engine, "before_cursor_execute", record)
            client.get(path).raise_for_status()
            sa.event.remove(store.engine, "before_cursor_execute", record)
            out[f"queries[{path}]"], statements[:] = list(statements), []
            times, cpu = [], []
            for _ in range(PAGE_REQUESTS):
                t, c = time.perf_counter(), time.process_time()
                response = client.get(path)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
                response.raise_for_status()
            # What one request costs in CPU (the app runs in this process): on a shared machine
            # the wall time is this plus the wait for a core.
            out[f"cpu_median[{path}]"] = statistics.median(cpu)
            out[f"load[{path}]"] = "/".join(f"{x:.1f}" for x in os.getloadavg())
            times.sort()
            out[f"p95[{path}]"] = times[int(0.95 * len(times)) - 1]
            out[f"median[{path}]"] = statistics.median(times)
            out[f"bytes[{path}]"] = len(response.content)
    return out


# ---------------------------------------------------------------------------- main


def measure_page_only(size: int, db: Path) -> dict[str, Any]:
    """The fleet page over a store saved by ``--save-store``, with the generated fleet file of ``size``."""
    from tests.support.fleet_scale import GeneratedFleet

    found = stored_models(db)
    if found != size:
        raise SystemExit(f"--page-only {db}: the store was filled for {found} models, not --models {size}")
    with tempfile.TemporaryDirectory(prefix=f"bench-fleet-page-{size}-") as tmp_s:
        fleet_file = GeneratedFleet(size).write(Path(tmp_s))
        return {
            "models": size,
            "history_days": history_days(db),
            "page": page_p95(f"sqlite:///{db}", str(fleet_file)),
        }


def measure(size: int, sweeps: int, postgres: bool, save: Path | None = None) -> dict[str, Any]:
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
        res["history_days"] = history_days(db)
        if save is not None:
            print(f"store saved as {save_store(db, save, size)} (for --page-only)", flush=True)
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
    report_page(res)


def report_page(res: dict[str, Any]) -> None:
    page = res["page"]
    added = f", {res['history_rows']} history rows added" if "history_rows" in res else ""
    print(
        f"\nfleet page, {res['models']} models, {res['history_days']:.1f} days of history in the store{added}; "
        f"{PAGE_REQUESTS} requests each:"
    )
    for path in PAGE_PATHS:
        p95 = page[f"p95[{path}]"]
        print(
            f"  {path:<11} p95 {p95 * 1000:5.0f} ms, median {page[f'median[{path}]'] * 1000:5.0f} ms "
            f"vs target p95 <= {PAGE_TARGET_S * 1000:.0f} ms: {'met' if p95 <= PAGE_TARGET_S else 'NOT MET'}\n"
            f"  {'':<11} {len(page[f'queries[{path}]'])} SQL statements per request, "
            f"{page[f'bytes[{path}]'] / 1e3:.0f} kB, CPU {page[f'cpu_median[{path}]'] * 1000:.0f} ms per request "
            f"(median), load average {page[f'load[{path}]']} (1/5/15 min) at the end"
        )


def print_queries(res: dict[str, Any]) -> None:
    """Each endpoint's statements in the order first issued, a repeated one once with its count."""
    for path in PAGE_PATHS:
        issued = res["page"][f"queries[{path}]"]
        counts: dict[str, int] = {}
        for q in issued:
            counts[q] = counts.get(q, 0) + 1
        print(f"\nSQL issued by one {path} request ({res['models']} models): {len(issued)} statements")
        for q, k in counts.items():
            print(f"  {k:>4} x {_short_in_lists(q)}")


def _short_in_lists(statement: str) -> str:
    """``IN (?, ?, ... 500 times)`` as ``IN (?, ... 500 parameters)``: the statement stays readable."""
    import re

    return re.sub(r"\?(?:, \?){3,}", lambda m: f"?, ... {m.group(0).count('?')} parameters", statement)


def main(
    sizes: Sequence[int] = (50, 500),
    sweeps: int = 4,
    postgres: bool = True,
    save: Path | None = None,
    page_only: Path | None = None,
) -> list[dict[str, Any]]:
    results = []
    for size in sizes:
        if page_only is not None:
            res = measure_page_only(size, page_only)
            report_page(res)
        else:
            res = measure(size, sweeps, postgres, save)
            report(res)
            print(f"\nplan_scaling vs reading the metrics it plans on, {size} models (bench_scaling):")
            res["plan"] = measure_plan(size)
            report_plan(res["plan"])
        results.append(res)
    print_queries(max(results, key=lambda r: r["models"]))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--sweeps", type=int, default=4, help="the first is a warm-up")
    parser.add_argument("--postgres", action="store_true", help="bytes per sample on PostgreSQL too")
    parser.add_argument(
        "--save-store", type=Path, metavar="DIR", help="keep each size's store (sweeps + history) in DIR"
    )
    parser.add_argument(
        "--page-only",
        type=Path,
        metavar="STORE",
        help="only the fleet page, over a store saved by --save-store (one --models: the size it was saved at)",
    )
    args = parser.parse_args()
    if args.page_only is not None and len(args.models) != 1:
        parser.error("--page-only takes one --models size: the one the store was saved at")
    main(args.models, args.sweeps, args.postgres, args.save_store, args.page_only)
