"""How sample values are kept in the store's ``value`` column, NaNs and staleness markers included.

A plain number is a ``DOUBLE``. An ordinary NaN is ``NULL`` (SQLite cannot keep a NaN:
it turns one into ``NULL`` anyway). Prometheus's staleness marker
(:data:`mlinfra.samples.STALE_NAN`) is a NaN with its own bit pattern, so it needs a
representation of its own, different on each database and no schema change:

* SQLite: the marker's 8 bytes (IEEE 754, little endian) as a ``BLOB``; a ``REAL``
  column keeps a BLOB as it is;
* PostgreSQL: ``'NaN'::float8`` (PostgreSQL keeps a NaN but not its payload; an ordinary
  NaN is ``NULL`` there too, so a stored NaN can only be a marker).

Reads turn every representation back into a float (:func:`from_db`), the marker into
:data:`~mlinfra.samples.STALE_NAN`.

>>> from mlinfra.samples import STALE_NAN, is_stale_nan
>>> to_db(float("nan")) is None, is_stale_nan(from_db(None)), is_stale_nan(from_db(STALE_BYTES))
(True, False, True)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlinfra.samples import STALE_NAN, is_stale_nan

__all__ = ["STALE_BYTES", "from_db", "stale_sql", "to_db"]

STALE_BYTES = struct.pack("<d", STALE_NAN)
_NAN = math.nan


def to_db(value: float) -> float | None:
    """A plain value as bound to the ``value`` column (markers go through :func:`stale_sql`)."""
    return None if math.isnan(value) else value


def stale_sql(conn: Connection) -> Any:
    """The SQL literal a staleness marker is stored as on ``conn``'s database."""
    if conn.dialect.name == "sqlite":
        return sa.literal_column(f"X'{STALE_BYTES.hex().upper()}'")
    return sa.literal_column("'NaN'::float8")


def from_db(value: Any) -> float:
    """A stored value as a float: ``NULL`` -> NaN, a stored marker -> ``STALE_NAN``."""
    if value is None:
        return _NAN
    if value.__class__ is float:
        return value if value == value else STALE_NAN  # a NaN stored on PostgreSQL is a marker
    if isinstance(value, bytes | memoryview):
        return STALE_NAN
    return float(value)


def to_ms(t: float | datetime) -> int:
    """Seconds (or an aware datetime) -> integer milliseconds, the stored unit."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"naive datetime {t!r}: pass an aware datetime (UTC)")
        return round(t.timestamp() * 1000)
    return round(float(t) * 1000)


def from_ms(ms: int | None) -> float | None:
    """Stored integer milliseconds -> seconds (None stays None): the inverse of :func:`to_ms`."""
    return None if ms is None else ms / 1000.0


def as_utc(t: datetime | None) -> datetime | None:
    """A stored ``DateTime(timezone=True)`` as an aware UTC datetime (SQLite hands it back naive)."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def value_rows(items: Iterable[tuple[int, int, float]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(series id, ts ms, value) -> rows with plain values, rows of staleness markers (no value)."""
    rows: list[dict[str, Any]] = []
    markers: list[dict[str, Any]] = []
    for sid, t, v in items:
        if is_stale_nan(v):
            markers.append({"series_id": sid, "ts": t})
        else:
            rows.append({"series_id": sid, "ts": t, "value": to_db(v)})
    return rows, markers


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (the store's IN (...) lists)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
