"""Scale recommendations keep their policy once, by digest, not in every row.

Revision ID: 0009_scale_policies
Revises: 0008_canary
Create Date: 2026-12-02

Rows written before keep their whole decision (policy included) in ``decision`` and a
NULL ``policy_digest``; readers take the policy from either.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009_scale_policies"
down_revision = "0008_canary"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlinfra_scale_policies",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
    )
    op.add_column("mlinfra_scale_recommendations", sa.Column("policy_digest", sa.String(64), nullable=True))
    op.create_index(
        "ix_mlinfra_scale_recommendations_policy", "mlinfra_scale_recommendations", ["policy_digest"]
    )


# The decision fields 0009 keeps in columns (name in the decision -> column). A copy of
# mlinfra.scaling.records._COLUMNS as of 0009, on purpose: a migration must not change
# when the module does.
_COLUMNS = {
    "model": "model",
    "namespace": "namespace",
    "deployment": "deployment",
    "from_replicas": "current",
    "to_replicas": "desired",
    "recommendation": "recommendation",
    "action": "action",
    "reason": "reason",
}


def downgrade() -> None:
    # 0008 keeps the whole decision in ``decision``: put the columns and the policy back in.
    conn = op.get_bind()
    recs = sa.table(
        "mlinfra_scale_recommendations",
        sa.column("ts", sa.BigInteger),
        sa.column("decision", sa.Text),
        sa.column("policy_digest", sa.String),
        *(sa.column(c) for c in _COLUMNS.values()),
    )
    policies = sa.table(
        "mlinfra_scale_policies", sa.column("digest", sa.String), sa.column("policy", sa.Text)
    )
    batch_of = (
        sa.select(recs, policies.c.policy)
        .select_from(recs.outerjoin(policies, policies.c.digest == recs.c.policy_digest))
        .where(recs.c.policy_digest.is_not(None))
        .limit(5000)
    )
    rewrite = (
        sa.update(recs)
        .where(recs.c.model == sa.bindparam("m"), recs.c.ts == sa.bindparam("t"))
        .values(decision=sa.bindparam("d"), policy_digest=None)
    )
    while rows := conn.execute(batch_of).mappings().all():  # a batch at a time: done rows lose their digest
        conn.execute(rewrite, [_whole_decision(r) for r in rows])
    op.drop_index("ix_mlinfra_scale_recommendations_policy", table_name="mlinfra_scale_recommendations")
    with op.batch_alter_table("mlinfra_scale_recommendations") as batch:
        batch.drop_column("policy_digest")
    op.drop_table("mlinfra_scale_policies")


def _whole_decision(r: Any) -> dict[str, Any]:
    decision = json.loads(r["decision"]) if r["decision"] else {}
    decision.update({name: r[column] for name, column in _COLUMNS.items()})
    decision["policy"] = json.loads(r["policy"]) if r["policy"] else {}
    return {"m": r["model"], "t": r["ts"], "d": json.dumps(decision, sort_keys=True, default=str)}
