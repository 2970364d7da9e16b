"""mlinfra_deployments: one row per deploy run (model_deploy, model_rollback).

Revision ID: 0002_deployments
Revises: 0001_first_release
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_deployments"
down_revision = "0001_first_release"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False, unique=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=True),
        sa.Column("image", sa.String(512), nullable=True),
        sa.Column("namespace", sa.String(63), nullable=True),
        sa.Column("deployment", sa.String(63), nullable=True),
        sa.Column("replicas", sa.Integer, nullable=True),
        sa.Column("triggered_by", sa.String(250), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("smoke", sa.Text, nullable=True),
        sa.Column("rollback", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("previous", sa.Text, nullable=True),
        sa.Column("applied", sa.Text, nullable=True),
        sa.Column("diff", sa.Text, nullable=True),
    )
    op.create_index("ix_mlinfra_deployments_model_started", "mlinfra_deployments", ["model", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_mlinfra_deployments_model_started", table_name="mlinfra_deployments")
    op.drop_table("mlinfra_deployments")
