"""The fleet page's alerts section: alerts grouped by rule, a few of each shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Alerts of one rule the page lists before "N more" (the JSON has them all).
ALERTS_SHOWN_PER_RULE = 10


def group_alerts(
    alerts: Sequence[Mapping[str, Any]], shown: int | None = ALERTS_SHOWN_PER_RULE
) -> list[dict[str, Any]]:
    """The page's alerts, one group per alert name, as Prometheus's alerts page groups them
    by rule: its counts, and at most ``shown`` of its alerts (``None``: all of them).

    Groups keep the order of ``alerts`` (firing first, then by severity); so do the alerts
    in a group. A rule that fires for every model gives one group and a "more" count
    rather than hundreds of rows.

    >>> rows = [{"alert": "A", "state": "firing"}, {"alert": "B", "state": "pending"},
    ...         {"alert": "A", "state": "pending"}, {"alert": "A", "state": "pending"}]
    >>> [(g["alert"], g["firing"], g["pending"], len(g["alerts"]), g["hidden"]) for g in group_alerts(rows, 2)]
    [('A', 1, 2, 2, 1), ('B', 0, 1, 1, 0)]
    """
    groups: dict[str, dict[str, Any]] = {}
    for a in alerts:
        group = groups.setdefault(
            a["alert"], {"alert": a["alert"], "firing": 0, "pending": 0, "alerts": [], "hidden": 0}
        )
        group["firing" if a["state"] == "firing" else "pending"] += 1
        if shown is None or len(group["alerts"]) < shown:
            group["alerts"].append(a)
        else:
            group["hidden"] += 1
    return list(groups.values())
