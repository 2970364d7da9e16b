"""Why an alert fired: the values behind each transition, stored with it.

At every transition of an alert (pending, firing, resolved) mlinfra records what the
expression saw at that instant::

    {"value": 95.0,                                   # the alert's value
     "comparison": {"op": ">", "left": "gpu:temp:avg5m", "left_value": 95.0,
                    "right": "80", "right_value": 80.0},   # for `a > b` forms
     "pending_since": 1800000300.0, "for": 600.0,
     "contributors": [{"labels": {...}, "value": 97.0}, ...]}  # aggregations: top inputs

``explain_transition`` computes it with the rule's engine at the evaluation time
(extra queries only at transitions, which are rare); :mod:`mlinfra.rules.state` stores
it and ``mlinfra alerts explain <alertname> [--at T]`` prints it.

The expression is split at its top-level comparison (outside parentheses, brackets,
braces and strings; comparisons bind looser than arithmetic and tighter than
``and``/``or``/``unless``, so an expression whose top level is a set operator has no
comparison to show). A side starting with an aggregation (``sum by (job) (...)``) lists
the inner series that fall into the alert's group, largest first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from mlinfra.promql.interface import InstantSample, QueryError, QueryResult

MAX_CONTRIBUTORS = 5
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_AGGREGATIONS = "sum|avg|min|max|count|stddev|stdvar|group|topk|bottomk|quantile|count_values"
_AGG_RE = re.compile(
    rf"^\s*({_AGGREGATIONS})\s*(?:(by|without)\s*\(([^)]*)\)\s*)?\((.*)\)\s*(?:(by|without)\s*\(([^)]*)\))?\s*$",
    re.DOTALL,
)
_SET_OPS = re.compile(r"\b(and|or|unless)\b")
_MODIFIER = re.compile(
    r"^\s*(bool\s+)?(?:(on|ignoring)\s*\([^)]*\)\s*)?(?:(group_left|group_right)\s*(?:\([^)]*\))?\s*)?"
)


def _top_level(expr: str) -> list[tuple[int, str]]:
    """(position, text) of every top-level character run outside brackets and strings."""
    out: list[tuple[int, str]] = []
    depth, i, quote = 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            out.append((i, c))
        i += 1
    return out


def split_comparison(expr: str) -> tuple[str, str, str] | None:
    """``(left, op, right)`` of the expression's top-level comparison, or None."""
    top = _top_level(expr)
    flat = "".join(c if (i, c) in set(top) else " " for i, c in enumerate(expr))
    if _SET_OPS.search(flat):
        return None
    for pos, _ in top:
        for op in _COMPARISONS:
            if flat.startswith(op, pos) and not (op in ("<", ">") and flat.startswith(op + "=", pos)):
                if op in ("<", ">") and pos > 0 and flat[pos - 1] in "<>=!":
                    continue
                left, right = expr[:pos], expr[pos + len(op) :]
                modifier = _MODIFIER.match(right)
                if modifier:
                    right = right[modifier.end() :]
                return left.strip(), op, right.strip()
    return None


def _vector(result: QueryResult) -> list[InstantSample]:
    if isinstance(result, float | int):
        return [InstantSample({}, float(result))]
    return list(result)


def _matching(samples: Sequence[InstantSample], labels: Mapping[str, str]) -> InstantSample | None:
    """The sample whose labels all agree with the alert's (the alert adds its own labels)."""
    best: InstantSample | None = None
    for s in samples:
        own = {k: v for k, v in s.labels.items() if k != "__name__"}
        agrees = all(labels.get(k) == v for k, v in own.items())
        if agrees and (best is None or len(own) > len(best.labels)):
            best = s
    return best


