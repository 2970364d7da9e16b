"""SQLite: the samples table WITHOUT ROWID, so the (series_id, ts) key is the table itself.

A range read then finds the values in the key's pages instead of looking each row
up through a separate rowid index. SQLite cannot change this in place: the table
is copied into a new one and renamed. PostgreSQL has no rowid: nothing to do.

Revision ID: 0006_samples_without_rowid
Revises: 0005_scale_records
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_samples_without_rowid"
down_revision = "0005_scale_records"
branch_labels = None
depends_on = None


def _rebuild(*, with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "_mlinfra_samples_new",
        sa.Column(
            "series_id",
            sa.Integer,
            sa.ForeignKey("mlinfra_series.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Double, nullable=True),
        sqlite_with_rowid=with_rowid,
    )
    op.execute(
        "INSERT INTO _mlinfra_samples_new (series_id, ts, value) SELECT series_id, ts, value FROM mlinfra_samples"
    )
    op.drop_index("ix_mlinfra_samples_ts", table_name="mlinfra_samples")
    op.drop_table("mlinfra_samples")
    op.rename_table("_mlinfra_samples_new", "mlinfra_samples")
    op.create_index("ix_mlinfra_samples_ts", "mlinfra_samples", ["ts"])


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
