"""Fixtures of the report tests: a store filled with generated history and its ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlinfra.config import Fleet, load_fleet
from mlinfra.store import MetricsStore
from tests.reports.expected import daily_events
from tests.reports.synthetic import STEP, Slot, SyntheticHistory, load, record_events

DAY = 86400.0
START = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


@dataclass
class Filled:
    store: MetricsStore
    fleet: Fleet
    history: SyntheticHistory
    slots: list[Slot]

    def day(self, i: int) -> tuple[float, float]:
        return self.history.start + i * DAY, self.history.start + (i + 1) * DAY


def make_history(start: float = START, days: int = 4) -> SyntheticHistory:
    """Day 0 is the baseline; day 1 has a gap, a counter reset, NaN readings and a GPU that goes away."""
    fleet = load_fleet()
    d1 = start + DAY
    return SyntheticHistory(
        start=start,
        days=days,
        models=[(m.name, m.kubernetes.namespace, m.kubernetes.deployment) for m in fleet.models],
        gpus=(("gpu-node-1", "0"), ("gpu-node-1", "1"), ("gpu-node-2", "0")),
        hosts=("gpu-node-1", "gpu-node-2"),
        gaps=[(d1 + 3 * 3600, d1 + 4 * 3600 + 1800)],
        resets=[("half-plus-two", d1 + 12 * 3600), ("resnet50-classifier", d1 + 12 * 3600 + STEP)],
        gpu_absent=[("gpu-node-2", "0", d1 + 6 * 3600, d1 + 9 * 3600)],
        nan_util=[d1 + 7 * 3600, d1 + 20 * 3600],
    )


def fill(store: MetricsStore, history: SyntheticHistory, *, events: bool = True) -> list[Slot]:
    slots = load(store, history)
    if events:
        for i in range(history.days):
            record_events(store, daily_events(history.start + i * DAY))
    return slots


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    path: Path = tmp_path_factory.mktemp("reports") / "store.db"
    store = MetricsStore.from_url(f"sqlite:///{path}")
    history = make_history()
    slots = fill(store, history)
    yield Filled(store, load_fleet(), history, slots)
    store.engine.dispose()
