"""Schema migrations of the metrics store, with Alembic (as Airflow migrates its own database).

Every schema change is a revision under ``versions/``: ``0001_first_release`` is
the store of the first release, each later one a change since. A store is brought
to the newest revision (the *head*) by :func:`upgrade`, which
``MetricsStore.create_schema`` calls on first use (the sweep's first task, the
deploy and scale records, the UI), and ``mlinfra store upgrade`` on demand::

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> upgrade(engine).after == head()
    True
    >>> current(engine) == head(), upgrade(engine).changed
    (True, False)

Guarded so that concurrent callers never both migrate: the whole upgrade runs in
one transaction that first takes a lock (PostgreSQL: an advisory transaction lock;
SQLite: ``BEGIN IMMEDIATE``, the database's write lock), then reads the revision
again; the second caller waits, finds the store at head and does nothing. At head,
:func:`ensure_current` costs one query.

The version is kept in its own table, :data:`VERSION_TABLE`, so a store that lives
in Airflow's database never touches Airflow's ``alembic_version``.

A store made before migrations existed (tables created by ``create_all``, no
version table) is *adopted*: it is stamped with the newest revision whose tables
it has, and upgraded from there (so a release's SQLite store still gets its samples
table rebuilt WITHOUT ROWID).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from mlinfra.exceptions import StoreError

log = logging.getLogger(__name__)

VERSION_TABLE = "mlinfra_alembic_version"
# pg_advisory_xact_lock key of the store's migrations (any fixed bigint; this one spells "mlinfra").
ADVISORY_LOCK_KEY = 0x6D6C696E667261

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What :func:`upgrade` did: revision ``before`` (None: empty store) and ``after``."""

    before: str | None
    after: str | None
    adopted: bool = False  # a store made before migrations, stamped at ``before`` first

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this mlinfra knows."""
    found = _script().get_current_head()
    if found is None:  # pragma: no cover - the package ships its revisions
        raise StoreError(f"no store migrations found under {_HERE / 'versions'}")
    return found


def revisions() -> list[str]:
    """Every known revision, oldest first."""
    return [r.revision for r in reversed(list(_script().walk_revisions()))]


def current(engine: Engine) -> str | None:
    """The store's revision; None for an empty store or one made before migrations."""
    with engine.connect() as conn:
        return _read_version(conn)


def ensure_current(engine: Engine) -> None:
    """Upgrade the store unless it is at head already (then: one query)."""
    try:
        with engine.connect() as conn:
            at = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except sa.exc.DBAPIError:
        at = None  # no version table (yet): upgrade() finds out why, under its lock
    if at != head():
        upgrade(engine)


def upgrade(engine: Engine, revision: str = "head") -> UpgradeResult:
    """Bring the store to ``revision`` (default: head) under the migration lock."""
    with _locked(engine) as conn:
        before = _read_version(conn)
        if before is not None and before not in revisions():
            raise StoreError(
                f"the metrics store is at schema revision {before!r}, which this mlinfra does not know "
                f"(newest known: {head()!r}): it was upgraded by a newer mlinfra; upgrade mlinfra too"
            )
        adopted = False
        if before is None:
            before = _adopted_revision(conn)
            if before is not None:
                log.info("metrics store made before migrations: adopting it at revision %s", before)
                command.stamp(_config(conn), before)
                adopted = True
        if before != head() or revision != "head":
            log.info("metrics store: upgrading schema %s -> %s", before or "(empty)", revision)
            command.upgrade(_config(conn), revision)
        after = _read_version(conn)
    return UpgradeResult(before, after, adopted)


def downgrade(engine: Engine, revision: str) -> UpgradeResult:
    """Take the store back to ``revision`` under the migration lock (data of dropped tables is lost)."""
    with _locked(engine) as conn:
        before = _read_version(conn)
        command.downgrade(_config(conn), revision)
        after = _read_version(conn)
    return UpgradeResult(before, after)


def _read_version(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the store's migration lock; committed when the block ends."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # The write lock now, not at the first write: a second migrator waits here
            # (busy timeout) and then reads the revision the first one left.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        else:  # pragma: no cover - refused when the store is opened
            raise StoreError(f"unsupported database {conn.dialect.name!r}: use PostgreSQL or SQLite")
        yield conn
        conn.commit()


# ---------------------------------------------------------------------- stores made before migrations


def _has_tables(*names: str) -> Callable[[Connection], bool]:
    def check(conn: Connection) -> bool:
        inspector = sa.inspect(conn)
        return all(inspector.has_table(n) for n in names)

    return check


def _samples_without_rowid(conn: Connection) -> bool:
    if conn.dialect.name != "sqlite":
        return True
    sql = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'mlinfra_samples'")
    ).scalar()
    return "WITHOUT ROWID" in str(sql or "").upper()


# What each revision leaves behind, in order: a pre-migration store is at the last
# revision of the longest prefix it satisfies (create_all only ever added whole tables).
_SIGNATURES: tuple[tuple[str, Callable[[Connection], bool]], ...] = (
    (
        "0001_first_release",
        _has_tables("mlinfra_series", "mlinfra_samples", "mlinfra_sweeps", "mlinfra_staging"),
    ),
    ("0002_deployments", _has_tables("mlinfra_deployments")),
    ("0003_reports", _has_tables("mlinfra_reports")),
    (
        "0004_alert_state",
        _has_tables("mlinfra_alerts", "mlinfra_alert_transitions", "mlinfra_rule_group_evaluations"),
    ),
    ("0005_scale_records", _has_tables("mlinfra_scale_events", "mlinfra_scale_recommendations")),
    ("0006_samples_without_rowid", _samples_without_rowid),
)


def _adopted_revision(conn: Connection) -> str | None:
    found: str | None = None
    for revision, present in _SIGNATURES:
        if not present(conn):
            break
        found = revision
    return found


def describe(result: UpgradeResult) -> str:
    """One line for people: what an upgrade did."""
    if not result.changed and not result.adopted:
        return f"already at {result.after}"
    before = result.before or "(empty)"
    adopted = " (made before migrations: adopted)" if result.adopted else ""
    return f"upgraded {before}{adopted} -> {result.after}"


__all__ = [
    "ADVISORY_LOCK_KEY",
    "VERSION_TABLE",
    "UpgradeResult",
    "current",
    "describe",
    "downgrade",
    "ensure_current",
    "head",
    "revisions",
    "upgrade",
]
