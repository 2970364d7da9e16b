"""``mlinfra_deployments``: one row per deploy run, for the reports and the UI.

Keyed by the Airflow run id, so every task of a run updates the same row and a
retried task never duplicates it::

    >>> records = DeploymentRecords(MetricsStore.from_url("sqlite:///:memory:"))
    >>> records.start("manual__1", model="half-plus-two", version=2, image="tensorflow/serving:2.14.1",
    ...               triggered_by="admin")
    >>> records.finish("manual__1", "succeeded")
    >>> records.get("manual__1").outcome
    'succeeded'

``outcome`` is NULL while the deploy runs, then one of :data:`OUTCOMES`. ``reason``
keeps the first failure (later failures, e.g. of a rollback, go into ``rollback``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlinfra.store import MetricsStore, metadata
from mlinfra.store_engine import dialect_insert
from mlinfra.store_values import as_utc

# "partial": the apply or the rollback failed part-way and the rollback could not restore
# the previous spec; the record's ``applied.changed`` and ``rollback`` say what the cluster has.
# "aborted": a canary was stopped (analysis, approval, its rollout); the stable was never written,
# or, when the promotion had begun, its kept spec re-applied (``rollback`` says which).
OUTCOMES = ("succeeded", "rolled_back", "failed", "partial", "dry_run", "aborted")

deployments_table = sa.Table(
    "mlinfra_deployments",
    metadata,
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
    sa.Column("smoke", sa.Text, nullable=True),  # JSON: SmokeReport.to_dict()
    sa.Column("rollback", sa.Text, nullable=True),  # JSON: what the rollback did
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("previous", sa.Text, nullable=True),  # JSON: the live objects before the apply
    sa.Column("applied", sa.Text, nullable=True),  # JSON: what the apply changed
    sa.Column("diff", sa.Text, nullable=True),
    sa.Index("ix_mlinfra_deployments_model_started", "model", "started_at"),
)

_JSON_FIELDS = ("smoke", "rollback", "previous", "applied")


@dataclass(frozen=True)
class DeploymentRecord:
    run_id: str
    model: str
    version: int | None
    image: str | None
    namespace: str | None
    deployment: str | None
    replicas: int | None
    triggered_by: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    smoke: Any
    rollback: Any
    reason: str | None
    previous: Any
    applied: Any
    diff: str | None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("started_at", "ended_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


class DeploymentRecords:
    """Reads and writes of ``mlinfra_deployments`` over a :class:`MetricsStore`."""

    def __init__(self, store: MetricsStore):
        self.store = store

    @classmethod
    def from_connection(cls, conn_id: str = "mlinfra_store") -> DeploymentRecords:
        return cls(MetricsStore.from_connection(conn_id))

    def start(
        self,
        run_id: str,
        *,
        model: str,
        version: int | None = None,
        image: str | None = None,
        namespace: str | None = None,
        deployment: str | None = None,
        replicas: int | None = None,
        triggered_by: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """Create the run's row, or reset it when the run is cleared and starts again.

        ``started_at`` defaults to now (an import of past deploys passes their own).
        """
        row = {
            "run_id": run_id,
            "model": model,
            "version": version,
            "image": image,
            "namespace": namespace,
            "deployment": deployment,
            "replicas": replicas,
            "triggered_by": triggered_by,
            "started_at": started_at or datetime.now(UTC),
            "ended_at": None,
            "outcome": None,
            "smoke": None,
            "rollback": None,
            "reason": None,
            "previous": None,
            "applied": None,
            "diff": None,
        }
        with self.store.begin() as conn:
            stmt = dialect_insert(conn)(deployments_table).values(row)
            stmt = stmt.on_conflict_do_update(
                index_elements=["run_id"], set_={k: v for k, v in row.items() if k != "run_id"}
            )
            conn.execute(stmt)

    def update(self, run_id: str, **fields: Any) -> None:
        """Set columns of the run's row (JSON columns take Python values)."""
        unknown = set(fields) - set(deployments_table.c.keys())
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)} of mlinfra_deployments")
        values = {k: (_dumps(v) if k in _JSON_FIELDS else v) for k, v in fields.items()}
        with self.store.begin() as conn:
            conn.execute(
                sa.update(deployments_table).where(deployments_table.c.run_id == run_id).values(values)
            )

    def set_reason(self, run_id: str, reason: str) -> None:
        """Keep the first failure's reason: the one that started a rollback."""
        with self.store.begin() as conn:
            conn.execute(
                sa.update(deployments_table)
                .where(deployments_table.c.run_id == run_id, deployments_table.c.reason.is_(None))
                .values(reason=reason)
            )

    def finish(
        self,
        run_id: str,
        outcome: str,
        reason: str | None = None,
        *,
        ended_at: datetime | None = None,
        **fields: Any,
    ) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        if reason is not None:
            self.set_reason(run_id, reason)
        self.update(run_id, outcome=outcome, ended_at=ended_at or datetime.now(UTC), **fields)

    def get(self, run_id: str) -> DeploymentRecord | None:
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(deployments_table).where(deployments_table.c.run_id == run_id)
            ).first()
        return _record(row._mapping) if row is not None else None

    def history(self, model: str | None = None, *, limit: int = 50) -> list[DeploymentRecord]:
        """The latest deploys, newest first (of one model, or all)."""
        stmt = sa.select(deployments_table).order_by(deployments_table.c.started_at.desc()).limit(limit)
        if model is not None:
            stmt = stmt.where(deployments_table.c.model == model)
        with self.store.begin() as conn:
            return [_record(r._mapping) for r in conn.execute(stmt)]

    def started_between(self, start: float, end: float) -> list[DeploymentRecord]:
        """Deploys started in ``[start, end)`` (epoch seconds), oldest first (the daily report's)."""
        t = deployments_table
        stmt = (
            sa.select(t)
            .where(
                t.c.started_at >= datetime.fromtimestamp(start, UTC),
                t.c.started_at < datetime.fromtimestamp(end, UTC),
            )
            .order_by(t.c.started_at, t.c.model, t.c.run_id)
        )
        with self.store.begin() as conn:
            return [_record(r._mapping) for r in conn.execute(stmt)]

    def of_deployment(
        self, namespace: str, deployment: str, *, models: Iterable[str] = (), limit: int = 200
    ) -> list[DeploymentRecord]:
        """Deploys of one Kubernetes Deployment, newest first; rows without namespace/deployment
        (older rows) are matched through ``models``, the fleet's models of that Deployment."""
        t = deployments_table
        names = list(models)
        cond = sa.and_(t.c.namespace == namespace, t.c.deployment == deployment)
        if names:
            cond = sa.or_(cond, sa.and_(t.c.namespace.is_(None), t.c.model.in_(names)))
        stmt = sa.select(t).where(cond).order_by(t.c.started_at.desc()).limit(limit)
        with self.store.begin() as conn:
            return [_record(r._mapping) for r in conn.execute(stmt)]

    def succeeded(self, model: str, *, limit: int = 200) -> list[DeploymentRecord]:
        """The model's successful deploys (manual rollbacks included), newest first."""
        stmt = (
            sa.select(deployments_table)
            .where(deployments_table.c.model == model, deployments_table.c.outcome == "succeeded")
            .order_by(deployments_table.c.started_at.desc())
            .limit(limit)
        )
        with self.store.begin() as conn:
            return [_record(r._mapping) for r in conn.execute(stmt)]


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _record(row: Any) -> DeploymentRecord:
    data = {k: row[k] for k in DeploymentRecord.__dataclass_fields__}
    for key in _JSON_FIELDS:
        data[key] = json.loads(data[key]) if data[key] is not None else None
    data["started_at"], data["ended_at"] = as_utc(data["started_at"]), as_utc(data["ended_at"])
    return DeploymentRecord(**data)
