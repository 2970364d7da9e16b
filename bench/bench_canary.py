"""Canary deploys: what the canary path costs over a rolling deploy, and what one analysis
measurement costs over a raw read of the same series (issue 13).

1. **Canary overhead.** ``model_deploy`` of half_plus_two through ``dag.test()`` on the
   Kubernetes + TF Serving stand-ins (tests/deploy/environment.py: each pod is a TF
   Serving server of its own), once with ``deploy.strategy: canary`` and three weight steps
   with zero-length pauses (20 %, 50 %, 60 %: a ``<name>-canary`` Deployment next to the
   stable, then promotion re-applies the stable at the new version and removes the
   canary), once with the default rolling strategy (apply, wait, smoke test, promote).
   Both deploy the next version over the one running (versions increase; each is a copy
   of version 1), from the same fleet apart from ``deploy`` (two fleet files, switched
   with ``MLINFRA_FLEET_FILE``; one parse of the DAG). One warm-up deploy of each kind
   first; rounds alternate which kind goes first; the ratio is the median of the paired
   ratios canary / rolling.
2. **Analysis evaluation.** A SQLite store holding TF Serving's request counters of both
   tracks (two pods each, 15 s scrapes over 5 minutes, labelled ``model``, ``track``,
   ``version``, ``pod`` as :func:`mlinfra.deploy.canary.tracks.scrape_track_samples`
   writes them). One measurement of ``analyses.serving-health``'s ``error-ratio`` from
   include/fleet.yaml, the way :class:`mlinfra.deploy.canary.measure.Round` takes it
   (``_query_metric``: the query rendered for canary and stable, each evaluated through
   ``engine_for_fleet(...).instant``, then ``analysis.judge``), against the raw read of the
   same series: ``MetricsStore.query_range`` of ``:tensorflow:serving:request_count`` over
   the query's 1-minute window, once per track. Per-measurement microseconds and the
   ratio (median of paired rounds, alternating which goes first).

Nothing here is a pass/fail target; the figures are printed side by side.

    PYTHONPATH=.:plugins .venv/bin/python -m bench.bench_canary            # 3 rounds each
    PYTHONPATH=.:plugins .venv/bin/python -m bench.bench_canary --quick    # 1 round each

Needs the TF Serving stand-in's test model (built with TensorFlow into
``$MLINFRA_TEST_CACHE`` by the test suite, or here on first use) and runs ``airflow db
migrate`` into a temporary AIRFLOW_HOME.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "half-plus-two"
SERVED = "half_plus_two"
REQUEST_COUNT = ":tensorflow:serving:request_count"
CANARY_STEPS: list[dict[str, Any]] = [
    {"weight": 20},
    {"pause": "0s"},
    {"weight": 50},
    {"pause": "0s"},
    {"weight": 60},
    {"pause": "0s"},
]


# ---------------------------------------------------------------------- 1. canary overhead


def airflow_environment(home: Path) -> None:
    """A private AIRFLOW_HOME (set before Airflow is imported) with a migrated metadata DB."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        }
    )
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def fleet_files(fleet_file: Path) -> dict[str, Path]:
    """The environment's fleet as two files that differ only in half-plus-two's ``deploy``."""
    import yaml

    fleet = yaml.safe_load(fleet_file.read_text())
    golden = fleet_file.parent / "golden"
    golden.mkdir(exist_ok=True)
    shutil.copy(ROOT / "include" / "golden" / "half_plus_two.json", golden)
    out = {}
    for kind in ("rolling", "canary"):
        for model in fleet["models"]:
            if model["name"] == MODEL:
                model["deploy"] = (
                    {"strategy": "canary", "steps": CANARY_STEPS}
                    if kind == "canary"
                    else {"strategy": "rolling"}
                )
        path = fleet_file.parent / f"fleet-{kind}.yaml"
        path.write_text(yaml.safe_dump(fleet, sort_keys=False))
        out[kind] = path
    return out


