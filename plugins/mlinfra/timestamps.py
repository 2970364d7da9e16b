"""Timestamps as people and other tools read them: RFC 3339 in UTC.

The store keeps epoch seconds; everything shown to a person (CLI output, log lines,
reasons kept in the audit) goes through :func:`rfc3339`::

    >>> rfc3339(1_800_000_000)
    '2027-01-15T08:00:00Z'
    >>> rfc3339(1_800_000_000.25)
    '2027-01-15T08:00:00.250Z'
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(seconds: float) -> str:
    """``seconds`` since the epoch as RFC 3339 UTC (``Z``), milliseconds only when there are any."""
    dt = datetime.fromtimestamp(seconds, UTC)
    if dt.microsecond // 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
