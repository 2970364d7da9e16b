"""Every module that defines tables on :data:`mlinfra.store.metadata`.

Each module defines its tables once and serves their queries. The migrations
(:mod:`mlinfra.migrations`) create and change the tables; this list gives them
today's definitions to compare with (``target_metadata``, autogenerate, the tests).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

TABLE_MODULES: tuple[str, ...] = (
    "mlinfra.reports.records",
    "mlinfra.rules.state",
    "mlinfra.deploy.records",
    "mlinfra.scaling.records",
    "mlinfra.deploy.canary.records",
)


def register_all_tables() -> None:
    for name in TABLE_MODULES:
        importlib.import_module(name)


def target_metadata() -> sa.MetaData:
    """Today's tables, as their owners define them (what the migrations must arrive at)."""
    from mlinfra.store import metadata

    register_all_tables()
    return metadata
