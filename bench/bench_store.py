"""Store: write one sweep of 2,000 samples and read one series' last hour, at 1x and 100x history.

1x history = one hour of 5-minute sweeps of 2,000 series (24,000 samples); 100x = 100
hours (2.4 million samples). Both stores are built in this run, then the same write and
read are timed on each, alternating. Target: the read grows <= 2x from 1x to 100x.
Runs on SQLite (the embedded default) and, with ``--postgres-url``, on PostgreSQL.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from mlinfra.samples import Sample
from mlinfra.store import MetricsStore, samples_table

SERIES = 2000
STEP = 300.0
T_END = 1_800_000_000.0


def sweep_samples(value_seed: int) -> list[Sample]:
    rnd = random.Random(value_seed)
    return [
        Sample(
            "ml_bench_metric",
            {"gpu_id": str(i % 8), "host": f"node-{i // 8}", "kind": "bench"},
            rnd.random() * 100,
        )
        for i in range(SERIES)
    ]


def fill(store: MetricsStore, hours: int) -> None:
    """Bulk-load history directly (the same rows write_sweep would produce, much faster)."""
    store.write_sweep(T_END - STEP, sweep_samples(0))  # creates the series
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM mlinfra_series ORDER BY id"))]
        n_sweeps = int(hours * 3600 / STEP)
        rnd = random.Random(1)
        for k in range(n_sweeps):
            ts = round((T_END - STEP * (n_sweeps + 1 - k)) * 1000)
            conn.execute(
                sa.insert(samples_table), [{"series_id": sid, "ts": ts, "value": rnd.random()} for sid in ids]
            )


def time_ops(store: MetricsStore, rounds: int) -> tuple[list[float], list[float]]:
    series = store.select_series("ml_bench_metric")
    target = next(s for s in series if s.labels["gpu_id"] == "3" and s.labels["host"] == "node-42")
    writes, reads = [], []
    for r in range(rounds):
        t = time.perf_counter()
        store.write_sweep(T_END + r * STEP, sweep_samples(r))
        writes.append(time.perf_counter() - t)
        now = T_END + r * STEP
        t = time.perf_counter()
        pts = store.read_samples([target.id], now - 3600, now)[target.id]
        reads.append(time.perf_counter() - t)
        assert 12 <= len(pts) <= 14, len(pts)
    return writes, reads


def run(make_store, label: str, rounds: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    small, large = make_store("x1"), make_store("x100")
    t = time.perf_counter()
    fill(small, 1)
    fill(large, 100)
    fill_s = time.perf_counter() - t
    w1, r1, w100, r100 = [], [], [], []
    for _ in range(3):  # alternate to share whatever the machine is doing between both
        a, b = time_ops(small, rounds)
        w1 += a
        r1 += b
        a, b = time_ops(large, rounds)
        w100 += a
        r100 += b
    res = {
        "write_1x_ms": statistics.median(w1) * 1000,
        "write_100x_ms": statistics.median(w100) * 1000,
        "read_1x_ms": statistics.median(r1) * 1000,
        "read_100x_ms": statistics.median(r100) * 1000,
    }
    res["read_ratio"] = res["read_100x_ms"] / res["read_1x_ms"]
    res["write_ratio"] = res["write_100x_ms"] / res["write_1x_ms"]
    print(
        f"store[{label}] (history built in {fill_s:.0f}s): write 2,000 samples {res['write_1x_ms']:.1f} ms (1x) / "
        f"{res['write_100x_ms']:.1f} ms (100x) -> {res['write_ratio']:.2f}x; read 1 series' last hour "
        f"{res['read_1x_ms']:.2f} ms / {res['read_100x_ms']:.2f} ms -> ratio {res['read_ratio']:.2f} (target <= 2)"
    )
    return res


def main(rounds: int = 5, postgres_url: str | None = None) -> dict[str, dict[str, float]]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = run(
            lambda n: MetricsStore.from_url(f"sqlite:///{Path(tmp) / n}.db"), "sqlite", rounds
        )
    if postgres_url:

        def pg(name: str) -> MetricsStore:
            admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(sa.text(f"DROP DATABASE IF EXISTS bench_{name}"))
                c.execute(sa.text(f"CREATE DATABASE bench_{name}"))
            admin.dispose()
            return MetricsStore.from_url(sa.make_url(postgres_url).set(database=f"bench_{name}"))

        out["postgres"] = run(pg, "postgres", rounds)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres-url")
    a = parser.parse_args()
    main(a.rounds, a.postgres_url)
