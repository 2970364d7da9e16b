"""DAG parse time: dags/ against two baselines, side by side in one run.

* **fair** (the target): DAGs of the same shape as ours, generated from them: the same
  dag ids, schedules, default_args, Params (literal: the same defaults and JSON
  schemas, enums and display names written out), tasks (task ids, operator class
  names and bases, trigger rules, dependencies, mapping, failure callbacks), but
  every task a no-op and no mlinfra import. Target: ours / fair <= 1.5.
* **trivial**: as many one-task DAGs as we have files (for reference).

Each measurement is a fresh interpreter parsing the folder with Airflow's DagBag (what
the dag-processor does), so module caches of one side cannot help another. Each round
measures ours and the fair baseline back to back (which goes first alternates), and the
figure is the median of the rounds' ratios: on a shared machine a busy moment then hits
both sides of one ratio, where the medians of each side could come from different
moments. The quartiles of the ratios say how steady it was.

    PYTHONPATH=.:plugins .venv/bin/python bench/bench_dag_parse.py [--rounds 7] [--show-fair]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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
files = {s.file: s.duration.total_seconds() for s in bag.dagbag_stats}
print(json.dumps({"airflow_import": t1 - t0, "parse": t2 - t1, "dags": len(bag.dags), "files": files}))
"""


# Dumps the shape of every DAG of a folder (run in a child: it imports mlinfra).
SHAPE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.param import NOTSET

def seconds(v):
    return None if v is None else v.total_seconds()

out = []
for d in sorted(DagBag(dag_folder=sys.argv[1]).dags.values(), key=lambda d: d.dag_id):
    tt = d.timetable
    args = {k: (seconds(v) if hasattr(v, "total_seconds") else v) for k, v in d.default_args.items()
            if k != "on_failure_callback"}
    tasks = []
    for t in d.topological_sort():
        cls = t.operator_class if t.is_mapped else type(t)
        tasks.append({
            "task_id": t.task_id,
            "class": cls.__name__,
            "decorated": "Decorated" in cls.__name__,
            "sensor": any(b.__name__ == "BaseSensorOperator" for b in cls.__mro__),
            "mapped": bool(t.is_mapped),
            "trigger_rule": str(t.trigger_rule.value if hasattr(t.trigger_rule, "value") else t.trigger_rule),
            "upstream": sorted(t.upstream_task_ids),
            "callback": bool(t.on_failure_callback),
        })
    out.append({
        "dag_id": d.dag_id,
        "timetable": type(tt).__name__,
        "cron": getattr(tt, "expression", None),
        "default_args": args,
        "callback": "on_failure_callback" in d.default_args,
        "dagrun_timeout": seconds(d.dagrun_timeout),
        "max_active_runs": d.max_active_runs,
        "catchup": d.catchup,
        "tags": sorted(d.tags),
        "doc_md": d.doc_md,
        "params": {k: {"value": None if p.value is NOTSET else p.value, "notset": p.value is NOTSET,
                       "schema": p.schema, "description": p.description} for k, p in d.params.items()},
        "tasks": tasks,
    })
