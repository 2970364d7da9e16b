"""mlinfra_reports: one summary row per report interval (metrics_report).

Revision ID: 0003_reports
Revises: 0002_deployments
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_reports"
down_revision = "0002_deployments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_reports",
        sa.Column("interval_start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("interval_end", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mlinfra_reports")