def _contributors(
    side: str, labels: Mapping[str, str], query: Callable[[str], QueryResult]
) -> list[dict[str, Any]]:
    m = _AGG_RE.match(side)
    if m is None:
        return []
    mode = m.group(2) or m.group(5)
    grouping = [g.strip() for g in (m.group(3) or m.group(6) or "").split(",") if g.strip()]
    inner = m.group(4)
    if m.group(1) in ("topk", "bottomk", "quantile", "count_values") and "," in inner:
        inner = inner.split(",", 1)[1]
    try:
        samples = _vector(query(inner))
    except QueryError:
        return []
    if mode == "by":
        keep = [s for s in samples if all(s.labels.get(g, "") == labels.get(g, "") for g in grouping)]
    elif mode == "without":
        keep = [
            s
            for s in samples
            if all(
                v == labels.get(k, v) for k, v in s.labels.items() if k not in grouping and k != "__name__"
            )
        ]
    else:
        keep = samples
    keep.sort(key=lambda s: (-s.value if not math.isnan(s.value) else math.inf, sorted(s.labels.items())))
    return [{"labels": dict(s.labels), "value": _num(s.value)} for s in keep[:MAX_CONTRIBUTORS]]


def _num(v: float | None) -> float | str | None:
    """JSON-safe: NaN and infinities as Prometheus's strings."""
    if v is None:
        return None
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def explain_transition(
    expr: str,
    labels: Mapping[str, str],
    value: float,
    *,
    active_at: float | None,
    hold: float,
    query: Callable[[str], QueryResult],
) -> dict[str, Any]:
    """The explanation of one transition (see the module docstring); query errors leave parts out."""
    out: dict[str, Any] = {"expr": expr, "value": _num(value), "pending_since": active_at, "for": hold}
    parts = split_comparison(expr)
    sides = [expr] if parts is None else [parts[0], parts[2]]
    if parts is not None:
        comparison: dict[str, Any] = {"op": parts[1], "left": parts[0], "right": parts[2]}
        for name, side in (("left", parts[0]), ("right", parts[2])):
            try:
                hit = _matching(_vector(query(side)), labels)
            except QueryError as e:
                comparison[f"{name}_error"] = str(e)
                continue
            comparison[f"{name}_value"] = None if hit is None else _num(hit.value)
        out["comparison"] = comparison
    for side in sides:
        contributors = _contributors(side, labels, query)
        if contributors:
            out["contributors"] = contributors
            out["aggregation"] = side
            break
    return out


def _when(t: float | None) -> str:
    from datetime import UTC, datetime

    return "-" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def print_explanations(alertname: str, rows: Sequence[Mapping[str, Any]], out: TextIO) -> int:
    """``mlinfra alerts explain``: one block per label set; 1 when there is nothing to explain."""
    if not rows:
        out.write(f"no explained transition of {alertname} (has it been evaluated with a store?)\n")
        return 1
    for r in rows:
        why = r["explanation"]
        labels = {k: v for k, v in r["labels"].items() if k != "alertname"}
        out.write(
            f"{alertname} {_labels(labels)}: {r['from_state']} -> {r['to_state']} at {_when(r['ts'])}\n"
        )
        out.write(f"  expr: {why.get('expr', '')}\n  value: {why.get('value')}\n")
        c = why.get("comparison")
        if c:
            held = "held" if r["to_state"] in ("pending", "firing") else "no longer held"
            out.write(f"  comparison ({held}): {c.get('left_value')} {c['op']} {c.get('right_value')}\n")
            out.write(f"    left:  {c['left']} = {c.get('left_value', c.get('left_error'))}\n")
            out.write(f"    right: {c['right']} = {c.get('right_value', c.get('right_error'))}\n")
        if why.get("pending_since") is not None:
            out.write(f"  pending since {_when(why['pending_since'])} (for: {why.get('for', 0):g}s)\n")
        for i, contributor in enumerate(why.get("contributors", [])):
            if i == 0:
                out.write(f"  top inputs of {why.get('aggregation')}:\n")
            out.write(f"    {_labels(contributor['labels'])} = {contributor['value']}\n")
    return 0
