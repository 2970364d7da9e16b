"""A scale decision (or a manual request) as rows a person reads, for the audit page.

The decision is stored as JSON (:meth:`mlinfra.scaling.decision.ScaleDecision.to_dict`
for the sweep's decisions, ``{"request", "by", "policy", "hold_until"}`` for
``model_scale``). Shown raw it was a line of braces with epoch floats, cut off; here
each fact is a ``(label, text)`` row, times are RFC 3339, and nothing is cut::

    >>> decision_rows({"at": 1_800_000_000, "action": "none", "steps": ["within tolerance"]})
    [('decided at', '2027-01-15T08:00:00Z'), ('action', 'none'), ('steps', 'within tolerance')]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlinfra.durations import format_duration
from mlinfra.timestamps import rfc3339

# Policy fields worth a glance, in this order; durations are seconds in the JSON.
_POLICY = (
    ("min_replicas", "min", False),
    ("max_replicas", "max", False),
    ("tolerance", "tolerance", False),
    ("scale_up_stabilization", "up stabilization", True),
    ("scale_down_stabilization", "down stabilization", True),
    ("cooldown", "cooldown", True),
    ("max_step_pods", "max step pods", False),
    ("dry_run", "dry run", False),
)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(_value(v) for v in value) or "none"
    return str(value)


def _when(value: Any) -> str:
    return rfc3339(float(value)) if isinstance(value, int | float) else "never"


def decision_rows(decision: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(label, text)`` rows of one stored decision; unknown fields come last, as ``key: value``."""
    if not decision:
        return []
    d = dict(decision)
    rows: list[tuple[str, str]] = []
    if "request" in d:  # a person's request through model_scale
        request = d.pop("request") or {}
        rows.append(
            ("requested", ", ".join(f"{k}={_value(v)}" for k, v in request.items() if v not in ("", None)))
        )
        if "by" in d:
            rows.append(("by", str(d.pop("by"))))
        until = d.pop("hold_until", None)
        rows.append(("hold", f"until {_when(until)}" if until else "none (the autoscaler may change it)"))
    if "at" in d:
        rows.append(("decided at", _when(d.pop("at"))))
    for key, label in (("action", "action"), ("trigger", "trigger")):
        if d.get(key) is not None:
            rows.append((label, str(d.pop(key))))
        else:
            d.pop(key, None)
    inputs = dict(d.pop("inputs", None) or {})
    if inputs:
        target = inputs.pop("target", None)
        if target:
            rows.append(
                ("target", f"{target.get('expr')} ({target.get('type')}) = {_value(target.get('value'))}")
            )
        for key in ("current", "metric", "metric_error", "ratio"):
            if inputs.get(key) is not None:
                rows.append((key.replace("_", " "), _value(inputs.pop(key))))
            else:
                inputs.pop(key, None)
        if "last_action_at" in inputs:
            rows.append(("last scale action", _when(inputs.pop("last_action_at"))))
        alerts = inputs.pop("alerts", None)
        if alerts:
            rows.append(("alerts", "; ".join(str(a.get("alertname")) for a in alerts)))
        rows.extend((k.replace("_", " "), _value(v)) for k, v in inputs.items())
    steps = d.pop("steps", None)
    if steps:
        rows.append(("steps", " → ".join(str(s) for s in steps) if len(steps) > 1 else str(steps[0])))
    policy = d.pop("policy", None) or {}
    if policy:
        parts = []
        for key, label, is_duration in _POLICY:
            value = policy.get(key)
            if value is None:
                continue
            parts.append(f"{label} {format_duration(float(value)) if is_duration else _value(value)}")
        rows.append(("policy", ", ".join(parts)))
    for key in (
        "model",
        "namespace",
        "deployment",
        "reason",
        "from_replicas",
        "to_replicas",
        "recommendation",
    ):
        d.pop(key, None)  # already on the event's own row
    rows.extend((k.replace("_", " "), _value(v)) for k, v in d.items() if v not in (None, "", [], {}, False))
    return rows