print(json.dumps(out))
"""


def fair_baseline_source(shape: dict[str, Any]) -> str:
    """One literal DAG file of ``shape``: same Params, tasks, classes and edges; no-op tasks."""
    lines = [
        "from datetime import datetime, timedelta",
        "from airflow.sdk import DAG, BaseOperator, BaseSensorOperator, Param, task",
        "from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable",
        "",
        "def on_failure(context):",
        "    return None",
        "",
    ]
    classes = {t["class"]: t["sensor"] for t in shape["tasks"] if not t["decorated"]}
    for name, sensor in sorted(classes.items()):
        if sensor:
            lines += [
                f"class {name}(BaseSensorOperator):",
                "    def poke(self, context):",
                "        return True",
                "",
            ]
        else:
            lines += [
                f"class {name}(BaseOperator):",
                "    def execute(self, context):",
                "        return None",
                "",
            ]
    cron = shape["cron"]
    schedule = {
        "NullTimetable": "None",
        "CronTriggerTimetable": f"CronTriggerTimetable({cron!r}, timezone='UTC')",
        "CronDataIntervalTimetable": f"CronDataIntervalTimetable({cron!r}, timezone='UTC')",
    }[shape["timetable"]]
    default_args = {
        k: (f"timedelta(seconds={v!r})" if k in ("retry_delay", "execution_timeout") else repr(v))
        for k, v in shape["default_args"].items()
    }
    if shape["callback"]:
        default_args["on_failure_callback"] = "on_failure"
    params = []
    for key, p in shape["params"].items():
        default = "" if p["notset"] else f"{p['value']!r}, "
        params.append(f"    {key!r}: Param({default}description={p['description']!r}, **{p['schema']!r}),")
    timeout = f"timedelta(seconds={shape['dagrun_timeout']})" if shape["dagrun_timeout"] else "None"
    lines += [
        "with DAG(",
        f"    dag_id={shape['dag_id']!r},",
        f"    schedule={schedule},",
        "    start_date=datetime(2026, 1, 1),",
        f"    catchup={shape['catchup']!r},",
        f"    max_active_runs={shape['max_active_runs']!r},",
        f"    dagrun_timeout={timeout},",
        f"    tags={shape['tags']!r},",
        f"    doc_md={shape['doc_md']!r},",
        "    default_args={" + ", ".join(f"{k!r}: {v}" for k, v in default_args.items()) + "},",
        "    params={",
        *params,
        "    },",
        "):",
    ]
    ids = {}
    for i, t in enumerate(shape["tasks"]):
        var = f"t{i}"
        ids[t["task_id"]] = var
        kwargs = f"task_id={t['task_id']!r}, trigger_rule={t['trigger_rule']!r}"
        if t["callback"] and not shape["callback"]:
            kwargs += ", on_failure_callback=on_failure"
        upstream = [ids[u] for u in t["upstream"]]
        if t["mapped"]:
            source = upstream[0] if upstream else None
            lines.append(
                f"    {var} = {t['class']}.partial({kwargs}).expand_kwargs({source}.output)"
                if not t["decorated"]
                else f"    {var} = task({kwargs})(lambda **kw: None).expand_kwargs({source}.output)"
            )
        elif t["decorated"]:
            lines += [
                f"    @task({kwargs})",
                f"    def f{i}():",
                "        return None",
                f"    {var} = f{i}().operator",
            ]
        else:
            lines.append(f"    {var} = {t['class']}({kwargs})")
        for u in upstream:
            lines.append(f"    {u} >> {var}")
    return "\n".join(lines) + "\n"


def write_fair_baseline(dags: Path, folder: Path, env: dict[str, str]) -> list[Path]:
    out = subprocess.run(
        [sys.executable, "-c", SHAPE, str(dags)], capture_output=True, text=True, env=env, check=True
    )
    written = []
    for shape in json.loads(out.stdout.strip().splitlines()[-1]):
        path = folder / f"{shape['dag_id']}_fair.py"
        path.write_text(fair_baseline_source(shape))
        written.append(path)
    return written


def measure(folder: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"parsing {folder} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(rounds: int = 7, show_fair: bool = False) -> dict[str, float]:
    dag_files = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    with tempfile.TemporaryDirectory() as tmp:
        trivial = Path(tmp) / "trivial"
        trivial.mkdir()
        for i in range(len(dag_files)):
            (trivial / f"trivial_{i}.py").write_text(TRIVIAL.replace("{i}", str(i)))
        env = {**os.environ, "AIRFLOW_HOME": str(Path(tmp) / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        # Bytecode as a deployment has it: with PYTHONDONTWRITEBYTECODE (set in some shells
        # and CI images) every run compiled mlinfra and the DAG files from source while
        # Airflow's own modules came precompiled: ~40 ms of "parse" that no dag-processor pays.
        # The cache goes to a temporary folder (the warm-up runs fill it), not the source tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        fair = Path(tmp) / "fair"
        fair.mkdir()
        for path in write_fair_baseline(ROOT / "dags", fair, env):
            if show_fair:
                print(f"----- {path.name}\n{path.read_text()}")
        sides = {"ours": ROOT / "dags", "fair": fair, "trivial": trivial}
        times: dict[str, list[float]] = {name: [] for name in sides}
        ratios: list[float] = []
        per_file: dict[str, list[float]] = {}
        for _ in range(2):
            for folder in sides.values():
                measure(folder, env)  # warm the OS page cache and the bytecode cache of every side
        for k in range(rounds):
            order = ["ours", "fair", "trivial"] if k % 2 == 0 else ["fair", "ours", "trivial"]
            for name in order:
                folder = sides[name]
                got = measure(folder, env)
                if name == "fair" and got["dags"] != len(dag_files):
                    raise RuntimeError(f"the fair baseline has {got['dags']} DAGs, ours {len(dag_files)}")
                times[name].append(got["parse"])
                for file, seconds in got["files"].items():
                    per_file.setdefault(f"{name}:{file}", []).append(seconds)
            ratios.append(times["ours"][-1] / times["fair"][-1])
    result: dict[str, float] = {"dag_files": len(dag_files)}
    for name in sides:
        result[f"{name}_median_s"] = statistics.median(times[name])
    result["ratio"] = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    result["ratio_q1"], result["ratio_q3"] = quartiles[0], quartiles[2]
    result["ratio_of_medians"] = result["ours_median_s"] / result["fair_median_s"]
    for key in sorted(k for k in per_file if not k.startswith("trivial:")):
        print(
            f"  {key:<40} {statistics.median(per_file[key]) * 1000:6.1f} ms (in file order: the first pays shared imports)"
        )
    result["ratio_trivial"] = result["ours_median_s"] / result["trivial_median_s"]
    print(
        f"DAG parse: {len(dag_files)} files, ours {result['ours_median_s'] * 1000:.1f} ms vs the fair baseline "
        f"(same shape, no-op tasks, literal forms) {result['fair_median_s'] * 1000:.1f} ms -> ratio "
        f"{result['ratio']:.2f} (median of {rounds} side-by-side rounds' ratios; quartiles "
        f"{result['ratio_q1']:.2f}-{result['ratio_q3']:.2f}; target <= 1.5); vs {len(dag_files)} trivial DAGs "
        f"{result['trivial_median_s'] * 1000:.1f} ms -> {result['ratio_trivial']:.2f} (medians)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--show-fair", action="store_true", help="print the generated baseline files")
    args = parser.parse_args()
    main(args.rounds, args.show_fair)
