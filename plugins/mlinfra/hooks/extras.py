"""Reading connection extras the same way in every hook of this package."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from mlinfra.templated import FALSE_WORDS, TRUE_WORDS


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
        value = float(explicit)
        if not math.isfinite(value) or value <= 0:
            raise error(f"timeout must be a finite number of seconds > 0, got {explicit!r}")
        return value
    raw = extras.get("timeout")
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise error(
            f"connection {conn_id!r}: extra 'timeout' must be a number of seconds, got {raw!r}"
        ) from None
    # NaN compares false with everything, so "> 0" alone would let it through.
    if not math.isfinite(value) or value <= 0:
        raise error(f"connection {conn_id!r}: extra 'timeout' must be a finite number > 0, got {raw!r}")
    return value


def http_base_url(conn: Any, *, conn_id: str, what: str, error: Callable[[str], Exception]) -> str:
    """``scheme://host[:port][/path_prefix]`` of an HTTP service from its Airflow connection.

    The host may be a full URL (people paste one); otherwise the schema is ``http``
    (default) or ``https``; the port is added unless the host already has one; the
    extra ``path_prefix`` serves a server behind a reverse proxy. ``what`` names the
    service in the error ("the Prometheus server").
    """
    from urllib.parse import urlsplit

    host = str(conn.host or "").strip().rstrip("/")
    if not host:
        raise error(f"connection {conn_id!r} has no host; set it to {what}'s host")
    if "://" in host:
        url = host
    else:
        scheme = (conn.schema or "http").lower()
        if scheme not in ("http", "https"):
            raise error(f"connection {conn_id!r} has schema {conn.schema!r}; use 'http' or 'https'")
        url = f"{scheme}://{host}"
    if conn.port and urlsplit(url).port is None:
        url = f"{url}:{conn.port}"
    extras = conn.extra_dejson if getattr(conn, "extra", None) else {}
    prefix = str(extras.get("path_prefix") or "").strip("/")
    return f"{url}/{prefix}" if prefix else url


def tls_verify_setting(
    extras: Mapping[str, Any], *, conn_id: str, error: Callable[[str], Exception]
) -> bool | ssl.SSLContext:
    """The extra ``verify``: true (default), false, or the path of a CA bundle (PEM).

    Connection extras are often typed into a form, so ``"false"`` arrives as a
    string; taken as a path, it used to fail later as a confusing TLS error.
    Booleans spelled as strings are read as booleans; anything else must name a
    readable CA bundle, checked here (httpx deprecates passing a path itself).
    """
    raw = extras.get("verify", True)
    if raw is None or isinstance(raw, bool):
        return True if raw is None else raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in TRUE_WORDS or not text:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        try:
            return ssl.create_default_context(cafile=text)
        except (OSError, ssl.SSLError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise error(
                f"connection {conn_id!r}: extra 'verify' must be true, false or the path of a CA "
                f"bundle; cannot load {text!r}: {reason}"
            ) from None
    raise error(
        f"connection {conn_id!r}: extra 'verify' must be true, false or the path of a CA bundle, "
        f"got {type(raw).__name__}"
    )
