"""Write the bytecode of every module Airflow's processes import at start-up: `make setup` runs it.

uv installs without compiling (pip compiles everything, TensorFlow included, which is
slow), and where ``PYTHONDONTWRITEBYTECODE`` is set Python never writes a ``.pyc`` on
import: then every start of ``airflow standalone`` compiles Airflow's ~1,500 source
files again, once in each of its four processes, on every start. This imports what
those processes import (and this project's DAG-side modules), then compiles exactly the
files that were loaded, in parallel: a few seconds once, instead of every start.

    .venv/bin/python scripts/compile_startup.py
"""

from __future__ import annotations

import compileall
import importlib
import os
import sys
import sysconfig
import time
from concurrent.futures import ProcessPoolExecutor

# What `airflow standalone` starts (api-server, scheduler, triggerer, dag-processor) and what
# a task process runs, plus this project's plugin and the modules its DAG files import.
ENTRY_MODULES = (
    "airflow.cli.cli_parser",
    "airflow.cli.commands.standalone_command",
    "airflow.api_fastapi.app",
    "airflow.api_fastapi.core_api.app",
    "airflow.api_fastapi.execution_api.app",
    "airflow.jobs.scheduler_job_runner",
    "airflow.jobs.triggerer_job_runner",
    "airflow.dag_processing.manager",
    "airflow.dag_processing.processor",
    "airflow.executors.local_executor",
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.supervisor",
    "airflow.providers.standard.operators.python",
    "airflow.providers.cncf.kubernetes.hooks.kubernetes",
    "mlinfra.plugin",
    "mlinfra.ui.fleet",
    "mlinfra.sweep",
)


def _compile(path: str) -> bool:
    return bool(compileall.compile_file(path, quiet=2))


def main() -> int:
    started = time.monotonic()
    os.environ.setdefault("AIRFLOW_HOME", os.path.join(os.getcwd(), ".airflow"))
    # Run by the shared environment's python (scripts/install_env.sh), where this checkout is
    # not installed: its modules are imported from plugins/ to find what they load.
    sys.path.insert(0, os.path.join(os.getcwd(), "plugins"))
    missing = []
    for name in ENTRY_MODULES:
        try:
            importlib.import_module(name)
        except Exception as e:  # an optional module: compile what did load
            missing.append(f"{name} ({type(e).__name__})")
    site = sysconfig.get_paths()["purelib"]
    files = sorted(
        {
            f
            for m in list(sys.modules.values())
            if (f := getattr(m, "__file__", None)) and f.endswith(".py") and f.startswith(site)
        }
    )
    with ProcessPoolExecutor() as pool:
        ok = sum(pool.map(_compile, files, chunksize=64))
    print(
        f"setup: compiled the {ok} modules Airflow loads at start-up in {time.monotonic() - started:.0f}s"
        + (f" (not importable here: {', '.join(missing)})" if missing else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
