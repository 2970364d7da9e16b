"""The ``ALERTS`` and ``ALERTS_FOR_STATE`` series, and restoring ``for`` state from them after a gap.

At each evaluation Prometheus 2.42 appends, for every pending or firing alert of an
alerting rule (``rules/alerting.go``)::

    ALERTS{alertname="X", alertstate="pending"|"firing", <the alert's labels>}  1
    ALERTS_FOR_STATE{alertname="X", <the alert's labels>}                      <active_at, unix seconds>

so rules, ``mlinfra query`` and the UI can ask about alerts in PromQL
(``count(ALERTS{alertstate="firing"}) by (severity)``)::

    store.write_samples(alert_series_samples(states, at))

After a restart Prometheus rebuilds the ``for`` clock of rules whose ``for`` is at
least ``rules.for_grace_period`` from the last ``ALERTS_FOR_STATE`` sample within
``rules.outage_tolerance`` (``Group.RestoreForState``): an alert that had been
pending keeps the time it had already spent, the outage does not count, and one
that would fire within the grace period waits the grace period instead. mlinfra
evaluates at logical times, so its "restart" is a gap: no evaluation of the group
within two intervals before this one (:func:`is_gap`); :func:`restore_for_state`
then does what Prometheus does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mlinfra.rules.alerts import ActiveAlert, Transition
from mlinfra.samples import STALE_NAN, Sample

if TYPE_CHECKING:
    from mlinfra.store import MetricsStore

ALERTS = "ALERTS"
ALERTS_FOR_STATE = "ALERTS_FOR_STATE"
# Prometheus's --rules.alert.for-grace-period and --rules.alert.for-outage-tolerance defaults.
DEFAULT_FOR_GRACE_PERIOD = 600.0
DEFAULT_OUTAGE_TOLERANCE = 3600.0


@dataclass(frozen=True)
class RestoreSettings:
    """How ``for`` state comes back after a gap (``rules.for_grace_period``, ``rules.outage_tolerance``)."""

    for_grace_period: float = DEFAULT_FOR_GRACE_PERIOD
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE
    # A group not evaluated within this many of its intervals before ``at`` has had a gap.
    gap_intervals: float = 2.0


def alert_series_samples(states: Mapping[str, ActiveAlert], at: float) -> list[Sample]:
    """``ALERTS`` (1) and ``ALERTS_FOR_STATE`` (active_at, whole seconds) of every pending or firing alert."""
    out: list[Sample] = []
    for a in states.values():
        if a.state not in ("pending", "firing"):
            continue
        labels = {k: v for k, v in a.labels.items() if k != "__name__"}
        out.append(Sample(ALERTS, {**labels, "alertstate": a.state}, 1.0, at))
        # Go's ActiveAt.Unix(): whole seconds, rounded down.
        out.append(Sample(ALERTS_FOR_STATE, labels, float(math.floor(a.active_at)), at))
    return out


def ended_series_markers(transitions: Sequence[Transition], at: float) -> list[Sample]:
    """Staleness markers for the ``ALERTS``/``ALERTS_FOR_STATE`` series this evaluation ended.

    Prometheus's group evaluation (``rules/group.go``, ``seriesInPreviousEval``) appends a
    StaleNaN for every series a rule returned at its previous evaluation and not at this
    one; an alerting rule returns both series of each pending or firing alert. So a
    pending alert that fires ends its ``alertstate="pending"`` series, and one that
    resolves (or stops pending) ends both. Instant queries then stop seeing them at once
    instead of for the 5-minute lookback.

    >>> t = Transition("f", {"alertname": "A"}, "pending", "firing", 60.0, 1.0, 0.0)
    >>> [(s.name, dict(s.labels)) for s in ended_series_markers([t], 60.0)]
    [('ALERTS', {'alertname': 'A', 'alertstate': 'pending'})]
    """
    out: list[Sample] = []
    for t in transitions:
        if t.from_state not in ("pending", "firing") or t.to_state == t.from_state:
            continue
        labels = {k: v for k, v in t.labels.items() if k != "__name__"}
        out.append(Sample(ALERTS, {**labels, "alertstate": t.from_state}, STALE_NAN, at))
        if t.to_state not in ("pending", "firing"):
            out.append(Sample(ALERTS_FOR_STATE, labels, STALE_NAN, at))
    return out


def is_gap(previous_ts: float | None, at: float, interval: float, settings: RestoreSettings) -> bool:
    """Whether the group's last evaluation before ``at`` is missing or more than the allowed intervals old."""
    return previous_ts is None or at - previous_ts > settings.gap_intervals * interval


def _last_for_state(
    store: MetricsStore, labels: Mapping[str, str], at: float, tolerance: float
) -> tuple[float, float] | None:
    """(timestamp, value) of the last ``ALERTS_FOR_STATE`` sample of exactly ``labels`` in ``[at - tolerance, at)``."""
    from mlinfra.store import LabelMatcher

    matchers = [LabelMatcher("alertname", "=", labels.get("alertname", ""))]
    # The half-open window: a re-run of ``at`` must not restore from its own earlier output.
    end = at - 0.001
    if end < at - tolerance:
        return None
    wanted = dict(labels)
    for series, points in store.query_range(ALERTS_FOR_STATE, matchers, at - tolerance, end):
        if dict(series.labels) == wanted and points:
            return points[-1]
    return None


def restore_for_state(
    store: MetricsStore,
    states: Mapping[str, ActiveAlert],
    transitions: list[Transition],
    *,
    at: float,
    hold: float,
    settings: RestoreSettings,
) -> tuple[dict[str, ActiveAlert], list[Transition]]:
    """Prometheus's ``RestoreForState`` for one rule, right after the evaluation at ``at`` that follows a gap."""
    if hold < settings.for_grace_period:
        return dict(states), transitions  # it would not wait the grace period: nothing to restore
    restored: dict[str, ActiveAlert] = {}
    new_active: dict[str, float] = {}
    for fp, a in states.items():
        last = _last_for_state(
            store, {k: v for k, v in a.labels.items() if k != "__name__"}, at, settings.outage_tolerance
        )
        if a.state not in ("pending", "firing") or last is None or math.isnan(last[1]):
            restored[fp] = a
            continue
        down_at = float(math.floor(last[0]))  # Go: time.Unix(t/1000, 0)
        active_at = float(int(last[1]))
        remaining = hold - (down_at - active_at)
        if remaining <= 0:
            pass  # it was firing when the gap began: it fires again at the next evaluation
        elif remaining < settings.for_grace_period:
            active_at = at + settings.for_grace_period - hold
        else:
            active_at = active_at + (at - down_at)
        restored[fp] = replace(a, active_at=active_at)
        new_active[fp] = active_at
    fixed = [
        replace(t, active_at=new_active[t.fingerprint]) if t.fingerprint in new_active else t
        for t in transitions
    ]
    return restored, fixed
