"""Keeping credentials out of messages, logs, the store, the UI and reports.

Errors travel far here: a task's exception lands in its log, in a deploy record
or a sweep summary (the store), on ``/mlinfra/api/fleet`` and in report HTML. So
an error names a server by :func:`redact_url` and never quotes a secret setting::

    redact_url("https://ops:s3cret@prom.example:9090/prefix?token=x")
    # 'https://prom.example:9090/prefix'
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """``url`` without its ``user:password@`` part, query and fragment (where tokens hide)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:  # a malformed port: leave it out rather than fail while reporting
        port = None
    if port:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
