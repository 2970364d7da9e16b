"""Alembic environment of the mlinfra store: runs on the connection :mod:`mlinfra.migrations` hands in.

Never run with a connection of its own: :func:`mlinfra.migrations.upgrade` opens
the transaction, takes the migration lock and passes the connection in
``config.attributes["connection"]``, so every revision runs inside that one
locked transaction.
"""

from __future__ import annotations

from alembic import context

from mlinfra.migrations import VERSION_TABLE
from mlinfra.schema import target_metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the mlinfra migrations run through `mlinfra store upgrade` (mlinfra.migrations.upgrade), "
        "which passes a locked connection; not through the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    # Its own version table: the store may live in Airflow's database, next to Airflow's alembic_version.
    version_table=VERSION_TABLE,
    # SQLite alters a table by copying it; batch mode does that for revisions that need it.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
