"""Prometheus duration strings (``5m``, ``1h30m``, ``250ms``) <-> seconds.

Rule files, scaling windows and retention settings all use Prometheus's own
duration syntax so that users write the same thing everywhere.

>>> parse_duration("1h30m")
5400.0
>>> format_duration(330)
'5m30s'
"""

from __future__ import annotations

import re

_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
# Same grammar as Prometheus's model.ParseDuration: units in decreasing order, each at most once.
_DURATION_RE = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Prometheus duration; plain numbers are taken as seconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"durations cannot be negative, got {text}")
        return float(text)
    s = text.strip()
    match = _DURATION_RE.match(s)
    if not s or match is None or not any(match.groupdict().values()):
        raise ValueError(f"not a Prometheus duration (like 30s, 5m, 1h30m): {text!r}")
    return float(sum(int(v) * _UNITS[k] for k, v in match.groupdict().items() if v))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for ``seconds`` (``0s`` for zero)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit in ("y", "w", "d", "h", "m", "s"):
        size = int(_UNITS[unit] * 1000)
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)
