"""The canary runs and their analysis measurements, in the store.

* ``mlinfra_canary_runs``: one row per deploy run that goes the canary way (keyed by
  the Airflow run id, like ``mlinfra_deployments``): the persisted position of the
  step machine (:class:`mlinfra.deploy.canary.rollout.CanaryState`: step, whether the
  step was entered, when a pause ends, the weight and replica counts), the ``phase``
  (:data:`PHASES`) and the promote/abort ``reason``. A retried task reads it back and
  resumes where the last attempt stopped.
* ``mlinfra_canary_measurements``: every analysis measurement with its verdict, keyed
  by (run id, step, metric, seq), so a measurement recorded before a worker died is
  neither lost nor written twice when the task runs again.

::

    >>> records = CanaryRecords(MetricsStore.from_url("sqlite:///:memory:"))
    >>> records.start("manual__1", model="half-plus-two", stable_version=1, canary_version=2, steps=4)
    >>> records.save_state("manual__1", step=1, entered=True, weight=20, canary_replicas=1, stable_replicas=4)
    >>> records.add_measurement("manual__1", step=2, seq=0, metric="error-rate", verdict="successful",
    ...                         value=0.001, step_kind="analysis", weight=20)
    True
    >>> records.finish("manual__1", "promoted", reason="every step passed")
    >>> run = records.get("manual__1")
    >>> (run.phase, run.step, run.weight), [m.verdict for m in records.measurements("manual__1")]
    (('promoted', 1, 20), ['successful'])
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
from mlinfra.store_values import as_utc, chunks

_CHUNK = 500  # run ids per IN (...) list, as the store chunks its own

# running: the steps are being walked; paused: waiting at an approval gate (``gate``);
# promoting / aborting: the end is under way; promoted / aborted: done.
PHASES = ("running", "paused", "promoting", "aborting", "promoted", "aborted")
FINAL_PHASES = ("promoted", "aborted")

canary_runs_table = sa.Table(
    "mlinfra_canary_runs",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("stable_version", sa.BigInteger, nullable=True),
    sa.Column("canary_version", sa.BigInteger, nullable=True),
    sa.Column("steps", sa.Integer, nullable=False),  # how many steps the strategy has
    sa.Column("step", sa.Integer, nullable=False),  # the current step (== steps: all done)
    sa.Column("entered", sa.Boolean, nullable=False),  # the current step's action was started
    sa.Column("pause_until", sa.Float, nullable=True),  # epoch seconds: when the current pause ends
    sa.Column("weight", sa.Integer, nullable=False),  # percent asked for (0: no canary pods)
    sa.Column("canary_replicas", sa.Integer, nullable=False),
    sa.Column("stable_replicas", sa.Integer, nullable=True),
    sa.Column("gate", sa.Integer, nullable=True),  # the approval gate the run waits at (1-based)
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_mlinfra_canary_runs_model_started", "model", "started_at"),
)

canary_measurements_table = sa.Table(
    "mlinfra_canary_measurements",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("metric", sa.String(255), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),  # 0, 1, ... per step and metric
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("step_kind", sa.String(16), nullable=False),
    sa.Column("weight", sa.Integer, nullable=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("stable_value", sa.Float, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),  # JSON
    sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class CanaryRun:
    """One row of ``mlinfra_canary_runs``."""

    run_id: str
    model: str
    stable_version: int | None
    canary_version: int | None
    steps: int
    step: int
    entered: bool
    pause_until: float | None
    weight: int
    canary_replicas: int
    stable_replicas: int | None
    gate: int | None
    phase: str
    reason: str | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        for key in ("started_at", "updated_at", "ended_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


@dataclass(frozen=True, slots=True)
class CanaryMeasurement:
    """One row of ``mlinfra_canary_measurements`` (``detail`` parsed)."""

    run_id: str
    model: str
    step: int
    step_kind: str
    weight: int | None
    metric: str
    seq: int
    verdict: str
    value: float | None
    stable_value: float | None
    detail: dict[str, Any] | None
    measured_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out["measured_at"] = self.measured_at.isoformat()
        return out


STATE_FIELDS = frozenset(
    {
        "step",
        "entered",
        "pause_until",
        "weight",
        "canary_replicas",
        "stable_replicas",
        "gate",
        "phase",
        "reason",
    }
)


class CanaryRecords:
    """Reads and writes of the two canary tables over a :class:`MetricsStore`."""

    def __init__(self, store: MetricsStore):
        self.store = store

    @classmethod
    def from_connection(cls, conn_id: str = "mlinfra_store") -> CanaryRecords:
        return cls(MetricsStore.from_connection(conn_id))

    def start(
        self,
        run_id: str,
        *,
        model: str,
        stable_version: int | None,
        canary_version: int | None,
        steps: int,
        stable_replicas: int | None = None,
    ) -> None:
        """Create the run's row at step 0; an existing row (a retry) is kept as it is."""
        now = datetime.now(UTC)
        row = {
            "run_id": run_id,
            "model": model,
            "stable_version": stable_version,
            "canary_version": canary_version,
            "steps": steps,
            "step": 0,
            "entered": False,
            "pause_until": None,
            "weight": 0,
            "canary_replicas": 0,
            "stable_replicas": stable_replicas,
            "gate": None,
            "phase": "running",
            "reason": None,
            "started_at": now,
            "updated_at": now,
            "ended_at": None,
        }
        with self.store.begin() as conn:
            conn.execute(
                dialect_insert(conn)(canary_runs_table)
                .values(row)
                .on_conflict_do_nothing(index_elements=["run_id"])
            )

    def save_state(self, run_id: str, **fields: Any) -> None:
        """Set the persisted position (columns of :data:`STATE_FIELDS`)."""
        unknown = set(fields) - STATE_FIELDS
        if unknown:
            raise ValueError(
                f"unknown canary state field(s) {sorted(unknown)}; known: {sorted(STATE_FIELDS)}"
            )
        if "phase" in fields and fields["phase"] not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {fields['phase']!r}")
        t = canary_runs_table
        with self.store.begin() as conn:
            conn.execute(
                sa.update(t).where(t.c.run_id == run_id).values(**fields, updated_at=datetime.now(UTC))
            )

    def finish(self, run_id: str, phase: str, *, reason: str | None = None) -> None:
        """End the run ``promoted`` or ``aborted``; the first final phase and reason stay."""
        if phase not in FINAL_PHASES:
            raise ValueError(f"a canary run ends {' or '.join(FINAL_PHASES)}, not {phase!r}")
        t = canary_runs_table
        now = datetime.now(UTC)
        with self.store.begin() as conn:
            conn.execute(
                sa.update(t)
                .where(t.c.run_id == run_id, t.c.phase.not_in(FINAL_PHASES))
                .values(phase=phase, reason=reason, updated_at=now, ended_at=now)
            )

    def get(self, run_id: str) -> CanaryRun | None:
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(canary_runs_table).where(canary_runs_table.c.run_id == run_id)
            ).first()
        return _run(row._mapping) if row is not None else None

    def models_in_progress(self) -> set[str]:
        """The models with a canary run that has not ended (the sweep reads their pods per track)."""
        t = canary_runs_table
        stmt = sa.select(t.c.model).where(t.c.phase.not_in(FINAL_PHASES)).distinct()
        with self.store.begin() as conn:
            return set(conn.execute(stmt).scalars())

    def runs_for_model(self, model: str, *, limit: int = 20) -> list[CanaryRun]:
        """The model's canary runs, newest first (the ML Fleet page's)."""
        t = canary_runs_table
        stmt = (
            sa.select(t)
            .where(t.c.model == model)
            .order_by(t.c.started_at.desc(), t.c.run_id.desc())
            .limit(limit)
        )
        with self.store.begin() as conn:
            return [_run(r._mapping) for r in conn.execute(stmt)]

    def latest_runs(self) -> dict[str, CanaryRun]:
        """Every model's newest canary run (as :meth:`runs_for_model` with ``limit=1``), in one read.

        The ML Fleet page shows a panel per model: one query for the fleet instead of one per model.
        """
        t = canary_runs_table
        newest = (
            sa.func.row_number()
            .over(partition_by=t.c.model, order_by=(t.c.started_at.desc(), t.c.run_id.desc()))
            .label("newest")
        )
        ranked = sa.select(t, newest).subquery()
        stmt = sa.select(*(ranked.c[c.name] for c in t.columns)).where(ranked.c.newest == 1)
        with self.store.begin() as conn:
            runs = [_run(r._mapping) for r in conn.execute(stmt)]
        return {run.model: run for run in runs}

    def add_measurement(
        self,
        run_id: str,
        *,
        step: int,
        seq: int,
        metric: str,
        verdict: str,
        model: str | None = None,
        step_kind: str = "analysis",
        weight: int | None = None,
        value: float | None = None,
        stable_value: float | None = None,
        detail: dict[str, Any] | None = None,
        measured_at: datetime | float | str | None = None,
    ) -> bool:
        """Record one measurement; False when (run, step, metric, seq) is already there (a retry)."""
        if model is None:
            run = self.get(run_id)
            model = run.model if run is not None else ""
        if isinstance(measured_at, int | float):
            measured_at = datetime.fromtimestamp(measured_at, UTC)
        elif isinstance(measured_at, str):
            measured_at = as_utc(datetime.fromisoformat(measured_at.replace("Z", "+00:00")))
        row = {
            "run_id": run_id,
            "step": step,
            "metric": metric,
            "seq": seq,
            "model": model,
            "step_kind": step_kind,
            "weight": weight,
            "verdict": verdict,
            "value": _finite(value),
            "stable_value": _finite(stable_value),
            "detail": json.dumps(detail, sort_keys=True, default=str) if detail is not None else None,
            "measured_at": measured_at or datetime.now(UTC),
        }
        with self.store.begin() as conn:
            result = conn.execute(
                dialect_insert(conn)(canary_measurements_table)
                .values(row)
                .on_conflict_do_nothing(index_elements=["run_id", "step", "metric", "seq"])
            )
        return bool(result.rowcount)

    def measurements(self, run_id: str, *, step: int | None = None) -> list[CanaryMeasurement]:
        """The run's measurements (of one step), in the order they were taken."""
        t = canary_measurements_table
        stmt = sa.select(t).where(t.c.run_id == run_id)
        if step is not None:
            stmt = stmt.where(t.c.step == step)
        stmt = stmt.order_by(t.c.step, t.c.measured_at, t.c.metric, t.c.seq)
        with self.store.begin() as conn:
            return [_measurement(r._mapping) for r in conn.execute(stmt)]

    def measurements_of_runs(self, run_ids: Iterable[str]) -> dict[str, list[CanaryMeasurement]]:
        """run id -> its measurements in the order :meth:`measurements` gives them (every id present)."""
        t = canary_measurements_table
        wanted = sorted(set(run_ids))
        out: dict[str, list[CanaryMeasurement]] = {run_id: [] for run_id in wanted}
        if not wanted:
            return out
        with self.store.begin() as conn:
            for chunk in chunks(wanted, _CHUNK):
                stmt = (
                    sa.select(t)
                    .where(t.c.run_id.in_(chunk))
                    .order_by(t.c.run_id, t.c.step, t.c.measured_at, t.c.metric, t.c.seq)
                )
                for r in conn.execute(stmt):
                    out[r.run_id].append(_measurement(r._mapping))
        return out


def _finite(value: float | None) -> float | None:
    # NaN does not survive every dialect's float column; "no value" is what it means.
    if value is None or value != value:
        return None
    return float(value)


def _run(row: Any) -> CanaryRun:
    data = {k: row[k] for k in CanaryRun.__dataclass_fields__}
    data["entered"] = bool(data["entered"])
    for key in ("started_at", "updated_at", "ended_at"):
        data[key] = as_utc(data[key])
    return CanaryRun(**data)


def _measurement(row: Any) -> CanaryMeasurement:
    data = {k: row[k] for k in CanaryMeasurement.__dataclass_fields__}
    data["detail"] = json.loads(data["detail"]) if data["detail"] is not None else None
    data["measured_at"] = as_utc(data["measured_at"])
    return CanaryMeasurement(**data)
