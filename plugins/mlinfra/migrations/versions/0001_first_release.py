"""The first release's store (commit ca27896): series, samples, sweeps, staging.

Revision ID: 0001_first_release
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_first_release"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(40), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
    )
    op.create_index("ix_mlinfra_series_name", "mlinfra_series", ["name"])
    op.create_table(
        "mlinfra_samples",
        sa.Column(
            "series_id",
            sa.Integer,
            sa.ForeignKey("mlinfra_series.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Double, nullable=True),
    )
    op.create_index("ix_mlinfra_samples_ts", "mlinfra_samples", ["ts"])
    op.create_table(
        "mlinfra_sweeps",
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
    )
    op.create_table(
        "mlinfra_staging",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("collector", sa.String(64), primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mlinfra_staging")
    op.drop_table("mlinfra_sweeps")
    op.drop_index("ix_mlinfra_samples_ts", table_name="mlinfra_samples")
    op.drop_table("mlinfra_samples")
    op.drop_index("ix_mlinfra_series_name", table_name="mlinfra_series")
    op.drop_table("mlinfra_series")
