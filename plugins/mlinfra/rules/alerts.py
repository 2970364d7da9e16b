"""The alert state machine of one alerting rule: Prometheus's, as a pure function.

Per rule and label set an alert moves ``inactive -> pending -> firing -> resolved``:

* the expression returns the label set: a new alert is ``pending`` with
  ``active_at`` = this evaluation; it becomes ``firing`` once it has been active
  for the rule's ``for`` (at once when ``for`` is 0);
* the label set is gone: a ``pending`` alert is dropped (back to ``inactive``); a
  ``firing`` one becomes ``resolved`` -- unless ``keep_firing_for`` is set, in which
  case it keeps firing until it has been missing that long;
* a ``resolved`` alert is kept for 15 minutes (so it can be re-sent as resolved to
  Alertmanager) and then forgotten; if the label set comes back it starts again as
  a new ``pending`` alert with a new ``active_at``.

:func:`advance` takes the states after the previous evaluation and the
expression's result at this one, and returns the new states and the transitions
(at most one per label set and evaluation: ``for: 0`` gives ``inactive -> firing``)::

    states, transitions = advance({}, [AlertInstance(labels, annotations, 91.0)], at=t, hold=300)
    states[fp].state            # 'pending'
    states, transitions = advance(states, [...same labels...], at=t + 300, hold=300)
    transitions[0].to_state     # 'firing'

Nothing here touches a database: :mod:`mlinfra.rules.state` persists the result.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

State = Literal["inactive", "pending", "firing", "resolved"]
STATES: tuple[State, ...] = ("inactive", "pending", "firing", "resolved")
# Prometheus's resolvedRetention: how long a resolved alert is still reported.
RESOLVED_RETENTION = 15 * 60.0


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of a label set (sha1 of its canonical JSON)."""
    return _fingerprint(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=65536)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    # Cached: an alert's label set comes back at every evaluation (a backtest: every step).
    text = json.dumps(dict(items), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class AlertInstance:
    """One element of an alerting rule's result, labels and annotations already rendered."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class ActiveAlert:
    """The state of one label set of one rule; times are seconds since the epoch."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    state: State
    active_at: float
    value: float
    fired_at: float | None = None
    resolved_at: float | None = None
    keep_firing_since: float | None = None
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "state": self.state,
            "active_at": self.active_at,
            "value": _json_float(self.value),
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "keep_firing_since": self.keep_firing_since,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ActiveAlert:
        return cls(
            labels=dict(d["labels"]),
            annotations=dict(d["annotations"]),
            state=d["state"],
            active_at=float(d["active_at"]),
            value=float(d["value"]),
            fired_at=d.get("fired_at"),
            resolved_at=d.get("resolved_at"),
            keep_firing_since=d.get("keep_firing_since"),
        )


def _json_float(v: float) -> float | str:
    # JSON has no NaN/Inf; keep them as Prometheus's strings.
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return v


@dataclass(frozen=True)
class Transition:
    """One state change of one label set at one evaluation."""

    fingerprint: str
    labels: Mapping[str, str]
    from_state: State
    to_state: State
    ts: float
    value: float
    active_at: float | None
    # Why: the values behind the transition (mlinfra.rules.explain), when they were computed.
    explanation: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class DuplicateLabelSetError(ValueError):
    """Two result elements carry the same labels once the rule's labels are applied."""


def advance(
    previous: Mapping[str, ActiveAlert],
    results: Sequence[AlertInstance],
    *,
    at: float,
    hold: float = 0.0,
    keep_firing_for: float = 0.0,
    resolved_retention: float = RESOLVED_RETENTION,
) -> tuple[dict[str, ActiveAlert], list[Transition]]:
    """The states after evaluating at ``at``, and the transitions that led there.

    ``previous`` maps fingerprints to the states after the previous evaluation;
    ``results`` is what the expression returned now. Raises
    :class:`DuplicateLabelSetError` (and changes nothing) when two results share a
    label set, as Prometheus does.
    """
    current = _by_label_set(results)
    states: dict[str, ActiveAlert] = {}
    # Label sets present now: continue an active alert, or start a new pending one.
    for fp, r in current.items():
        states[fp] = _present(previous.get(fp), r, fp, at)
    # Label sets gone: drop pending ones, resolve firing ones (unless kept firing).
    for fp, prev in previous.items():
        if fp in current:
            continue
        after = _absent(prev, at, keep_firing_for, resolved_retention)
        if after is not None:
            states[fp] = after
    # Pending long enough: fire.
    for fp, a in states.items():
        if a.state == "pending" and at - a.active_at >= hold:
            states[fp] = replace(a, state="firing", fired_at=at)
    return states, _transitions(previous, states, at)


def _by_label_set(results: Sequence[AlertInstance]) -> dict[str, AlertInstance]:
    current: dict[str, AlertInstance] = {}
    for r in results:
        fp = fingerprint(r.labels)
        if fp in current:
            raise DuplicateLabelSetError(
                "vector contains metrics with the same labelset after applying alert labels"
            )
        current[fp] = r
    return current


def _present(prev: ActiveAlert | None, r: AlertInstance, fp: str, at: float) -> ActiveAlert:
    """The state of a label set the expression returned at ``at``."""
    if prev is not None and prev.state in ("pending", "firing"):
        return replace(prev, value=r.value, annotations=dict(r.annotations), keep_firing_since=None)
    return ActiveAlert(
        labels=dict(r.labels),
        annotations=dict(r.annotations),
        state="pending",
        active_at=at,
        value=r.value,
        fingerprint=fp,
    )


def _absent(
    prev: ActiveAlert, at: float, keep_firing_for: float, resolved_retention: float
) -> ActiveAlert | None:
    """The state of a label set the expression no longer returns; None: forgotten."""
    if prev.state == "firing" and keep_firing_for > 0:
        since = prev.keep_firing_since if prev.keep_firing_since is not None else at
        if at - since < keep_firing_for:
            return replace(prev, keep_firing_since=since)
    if prev.state == "pending":
        return None
    if prev.state == "resolved":
        if prev.resolved_at is not None and at - prev.resolved_at > resolved_retention:
            return None
        return prev
    return replace(prev, state="resolved", resolved_at=at, keep_firing_since=None)


def _transitions(
    previous: Mapping[str, ActiveAlert], states: Mapping[str, ActiveAlert], at: float
) -> list[Transition]:
    transitions: list[Transition] = []
    for fp in sorted(set(previous) | set(states)):
        before: State = previous[fp].state if fp in previous else "inactive"
        after_alert = states.get(fp)
        after: State = after_alert.state if after_alert is not None else "inactive"
        if before == "resolved" and after == "inactive":
            continue  # forgotten after the retention: not a change anyone acts on
        if before != after:
            ref = after_alert or previous[fp]
            transitions.append(
                Transition(
                    fingerprint=fp,
                    labels=dict(ref.labels),
                    from_state=before,
                    to_state=after,
                    ts=at,
                    value=ref.value,
                    active_at=ref.active_at,
                )
            )
    return transitions


def count_active(states: Mapping[str, ActiveAlert]) -> int:
    """Pending and firing alerts (what a group's ``limit`` counts)."""
    return sum(1 for a in states.values() if a.state in ("pending", "firing"))
