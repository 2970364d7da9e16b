"""The test environment, set before anything imports Airflow, for every test and doctest.

This file is at the repository root so that it applies to both ``tests/`` and the
docstring examples collected from ``plugins/`` (``--doctest-modules``); the fixtures
live in ``tests/conftest.py``. Unit tests and doctests need no network and no Airflow
database; integration tests (marked ``integration``) start real servers from
``tests/support`` and skip, or under ``MLINFRA_REQUIRE_INTEGRATION=1`` fail, when a
component cannot be found.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# A private AIRFLOW_HOME so tests never touch the developer's `make run` instance.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow-test"))
os.environ.update(
    {
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "MLINFRA_FLEET_FILE": str(ROOT / "include" / "fleet.yaml"),
    }
)
os.environ.setdefault("MLINFRA_TEST_CACHE", str(ROOT / ".pytest_cache" / "mlinfra"))

# Alembic runs env.py itself, inside a migration context; importing it for doctests would fail.
collect_ignore = ["plugins/mlinfra/migrations/env.py"]
