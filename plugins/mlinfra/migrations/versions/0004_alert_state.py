"""Alert state: current alerts, their transitions, one snapshot per rule group evaluation.

Revision ID: 0004_alert_state
Revises: 0003_reports
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_alert_state"
down_revision = "0003_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_alerts",
        sa.Column("file", sa.String(255), primary_key=True),
        sa.Column("group", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(40), primary_key=True),
        sa.Column("alert", sa.String(255), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_at", sa.BigInteger, nullable=False),
        sa.Column("fired_at", sa.BigInteger, nullable=True),
        sa.Column("resolved_at", sa.BigInteger, nullable=True),
        sa.Column("keep_firing_since", sa.BigInteger, nullable=True),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("eval_ts", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=True),
    )
    op.create_index("ix_mlinfra_alerts_alert", "mlinfra_alerts", ["alert"])
    op.create_table(
        "mlinfra_alert_transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("group", sa.String(255), nullable=False),
        sa.Column("alert", sa.String(255), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(40), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("active_at", sa.BigInteger, nullable=True),
        sa.Column("run_id", sa.String(250), nullable=True),
    )
    op.create_index("ix_mlinfra_alert_transitions_ts", "mlinfra_alert_transitions", ["ts"])
    op.create_index(
        "ix_mlinfra_alert_transitions_group_ts", "mlinfra_alert_transitions", ["file", "group", "ts"]
    )
    op.create_table(
        "mlinfra_rule_group_evaluations",
        sa.Column("file", sa.String(255), primary_key=True),
        sa.Column("group", sa.String(255), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("alerts", sa.Text, nullable=False),
        sa.Column("errors", sa.Text, nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mlinfra_rule_group_evaluations")
    op.drop_index("ix_mlinfra_alert_transitions_group_ts", table_name="mlinfra_alert_transitions")
    op.drop_index("ix_mlinfra_alert_transitions_ts", table_name="mlinfra_alert_transitions")
    op.drop_table("mlinfra_alert_transitions")
    op.drop_index("ix_mlinfra_alerts_alert", table_name="mlinfra_alerts")
    op.drop_table("mlinfra_alerts")
