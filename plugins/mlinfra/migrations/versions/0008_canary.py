"""Canary deploys: the run's persisted step position and its analysis measurements.

Revision ID: 0008_canary
Revises: 0007_alert_explanations
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_canary"
down_revision = "0007_alert_explanations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_canary_runs",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("stable_version", sa.BigInteger, nullable=True),
        sa.Column("canary_version", sa.BigInteger, nullable=True),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("entered", sa.Boolean, nullable=False),
        sa.Column("pause_until", sa.Float, nullable=True),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("canary_replicas", sa.Integer, nullable=False),
        sa.Column("stable_replicas", sa.Integer, nullable=True),
        sa.Column("gate", sa.Integer, nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_mlinfra_canary_runs_model_started", "mlinfra_canary_runs", ["model", "started_at"])
    op.create_table(
        "mlinfra_canary_measurements",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("metric", sa.String(255), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("step_kind", sa.String(16), nullable=False),
        sa.Column("weight", sa.Integer, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("stable_value", sa.Float, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mlinfra_canary_measurements")
    op.drop_index("ix_mlinfra_canary_runs_model_started", table_name="mlinfra_canary_runs")
    op.drop_table("mlinfra_canary_runs")
