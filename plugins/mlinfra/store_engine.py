"""Which database the metrics store is and how to reach it.

An Airflow connection (or the SQLite default under ``$AIRFLOW_HOME``) becomes a
SQLAlchemy URL; each URL gets one pooled engine per process, SQLite ones in WAL mode
with a configurable busy timeout. :func:`dialect_insert` gives the table owners the
``INSERT ... ON CONFLICT`` both supported databases share.

>>> engine_for("sqlite:///:memory:") is engine_for("sqlite:///:memory:")
True
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlinfra.exceptions import StoreError

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str | sa.URL) -> Engine:
    """One engine per URL per process (pools are meant to be shared)."""
    key = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create_engine(sa.make_url(url))
        return engine


def _create_engine(url: sa.URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        busy = _busy_timeout()
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy},
            # One connection for :memory: so every caller sees the same database.
            poolclass=sa.pool.StaticPool if database in ("", ":memory:") else None,
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers (reports, the UI) never block the sweep's writer, and vice versa.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={round(busy * 1000)}")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


BUSY_TIMEOUT_ENV = "MLINFRA_STORE_BUSY_TIMEOUT"


def _busy_timeout() -> float:
    """Seconds a SQLite write waits for another writer's lock (``$MLINFRA_STORE_BUSY_TIMEOUT``, 30)."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else 30.0
    except ValueError:
        raise StoreError(f"{BUSY_TIMEOUT_ENV}={raw!r}: must be a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise StoreError(f"{BUSY_TIMEOUT_ENV}={raw!r}: must be a finite number of seconds > 0")
    return value


def default_sqlite_path() -> Path:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / "mlinfra" / "store.db"


def url_from_connection(conn: Any) -> sa.URL:
    """An Airflow connection -> SQLAlchemy URL (postgres/postgresql or sqlite types)."""
    extra = conn.extra_dejson if getattr(conn, "extra", None) else {}
    if extra.get("sqlalchemy_url"):
        return sa.make_url(extra["sqlalchemy_url"])
    conn_type = (conn.conn_type or "").lower()
    if conn_type in ("postgres", "postgresql"):
        return sa.URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
            query={
                k: str(v) for k, v in extra.items() if k in ("sslmode", "sslrootcert", "sslcert", "sslkey")
            },
        )
    if conn_type == "sqlite":
        return sa.URL.create("sqlite", database=conn.host or str(default_sqlite_path()))
    raise StoreError(
        f"connection {conn.conn_id!r} has type {conn.conn_type!r}; the metrics store accepts "
        "postgres, sqlite, or any type with extra {'sqlalchemy_url': ...}"
    )


def dialect_insert(conn: Connection) -> Any:
    """The dialect's INSERT, which has ON CONFLICT on both SQLite and PostgreSQL."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialects: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    if conn.dialect.name not in dialects:  # pragma: no cover - refused at connection time
        raise StoreError(f"unsupported database {conn.dialect.name!r}: use PostgreSQL or SQLite")
    return dialects[conn.dialect.name]


def db_error_reason(e: sa.exc.DBAPIError) -> str:
    """The first line of the driver's message: what a person needs, without SQL and parameters."""
    return str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
