"""Daily report: one interval at 1x and 10x history; a 30-day backfill vs 30 single intervals.

History is generated for 8 GPUs and 20 models (5-minute sweeps): 1x = 3 days, 10x =
30 days (about 5 million samples). Both stores are built in this run.

1. The same day's report (aggregation + rendering + writing through
   ObjectStoragePath + the store row: the report task's whole work, called in-process
   as the task calls it) is timed on each store, alternating, median of the rounds.
   Target: 10x / 1x <= 1.5 (the report reads only its interval).
2. "Backfill": the task's work for 30 consecutive days, as a backfill's 30 runs do,
   vs the same single day computed 30 times; timed pair by pair (day i, then the
   fixed day) so that load from other processes falls on both sides alike, with the
   store's connection pool reset before each (every task run is a fresh process).
   Target: ratio <= 1.1. The scheduler's per-run overhead is the same on both sides
   and is left out, so the ratio measures what the report itself costs per interval.

    .venv/bin/python bench/bench_reports.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.reports.synthetic: the history generator the tests use

from airflow.sdk import ObjectStoragePath  # noqa: E402

from mlinfra.config import Fleet, Resources, load_fleet  # noqa: E402
from mlinfra.reports.publish import publish_report  # noqa: E402
from mlinfra.store import MetricsStore  # noqa: E402
from tests.reports.synthetic import SyntheticHistory, load  # noqa: E402

DAY = 86400.0
START = datetime(2026, 9, 1, tzinfo=UTC).timestamp()


def fleet_of(n_models: int) -> Fleet:
    base = load_fleet()
    template = base.models[1]
    models = []
    for i in range(n_models):
        name = f"model-{i:02d}"
        models.append(
            template.model_copy(
                update={
                    "name": name,
                    "kubernetes": template.kubernetes.model_copy(update={"deployment": name}),
                    "resources": Resources(cpu="2" if i % 2 else "500m", memory="4Gi", gpus=i % 2),
                }
            )
        )
    return base.model_copy(update={"models": models})


def history(fleet: Fleet, days: int) -> SyntheticHistory:
    return SyntheticHistory(
        start=START,
        days=days,
        models=[(m.name, m.kubernetes.namespace, m.kubernetes.deployment) for m in fleet.models],
        gpus=tuple(("gpu-node-1", str(i)) for i in range(8)),
        hosts=("gpu-node-1",),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days-1x", type=int, default=3)
    parser.add_argument("--backfill-days", type=int, default=30)
    args = parser.parse_args()
    logging.getLogger("mlinfra").setLevel(logging.WARNING)
    days_10x = 10 * args.days_1x

    fleet = fleet_of(20)
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
        stores = {}
        for label, days in (("1x", args.days_1x), ("10x", days_10x)):
            t = time.perf_counter()
            store = MetricsStore.from_url(f"sqlite:///{tmp}/{label}.db")
            load(store, history(fleet, days))
            stores[label] = store
            print(f"built {label}: {days} days of sweeps in {time.perf_counter() - t:.0f}s", flush=True)

        base = ObjectStoragePath(Path(tmp, "reports").as_uri())

        def run(store: MetricsStore, day: float) -> float:
            # Each task run is a fresh process with a fresh connection: no warm SQLite page cache.
            store.engine.dispose()
            t = time.perf_counter()
            publish_report(store, fleet, day, day + DAY, base=base)
            return time.perf_counter() - t

        # The same day in both stores: the last full day of the 1x history.
        day = START + (args.days_1x - 1) * DAY
        publish_report(stores["1x"], fleet, day, day + DAY, base=base)  # warm-up (imports, fonts)
        samples: dict[str, list[float]] = {"1x": [], "10x": []}
        for _ in range(args.rounds):
            for label in ("1x", "10x"):
                samples[label].append(run(stores[label], day))
        one_x, ten_x = statistics.median(samples["1x"]), statistics.median(samples["10x"])
        print(
            f"one interval: 1x {one_x:.2f}s  10x {ten_x:.2f}s  ratio {ten_x / one_x:.2f} (target <= 1.5)",
            flush=True,
        )

        store = stores["10x"]
        n = min(args.backfill_days, days_10x)
        first = START + (days_10x - n) * DAY
        # Interleaved pair by pair, so load from other processes hits both sides alike.
        backfill = repeated = 0.0
        for i in range(n):
            backfill += run(store, first + i * DAY)
            repeated += run(store, first)
        print(
            f"{n} intervals: backfill {backfill:.1f}s  {n} x one interval {repeated:.1f}s  "
            f"ratio {backfill / repeated:.2f} (target <= 1.1)",
            flush=True,
        )
        for s in stores.values():
            s.engine.dispose()


if __name__ == "__main__":
    main()
