"""Every module that defines tables on :data:`mlinfra.store.metadata`.

Each module defines its tables once and serves their queries. The migrations
(:mod:`mlinfra.migrations`) create and change the tables; this list gives them
today's definitions to compare with (``target_metadata``, autogenerate, the tests).
"""

from __future__ import annotations

import importlib

TABLE_MODULES: tuple[str, ...] = (
    "mlinfra.reports.records",
    "mlinfra.rules.state",
    "mlinfra.deploy.records",
    "mlinfra.scaling.records",
)


def register_all_tables() -> None:
    for name in TABLE_MODULES:
        importlib.import_module(name)
