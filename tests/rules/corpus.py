"""Generated series and an expression corpus shared by the differential test and bench/bench_rules.py.

:func:`generate` yields a deterministic history per "instance" (22 series each):
counters with resets, gauges, a histogram with ``le`` buckets, Kubernetes-style
replica gauges. With ``quirks`` the instances differ the way real scrapes do:
instance 0 is regular, 1 jittered by up to 2 s, 2 scraped half as often with a
20-minute gap, 3 resets often and stops (goes stale) 150 minutes in; a few special
histograms exercise ``histogram_quantile``'s corner cases (non-monotonic buckets,
no ``+Inf`` bucket, duplicate bounds, negative bounds, an unparsable ``le``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

from tests.support.prometheus_tsdb import SeriesData

SERIES_PER_INSTANCE = 39
MINUTE = 60_000
GAP = (100 * MINUTE, 120 * MINUTE)  # instance mode 2: no samples in [start+100m, start+120m)
STALE_AFTER = 150 * MINUTE  # instance mode 3: last sample at start+150m
LE = ("0.005", "0.01", "0.05", "0.1", "0.5", "1", "+Inf")
_LE_WEIGHTS = (0.05, 0.15, 0.3, 0.25, 0.15, 0.07, 0.03)


def _timestamps(mode: int, rng: random.Random, start: int, duration: int, step: int) -> list[int]:
    if mode == 2:
        return [t for t in range(start, start + duration + 1, 2 * step) if not GAP[0] <= t - start < GAP[1]]
    if mode == 3:
        return list(range(start, start + min(duration, STALE_AFTER) + 1, step))
    ts = list(range(start, start + duration + 1, step))
    if mode == 1:
        jitter = min(2000, step // 3)
        ts = [t + rng.randint(-jitter, jitter) for t in ts]
    return ts


def _counter(rng: random.Random, ts: list[int], per_second: float, reset_p: float) -> list[tuple[int, float]]:
    v = rng.uniform(0, 100)
    out = []
    prev_t = ts[0]
    for t in ts:
        if rng.random() < reset_p:
            v = float(rng.randint(0, 5))
        else:
            # Whole increments, some steps none at all (a zero rate is a case too).
            v += max(0, round(rng.gauss(per_second, per_second) * (t - prev_t) / 1000))
        prev_t = t
        out.append((t, float(v)))
    return out


def _gauge(
    rng: random.Random, ts: list[int], lo: float, hi: float, *, nan_p: float = 0.0
) -> list[tuple[int, float]]:
    v = rng.uniform(lo, hi)
    out = []
    for t in ts:
        v = min(hi, max(lo, v + rng.gauss(0, (hi - lo) / 20)))
        value = round(v, 1)
        out.append((t, math.nan if rng.random() < nan_p else value))
    return out


def generate(
    instances: int, start_ms: int, duration_ms: int, step_ms: int, *, quirks: bool = True, seed: int = 7
) -> Iterator[SeriesData]:
    """Yield every series (one at a time: a large history never sits in memory whole)."""
    for i in range(instances):
        rng = random.Random(seed * 1_000_003 + i)
        mode = i % 4 if quirks else 0
        ts = _timestamps(mode, rng, start_ms, duration_ms, step_ms)
        base = {"instance": f"node-{i}", "job": "api" if i % 2 == 0 else "batch"}
        reset_p = 0.02 if mode == 3 else 0.002
        for code, per_second in (("200", 10.0), ("404", 1.0), ("500", 0.2)):
            yield SeriesData("req_total", {**base, "code": code}, _counter(rng, ts, per_second, reset_p))
        yield SeriesData("errors_total", dict(base), _counter(rng, ts, 0.5, reset_p))
        for core in ("0", "1"):
            yield SeriesData("cpu_percent", {**base, "core": core}, _gauge(rng, ts, 0, 100))
        for gpu in ("0", "1"):
            yield SeriesData("temp_celsius", {**base, "gpu": gpu}, _gauge(rng, ts, 55, 95))
        mem = {**base, "kind": "host"}
        yield SeriesData("mem_total_bytes", mem, [(t, 64e9) for t in ts])
        yield SeriesData("mem_used_bytes", mem, _gauge(rng, ts, 8e9, 64e9))
        yield SeriesData("nan_gauge", dict(base), _gauge(rng, ts, -50, 50, nan_p=0.1))
        yield from _histogram(rng, base, ts, reset_p)
        deployment = {"namespace": "serving", "deployment": f"model-{i}"}
        yield SeriesData(
            "kube_deployment_spec_replicas",
            deployment,
            [(t, 4.0 if (t // 600_000) % 5 == 0 else 3.0) for t in ts],
        )
        yield SeriesData(
            "kube_deployment_status_replicas_available",
            deployment,
            [(t, float(rng.choice((2, 3, 3, 3, 4)))) for t in ts],
        )
        yield from _fleet_series(rng, i, ts, reset_p)
    if quirks:
        yield from _weird_histograms(start_ms, duration_ms, step_ms)


TF_LATENCY_LE = ("1000", "10000", "50000", "100000", "250000", "+Inf")  # microseconds, as TF Serving
_TF_WEIGHTS = (0.1, 0.4, 0.3, 0.12, 0.05, 0.03)


def _fleet_series(rng: random.Random, i: int, ts: list[int], reset_p: float) -> Iterator[SeriesData]:
    """The metric names the shipped rules (include/alert_rules) read: host, GPU, pods, TF Serving."""
    host = {"host": f"node-{i}"}
    yield SeriesData("ml_cpu_usage_percent", {**host, "core": "all"}, _gauge(rng, ts, 0, 100))
    yield SeriesData("ml_memory_usage_percent", dict(host), _gauge(rng, ts, 20, 100))
    gpu = {**host, "gpu_id": "0"}
    yield SeriesData("ml_gpu_utilization_percent", gpu, _gauge(rng, ts, 0, 100))
    yield SeriesData("ml_gpu_temperature_celsius", gpu, _gauge(rng, ts, 50, 95))
    yield SeriesData("ml_gpu_memory_total_bytes", gpu, [(t, 80e9) for t in ts])
    yield SeriesData("ml_gpu_memory_used_bytes", gpu, _gauge(rng, ts, 10e9, 80e9))
    yield SeriesData(
        "kube_pod_container_status_restarts_total",
        {"namespace": "serving", "pod": f"model-{i}-7d9f", "container": "serving"},
        _counter(rng, ts, 0.002, 0.0),
    )
    serving = {"model": f"model-{i % 5}", "instance": f"node-{i}"}
    yield SeriesData(
        ":tensorflow:serving:request_count", {**serving, "status": "OK"}, _counter(rng, ts, 20, reset_p)
    )
    yield SeriesData(
        ":tensorflow:serving:request_count",
        {**serving, "status": "INVALID_ARGUMENT"},
        _counter(rng, ts, 0.3, reset_p),
    )
    counts = [0] * len(TF_LATENCY_LE)
    total = 0.0
    buckets: list[list[tuple[int, float]]] = [[] for _ in TF_LATENCY_LE]
    sums, observed = [], []
    for t in ts:
        for _ in range(rng.randint(0, 40)):
            k = rng.choices(range(len(TF_LATENCY_LE)), _TF_WEIGHTS)[0]
            for j in range(k, len(TF_LATENCY_LE)):
                counts[j] += 1
            total += (500, 5000, 30000, 80000, 200000, 400000)[k]
        for j in range(len(TF_LATENCY_LE)):
            buckets[j].append((t, float(counts[j])))
        sums.append((t, total))
        observed.append((t, float(counts[-1])))
    for le, points in zip(TF_LATENCY_LE, buckets, strict=True):
        yield SeriesData(":tensorflow:serving:request_latency_bucket", {**serving, "le": le}, points)
    yield SeriesData(":tensorflow:serving:request_latency_sum", dict(serving), sums)
    yield SeriesData(":tensorflow:serving:request_latency_count", dict(serving), observed)


def shipped_rule_exprs(root: Path | None = None) -> list[str]:
    """Every ``expr`` of the shipped rule files (include/alert_rules/*.yaml), in file order."""
    import yaml

    folder = (root or Path(__file__).resolve().parents[2]) / "include" / "alert_rules"
    out: list[str] = []
    for path in sorted(folder.glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups") or []:
            out += [str(rule["expr"]).strip() for rule in group.get("rules") or [] if "expr" in rule]
    return list(dict.fromkeys(out))


def _histogram(
    rng: random.Random, base: dict[str, str], ts: list[int], reset_p: float
) -> Iterator[SeriesData]:
    counts = [0] * len(LE)
    total = 0.0
    buckets: list[list[tuple[int, float]]] = [[] for _ in LE]
    sums: list[tuple[int, float]] = []
    observed: list[tuple[int, float]] = []
    for t in ts:
        if rng.random() < reset_p:
            counts = [0] * len(LE)
            total = 0.0
        for _ in range(rng.randint(0, 30)):
            k = rng.choices(range(len(LE)), _LE_WEIGHTS)[0]
            for j in range(k, len(LE)):
                counts[j] += 1
            total += {0: 0.003, 1: 0.008, 2: 0.03, 3: 0.07, 4: 0.3, 5: 0.8, 6: 2.0}[k]
        for j in range(len(LE)):
            buckets[j].append((t, float(counts[j])))
        sums.append((t, round(total, 3)))
        observed.append((t, float(counts[-1])))
    for le, points in zip(LE, buckets, strict=True):
        yield SeriesData("latency_seconds_bucket", {**base, "le": le}, points)
    yield SeriesData("latency_seconds_sum", dict(base), sums)
    yield SeriesData("latency_seconds_count", dict(base), observed)


def _weird_histograms(start_ms: int, duration_ms: int, step_ms: int) -> Iterator[SeriesData]:
    ts = list(range(start_ms, start_ms + duration_ms + 1, step_ms))
    cases = {
        "nonmono": {"0.1": 10, "0.5": 8, "1": 15, "+Inf": 20},
        "noinf": {"0.1": 3, "1": 9},
        "dup": {"0.5": 2, "1": 4, "1.0": 3, "+Inf": 12},
        "zero": {"0.1": 0, "1": 0, "+Inf": 0},
        "neg": {"-1": 4, "0": 6, "+Inf": 10},
        "badle": {"abc": 50, "0.25": 5, "+Inf": 10},
        "oneb": {"+Inf": 7},
    }
    for case, buckets in cases.items():
        for le, count in buckets.items():
            # Slowly growing so that rate() of them is defined too.
            yield SeriesData(
                "weird_bucket",
                {"case": case, "le": le},
                [(t, float(count * (1 + k // 8))) for k, t in enumerate(ts)],
            )


CORPUS: tuple[str, ...] = (
    # selectors and matchers
    "cpu_percent",
    'cpu_percent{core="0"}',
    'cpu_percent{instance=~"node-[12]"}',
    'cpu_percent{instance!="node-1"}',
    'cpu_percent{instance!~"node-1|node-2", core=~".+"}',
    "cpu_percent offset 10m",
    '{__name__=~"mem_.*", job="api"}',
    'req_total{code=~"5.."}',
    "nan_gauge",
    # rate family
    "rate(req_total[5m])",
    "rate(req_total[1m])",
    "rate(req_total[37s])",
    "irate(req_total[5m])",
    "increase(req_total[1h])",
    "increase(req_total[10m] offset 5m)",
    "delta(temp_celsius[10m])",
    "delta(nan_gauge[3m])",
    'rate(req_total{code="500"}[2m])',
    "rate(latency_seconds_bucket[5m])",
    # aggregations
    "sum(rate(req_total[5m]))",
    "sum by (job) (rate(req_total[5m]))",
    "sum without (instance) (rate(req_total[5m]))",
    "avg by (instance) (cpu_percent)",
    "avg(nan_gauge)",
    "min(cpu_percent)",
    "max by (core) (cpu_percent)",
    "max(nan_gauge)",
    "min by (job) (nan_gauge)",
    "count(cpu_percent)",
    "count by (instance) (cpu_percent > 50)",
    'sum by (__name__) ({__name__=~"mem_.*"})',
    "sum by () (temp_celsius)",
    # scalar/vector arithmetic and comparisons
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "-(7 % 3) - 1 / 0",
    "0 / 0",
    "1 > bool 2",
    "cpu_percent > 50",
    "cpu_percent > bool 50",
    "50 < cpu_percent",
    "50 >= bool cpu_percent",
    "cpu_percent == 0 or cpu_percent == 100",
    "cpu_percent * 2 + 1",
    "100 - cpu_percent",
    "cpu_percent % 7",
    "nan_gauge ^ 0.5",
    "cpu_percent / 0",
    "-cpu_percent",
    "-(nan_gauge)",
    # vector matching
    "mem_used_bytes / mem_total_bytes",
    "mem_used_bytes / on(instance) mem_total_bytes",
    "mem_used_bytes / ignoring(kind) mem_total_bytes > 0.5",
    "mem_used_bytes > bool mem_total_bytes * 0.5",
    "sum by (job) (rate(errors_total[5m])) / sum by (job) (rate(req_total[5m]))",
    "kube_deployment_status_replicas_available < kube_deployment_spec_replicas",
    "kube_deployment_status_replicas_available != bool on(deployment, namespace) kube_deployment_spec_replicas",
    'rate(req_total{code="500"}[5m]) / ignoring(code) rate(errors_total[5m])',
    # set operators
    "cpu_percent > 80 and on(instance) temp_celsius > 70",
    'cpu_percent and cpu_percent{core="1"}',
    "temp_celsius or cpu_percent",
    "rate(req_total[5m]) > 5 or on(instance) errors_total",
    "temp_celsius unless on(instance, job) cpu_percent > 70",
    "nan_gauge unless nan_gauge > 0",
    # functions
    "abs(delta(temp_celsius[10m]))",
    "abs(nan_gauge)",
    "clamp_min(temp_celsius, 70)",
    "clamp_max(cpu_percent, 90)",
    "clamp_max(nan_gauge, 1 + 1)",
    "avg_over_time(cpu_percent[10m])",
    "min_over_time(temp_celsius[10m])",
    "max_over_time(nan_gauge[10m])",
    "sum_over_time(nan_gauge[5m])",
    "count_over_time(req_total[1h])",
    "max_over_time(temp_celsius[5m]) - min_over_time(temp_celsius[5m])",
    "avg_over_time(cpu_percent[30m] offset 1h)",
    # histograms
    "histogram_quantile(0.99, sum by (le) (rate(latency_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (job, le) (rate(latency_seconds_bucket[5m])))",
    "histogram_quantile(0.9, latency_seconds_bucket)",
    "histogram_quantile(0.75, weird_bucket)",
    "histogram_quantile(0.01, weird_bucket)",
    "histogram_quantile(1, rate(weird_bucket[10m]))",
    "histogram_quantile(0, latency_seconds_bucket)",
    "histogram_quantile(1.5, latency_seconds_bucket)",
    "histogram_quantile(-1, latency_seconds_bucket)",
    "histogram_quantile(0.99, rate(latency_seconds_bucket[5m])) > 0.2",
    "rate(latency_seconds_sum[5m]) / rate(latency_seconds_count[5m])",
    # absent
    "absent(nonexistent_metric)",
    'absent(nonexistent_metric{job="api", instance=~"x", deployment="a", deployment="b"})',
    'absent(cpu_percent{core="0"})',
    'absent(kube_deployment_spec_replicas{deployment="gone", namespace="serving"})',
    # alert-rule shapes
    "avg by (instance) (cpu_percent) > 85",
    "increase(req_total[1h]) > 3",
    "(sum by (instance) (rate(req_total[5m])) > 0) * 0 + 1",
    # errors both engines must report
    "cpu_percent + on() cpu_percent",
    'cpu_percent{core="0"} - ignoring(core) cpu_percent',
    '{__name__=~"mem_.*"} * 1',
)


def numeric_series(start_ms: int, duration_ms: int, step_ms: int) -> Iterator[SeriesData]:
    """Series whose values expose summation order, regression and calendar differences.

    ``precise``: magnitudes from 1e-3 to 1e16 mixed, so that naive and compensated
    sums, sum/count and incremental means, one-pass and two-pass variances all differ
    in the last digits; ``ramp``: a noisy line far from zero (regression numerics);
    ``stepper``: few distinct values with NaNs (changes, resets); ``epoch``: values
    that are dates (leap days, before 1970, NaN, far future) for the date functions;
    ``target``: labels to rewrite (label_replace, label_join).
    """
    rng = random.Random(11)
    ts = list(range(start_ms, start_ms + duration_ms + 1, step_ms))
    magnitudes = (1e16, 1.0, -1e16, 3.3, 0.1, 1e8 + 0.7, -2.5e-3, 7e15, 123456.789)
    for k in range(3):
        points = [(t, rng.choice(magnitudes) * rng.uniform(0.5, 1.5)) for t in ts]
        yield SeriesData("precise", {"k": str(k), "job": "api" if k else "batch"}, points)
    for k in range(2):
        base = 1e9 * (k + 1)
        yield SeriesData(
            "ramp", {"k": str(k)}, [(t, base + 0.37 * (t - start_ms) / 1000 + rng.gauss(0, 50)) for t in ts]
        )
    stepper = []
    v = 5.0
    for t in ts:
        r = rng.random()
        if r < 0.05:
            v = math.nan
        elif r < 0.25 or math.isnan(v):
            v = float(rng.choice((1, 2, 5, 9)))
        stepper.append((t, v))
    yield SeriesData("stepper", {"k": "0"}, stepper)
    dates = (951782400.0, 951868799.5, -1.0, 0.0, 4102444800.0, 1e10, -86400.0 * 365 * 300, math.nan, 1.7e9)
    for i, d in enumerate(dates):
        yield SeriesData("epoch", {"i": str(i)}, [(t, d + (t - start_ms) / 1000) for t in ts])
    for i, instance in enumerate(("host-12:9100", "10.0.0.1:80", "nohost", "")):
        labels = {"instance": instance, "svc": f"s{i}", "zone": "eu" if i % 2 else ""}
        yield SeriesData("target", {k: v for k, v in labels.items() if v}, [(t, float(i)) for t in ts])


# Every function, aggregation, operator and modifier of Prometheus 2.42's PromQL (issue 14).
COMPLETE: tuple[str, ...] = (
    # instant functions of values
    *(
        f"{fn}(cpu_percent / 37)"
        for fn in ("abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "sgn")
    ),
    *(
        f"{fn}(nan_gauge / 50)"
        for fn in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh")
    ),
    *(
        f"{fn}(nan_gauge / 25)"
        for fn in ("asinh", "acosh", "atanh", "deg", "rad", "exp", "ln", "sgn", "ceil")
    ),
    "floor(-nan_gauge)",
    "round(cpu_percent)",
    "round(nan_gauge, 5)",
    "round(temp_celsius, 0.3)",
    "round(precise, 1e3)",
    "clamp(nan_gauge, -10, 10)",
    "clamp(cpu_percent, 50, 40)",
    "exp(precise)",
    "pi()",
    "pi() * 2",
    # time and dates
    "time()",
    "time() - 1",
    "timestamp(cpu_percent)",
    "timestamp(req_total offset 3m)",
    "timestamp(cpu_percent * 2)",
    "timestamp((cpu_percent))",
    "timestamp(-cpu_percent)",
    "timestamp(last_over_time(cpu_percent[5m]))",
    "time() - timestamp(req_total) > 60",
    *(f"{fn}()" for fn in ("minute", "hour", "day_of_week", "day_of_month", "day_of_year", "days_in_month")),
    "month()",
    "year()",
    *(
        f"{fn}(epoch)"
        for fn in ("minute", "hour", "day_of_week", "day_of_month", "day_of_year", "days_in_month")
    ),
    "month(epoch)",
    "year(epoch)",
    "vector(time())",
    "vector(1) + vector(2)",
    "scalar(sum(cpu_percent))",
    "scalar(cpu_percent)",
    "cpu_percent > scalar(avg(cpu_percent))",
    "sort(cpu_percent)",
    "sort_desc(nan_gauge)",
    # labels
    'label_replace(target, "host", "$1", "instance", "(.*):.*")',
    'label_replace(target, "host", "${1}-$2x$$", "instance", "([^:]+):?(.*)")',
    'label_replace(target, "port", "$port", "instance", "[^:]*:(?P<port>[0-9]+)")',
    'label_replace(target, "svc", "", "svc", "s1")',
    'label_replace(target, "copy", "$0", "zone", "(?i)EU")',
    'label_replace(cpu_percent, "core", "c$1", "core", "(.)")',
    'label_join(target, "id", "/", "svc", "zone", "missing")',
    'label_join(target, "zone", "", "zone")',
    'label_replace(target, "__name__", "renamed", "svc", ".*")',
    'target{instance=~"(?i)HOST-.*"}',
    'target{instance!~"[0-9.]+:80|"}',
    'target{zone=""}',
    'target{instance=~"\\\\Qhost-12:9100\\\\E"}',
    'target{instance=~"10\\\\Q.0.0.1\\\\E:[0-9]+"}',
    'target{instance=~"host-\\\\d+:\\\\d+"}',
    # range functions
    "changes(stepper[10m])",
    "changes(cpu_percent[5m])",
    "resets(req_total[1h])",
    "resets(stepper[30m])",
    "deriv(ramp[10m])",
    "deriv(temp_celsius[5m])",
    "deriv(stepper[20m])",
    "predict_linear(ramp[30m], 3600)",
    "predict_linear(temp_celsius[10m], 600) > 90",
    "predict_linear(mem_used_bytes[1h], 4 * 3600)",
    "holt_winters(temp_celsius[10m], 0.5, 0.3)",
    "holt_winters(ramp[30m], 0.1, 0.9)",
    "idelta(temp_celsius[5m])",
    "idelta(req_total[2m])",
    "quantile_over_time(0.9, cpu_percent[10m])",
    "quantile_over_time(0, nan_gauge[10m])",
    "quantile_over_time(0.5, precise[30m])",
    "quantile_over_time(1.5, cpu_percent[5m])",
    "stddev_over_time(precise[30m])",
    "stdvar_over_time(temp_celsius[10m])",
    "stddev_over_time(nan_gauge[10m])",
    "sum_over_time(precise[30m])",
    "avg_over_time(precise[30m])",
    "avg_over_time(ramp[1h])",
    "sum_over_time(ramp[1h])",
    "last_over_time(cpu_percent[10m])",
    "last_over_time(req_total[1m])",
    "present_over_time(req_total[10m])",
    "absent_over_time(req_total[10m])",
    'absent_over_time(nonexistent{job="x"}[5m])',
    'absent_over_time(req_total{instance="node-2"}[5m])',
    # aggregations
    "sum(precise)",
    "avg(precise)",
    "avg by (job) (precise)",
    "avg(ramp)",
    "stddev(precise)",
    "stdvar by (job) (cpu_percent)",
    "stddev(nan_gauge)",
    "group by (job) (cpu_percent)",
    "group(req_total)",
    "topk(3, cpu_percent)",
    "topk by (job) (2, rate(req_total[5m]))",
    "bottomk(2, temp_celsius)",
    "bottomk by (instance) (1, nan_gauge)",
    "topk(1, kube_deployment_spec_replicas)",
    "topk(0, cpu_percent)",
    "quantile(0.9, cpu_percent)",
    "quantile by (job) (0.5, rate(req_total[5m]))",
    "quantile(0.25, precise)",
    'count_values("replicas", kube_deployment_spec_replicas)',
    'count_values by (job) ("v", round(cpu_percent / 10))',
    'count_values without (instance) ("val", kube_deployment_status_replicas_available)',
    'count_values("x", precise)',
    # operators
    "cpu_percent ^ 0.5",
    "cpu_percent ^ 3",
    "temp_celsius ^ -2.25",
    "(nan_gauge / 10) ^ 7",
    "2 ^ (temp_celsius / 10)",
    "cpu_percent atan2 temp_celsius",
    "nan_gauge atan2 on(instance, job) group_left mem_total_bytes",
    "cpu_percent % -7",
    "1 atan2 2",
    "temp_celsius atan2 10",
    "-nan_gauge % 3",
    "cpu_percent != bool 50",
    "cpu_percent <= cpu_percent",
    "mem_used_bytes == bool on(instance) mem_total_bytes",
    # many-to-one and one-to-many matching
    "cpu_percent * on(instance) group_left mem_total_bytes",
    "cpu_percent * on(instance, job) group_left(kind) mem_total_bytes",
    "mem_total_bytes * on(instance) group_right(job) cpu_percent",
    "mem_total_bytes > on(instance) group_right cpu_percent",
    "cpu_percent / ignoring(core) group_left mem_used_bytes",
    "rate(req_total[5m]) / ignoring(code) group_left sum without (code) (rate(req_total[5m]))",
    "req_total + on(instance) group_left(code) req_total",
    "cpu_percent > bool on(instance) group_left mem_total_bytes",
    # @ and offset
    "cpu_percent @ 1700003600",
    "rate(req_total[5m] @ 1700003600)",
    "cpu_percent @ start()",
    "rate(req_total[5m] @ end() offset 10m)",
    "cpu_percent offset -10m",
    "sum(cpu_percent @ 1700001234.5) - sum(cpu_percent)",
    "timestamp(cpu_percent @ 1700003600)",
    # subqueries
    "max_over_time(rate(req_total[5m])[30m:1m])",
    "avg_over_time(cpu_percent[10m:])",
    "rate(req_total[10m:30s])",
    "min_over_time(sum by (job) (cpu_percent)[20m:2m] offset 5m)",
    "max_over_time(deriv(temp_celsius[5m])[15m:1m] @ 1700006000)",
    "sum_over_time((cpu_percent > 50)[10m:1m])",
    "count_over_time(vector(1)[5m:1m])",
    "quantile_over_time(0.5, max_over_time(cpu_percent[5m:1m])[20m:5m])",
    "last_over_time(cpu_percent[7m:1m])",
    "absent_over_time(nonexistent[5m:1m])",
    "changes(max(stepper)[30m:1m])",
    "holt_winters(avg(temp_celsius)[20m:1m], 0.3, 0.3)",
    # native histograms: none in the store, so empty on both sides
    "histogram_count(latency_seconds_bucket)",
    "histogram_sum(rate(latency_seconds_bucket[5m]))",
    "histogram_fraction(0, 0.1, latency_seconds_bucket)",
    # more modifiers and set operators
    "max_over_time((cpu_percent @ start())[10m:1m])",
    "avg_over_time((cpu_percent offset 5m)[10m:1m] offset 5m)",
    "min_over_time(rate(req_total[5m] @ 1700003600)[10m:1m])",
    "cpu_percent and ignoring(core) temp_celsius",
    "vector(1) and on() vector(2)",
    "temp_celsius or on(instance) cpu_percent > 1000",
    'absent(nonexistent{job="x"} offset 5m)',
    "absent(sum(nonexistent))",
    "absent_over_time(cpu_percent[1m] @ 1700000000)",
    "+cpu_percent",
    "-(1 + 2) * -pi()",
    "sort_desc(topk(3, cpu_percent))",
    "bottomk(2, rate(req_total[5m])) > 0",
    'count(count_values("v", round(temp_celsius)))',
    # errors both engines must report
    "holt_winters(temp_celsius[10m], 1, 0.5)",
    'label_replace(target, "1bad", "x", "svc", ".*")',
    'label_join(target, "x", ",", "bad-name")',
    'count_values("not a label", cpu_percent)',
    "cpu_percent * on(instance) group_left mem_used_bytes / ignoring(kind) group_left cpu_percent",
    "target + on() group_left target",
    "quantile(0 / 0, cpu_percent)",
    "quantile_over_time(0 / 0, cpu_percent[5m])",
    "topk(0 / 0, cpu_percent)",
)
