"""Why an alert fired: each alert transition with the values behind it.

Revision ID: 0007_alert_explanations
Revises: 0006_samples_without_rowid
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_alert_explanations"
down_revision = "0006_samples_without_rowid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_alert_explanations",
        sa.Column("file", sa.String(255), primary_key=True),
        sa.Column("group", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(40), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("alert", sa.String(255), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
    )
    op.create_index("ix_mlinfra_alert_explanations_alert", "mlinfra_alert_explanations", ["alert"])


def downgrade() -> None:
    op.drop_index("ix_mlinfra_alert_explanations_alert", table_name="mlinfra_alert_explanations")
    op.drop_table("mlinfra_alert_explanations")
