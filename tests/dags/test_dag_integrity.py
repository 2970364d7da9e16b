"""Every DAG file imports cleanly, is well-formed, and is cheap to parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
HEAVY = ("tensorflow", "kubernetes", "pynvml", "matplotlib", "scipy")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports(dagbag) -> None:
    assert dagbag.import_errors == {}
    files = sorted(p.name for p in DAGS.glob("*.py") if not p.name.startswith("_"))
    loaded = sorted({Path(d.fileloc).name for d in dagbag.dags.values()})
    assert loaded == files, "every file in dags/ defines at least one DAG"


@pytest.mark.parametrize("dag_id", ["infra_health_sweep", "model_deploy", "model_scale"])
def test_expected_dags_exist(dagbag, dag_id: str) -> None:
    assert dag_id in dagbag.dags


def test_dags_have_tags_owner_retries_and_docs(dagbag) -> None:
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not dag.doc_md:
            problems.append(f"{dag_id}: no doc_md")
        for t in dag.tasks:
            if t.owner in ("", "airflow"):
                problems.append(f"{dag_id}.{t.task_id}: owner is {t.owner!r}")
            if (t.retries or 0) < 2:
                problems.append(f"{dag_id}.{t.task_id}: retries={t.retries}")
    assert problems == []


@pytest.mark.slow
def test_parsing_dags_leaves_heavy_modules_unimported(tmp_path) -> None:
    # A fresh interpreter, so nothing this test process imported can hide a heavy import.
    script = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})
heavy = sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in {HEAVY!r}}})
print(json.dumps({{"dags": sorted(bag.dags), "errors": list(bag.import_errors), "heavy": heavy}}))
"""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert "infra_health_sweep" in result["dags"]
    assert result["heavy"] == []
