"""The scaling audit in the store: scale events and the recommendation history.

* ``mlinfra_scale_events``: one row per scale action (or dry run, or refused action)
  of a run and model: time, model, namespace, deployment, from -> to, reason,
  trigger (``metric`` | ``alert`` | ``manual`` | ``bounds``), run id, dry run, the
  whole decision as JSON, and the ``outcome`` the operator saw (:data:`OUTCOMES`).
  Keyed by (run id, model), so a retried task updates its row instead of adding one.
* ``mlinfra_scale_recommendations``: every decision of every sweep, including "no
  change" and "skipped", with its raw recommendation; keyed by (model, time), so a
  re-run of a sweep replaces its own rows. The scale-down stabilization window reads
  the recommendations from here. One row per model per sweep is the store's largest
  writer after the samples, so a row holds each field once: the columns, a ``decision``
  JSON of the rest (inputs, steps, trigger), and the policy by digest.
* ``mlinfra_scale_policies``: each policy a recommendation was decided under, once
  (digest -> JSON); :meth:`ScaleRecords.decisions` puts it back into the decision.

::

    >>> from mlinfra.scaling.decision import ScaleDecision
    >>> records = ScaleRecords(MetricsStore.from_url("sqlite:///:memory:"))
    >>> t = 1_763_640_000.0
    >>> decision = ScaleDecision("half-plus-two", t - 60, "scale", "p95 above target", 2, 4, recommendation=4)
    >>> records.save_decisions([decision], run_id="scheduled__2026-11-20T12:00:00+00:00")
    1
    >>> records.history(["half-plus-two"], since=t - 300, until=t)
    {'half-plus-two': [Recommendation(ts=..., replicas=4)]}
    >>> records.record_event(run_id="manual__1", model="half-plus-two", namespace="serving",
    ...     deployment="half-plus-two", from_replicas=1, to_replicas=2, reason="launch",
    ...     trigger="manual", dry_run=False, ts=t, outcome="patched")
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mlinfra.scaling.decision import Recommendation, ScaleDecision
from mlinfra.store import MetricsStore, metadata
from mlinfra.store_engine import dialect_insert
from mlinfra.store_values import as_utc, chunks, to_ms

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# What the operator saw: patched (the count is set: waiting, or what came after failed),
# available (the new count is up), dry_run (recorded, not patched), timeout, failed (the
# API refused), superseded (the count changed under us), skipped (another autoscaler owns
# it), unchanged (already there).
OUTCOMES = ("patched", "available", "dry_run", "timeout", "failed", "superseded", "skipped", "unchanged")
# Outcomes that start a cooldown: the replica count was changed (or, in a dry run of
# the sweep, would have been).
ACTION_OUTCOMES = ("patched", "available", "timeout")

scale_events_table = sa.Table(
    "mlinfra_scale_events",
    metadata,
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
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("decision", sa.Text, nullable=True),  # JSON: ScaleDecision.to_dict() (+ request for manual)
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("run_id", "model", name="uq_mlinfra_scale_events_run_model"),
    sa.Index("ix_mlinfra_scale_events_model_ts", "model", "ts"),
    sa.Index("ix_mlinfra_scale_events_ts", "ts"),
)

scale_recommendations_table = sa.Table(
    "mlinfra_scale_recommendations",
    metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("namespace", sa.String(63), nullable=True),
    sa.Column("deployment", sa.String(63), nullable=True),
    sa.Column("current", sa.Integer, nullable=True),
    sa.Column("recommendation", sa.Integer, nullable=True),  # raw; NULL: no signal
    sa.Column("desired", sa.Integer, nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(250), nullable=True),
    # JSON: the decision's fields that have no column (rows before 0009: the whole decision).
    sa.Column("decision", sa.Text, nullable=True),
    sa.Column("policy_digest", sa.String(64), nullable=True),  # -> mlinfra_scale_policies
    sa.Index("ix_mlinfra_scale_recommendations_ts", "ts"),
    sa.Index("ix_mlinfra_scale_recommendations_policy", "policy_digest"),
)

scale_policies_table = sa.Table(
    "mlinfra_scale_policies",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("policy", sa.Text, nullable=False),  # JSON: ScalingPolicy.model_dump(mode="json")
    sa.Column("first_seen", sa.BigInteger, nullable=False),  # ms; retention prunes unused ones
)

# A recommendation's fields kept in columns (name in the decision -> column); the rest is JSON.
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


_policy_json_cache: dict[int, tuple[dict[str, Any], str, str]] = {}
_NO_POLICY = (hashlib.sha256(b"{}").hexdigest()[:32], "{}")


def _policy_json(policy: dict[str, Any]) -> tuple[str, str]:
    """(digest, JSON) of a decision's policy dict; decisions share one dict per policy, so each
    policy is encoded once per process (:func:`mlinfra.scaling.decision._policy_dict`)."""
    if not policy:  # skipped decisions: each has its own empty dict
        return _NO_POLICY
    hit = _policy_json_cache.get(id(policy))
    if hit is None or hit[0] is not policy:
        if len(_policy_json_cache) > 10_000:
            _policy_json_cache.clear()
        text = json.dumps(policy, sort_keys=True, default=str)
        hit = _policy_json_cache[id(policy)] = (policy, hashlib.sha256(text.encode()).hexdigest()[:32], text)
    return hit[1], hit[2]


def _delete_unnamed_policies(conn: Connection, among: sa.ColumnElement[bool]) -> None:
    """Delete the policies matching ``among`` that no recommendation names."""
    t, p = scale_recommendations_table, scale_policies_table
    named = sa.select(t.c.policy_digest).where(t.c.policy_digest == p.c.digest).exists()
    conn.execute(sa.delete(p).where(among, ~named))


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """One row of ``mlinfra_scale_events``: ``ts`` in epoch seconds, ``decision`` parsed."""

    ts: float
    model: str
    namespace: str | None
    deployment: str | None
    from_replicas: int | None
    to_replicas: int | None
    reason: str | None
    trigger: str | None
    run_id: str | None
    dry_run: bool
    outcome: str | None
    message: str | None
    decision: dict[str, Any] | None
    id: int = 0
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class ScaleRecords:
    """Scale events and recommendations over a :class:`MetricsStore`."""

    def __init__(self, store: MetricsStore):
        self.store = store

    @classmethod
    def from_connection(cls, conn_id: str = "mlinfra_store") -> ScaleRecords:
        return cls(MetricsStore.from_connection(conn_id))

    # ------------------------------------------------------------------ recommendations

    def save_decisions(self, decisions: Sequence[ScaleDecision], *, run_id: str | None = None) -> int:
        """Keep every decision of a sweep (one transaction; replaces a re-run's rows)."""
        if not decisions:
            return 0
        policies: dict[str, str] = {}
        rows = []
        for d in decisions:
            digest, policies[digest] = _policy_json(d.policy)  # a skipped decision's is {}: stored too
            rest = {
                "at": d.at,
                "dry_run": d.dry_run,
                "inputs": d.inputs,
                "steps": d.steps,
                "trigger": d.trigger,
            }
            row = {column: getattr(d, name) for name, column in _COLUMNS.items()}
            row.update(
                ts=to_ms(d.at),
                run_id=run_id,
                decision=json.dumps(rest, sort_keys=True, default=str),
                policy_digest=digest,
            )
            rows.append(row)
        t, p = scale_recommendations_table, scale_policies_table
        first_seen = to_ms(decisions[0].at)
        with self.store.begin() as conn:
            self._save_policies(conn, policies, first_seen=first_seen)
            stmt = dialect_insert(conn)(t)
            stmt = stmt.on_conflict_do_update(
                index_elements=["model", "ts"],
                set_={c: stmt.excluded[c] for c in rows[0] if c not in ("model", "ts")},
            )
            for chunk in chunks(rows, 500):
                conn.execute(stmt, list(chunk))
            # A re-run replaces its rows, and the policies only the replaced rows named (a failed
            # attempt's skipped decisions), so that it ends as an undisturbed run would.
            _delete_unnamed_policies(conn, p.c.first_seen == first_seen)
        return len(rows)

    @staticmethod
    def _save_policies(conn: Connection, policies: dict[str, str], *, first_seen: int) -> None:
        """Store the policies not stored yet (a fleet's policies change rarely: usually none)."""
        t = scale_policies_table
        digests = list(policies)
        known: set[str] = set()
        for chunk in chunks(digests, 500):
            known.update(conn.execute(sa.select(t.c.digest).where(t.c.digest.in_(list(chunk)))).scalars())
        new = [
            {"digest": k, "policy": policies[k], "first_seen": first_seen} for k in digests if k not in known
        ]
        if new:
            stmt = dialect_insert(conn)(t).on_conflict_do_nothing(index_elements=["digest"])
            for chunk in chunks(new, 500):
                conn.execute(stmt, list(chunk))

    def prune_recommendations(self, older_than: float) -> int:
        """Delete recommendations before ``older_than`` (the store's retention); returns rows deleted.

        One row per model per sweep (500 models: 144,000 rows a day): kept as long as the
        samples they were decided on, not for ever. Policies first stored before then that
        no recommendation names any more go with them. Scale events (the actions) are the
        audit trail and are kept.
        """
        t, p = scale_recommendations_table, scale_policies_table
        cutoff = to_ms(older_than)
        with self.store.begin() as conn:
            deleted = conn.execute(sa.delete(t).where(t.c.ts < cutoff)).rowcount or 0
            if deleted:
                _delete_unnamed_policies(conn, p.c.first_seen < cutoff)
        return deleted

    def history(
        self, models: Sequence[str], *, since: float, until: float
    ) -> dict[str, list[Recommendation]]:
        """Model -> raw recommendations with ``since <= ts < until``, oldest first."""
        out: dict[str, list[Recommendation]] = {m: [] for m in models}
        t = scale_recommendations_table
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(t.c.model, t.c.ts, t.c.recommendation)
                .where(t.c.ts >= to_ms(since), t.c.ts < to_ms(until), t.c.recommendation.is_not(None))
                .order_by(t.c.ts)
            )
            for model, ts, rec in rows:
                if model in out:
                    out[model].append(Recommendation(ts / 1000.0, int(rec)))
        return out

    def decisions(
        self, model: str | None = None, *, since: float = 0, until: float = 2**42
    ) -> list[dict[str, Any]]:
        """Stored decisions (newest last), each the decision dict with ``run_id``."""
        t, p = scale_recommendations_table, scale_policies_table
        columns = [t.c[c] for c in _COLUMNS.values()]
        stmt = (
            sa.select(t.c.run_id, t.c.decision, p.c.policy, *columns)
            .select_from(t.outerjoin(p, p.c.digest == t.c.policy_digest))
            .where(t.c.ts >= to_ms(since), t.c.ts < to_ms(until))
        )
        if model is not None:
            stmt = stmt.where(t.c.model == model)
        with self.store.begin() as conn:
            rows = conn.execute(stmt.order_by(t.c.ts, t.c.model)).mappings().all()
        out = []
        for r in rows:
            d = json.loads(r["decision"]) if r["decision"] else {}
            d.update({name: r[column] for name, column in _COLUMNS.items()})
            if r["policy"] is not None:  # else a row from before 0009: the policy is in the JSON
                d["policy"] = json.loads(r["policy"])
            d["run_id"] = r["run_id"]
            out.append(d)
        return out

    # ------------------------------------------------------------------ events

    def last_actions(self, models: Sequence[str], *, before: float) -> dict[str, float]:
        """Model -> time of its latest scale action strictly before ``before`` (cooldown input)."""
        t = scale_events_table
        is_action = sa.or_(
            t.c.outcome.in_(ACTION_OUTCOMES),
            sa.and_(t.c.outcome == "dry_run", t.c.trigger != "manual"),
        )
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(t.c.model, sa.func.max(t.c.ts))
                .where(is_action, t.c.ts < to_ms(before))
                .group_by(t.c.model)
            )
            found = {model: ts / 1000.0 for model, ts in rows}
        return {m: found[m] for m in models if m in found}

    def active_holds(self, models: Sequence[str], *, at: float) -> dict[str, dict[str, Any]]:
        """Model -> the manual scale holding its count at ``at`` (``until``, ``replicas``, ``run_id``, ``reason``).

        A hold is the ``hold_until`` of the model's latest manual scale that took
        effect (or found the count already there); a later manual scale without a
        hold ends it. Dry runs and refused requests hold nothing.
        """
        from mlinfra.scaling.manual import HOLD_MAX_SECONDS

        if not models:
            return {}
        t = scale_events_table
        stmt = (
            sa.select(t.c.model, t.c.ts, t.c.to_replicas, t.c.run_id, t.c.reason, t.c.decision)
            .where(
                t.c.model.in_(list(models)),
                t.c.trigger == "manual",
                t.c.outcome.in_((*ACTION_OUTCOMES, "unchanged")),
                t.c.ts >= to_ms(at - HOLD_MAX_SECONDS),
                t.c.ts <= to_ms(at),
            )
            .order_by(t.c.ts, t.c.id)
        )
        with self.store.begin() as conn:
            rows = conn.execute(stmt).all()
        latest = {
            model: (ts, to, run_id, reason, decision) for model, ts, to, run_id, reason, decision in rows
        }
        out: dict[str, dict[str, Any]] = {}
        for model, (_ts, to, run_id, reason, decision) in latest.items():
            until = (json.loads(decision) if decision else {}).get("hold_until")
            if isinstance(until, int | float) and until > at:
                out[model] = {"until": float(until), "replicas": to, "run_id": run_id, "reason": reason}
        return out

    def record_event(
        self,
        *,
        run_id: str,
        model: str,
        namespace: str,
        deployment: str,
        from_replicas: int | None,
        to_replicas: int | None,
        reason: str,
        trigger: str,
        dry_run: bool,
        ts: float,
        outcome: str,
        message: str | None = None,
        decision: dict[str, Any] | None = None,
    ) -> None:
        """Insert or update the event of (``run_id``, ``model``)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        row = {
            "run_id": run_id,
            "model": model,
            "ts": to_ms(ts),
            "namespace": namespace,
            "deployment": deployment,
            "from_replicas": from_replicas,
            "to_replicas": to_replicas,
            "reason": reason,
            "trigger": trigger,
            "dry_run": bool(dry_run),
            "decision": json.dumps(decision, sort_keys=True, default=str) if decision is not None else None,
            "outcome": outcome,
            "message": message,
            "updated_at": datetime.now(UTC),
        }
        with self.store.begin() as conn:
            self._upsert_event(conn, row)

    @staticmethod
    def _upsert_event(conn: Connection, row: dict[str, Any]) -> None:
        stmt = dialect_insert(conn)(scale_events_table).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "model"],
            set_={k: v for k, v in row.items() if k not in ("run_id", "model")},
        )
        conn.execute(stmt)

    def update_outcome(self, run_id: str, model: str, outcome: str, message: str | None = None) -> bool:
        """Set the outcome of an event already recorded; False when there is none."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        t = scale_events_table
        with self.store.begin() as conn:
            n = conn.execute(
                sa.update(t)
                .where(t.c.run_id == run_id, t.c.model == model)
                .values(outcome=outcome, message=message, updated_at=datetime.now(UTC))
            ).rowcount
        return bool(n)

    def events(
        self, model: str | None = None, *, since: float = 0, until: float = 2**42
    ) -> list[dict[str, Any]]:
        """Scale events with ``since <= ts < until``, oldest first (``ts`` in seconds, decision parsed)."""
        return [e.to_dict() for e in self.scale_events(model, since=since, until=until)]

    def scale_events(
        self,
        model: str | None = None,
        *,
        since: float = 0,
        until: float = 2**42,
        run_id: str | None = None,
        namespace: str | None = None,
        deployment: str | None = None,
        models: Sequence[str] = (),
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[ScaleEvent]:
        """Scale events with ``since <= ts < until``, oldest first (or the newest ``limit``).

        ``run_id`` picks one run's; ``namespace``/``deployment`` one Kubernetes Deployment's,
        where rows without a namespace (older rows) are matched through ``models``.
        """
        t = scale_events_table
        stmt = sa.select(t).where(t.c.ts >= to_ms(since), t.c.ts < to_ms(until))
        if model is not None:
            stmt = stmt.where(t.c.model == model)
        if run_id is not None:
            stmt = stmt.where(t.c.run_id == run_id)
        if namespace is not None and deployment is not None:
            cond = sa.and_(t.c.namespace == namespace, t.c.deployment == deployment)
            if models:
                cond = sa.or_(cond, sa.and_(t.c.namespace.is_(None), t.c.model.in_(list(models))))
            stmt = stmt.where(cond)
        order = (t.c.ts.desc(), t.c.id.desc()) if newest_first else (t.c.ts, t.c.id)
        stmt = stmt.order_by(*order)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.store.begin() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            ScaleEvent(
                **{
                    **dict(r),
                    "ts": r["ts"] / 1000.0,
                    "dry_run": bool(r["dry_run"]),
                    "decision": json.loads(r["decision"]) if r["decision"] else None,
                    "updated_at": as_utc(r["updated_at"]),
                }
            )
            for r in rows
        ]
