"""Read what other features recorded (alert transitions, deployments, scale events), defensively.

Those tables belong to the rules, deploy and scaling features, which may not be
installed (or not yet have written anything) when a report runs. Each reader
reflects its table lazily and returns an empty list when the table does not
exist, so the report shows the section as empty instead of failing::

    >>> from mlinfra.store import MetricsStore
    >>> store = MetricsStore.from_url("sqlite:///:memory:")
    >>> read_scale_events(store, 0, 86_400)
    []

Columns are read by name with ``.get``: a column a reader does not know is
ignored, one it expects but does not find reads as ``None``. Times may be stored
as integer milliseconds or as SQL timestamps; both are accepted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlinfra.exceptions import StoreError
from mlinfra.store import MetricsStore, to_ms

log = logging.getLogger(__name__)

ALERT_TRANSITIONS = "mlinfra_alert_transitions"
DEPLOYMENTS = "mlinfra_deployments"
SCALE_EVENTS = "mlinfra_scale_events"


@dataclass(frozen=True, slots=True)
class AlertTransition:
    alert: str
    labels: dict[str, str]
    fingerprint: str
    from_state: str
    to_state: str
    ts: float


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    model: str
    version: str
    outcome: str
    started_at: float | None
    ended_at: float | None
    triggered_by: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class ScaleEventRecord:
    ts: float
    model: str
    from_replicas: int | None
    to_replicas: int | None
    trigger: str | None
    reason: str | None
    dry_run: bool
    outcome: str | None = None


@dataclass(slots=True)
class AlertHistory:
    """Transitions in the window plus, per fingerprint, the last one before it (the state at start)."""

    before: list[AlertTransition] = field(default_factory=list)
    during: list[AlertTransition] = field(default_factory=list)


def _table(store: MetricsStore, name: str) -> sa.Table | None:
    """The table as it exists in the database (own MetaData, so no clash with its owner's definition)."""
    try:
        if not sa.inspect(store.engine).has_table(name):
            return None
        return sa.Table(name, sa.MetaData(), autoload_with=store.engine)
    except sa.exc.OperationalError as e:
        raise StoreError(f"metrics store {store.description}: cannot read table {name}: {e.orig}") from e


def _is_datetime(column: sa.Column[Any]) -> bool:
    try:
        return column.type.python_type is datetime
    except NotImplementedError:
        return False


def _time_bounds(column: sa.Column[Any], start: float, end: float) -> tuple[Any, Any]:
    if _is_datetime(column):
        # Naive in SQLite, aware in PostgreSQL; the owners store UTC either way.
        lo, hi = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        if not getattr(column.type, "timezone", False):
            lo, hi = lo.replace(tzinfo=None), hi.replace(tzinfo=None)
        return lo, hi
    return to_ms(start), to_ms(end)


def as_seconds(value: Any) -> float | None:
    """A stored time (ms integer, datetime, ISO text) -> seconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value) / 1000.0 if math.isfinite(value) else None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        try:
            return float(value) / 1000.0
        except ValueError:
            return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _labels(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}


def _select(store: MetricsStore, stmt: Any) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def read_alert_history(store: MetricsStore, start: float, end: float) -> AlertHistory:
    """Alert transitions in ``[start, end)`` and the last transition of each fingerprint before ``start``."""
    t = _table(store, ALERT_TRANSITIONS)
    if t is None or "ts" not in t.c:
        return AlertHistory()
    lo, hi = _time_bounds(t.c.ts, start, end)
    during = _select(store, sa.select(t).where(t.c.ts >= lo, t.c.ts < hi))
    before: list[dict[str, Any]] = []
    if "fingerprint" in t.c:
        latest = (
            sa.select(t.c.fingerprint, sa.func.max(t.c.ts).label("ts"))
            .where(t.c.ts < lo)
            .group_by(t.c.fingerprint)
            .subquery()
        )
        before = _select(
            store,
            sa.select(t).join(
                latest, sa.and_(t.c.fingerprint == latest.c.fingerprint, t.c.ts == latest.c.ts)
            ),
        )

    def convert(rows: list[dict[str, Any]]) -> list[AlertTransition]:
        out = []
        for r in rows:
            ts = as_seconds(r.get("ts"))
            labels = _labels(r.get("labels"))
            alert = str(r.get("alert") or r.get("alertname") or labels.get("alertname") or "unknown")
            if ts is None:
                continue
            fingerprint = str(r.get("fingerprint") or json.dumps([alert, sorted(labels.items())]))
            out.append(
                AlertTransition(
                    alert=alert,
                    labels=labels,
                    fingerprint=fingerprint,
                    from_state=str(r.get("from_state") or "").lower(),
                    to_state=str(r.get("to_state") or "").lower(),
                    ts=ts,
                )
            )
        # Same instant: keep the order they were written in (id when there is one).
        return sorted(out, key=lambda a: (a.ts, a.fingerprint))

    return AlertHistory(before=convert(before), during=convert(during))


def read_deployments(store: MetricsStore, start: float, end: float) -> list[DeploymentRecord]:
    """Deployments started in ``[start, end)``, oldest first."""
    t = _table(store, DEPLOYMENTS)
    if t is None or "started_at" not in t.c:
        return []
    lo, hi = _time_bounds(t.c.started_at, start, end)
    rows = _select(store, sa.select(t).where(t.c.started_at >= lo, t.c.started_at < hi))
    out = [
        DeploymentRecord(
            model=str(r.get("model") or "unknown"),
            version=str(r.get("version") if r.get("version") is not None else ""),
            outcome=str(r.get("outcome") or "unknown"),
            started_at=as_seconds(r.get("started_at")),
            ended_at=as_seconds(r.get("ended_at")),
            triggered_by=None if r.get("triggered_by") is None else str(r.get("triggered_by")),
            reason=None if r.get("reason") is None else str(r.get("reason")),
        )
        for r in rows
    ]
    return sorted(out, key=lambda d: (d.started_at or 0.0, d.model, d.version, d.outcome))


def read_scale_events(store: MetricsStore, start: float, end: float) -> list[ScaleEventRecord]:
    """Scale events in ``[start, end)``, oldest first."""
    t = _table(store, SCALE_EVENTS)
    if t is None or "ts" not in t.c:
        return []
    lo, hi = _time_bounds(t.c.ts, start, end)
    rows = _select(store, sa.select(t).where(t.c.ts >= lo, t.c.ts < hi))
    out = []
    for r in rows:
        ts = as_seconds(r.get("ts"))
        if ts is None:
            continue
        model = r.get("model") or r.get("deployment") or "unknown"
        out.append(
            ScaleEventRecord(
                ts=ts,
                model=str(model),
                from_replicas=_int(r.get("from_replicas")),
                to_replicas=_int(r.get("to_replicas")),
                trigger=None if r.get("trigger") is None else str(r.get("trigger")),
                reason=None if r.get("reason") is None else str(r.get("reason")),
                dry_run=bool(r.get("dry_run") or False),
                outcome=None if r.get("outcome") is None else str(r.get("outcome")),
            )
        )
    return sorted(out, key=lambda e: (e.ts, e.model, e.from_replicas or 0, e.to_replicas or 0))


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
