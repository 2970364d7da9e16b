"""The metrics and audit store: the system of record the rules, scaling and reports read.

SQLAlchemy Core over SQLite (default, a WAL-mode file under ``$AIRFLOW_HOME``) or
PostgreSQL (the Airflow connection ``mlinfra_store``). Not Airflow's metadata DB.

Data model (Prometheus's): a *series* is a metric name plus a label set; a
*sample* is (series, timestamp, value). Timestamps are stored as integer
milliseconds; the API takes and returns float seconds.

>>> store = MetricsStore.from_url("sqlite:///:memory:")
>>> store.write_sweep(1_700_000_000, [Sample("ml_cpu_usage_percent", {"core": "all"}, 12.5)])
1
>>> [(s.labels, pts) for s, pts in store.query_range("ml_cpu_usage_percent", (), 1_699_999_000, 1_700_000_000)]
[({'core': 'all'}, [(1700000000.0, 12.5)])]

The interface is small on purpose:

* writes: :meth:`write_sweep` (one transaction, replaces the sweep at that time),
  :meth:`write_samples` (upsert by series and timestamp), :meth:`stage` /
  :meth:`staged` / :meth:`clear_staged` (collector output waiting for its sweep);
* reads: :meth:`select_series`, :meth:`read_samples`, :meth:`query_range`,
  :meth:`current_samples`, :meth:`sweeps`;
* housekeeping: :meth:`apply_retention`.

Which database, and the engine that reaches it, is :mod:`mlinfra.store_engine`'s.

Later features add their own tables to :data:`metadata` (alerts, scale events,
deployments, reports), each defined once by the module that writes it and read
through that module's queries, and keep to the same rules: one transaction per
logical write, idempotent for the same logical time. Every schema change is a
migration in :mod:`mlinfra.migrations`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlinfra.exceptions import StoreConflict, StoreError
from mlinfra.label_regex import compile_label_regex
from mlinfra.samples import Sample, canonical_labels, dumps_samples, is_stale_nan, loads_samples
from mlinfra.store_engine import (
    db_error_reason,
    default_sqlite_path,
    dialect_insert,
    engine_for,
    url_from_connection,
)
from mlinfra.store_values import chunks, from_db, stale_sql, to_ms, value_rows

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "mlinfra_store"
_CHUNK = 500  # rows per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
# Writes that lost a race (retention removed a series they looked up) are re-run this often.
_CONFLICT_ATTEMPTS = 3

metadata = sa.MetaData()

series_table = sa.Table(
    "mlinfra_series",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # sha1(name + canonical labels): a short unique key however long the label set is.
    sa.Column("fingerprint", sa.String(40), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("labels", sa.Text, nullable=False),
)

samples_table = sa.Table(
    "mlinfra_samples",
    metadata,
    # The primary key (series_id, ts) is the index that serves "these series between t1 and t2".
    sa.Column(
        "series_id", sa.Integer, sa.ForeignKey("mlinfra_series.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    # NULL stands for NaN: SQLite cannot store NaN and turns it into NULL anyway. A staleness
    # marker has a representation of its own (mlinfra.store_values).
    sa.Column("value", sa.Double, nullable=True),
    # Serves replacing one sweep (all series at one ts) and retention (ts < cutoff).
    sa.Index("ix_mlinfra_samples_ts", "ts"),
    # SQLite: the table *is* the (series_id, ts) B-tree, so a range read finds the values
    # in the key's pages instead of looking each row up through a separate rowid index.
    sqlite_with_rowid=False,
)

sweeps_table = sa.Table(
    "mlinfra_sweeps",
    metadata,
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(250), nullable=True),
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("samples", sa.Integer, nullable=False),
    sa.Column("summary", sa.Text, nullable=True),
)

staging_table = sa.Table(
    "mlinfra_staging",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("collector", sa.String(64), primary_key=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """A Prometheus label matcher; a missing label matches as the empty string."""

    label: str
    op: MatchOp
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = compile_label_regex(self.value).fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True, slots=True)
class Series:
    id: int
    name: str
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class SweepRecord:
    ts: float
    run_id: str | None
    samples: int
    summary: dict[str, Any] | None


def _fingerprint(name: str, labels_json: str) -> str:
    return hashlib.sha1(f"{name}\x00{labels_json}".encode(), usedforsecurity=False).hexdigest()


class MetricsStore:
    """Samples, sweeps and staging over one SQLAlchemy engine. Thread-safe; cheap to share."""

    def __init__(self, engine: Engine, *, description: str | None = None):
        self.engine = engine
        self.description = description or engine.url.render_as_string(hide_password=True)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_url(cls, url: str | sa.URL, *, description: str | None = None) -> MetricsStore:
        return cls(engine_for(url), description=description)

    @classmethod
    def from_connection(cls, conn_id: str = DEFAULT_CONN_ID) -> MetricsStore:
        """The store behind Airflow connection ``conn_id``; the SQLite default when it is absent."""
        from mlinfra.connections import get_connection

        conn = get_connection(conn_id)
        if conn is None:
            path = default_sqlite_path()
            return cls.from_url(f"sqlite:///{path}", description=f"{path} (no connection {conn_id!r})")
        url = url_from_connection(conn)
        return cls.from_url(
            url, description=f"connection {conn_id!r} ({url.render_as_string(hide_password=True)})"
        )

    # ------------------------------------------------------------------ schema / transactions

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (once per process; one query when it is there).

        A fresh store is created by the migrations; a store of an earlier release is
        upgraded with its data. Concurrent callers never both migrate (see
        :mod:`mlinfra.migrations`).
        """
        with self._schema_lock:
            if self._schema_ready:
                return
            from mlinfra.migrations import ensure_current

            try:
                ensure_current(self.engine)
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
                raise StoreError(
                    f"metrics store {self.description} is unreachable: {db_error_reason(e)}"
                ) from e
            except sa.exc.DBAPIError as e:
                raise StoreError(
                    f"metrics store {self.description}: cannot bring its schema up to date "
                    f"(mlinfra store upgrade): {db_error_reason(e)}"
                ) from e
            self._schema_ready = True

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; errors become :class:`StoreError` naming the store."""
        self.create_schema()
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as e:
            raise StoreError(f"metrics store {self.description}: {db_error_reason(e)}") from e
        except sa.exc.IntegrityError as e:
            # A write racing another one (retention deleting a series this write was about
            # to use): the transaction is rolled back, and the task can simply run again.
            raise StoreConflict(
                f"metrics store {self.description}: a concurrent write conflicted ({db_error_reason(e)}); "
                "nothing was written, retry"
            ) from e
        except sa.exc.DBAPIError as e:
            raise StoreError(f"metrics store {self.description}: {db_error_reason(e)}") from e

    # ------------------------------------------------------------------ writes

    def write_sweep(
        self,
        ts: float | datetime,
        samples: Iterable[Sample],
        *,
        run_id: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> int:
        """Write one sweep at ``ts`` in one transaction; returns the number of samples stored.

        Every sample is stamped with ``ts`` (the run's logical time). Writing the same
        ``ts`` again replaces that sweep entirely, so re-running a DAG run never duplicates.
        A sample whose value is :data:`~mlinfra.samples.STALE_NAN` is stored as a staleness
        marker; markers are not counted.
        """
        t = to_ms(ts)
        by_series = {s.series_key: s for s in samples}  # last one wins within a sweep
        return self._retry_conflicts(lambda: self._write_sweep(t, by_series, run_id, summary))

    def _retry_conflicts(self, write: Callable[[], int]) -> int:
        attempt = 1
        while True:
            try:
                return write()
            except StoreConflict:
                if attempt >= _CONFLICT_ATTEMPTS:
                    raise
                log.warning("store write conflicted with a concurrent one (attempt %d); retrying", attempt)
                attempt += 1

    def _write_sweep(
        self, t: int, by_series: dict[Any, Sample], run_id: str | None, summary: dict[str, Any] | None
    ) -> int:
        with self.begin() as conn:
            ids = self._series_ids(conn, by_series.values())
            conn.execute(sa.delete(samples_table).where(samples_table.c.ts == t))
            rows, markers = value_rows((ids[key], t, s.value) for key, s in by_series.items())
            if rows:
                conn.execute(sa.insert(samples_table), rows)
            if markers:
                conn.execute(sa.insert(samples_table).values(value=stale_sql(conn)), markers)
            self._upsert(
                conn,
                sweeps_table,
                {
                    "ts": t,
                    "run_id": run_id,
                    "written_at": datetime.now(UTC),
                    "samples": len(rows),
                    "summary": json.dumps(summary, sort_keys=True, default=str)
                    if summary is not None
                    else None,
                },
                keys=("ts",),
            )
        return len(rows)

    def write_samples(self, samples: Iterable[Sample], *, default_ts: float | datetime | None = None) -> int:
        """Upsert samples that carry their own timestamps (history imports, recording rules).

        A value of :data:`~mlinfra.samples.STALE_NAN` is stored as a staleness marker.
        """
        rows_by_key: dict[tuple[Any, int], Sample] = {}
        for s in samples:
            when = s.timestamp if s.timestamp is not None else default_ts
            if when is None:
                raise ValueError(f"sample {s.name}{s.labels} has no timestamp and no default_ts was given")
            rows_by_key[(s.series_key, to_ms(when))] = s
        if not rows_by_key:
            return 0
        return self._retry_conflicts(lambda: self._write_samples(rows_by_key))

    def _write_samples(self, rows_by_key: dict[tuple[Any, int], Sample]) -> int:
        with self.begin() as conn:
            ids = self._series_ids(conn, rows_by_key.values())
            rows, markers = value_rows((ids[key], t, s.value) for (key, t), s in rows_by_key.items())
            plain = dialect_insert(conn)(samples_table)
            for stmt, batch in ((plain, rows), (plain.values(value=stale_sql(conn)), markers)):
                stmt = stmt.on_conflict_do_update(
                    index_elements=["series_id", "ts"], set_={"value": stmt.excluded.value}
                )
                for chunk in chunks(batch, 5000):
                    conn.execute(stmt, chunk)
        return len(rows_by_key)

    def _series_ids(self, conn: Connection, samples: Iterable[Sample]) -> dict[Any, int]:
        wanted: dict[str, tuple[Any, str, str]] = {}
        for s in samples:
            labels_json = canonical_labels(s.labels)
            wanted[_fingerprint(s.name, labels_json)] = (s.series_key, s.name, labels_json)
        found = self._lookup_fingerprints(conn, list(wanted))
        missing = [fp for fp in wanted if fp not in found]
        if missing:
            stmt = dialect_insert(conn)(series_table).on_conflict_do_nothing(index_elements=["fingerprint"])
            conn.execute(
                stmt,
                [{"fingerprint": fp, "name": wanted[fp][1], "labels": wanted[fp][2]} for fp in missing],
            )
            found.update(self._lookup_fingerprints(conn, missing))
        return {wanted[fp][0]: sid for fp, sid in found.items()}

    @staticmethod
    def _lookup_fingerprints(conn: Connection, fingerprints: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in chunks(fingerprints, _CHUNK):
            rows = conn.execute(
                sa.select(series_table.c.fingerprint, series_table.c.id).where(
                    series_table.c.fingerprint.in_(chunk)
                )
            )
            for fp, sid in rows:  # (a Result has .keys(), so dict(result) would misread it)
                out[fp] = sid
        return out

    @staticmethod
    def _upsert(conn: Connection, table: sa.Table, row: dict[str, Any], *, keys: Sequence[str]) -> None:
        stmt = dialect_insert(conn)(table).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={k: v for k, v in row.items() if k not in keys}
        )
        conn.execute(stmt)

    # ------------------------------------------------------------------ staging

    def stage(self, run_id: str, collector: str, ts: float | datetime, samples: Iterable[Sample]) -> None:
        """Keep a collector's samples until the sweep's write task takes them (replaces a retry's)."""
        self._upsert_staging(run_id, collector, to_ms(ts), dumps_samples(samples))

    def _upsert_staging(self, run_id: str, collector: str, ts: int, payload: str) -> None:
        with self.begin() as conn:
            self._upsert(
                conn,
                staging_table,
                {
                    "run_id": run_id,
                    "collector": collector,
                    "ts": ts,
                    "payload": payload,
                    "created_at": datetime.now(UTC),
                },
                keys=("run_id", "collector"),
            )

    def staged(self, run_id: str) -> dict[str, list[Sample]]:
        """Collector name -> samples staged for ``run_id``."""
        with self.begin() as conn:
            rows = conn.execute(
                sa.select(staging_table.c.collector, staging_table.c.payload)
                .where(staging_table.c.run_id == run_id)
                .order_by(staging_table.c.collector)
            )
            return {collector: loads_samples(payload) for collector, payload in rows}

    def clear_staged(
        self,
        run_id: str | None = None,
        *,
        older_than: float | datetime | None = None,
        staged_before: float | datetime | None = None,
    ) -> int:
        """Drop staged output of one run, of runs at a logical time before ``older_than``,
        or staged (wall clock) before ``staged_before``."""
        stmt = sa.delete(staging_table)
        if run_id is not None:
            stmt = stmt.where(staging_table.c.run_id == run_id)
        if older_than is not None:
            stmt = stmt.where(staging_table.c.ts < to_ms(older_than))
        if staged_before is not None:
            when = (
                staged_before
                if isinstance(staged_before, datetime)
                else datetime.fromtimestamp(staged_before, UTC)
            )
            stmt = stmt.where(staging_table.c.created_at < when)
        with self.begin() as conn:
            return conn.execute(stmt).rowcount or 0

    # ------------------------------------------------------------------ reads

    def select_series(self, name: str | None, matchers: Iterable[LabelMatcher] = ()) -> list[Series]:
        """Series with metric ``name`` (any name if None) whose labels satisfy every matcher."""
        stmt = sa.select(series_table.c.id, series_table.c.name, series_table.c.labels)
        if name is not None:
            stmt = stmt.where(series_table.c.name == name)
        ms = list(matchers)
        out = []
        with self.begin() as conn:
            for sid, sname, labels_json in conn.execute(stmt):
                labels = json.loads(labels_json)
                if all(m.matches({**labels, "__name__": sname}) for m in ms):
                    out.append(Series(sid, sname, labels))
        return out

    def read_samples(
        self,
        series_ids: Sequence[int],
        start: float | datetime,
        end: float | datetime,
        *,
        include_start: bool = True,
        stale: bool = False,
    ) -> dict[int, list[tuple[float, float]]]:
        """series id -> [(ts seconds, value)] in ``[start, end]`` (or ``(start, end]``), time-ordered.

        Staleness markers are left out, as Prometheus leaves them out of range vectors;
        with ``stale=True`` they are in, as :data:`~mlinfra.samples.STALE_NAN`.
        """
        lo, hi = to_ms(start), to_ms(end)
        out: dict[int, list[tuple[float, float]]] = {sid: [] for sid in series_ids}
        lower = samples_table.c.ts >= lo if include_start else samples_table.c.ts > lo
        with self.begin() as conn:
            for chunk in chunks(list(series_ids), _CHUNK):
                rows = conn.execute(
                    sa.select(samples_table.c.series_id, samples_table.c.ts, samples_table.c.value)
                    .where(samples_table.c.series_id.in_(chunk), lower, samples_table.c.ts <= hi)
                    .order_by(samples_table.c.series_id, samples_table.c.ts)
                )
                for sid, t, v in rows:
                    value = from_db(v)
                    if stale or not is_stale_nan(value):
                        out[sid].append((t / 1000.0, value))
        return out

    def query_range(
        self,
        name: str | None,
        matchers: Iterable[LabelMatcher],
        start: float | datetime,
        end: float | datetime,
        *,
        include_start: bool = True,
        stale: bool = False,
    ) -> list[tuple[Series, list[tuple[float, float]]]]:
        """Series matching ``name``/``matchers`` with their samples in the window (empty ones left out);
        staleness markers only with ``stale=True`` (see :meth:`read_samples`)."""
        series = self.select_series(name, matchers)
        points = self.read_samples(
            [s.id for s in series], start, end, include_start=include_start, stale=stale
        )
        return [(s, points[s.id]) for s in series if points[s.id]]

    def current_samples(
        self, names: Iterable[str], start: float | datetime, end: float | datetime
    ) -> list[Sample]:
        """The newest sample in ``[start, end]`` of every series of the metrics ``names``, in one read.

        Each sample carries its own timestamp. A series whose newest sample is a staleness
        marker (its target went away) is not current and is left out. Ordered by series id.
        """
        lo, hi = to_ms(start), to_ms(end)
        later = samples_table.alias("later")
        # Only each series' newest row in the window comes back (a seek on the primary key
        # per series), not every row of the window.
        newest_ts = (
            sa.select(sa.func.max(later.c.ts))
            .where(later.c.series_id == series_table.c.id, later.c.ts >= lo, later.c.ts <= hi)
            .scalar_subquery()
        )
        rows: list[Any] = []
        with self.begin() as conn:
            for chunk in chunks(sorted(set(names)), _CHUNK):
                rows += conn.execute(
                    sa.select(
                        samples_table.c.series_id,
                        series_table.c.name,
                        series_table.c.labels,
                        samples_table.c.ts,
                        samples_table.c.value,
                    )
                    .join(series_table, series_table.c.id == samples_table.c.series_id)
                    .where(series_table.c.name.in_(chunk), samples_table.c.ts == newest_ts)
                ).all()
        rows.sort(key=lambda r: r[0])
        out = []
        for _, name, labels, t, v in rows:
            value = from_db(v)
            if not is_stale_nan(value):
                out.append(Sample(name, json.loads(labels), value, t / 1000.0))
        return out

    def sweeps(self, start: float | datetime, end: float | datetime) -> list[SweepRecord]:
        """Sweeps written with a logical time in ``[start, end)``."""
        with self.begin() as conn:
            rows = conn.execute(
                sa.select(
                    sweeps_table.c.ts, sweeps_table.c.run_id, sweeps_table.c.samples, sweeps_table.c.summary
                )
                .where(sweeps_table.c.ts >= to_ms(start), sweeps_table.c.ts < to_ms(end))
                .order_by(sweeps_table.c.ts)
            )
            return [
                SweepRecord(t / 1000.0, run_id, n, json.loads(summary) if summary else None)
                for t, run_id, n, summary in rows
            ]

    def latest_sweep(self, *, before: float | datetime | None = None) -> SweepRecord | None:
        """The sweep with the newest logical time (before ``before`` if given), or ``None``."""
        stmt = sa.select(
            sweeps_table.c.ts, sweeps_table.c.run_id, sweeps_table.c.samples, sweeps_table.c.summary
        )
        if before is not None:
            stmt = stmt.where(sweeps_table.c.ts < to_ms(before))
        with self.begin() as conn:
            row = conn.execute(stmt.order_by(sweeps_table.c.ts.desc()).limit(1)).first()
        if row is None:
            return None
        t, run_id, n, summary = row
        return SweepRecord(t / 1000.0, run_id, n, json.loads(summary) if summary else None)

    def sweep_at(self, ts: float | datetime) -> SweepRecord | None:
        """The sweep written at exactly ``ts``, or ``None``."""
        t = to_ms(ts)
        with self.begin() as conn:
            row = conn.execute(
                sa.select(sweeps_table.c.run_id, sweeps_table.c.samples, sweeps_table.c.summary).where(
                    sweeps_table.c.ts == t
                )
            ).first()
        if row is None:
            return None
        run_id, n, summary = row
        return SweepRecord(t / 1000.0, run_id, n, json.loads(summary) if summary else None)

    def sweep_samples(
        self, ts: float | datetime, *, names: Iterable[str] | None = None, stale: bool = False
    ) -> list[Sample]:
        """Every sample stored at exactly ``ts`` (a sweep as written), stamped with ``ts``.

        Only metrics in ``names`` when given; staleness markers only with ``stale=True``.
        """
        t = to_ms(ts)
        stmt = (
            sa.select(series_table.c.name, series_table.c.labels, samples_table.c.value)
            .join(series_table, series_table.c.id == samples_table.c.series_id)
            .where(samples_table.c.ts == t)
        )
        wanted = None if names is None else sorted(set(names))
        rows: list[Any] = []
        with self.begin() as conn:
            for chunk in [None] if wanted is None else chunks(wanted, _CHUNK):
                where = stmt if chunk is None else stmt.where(series_table.c.name.in_(chunk))
                rows += conn.execute(where).all()
        rows.sort(key=lambda r: (r[0], r[1]))
        out = [Sample(name, json.loads(labels), from_db(v), t / 1000.0) for name, labels, v in rows]
        return out if stale else [s for s in out if not is_stale_nan(s.value)]

    # ------------------------------------------------------------------ housekeeping

    def apply_retention(self, older_than: float | datetime) -> tuple[int, int]:
        """Delete samples and sweeps before ``older_than`` and series left empty.

        Returns (samples deleted, series deleted). Series churn (pods are renamed
        on every rollout) would otherwise grow the series table for ever.
        """
        cutoff = to_ms(older_than)
        with self.begin() as conn:
            n_samples = (
                conn.execute(sa.delete(samples_table).where(samples_table.c.ts < cutoff)).rowcount or 0
            )
            conn.execute(sa.delete(sweeps_table).where(sweeps_table.c.ts < cutoff))
            conn.execute(sa.delete(staging_table).where(staging_table.c.ts < cutoff))
            still_used = sa.select(samples_table.c.series_id).where(
                samples_table.c.series_id == series_table.c.id
            )
            n_series = conn.execute(sa.delete(series_table).where(~sa.exists(still_used))).rowcount or 0
        return n_samples, n_series
