"""Reading the store for a report: the series of one metric over ``[start, end)``.

Gauges are read as stored; counters as their increases between consecutive sweeps,
stamped with the later sweep, the baseline being the last sample before ``start``
(so an increase across midnight belongs to the day it ends in, and no request is
counted on two days).
"""

from __future__ import annotations

from collections.abc import Iterable

from mlinfra.reports.figures import Point, counter_deltas
from mlinfra.samples import canonical_labels
from mlinfra.store import LabelMatcher, MetricsStore

Labelled = tuple[dict[str, str], list[Point]]


def read_series(
    store: MetricsStore,
    name: str,
    start: float,
    end: float,
    matchers: Iterable[LabelMatcher] = (),
) -> list[Labelled]:
    """Series of ``name`` with their points in ``[start, end)``, in a stable order (by labels)."""
    found = store.query_range(name, matchers, start, end - 0.001)
    return sorted(((s.labels, pts) for s, pts in found), key=lambda x: canonical_labels(x[0]))


def read_increases(
    store: MetricsStore, name: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], list[Point]]]:
    """Per series, its increases stamped with the later sample, for later samples in ``[start, end)``."""
    out = []
    for labels, pts in read_series(store, name, start - step, end):
        before = [p for p in pts if p[0] < start]
        window = [p for p in pts if p[0] >= start]
        out.append((labels, counter_deltas(window, baseline=before[-1] if before else None)))
    return out
