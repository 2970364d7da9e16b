"""The scaling audit: scale events and every sweep's recommendations.

Revision ID: 0005_scale_records
Revises: 0004_alert_state
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_scale_records"
down_revision = "0004_alert_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_scale_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=True),
        sa.Column("deployment", sa.String(63), nullable=True),
        sa.Column("from_replicas", sa.Integer, nullable=True),
        sa.Column("to_replicas", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("trigger", sa.String(16), nullable=True),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("decision", sa.Text, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("run_id", "model", name="uq_mlinfra_scale_events_run_model"),
    )
    op.create_index("ix_mlinfra_scale_events_model_ts", "mlinfra_scale_events", ["model", "ts"])
    op.create_index("ix_mlinfra_scale_events_ts", "mlinfra_scale_events", ["ts"])
    op.create_table(
        "mlinfra_scale_recommendations",
        sa.Column("model", sa.String(255), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("namespace", sa.String(63), nullable=True),
        sa.Column("deployment", sa.String(63), nullable=True),
        sa.Column("current", sa.Integer, nullable=True),
        sa.Column("recommendation", sa.Integer, nullable=True),
        sa.Column("desired", sa.Integer, nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("decision", sa.Text, nullable=True),
    )
    op.create_index("ix_mlinfra_scale_recommendations_ts", "mlinfra_scale_recommendations", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_mlinfra_scale_recommendations_ts", table_name="mlinfra_scale_recommendations")
    op.drop_table("mlinfra_scale_recommendations")
    op.drop_index("ix_mlinfra_scale_events_ts", table_name="mlinfra_scale_events")
    op.drop_index("ix_mlinfra_scale_events_model_ts", table_name="mlinfra_scale_events")
    op.drop_table("mlinfra_scale_events")
