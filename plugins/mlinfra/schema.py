"""Every module that defines tables on :data:`mlinfra.store.metadata`.

:meth:`MetricsStore.create_schema` imports these first, so one ``create_all`` creates
every table of the project whichever feature touched the store first.
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