def deploy(dag: Any, env: Any, fleets: dict[str, Path], kind: str, version: int) -> float:
    """One ``model_deploy`` run of ``version`` by ``kind``; its wall time (s). Fails loudly."""
    from airflow.utils.session import create_session

    env.monkeypatch.setenv("MLINFRA_FLEET_FILE", str(fleets[kind]))
    start = time.perf_counter()
    dr = dag.test(run_conf={"model": MODEL, "version": version, "image_tag": "2.14.1"})
    wall = time.perf_counter() - start
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}
    went = "canary_conclude" if kind == "canary" else "promote"
    if str(dr.state) != "success" or states.get(went) != "success":
        raise SystemExit(f"{kind} deploy of version {version} did not succeed: {dr.state} {states}")
    env.wait_serving(version, 1)
    return wall


def canary_overhead(rounds: int, tmp: Path) -> str:
    from airflow.dag_processing.dagbag import DagBag

    from tests.deploy.environment import deploy_env, ensure_version, serving_standin
    from tests.support.saved_model import build_half_plus_two, half_plus_two_base_path

    build_half_plus_two(half_plus_two_base_path())  # cached after the first time
    (tmp / "env").mkdir()
    with serving_standin(tmp / "serving") as (serving, base), deploy_env(tmp / "env", serving, base) as env:
        last = 3 + 2 * rounds
        for v in range(1, last + 1):
            ensure_version(base, v)
        fleets = fleet_files(env.fleet_file)
        env.monkeypatch.setenv("MLINFRA_FLEET_FILE", str(fleets["rolling"]))
        env.seed(version=1)
        bag = DagBag(dag_folder=str(ROOT / "dags" / "model_deploy.py"))
        if bag.import_errors:
            raise SystemExit(f"model_deploy does not parse: {bag.import_errors}")
        dag = bag.dags["model_deploy"]
        # Warm-up: imports, channels and the first run of each path.
        deploy(dag, env, fleets, "rolling", 2)
        deploy(dag, env, fleets, "canary", 3)
        version = 4
        walls: dict[str, list[float]] = {"canary": [], "rolling": []}
        ratios = []
        for i in range(rounds):
            times = {}
            for kind in ("canary", "rolling") if i % 2 == 0 else ("rolling", "canary"):
                times[kind] = deploy(dag, env, fleets, kind, version)
                version += 1
            walls["canary"].append(times["canary"])
            walls["rolling"].append(times["rolling"])
            ratios.append(times["canary"] / times["rolling"])
    return (
        f"canary overhead: 3-step canary (weights 20/50/60, pauses 0s) {statistics.median(walls['canary']):.2f} s, "
        f"rolling {statistics.median(walls['rolling']):.2f} s, ratio {statistics.median(ratios):.2f} "
        f"(median of {rounds} paired round{'s' if rounds != 1 else ''}, model_deploy under dag.test on the stand-ins)"
    )


# ---------------------------------------------------------------------- 2. analysis evaluation


def track_samples(at: float, minutes: int = 5, step: float = 15.0) -> list[Any]:
    """Request counters of both tracks, two pods each, as scrape_track_samples labels them."""
    from mlinfra.samples import Sample

    out = []
    versions = {"stable": "1", "canary": "2"}
    n = int(minutes * 60 / step)
    for k in range(n + 1):
        ts = at - (n - k) * step
        for track, version in versions.items():
            for p in range(2):
                pod = f"{MODEL}{'-canary' if track == 'canary' else ''}-{p}"
                labels = {
                    "model_name": SERVED,
                    "model": MODEL,
                    "track": track,
                    "version": version,
                    "pod": pod,
                }
                ok = 20.0 * step * k
                failed = (0.1 if track == "canary" else 0.08) * step * k  # a good canary: 0.5 % vs 0.4 %
                out.append(Sample(REQUEST_COUNT, {**labels, "status": "OK"}, ok, ts))
                out.append(Sample(REQUEST_COUNT, {**labels, "status": "INVALID_ARGUMENT"}, failed, ts))
    return out


