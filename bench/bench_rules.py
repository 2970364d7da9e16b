"""Rule evaluation: the local engine against Prometheus itself, on the same data, in one run.

Data: the differential corpus's generator (tests/rules/corpus.py) scaled to ~10,000
series with a day of 5-minute history, loaded into a SQLite store (bulk insert) and,
through ``promtool tsdb create-blocks-from openmetrics``, into a real Prometheus 2.42.

Expressions: the differential corpus, plus the shipped rule set
(include/alert_rules/*.yaml, when present) and alerting expressions of the same
shape over the generated metrics.

Timed, at several instants, after a warm-up of both sides:

* local: ``LocalEngine.instant_many`` (the rule set after a sweep: one session that
  shares reads) and, separately, one ``instant()`` per expression;
* Prometheus: ``/api/v1/query?stats=all`` per expression; its own ``execTotalTime``
  (the server's query time) and the client's wall-clock round trip.

Target: local / Prometheus <= 5. Then growth: the same evaluation at 1k, 10k and 100k
series (local only; 6 hours of history each by default, which every window of the
corpus fits in, so that 100k series load in about a minute); the per-series cost
should not grow (linear or better).

    PYTHONPATH=. .venv/bin/python bench/bench_rules.py            # full run (a few minutes)
    PYTHONPATH=. .venv/bin/python bench/bench_rules.py --quick    # 1k/10k only, fewer rounds
    PYTHONPATH=. .venv/bin/python bench/bench_rules.py --backtest-only --backtest-series 1000 --backtest-days 2

Backtest: ``mlinfra rules backtest`` of the alerting shapes over ``--backtest-days`` of a
``--backtest-series`` store (30 days of 10k by default), against the same evaluations
done one by one through the engine; target ratio <= 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import sqlalchemy as sa

from mlinfra.promql.engine import LocalEngine
from mlinfra.promql.interface import QueryError
from mlinfra.samples import Sample, canonical_labels
from mlinfra.store import MetricsStore
from tests.rules.corpus import CORPUS, SERIES_PER_INSTANCE, generate, shipped_rule_exprs
from tests.support.prometheus_tsdb import SeriesData, prometheus_with_history, write_openmetrics

ROOT = Path(__file__).resolve().parents[1]
START = 1_700_000_000_000
DAY = 86_400_000
STEP = 300_000
# Evaluated late in the day, at a sample time and between samples.
INSTANTS = (START + DAY - 3 * STEP, START + DAY - 7 * STEP - 150_000, START + DAY - 20 * STEP + 1234)

# The shapes of the shipped alert rules (issue 3), over the generated metric names.
ALERTING: tuple[str, ...] = (
    "cpu_percent > 85",
    "mem_used_bytes / mem_total_bytes > 0.9",
    "temp_celsius > 85",
    "increase(errors_total[1h]) > 3",
    "kube_deployment_status_replicas_available < kube_deployment_spec_replicas",
    "sum by (job) (rate(errors_total[5m])) / sum by (job) (rate(req_total[5m])) > 0.01",
    "histogram_quantile(0.99, sum by (job, le) (rate(latency_seconds_bucket[5m]))) > 0.2",
    "avg by (instance) (cpu_percent) < 20 or avg by (instance) (cpu_percent) > 95",
    "sum by (instance) (rate(req_total[5m])) > 50",
    "avg_over_time(cpu_percent[30m]) < 20",
)


def series_for(n_series: int, hours: float = 24) -> Iterator[SeriesData]:
    """~``n_series`` series with the last ``hours`` of the day's 5-minute history (all of it by default)."""
    span = round(hours * 3_600_000)
    return generate(max(1, n_series // SERIES_PER_INSTANCE), START + DAY - span, span, STEP)


# ---------------------------------------------------------------------- loading


def bulk_load(store: MetricsStore, series: Iterable[SeriesData], om_path: Path | None) -> tuple[int, int]:
    """Series rows through the store, samples with one executemany (what write_samples stores, faster)."""
    store.create_schema()
    n_series = n_samples = 0
    om = om_path.open("w") if om_path is not None else None
    batch: list[SeriesData] = []

    def flush() -> None:
        nonlocal n_samples
        # One sample each creates the series (and their ids) the ordinary way.
        store.write_samples(Sample(s.name, s.labels, s.points[0][1], s.points[0][0] / 1000) for s in batch)
        with store.engine.begin() as conn:
            ids = {
                (name, labels): sid
                for sid, name, labels in conn.execute(
                    sa.text("SELECT id, name, labels FROM mlinfra_series WHERE id > :lo"), {"lo": floor}
                )
            }
            rows = [
                (ids[(s.name, canonical_labels(s.labels))], t, None if v != v else v)
                for s in batch
                for t, v in s.points[1:]
            ]
            conn.exec_driver_sql("INSERT INTO mlinfra_samples (series_id, ts, value) VALUES (?, ?, ?)", rows)
        n_samples += len(rows) + len(batch)
        if om is not None:
            write_openmetrics(batch, om, eof=False)
        batch.clear()

    floor = 0
    for s in series:
        if not s.points:
            continue
        batch.append(s)
        n_series += 1
        if len(batch) >= 2000:
            flush()
            with store.engine.connect() as conn:
                floor = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM mlinfra_series")).scalar_one()
    if batch:
        flush()
    if om is not None:
        om.write("# EOF\n")
        om.close()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return n_series, n_samples


# ---------------------------------------------------------------------- timing


def time_local_session(engine: LocalEngine, exprs: list[str], instants: Iterable[int]) -> float:
    t = time.perf_counter()
    for at in instants:
        engine.instant_many(exprs, at / 1000)
    return time.perf_counter() - t


def time_local_each(engine: LocalEngine, exprs: list[str], instants: Iterable[int]) -> float:
    t = time.perf_counter()
    for at in instants:
        for expr in exprs:
            with contextlib.suppress(QueryError):
                engine.instant(expr, at / 1000)
    return time.perf_counter() - t


def time_prometheus(
    client: httpx.Client, url: str, exprs: list[str], instants: Iterable[int]
) -> tuple[float, float]:
    """(sum of Prometheus's own execTotalTime, client wall-clock) in seconds."""
    server = 0.0
    t = time.perf_counter()
    for at in instants:
        for expr in exprs:
            body = client.get(
                f"{url}/api/v1/query", params={"query": expr, "time": f"{at / 1000:.3f}", "stats": "all"}
            ).json()
            stats = (body.get("data") or {}).get("stats") or {}
            server += float(stats.get("timings", {}).get("execTotalTime", 0.0))
    return server, time.perf_counter() - t


def compare(n_series: int, rounds: int, exprs: list[str], workdir: Path) -> dict[str, float]:
    store = MetricsStore.from_url(f"sqlite:///{workdir / 'compare.db'}")
    om = workdir / "history.om.txt"
    t = time.perf_counter()
    got_series, got_samples = bulk_load(store, series_for(n_series), om)
    print(
        f"loaded {got_series:,} series / {got_samples:,} samples into the store in {time.perf_counter() - t:.0f} s"
    )
    t = time.perf_counter()
    with (
        prometheus_with_history(openmetrics_file=om, timeout=300) as prom,
        httpx.Client(timeout=60) as client,
    ):
        print(f"promtool blocks + Prometheus start: {time.perf_counter() - t:.0f} s")
        engine = LocalEngine(store)
        # Warm-up: Prometheus's page cache and postings, the local plan and label caches.
        time_prometheus(client, prom.url, exprs, INSTANTS)
        time_local_session(engine, exprs, INSTANTS)
        server, wall, session, each = [], [], [], []
        for _ in range(rounds):  # alternate, so both share whatever else the machine does
            s, w = time_prometheus(client, prom.url, exprs, INSTANTS)
            server.append(s)
            wall.append(w)
            session.append(time_local_session(engine, exprs, INSTANTS))
            each.append(time_local_each(engine, exprs, INSTANTS))
    store.engine.dispose()
    evals = len(exprs) * len(INSTANTS)
    res = {
        "series": got_series,
        "expressions": len(exprs),
        "evaluations": evals,
        "prometheus_exec_ms": statistics.median(server) * 1000,
        "prometheus_http_ms": statistics.median(wall) * 1000,
        "local_session_ms": statistics.median(session) * 1000,
        "local_each_ms": statistics.median(each) * 1000,
    }
    res["best_ratio_session_vs_exec"] = min(session) / min(server)
    res["ratio_session_vs_exec"] = res["local_session_ms"] / res["prometheus_exec_ms"]
    res["ratio_session_vs_http"] = res["local_session_ms"] / res["prometheus_http_ms"]
    res["ratio_each_vs_exec"] = res["local_each_ms"] / res["prometheus_exec_ms"]
    print(
        f"\n{len(exprs)} expressions x {len(INSTANTS)} instants over {got_series:,} series "
        f"(median of {rounds} rounds):\n"
        f"  Prometheus 2.42, its own execTotalTime:   {res['prometheus_exec_ms']:8.1f} ms\n"
        f"  Prometheus 2.42, HTTP round trips:        {res['prometheus_http_ms']:8.1f} ms\n"
        f"  local engine, one session per instant:    {res['local_session_ms']:8.1f} ms"
        f"  -> ratio {res['ratio_session_vs_exec']:.2f} vs exec, {res['ratio_session_vs_http']:.2f} vs HTTP"
        " (target <= 5)\n"
        f"  local engine, instant() per expression:   {res['local_each_ms']:8.1f} ms"
        f"  -> ratio {res['ratio_each_vs_exec']:.2f} vs exec\n"
        f"  best rounds, session vs exec: ratio {res['best_ratio_session_vs_exec']:.2f}"
    )
    return res


def growth(
    sizes: list[int], rounds: int, exprs: list[str], workdir: Path, hours: float
) -> dict[int, dict[str, float]]:
    """Every size loaded first, then timed in alternation (best round per size)."""
    print(
        f"\ngrowth (local engine, one session per instant, best of {rounds} alternating rounds; "
        f"the day's last {hours:g} h of history):"
    )
    stores: dict[int, tuple[MetricsStore, LocalEngine, int, int, float]] = {}
    for n in sizes:
        store = MetricsStore.from_url(f"sqlite:///{workdir / f'growth-{n}.db'}")
        t = time.perf_counter()
        got_series, got_samples = bulk_load(store, series_for(n, hours), None)
        engine = LocalEngine(store)
        time_local_session(engine, exprs, INSTANTS[:1])  # warm-up
        stores[n] = (store, engine, got_series, got_samples, time.perf_counter() - t)
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            times[n].append(time_local_session(stores[n][1], exprs, INSTANTS))
    out: dict[int, dict[str, float]] = {}
    for n in sizes:
        store, _, got_series, got_samples, load_s = stores[n]
        ms = min(times[n]) * 1000
        out[n] = {"series": got_series, "ms": ms, "us_per_series": ms * 1000 / got_series}
        print(
            f"  {got_series:>7,} series ({got_samples:>11,} samples, loaded in {load_s:4.0f} s): "
            f"{ms:9.1f} ms = {out[n]['us_per_series']:6.2f} us per series"
        )
        store.engine.dispose()
    first, last = out[sizes[0]], out[sizes[-1]]
    print(
        f"  per-series cost, {sizes[-1] // sizes[0]}x the series: "
        f"{last['us_per_series'] / first['us_per_series']:.2f}x (<= 1 means linear or better)"
    )
    return out


def backtest_vs_one_by_one(
    n_series: int, days: float, step_s: float, workdir: Path, rounds: int = 2
) -> dict[str, float]:
    """``mlinfra rules backtest`` over ``days`` of history against the same evaluations one by one.

    The rule file holds the alerting shapes above (``for: 10m``). "One by one" is what a
    backtest without batching would cost: ``engine.instant(expr, t)`` per rule and step,
    no state machine, no templates. The backtest evaluates the rules as a range
    (``LocalEngine.range_session``: each selector read once per chunk of the window, each
    step slicing it), plus the alert state machine. Target: ratio <= 1.
    """
    import yaml

    from mlinfra.rules.backtest import backtest, evaluation_times
    from mlinfra.rules.files import load_rule_file

    span = round(days * DAY)
    store = MetricsStore.from_url(f"sqlite:///{workdir / f'backtest-{n_series}.db'}")
    t = time.perf_counter()
    got_series, got_samples = bulk_load(
        store, generate(max(1, n_series // SERIES_PER_INSTANCE), START, span, STEP), None
    )
    load_s = time.perf_counter() - t
    rules = [{"alert": f"Shape{i}", "expr": e, "for": "10m"} for i, e in enumerate(ALERTING)]
    path = workdir / "backtest_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "shapes", "rules": rules}]}))
    engine = LocalEngine(store)
    groups = load_rule_file(path, engine=engine)
    start, end = START / 1000 + 3600, (START + span) / 1000
    times = evaluation_times(start, end, step_s)
    engine.instant_many(list(ALERTING), start)  # warm-up (plans, series catalog)

    # Alternating rounds, best of each: the machine's load and the page cache favour neither side.
    batched_runs: list[float] = []
    one_by_one_runs: list[float] = []
    for _ in range(rounds):
        t = time.perf_counter()
        for at in times:
            for expr in ALERTING:
                with contextlib.suppress(QueryError):
                    engine.instant(expr, at)
        one_by_one_runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = backtest(groups, engine, start=start, end=end, step=step_s)
        batched_runs.append(time.perf_counter() - t)
    batched, one_by_one = min(batched_runs), min(one_by_one_runs)
    store.engine.dispose()
    print(
        f"\nbacktest: {got_series:,} series ({got_samples:,} samples, loaded in {load_s:.0f} s), "
        f"{len(ALERTING)} alerting rules, {len(times)} steps of {step_s:g} s over {days:g} days, "
        f"best of {rounds} alternating rounds"
    )
    print(f"  backtest (range reads, state machine): {batched:8.2f} s, {len(result.fired)} firing episodes")
    print(f"  the same evaluations one by one (instant per rule): {one_by_one:8.2f} s")
    print(f"  ratio backtest / one by one: {batched / one_by_one:.2f} (target <= 1.0)")
    return {"series": got_series, "steps": len(times), "backtest_s": batched, "one_by_one_s": one_by_one}


def main(
    quick: bool = False,
    growth_hours: float = 6,
    backtest_series: int = 10_000,
    backtest_days: float = 30,
    backtest_only: bool = False,
    backtest_rounds: int = 2,
) -> dict[str, object]:
    if backtest_only:
        with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
            return {
                "backtest": backtest_vs_one_by_one(
                    backtest_series, backtest_days, 300, Path(tmp), rounds=backtest_rounds
                )
            }
    shipped = shipped_rule_exprs()
    exprs = list(CORPUS) + list(ALERTING) + shipped
    print(
        f"expressions: {len(CORPUS)} corpus + {len(ALERTING)} alerting shapes + "
        f"{len(shipped)} from include/alert_rules"
    )
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        res = compare(10_000, 3 if quick else 5, exprs, Path(tmp))
        sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
        grown = growth(sizes, 2 if quick else 3, exprs, Path(tmp), growth_hours)
        days = 1 if quick else backtest_days
        bt = backtest_vs_one_by_one(1_000 if quick else backtest_series, days, 300, Path(tmp))
    return {"compare": res, "growth": grown, "backtest": bt}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1k/10k growth only, fewer rounds")
    parser.add_argument(
        "--growth-hours",
        type=float,
        default=6,
        help="history per series in the growth runs (the windows reach back 1.5 h; 24 makes 100k slow)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    parser.add_argument("--backtest-series", type=int, default=10_000, help="series in the backtest store")
    parser.add_argument("--backtest-days", type=float, default=30, help="days of history the backtest covers")
    parser.add_argument(
        "--backtest-rounds",
        type=int,
        default=2,
        help="alternating rounds of each side (1 halves the time of the 30-day default)",
    )
    parser.add_argument("--backtest-only", action="store_true", help="run only the backtest comparison")
    a = parser.parse_args()
    figures = main(
        a.quick, a.growth_hours, a.backtest_series, a.backtest_days, a.backtest_only, a.backtest_rounds
    )
    if a.json:
        print(json.dumps(figures, indent=2, default=str))
