"""Reading connection extras the same way in every hook of this package."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def timeout_setting(
    explicit: float | None,
    extras: Mapping[str, Any],
    *,
    conn_id: str,
    default: float,
    error: Callable[[str], Exception],
) -> float:
    """Seconds to wait: the explicit argument beats the extra ``timeout``, which beats ``default``.

    A non-numeric or non-positive extra raises ``error`` naming the connection, at once,
    rather than surfacing later as a confusing client error.
    """
    if explicit is not None:
        return float(explicit)
    raw = extras.get("timeout")
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise error(
            f"connection {conn_id!r}: extra 'timeout' must be a number of seconds, got {raw!r}"
        ) from None
    if value <= 0:
        raise error(f"connection {conn_id!r}: extra 'timeout' must be > 0, got {raw!r}")
    return value