def analysis_cost(rounds: int, reps: int, tmp: Path) -> str:
    from mlinfra.config import load_fleet
    from mlinfra.deploy.canary.measure import Round
    from mlinfra.deploy.canary.rollout import MeasureRequest
    from mlinfra.store import LabelMatcher, MetricsStore

    at = float(int(time.time()))
    store = MetricsStore.from_url(f"sqlite:///{tmp / 'analysis.db'}")
    store.create_schema()
    samples = track_samples(at)
    store.write_samples(samples)
    fleet = load_fleet(ROOT / "include" / "fleet.yaml")
    metric = next(m for m in fleet.analyses["serving-health"].metrics if m.name == "error-ratio")
    plan = {
        "model": MODEL,
        "version": 2,
        "namespace": "serving",
        "deployment": MODEL,
        "kubernetes_conn_id": "kubernetes_default",
        "serving_conn_id": "tf_serving_half_plus_two",
    }
    request = MeasureRequest(
        plan=plan,
        run_id="bench",
        step=1,
        template="serving-health",
        weight=50,
        canary_replicas=2,
        stable_replicas=2,
        stable_version=1,
        previous=[],
        now=at,
    )
    rnd = Round(request, fleet)
    rnd.__dict__["store"] = store

    def measure() -> Any:
        return rnd._query_metric(metric, at)

    def raw() -> int:
        n = 0
        for track in ("canary", "stable"):
            matchers = [LabelMatcher("model", "=", MODEL), LabelMatcher("track", "=", track)]
            n += sum(len(points) for _, points in store.query_range(REQUEST_COUNT, matchers, at - 60, at))
        return n

    first = measure()
    if first.verdict == "error" or first.value is None:
        raise SystemExit(f"the measurement did not evaluate: {first}")
    points = raw()
    for _ in range(3):  # warm-up of both
        measure()
        raw()
    per: dict[str, list[float]] = {"measure": [], "raw": []}
    ratios = []
    for i in range(rounds):
        times = {}
        for side in ("measure", "raw") if i % 2 == 0 else ("raw", "measure"):
            fn = measure if side == "measure" else raw
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times[side] = (time.perf_counter() - start) / reps * 1e6
        per["measure"].append(times["measure"])
        per["raw"].append(times["raw"])
        ratios.append(times["measure"] / times["raw"])
    return (
        f"analysis evaluation: one error-ratio measurement (canary and stable through the local engine, judged: "
        f"{first.verdict}, {first.value:.4f} vs stable {first.stable_value:.4f}) "
        f"{statistics.median(per['measure']):.0f} us, raw query_range of the same series (both tracks, 1m, "
        f"{points} points) {statistics.median(per['raw']):.0f} us, ratio {statistics.median(ratios):.1f} "
        f"(median of {rounds} paired round{'s' if rounds != 1 else ''} of {reps}; {len(samples)} samples stored)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of each")
    parser.add_argument("--rounds", type=int, default=3, help="paired deploy rounds (default 3)")
    parser.add_argument("--reps", type=int, default=50, help="measurements per analysis round (default 50)")
    args = parser.parse_args(argv)
    if "airflow" in sys.modules:
        # Airflow read its configuration already (bench/run_all.py): run in a process of its own.
        cmd = [sys.executable, "-m", "bench.bench_canary", *(["--quick"] if args.quick else [])]
        cmd += ["--rounds", str(args.rounds), "--reps", str(args.reps)]
        path = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])
        return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, check=False).returncode
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="bench-canary-") as tmp_name:
        tmp = Path(tmp_name)
        airflow_environment(tmp / "airflow")  # before anything imports Airflow
        deploys = canary_overhead(rounds, tmp)
        analysis = analysis_cost(max(rounds, 3) if not args.quick else 1, args.reps, tmp)
    print(deploys)
    print(analysis)
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    raise SystemExit(main())
