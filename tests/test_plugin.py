"""Airflow loads the mlinfra plugin, and nothing of the package leaks as a top-level module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_plugin_loads_without_shadowing_real_packages(tmp_path: Path) -> None:
    script = """
import json, sys
from airflow import plugins_manager as pm
plugins, errors = pm._get_plugins()
import kubernetes
print(json.dumps({
    "plugins": sorted(p.name for p in plugins),
    "errors": errors,
    # Airflow imports plugin files as top-level modules named after the file.
    "leaked": sorted(m for m in ("gpu", "host", "store", "config", "sweep", "serving") if m in sys.modules),
    "kubernetes_is_package": hasattr(kubernetes, "__path__"),
}))
"""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "mlinfra" in result["plugins"]
    assert result["errors"] == {}
    assert result["leaked"] == []
    assert result["kubernetes_is_package"] is True
