"""Alert state in the store: current alerts, their transitions, and one snapshot per group evaluation.

Tables (on :data:`mlinfra.store.metadata`, created by ``MetricsStore.create_schema``):

``mlinfra_alerts``
    the current state of every pending, firing or recently resolved alert: one row
    per (rule file, group, label-set fingerprint), as of the group's latest
    evaluation time (``eval_ts``).
``mlinfra_alert_transitions``
    the history: one row per state change (``group``, ``alert``, ``labels``,
    ``fingerprint``, ``from_state``, ``to_state``, ``ts``, ``value``, ``active_at``,
    ``run_id``), read by reports and the UI.
``mlinfra_rule_group_evaluations``
    one row per group and evaluation time holding the group's alert states after
    that evaluation (JSON) and its rule errors.

**Backfills.** State is kept per evaluation time, so evaluating a group at ``t``
always continues from the snapshot of the latest evaluation *before* ``t``:

* re-running the same logical time recomputes ``t`` from the same predecessor and
  replaces its snapshot and its transitions -- idempotent, never duplicated;
* evaluating an earlier time (a backfill) computes that time from its own
  predecessor and writes its snapshot and transitions at ``t``; evaluations after
  ``t`` are left as they were (Airflow's backfill re-runs them in order, each
  from the one before, so a whole re-evaluated range comes out consistent);
* ``mlinfra_alerts`` always shows the latest evaluation time: a backfill of the
  past never overwrites the present.

>>> from mlinfra.store import MetricsStore
>>> states = StoreAlertStates(MetricsStore.from_url("sqlite:///:memory:"))
>>> t = 1_763_640_000.0
>>> states.load("host.yaml", "host", before=t)   # no evaluation before t yet
{}
>>> states.save("host.yaml", "host", t, new_states, transitions, run_id="scheduled__...")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from mlinfra.rules.alerts import ActiveAlert, Transition
from mlinfra.store import metadata
from mlinfra.store_values import from_ms, to_ms

if TYPE_CHECKING:
    from mlinfra.store import MetricsStore

alerts_table = sa.Table(
    "mlinfra_alerts",
    metadata,
    sa.Column("file", sa.String(255), primary_key=True),
    sa.Column("group", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(40), primary_key=True),
    sa.Column("alert", sa.String(255), nullable=False, index=True),
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

transitions_table = sa.Table(
    "mlinfra_alert_transitions",
    metadata,
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
    sa.Index("ix_mlinfra_alert_transitions_ts", "ts"),
    sa.Index("ix_mlinfra_alert_transitions_group_ts", "file", "group", "ts"),
)

group_evaluations_table = sa.Table(
    "mlinfra_rule_group_evaluations",
    metadata,
    sa.Column("file", sa.String(255), primary_key=True),
    sa.Column("group", sa.String(255), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(250), nullable=True),
    sa.Column("alerts", sa.Text, nullable=False),
    sa.Column("errors", sa.Text, nullable=False),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
)


explanations_table = sa.Table(
    "mlinfra_alert_explanations",
    metadata,
    sa.Column("file", sa.String(255), primary_key=True),
    sa.Column("group", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(40), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("alert", sa.String(255), nullable=False, index=True),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("from_state", sa.String(16), nullable=False),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("explanation", sa.Text, nullable=False),
)


class AlertStates(Protocol):
    """Where a group's alert states live between evaluations."""

    def load(self, file: str, group: str, *, before: float) -> dict[str, ActiveAlert]:
        """States after the latest evaluation of the group strictly before ``before``."""

    def save(
        self,
        file: str,
        group: str,
        ts: float,
        states: Mapping[str, ActiveAlert],
        transitions: Sequence[Transition],
        *,
        run_id: str | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        """Record the group's states after evaluating at ``ts`` (replacing an earlier save at ``ts``)."""

    def last_evaluation(self, file: str, group: str, *, before: float) -> float | None:
        """Time of the group's latest evaluation strictly before ``before`` (None: never evaluated)."""


@dataclass
class MemoryAlertStates:
    """In-process states (the promtool-format runner, tests); same semantics as the store's."""

    snapshots: dict[tuple[str, str], dict[float, dict[str, ActiveAlert]]] = field(default_factory=dict)
    transitions: list[tuple[str, str, Transition]] = field(default_factory=list)

    def load(self, file: str, group: str, *, before: float) -> dict[str, ActiveAlert]:
        history = self.snapshots.get((file, group), {})
        earlier = [t for t in history if t < before]
        return dict(history[max(earlier)]) if earlier else {}

    def last_evaluation(self, file: str, group: str, *, before: float) -> float | None:
        earlier = [t for t in self.snapshots.get((file, group), {}) if t < before]
        return max(earlier) if earlier else None

    def save(
        self,
        file: str,
        group: str,
        ts: float,
        states: Mapping[str, ActiveAlert],
        transitions: Sequence[Transition],
        *,
        run_id: str | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        history = self.snapshots.setdefault((file, group), {})
        history[ts] = dict(states)
        # Keep only the latest snapshot before this one: enough for in-order evaluation.
        for t in [t for t in history if t < ts][:-1]:
            del history[t]
        self.transitions = [x for x in self.transitions if not (x[:2] == (file, group) and x[2].ts == ts)]
        self.transitions.extend((file, group, t) for t in transitions)


def _ms(t: float | None) -> int | None:
    return None if t is None else to_ms(t)


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One row of ``mlinfra_alert_transitions`` (``ts`` in epoch seconds, ``labels`` parsed)."""

    alert: str
    labels: dict[str, str]
    fingerprint: str
    from_state: str
    to_state: str
    ts: float


@dataclass(slots=True)
class AlertHistory:
    """Transitions in a window plus, per fingerprint, the last one before it (the state at its start)."""

    before: list[AlertTransition] = field(default_factory=list)
    during: list[AlertTransition] = field(default_factory=list)


def _db_value(v: float) -> float | None:
    return None if math.isnan(v) else v


def _save_explanations(
    conn: sa.Connection, file: str, group: str, t_ms: int, transitions: Sequence[Transition]
) -> None:
    ex = explanations_table
    conn.execute(sa.delete(ex).where(ex.c.file == file, ex.c.group == group, ex.c.ts == t_ms))
    rows = [
        {
            "file": file,
            "group": group,
            "fingerprint": x.fingerprint,
            "ts": t_ms,
            "alert": x.alertname,
            "labels": json.dumps(dict(sorted(x.labels.items()))),
            "from_state": x.from_state,
            "to_state": x.to_state,
            "explanation": json.dumps(dict(x.explanation), sort_keys=True),
        }
        for x in transitions
        if x.explanation is not None
    ]
    if rows:
        conn.execute(sa.insert(ex), rows)


class StoreAlertStates:
    """Alert states in the metrics store (see the module docstring for the backfill rules)."""

    def __init__(self, store: MetricsStore):
        self.store = store

    def load(self, file: str, group: str, *, before: float) -> dict[str, ActiveAlert]:
        t = group_evaluations_table
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(t.c.alerts)
                .where(t.c.file == file, t.c.group == group, t.c.ts < to_ms(before))
                .order_by(t.c.ts.desc())
                .limit(1)
            ).first()
        if row is None:
            return {}
        alerts = [ActiveAlert.from_json(d) for d in json.loads(row[0])]
        return {a.fingerprint: a for a in alerts}

    def last_evaluation(self, file: str, group: str, *, before: float) -> float | None:
        t = group_evaluations_table
        with self.store.begin() as conn:
            latest = conn.execute(
                sa.select(sa.func.max(t.c.ts)).where(
                    t.c.file == file, t.c.group == group, t.c.ts < to_ms(before)
                )
            ).scalar()
        return None if latest is None else latest / 1000.0

    def save(
        self,
        file: str,
        group: str,
        ts: float,
        states: Mapping[str, ActiveAlert],
        transitions: Sequence[Transition],
        *,
        run_id: str | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        t_ms = to_ms(ts)
        snapshot = json.dumps([states[fp].to_json() for fp in sorted(states)], sort_keys=True)
        g, tr, cur = group_evaluations_table, transitions_table, alerts_table
        with self.store.begin() as conn:
            conn.execute(sa.delete(g).where(g.c.file == file, g.c.group == group, g.c.ts == t_ms))
            conn.execute(
                sa.insert(g).values(
                    file=file,
                    group=group,
                    ts=t_ms,
                    run_id=run_id,
                    alerts=snapshot,
                    errors=json.dumps(list(errors)),
                    evaluated_at=datetime.now(UTC),
                )
            )
            conn.execute(sa.delete(tr).where(tr.c.file == file, tr.c.group == group, tr.c.ts == t_ms))
            _save_explanations(conn, file, group, t_ms, transitions)
            if transitions:
                conn.execute(
                    sa.insert(tr),
                    [
                        {
                            "file": file,
                            "group": group,
                            "alert": x.alertname,
                            "labels": json.dumps(dict(sorted(x.labels.items()))),
                            "fingerprint": x.fingerprint,
                            "from_state": x.from_state,
                            "to_state": x.to_state,
                            "ts": t_ms,
                            "value": _db_value(x.value),
                            "active_at": _ms(x.active_at),
                            "run_id": run_id,
                        }
                        for x in transitions
                    ],
                )
            latest = conn.execute(
                sa.select(sa.func.max(g.c.ts)).where(g.c.file == file, g.c.group == group)
            ).scalar()
            if latest is not None and latest > t_ms:
                return  # a backfill: the present stays as the latest evaluation left it
            conn.execute(sa.delete(cur).where(cur.c.file == file, cur.c.group == group))
            if states:
                conn.execute(
                    sa.insert(cur),
                    [
                        {
                            "file": file,
                            "group": group,
                            "fingerprint": fp,
                            "alert": a.alertname,
                            "labels": json.dumps(dict(sorted(a.labels.items()))),
                            "annotations": json.dumps(dict(sorted(a.annotations.items()))),
                            "state": a.state,
                            "active_at": to_ms(a.active_at),
                            "fired_at": _ms(a.fired_at),
                            "resolved_at": _ms(a.resolved_at),
                            "keep_firing_since": _ms(a.keep_firing_since),
                            "value": _db_value(a.value),
                            "eval_ts": t_ms,
                            "run_id": run_id,
                        }
                        for fp, a in states.items()
                    ],
                )

    # ------------------------------------------------------------------ readers

    def current(self, *, state: str | None = None, states: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Rows of ``mlinfra_alerts`` (optionally of one state or of ``states``), as plain dicts
        with times in seconds."""
        t = alerts_table
        stmt = sa.select(t).order_by(t.c.alert, t.c.fingerprint)
        if state is not None:
            stmt = stmt.where(t.c.state == state)
        if states:
            stmt = stmt.where(t.c.state.in_(list(states)))
        with self.store.begin() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        for r in rows:
            r["labels"] = json.loads(r["labels"])
            r["annotations"] = json.loads(r["annotations"])
            for key in ("active_at", "fired_at", "resolved_at", "keep_firing_since", "eval_ts"):
                r[key] = from_ms(r[key])
        return rows

    def history(self, start: float, end: float) -> list[dict[str, Any]]:
        """Transitions with ``start <= ts < end``, oldest first."""
        t = transitions_table
        with self.store.begin() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    sa.select(t).where(t.c.ts >= to_ms(start), t.c.ts < to_ms(end)).order_by(t.c.ts, t.c.id)
                ).mappings()
            ]
        for r in rows:
            r["labels"] = json.loads(r["labels"])
            r["ts"] = from_ms(r["ts"])
            r["active_at"] = from_ms(r["active_at"])
        return rows

    def transition_history(self, start: float, end: float) -> AlertHistory:
        """Transitions in ``[start, end)`` and the last transition of each fingerprint before ``start``."""
        t = transitions_table
        lo, hi = to_ms(start), to_ms(end)
        latest = (
            sa.select(t.c.fingerprint, sa.func.max(t.c.ts).label("ts"))
            .where(t.c.ts < lo)
            .group_by(t.c.fingerprint)
            .subquery()
        )
        columns = (t.c.alert, t.c.labels, t.c.fingerprint, t.c.from_state, t.c.to_state, t.c.ts, t.c.id)
        with self.store.begin() as conn:
            during = conn.execute(sa.select(*columns).where(t.c.ts >= lo, t.c.ts < hi)).all()
            before = conn.execute(
                sa.select(*columns).join(
                    latest, sa.and_(t.c.fingerprint == latest.c.fingerprint, t.c.ts == latest.c.ts)
                )
            ).all()

        def convert(rows: Sequence[Any]) -> list[AlertTransition]:
            # Same instant: the order they were written in.
            ordered = sorted(rows, key=lambda r: (r.ts, r.fingerprint, r.id))
            return [
                AlertTransition(
                    alert=r.alert,
                    labels=json.loads(r.labels),
                    fingerprint=r.fingerprint,
                    from_state=r.from_state,
                    to_state=r.to_state,
                    ts=r.ts / 1000.0,
                )
                for r in ordered
            ]

        return AlertHistory(before=convert(before), during=convert(during))

    def explanations(self, alertname: str, *, at: float) -> list[dict[str, Any]]:
        """Each label set's latest explained transition of ``alertname`` at or before ``at``."""
        ex = explanations_table
        with self.store.begin() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    sa.select(ex)
                    .where(ex.c.alert == alertname, ex.c.ts <= to_ms(at))
                    .order_by(ex.c.ts.desc())
                ).mappings()
            ]
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["fingerprint"] not in latest:
                r["labels"] = json.loads(r["labels"])
                r["explanation"] = json.loads(r["explanation"])
                r["ts"] = r["ts"] / 1000.0
                latest[r["fingerprint"]] = r
        return sorted(latest.values(), key=lambda r: sorted(r["labels"].items()))

    def prune(self, older_than: float) -> int:
        """Delete group snapshots before ``older_than`` except each group's latest (returns rows deleted)."""
        g = group_evaluations_table
        cutoff = to_ms(older_than)
        with self.store.begin() as conn:
            latest = (
                sa.select(g.c.file, g.c.group, sa.func.max(g.c.ts).label("ts"))
                .group_by(g.c.file, g.c.group)
                .subquery()
            )
            keep = sa.select(latest.c.ts).where(latest.c.file == g.c.file, latest.c.group == g.c.group)
            result = conn.execute(sa.delete(g).where(g.c.ts < cutoff, g.c.ts != keep.scalar_subquery()))
            return result.rowcount or 0
