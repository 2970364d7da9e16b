"""The ``mlinfra`` command line: the same code the DAGs run, without a scheduler.

    mlinfra fleet check [--file include/fleet.yaml]
    mlinfra fleet rbac [--subject airflow/airflow-worker] > include/k8s/rbac.yaml
    mlinfra sweep [--collectors host,gpu] [--store-url sqlite:////tmp/s.db] [--json]
    mlinfra store series ml_cpu_usage_percent [--since 1h]
    mlinfra store retention [--keep 30d]
    mlinfra rules check include/alert_rules/*.yaml
    mlinfra rules test include/alert_rules/tests/*.yaml
    mlinfra query 'ml_cpu_usage_percent{core="all"} > 85' [--time 2026-01-01T12:00:00Z]
    mlinfra report --day today|yesterday|2026-11-30 [--out DIR]

The store is the Airflow connection ``mlinfra_store`` (or the SQLite default under
``$AIRFLOW_HOME``) unless ``--store-url`` names another. Every command first says, on
stderr, which store, Airflow home and fleet file it uses, so a command pointed at the
wrong place says so instead of quietly answering "no samples". Commands that read
the store refuse a SQLite file that does not exist rather than create an empty one.
Times print as RFC 3339 (UTC).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlinfra.durations import format_duration, parse_duration
from mlinfra.exceptions import MlinfraError
from mlinfra.timestamps import rfc3339

DESCRIPTION = "mlinfra: the same code the DAGs run (sweep, store, rules, query, report), without a scheduler."
EPILOG = """examples:
  mlinfra fleet check
  mlinfra sweep --collectors host
  mlinfra store series ml_cpu_usage_percent --since 15m
  mlinfra query 'avg(ml_gpu_utilization_percent) > 80'
  mlinfra report --day today

The store is the Airflow connection mlinfra_store (or $AIRFLOW_HOME/mlinfra/store.db)
unless --store-url names another; each command first prints which one it uses.
For make demo: source .demo/env.sh first."""

if TYPE_CHECKING:
    from typing import TypeAlias

    from mlinfra.config import Fleet

    # What ``add_subparsers`` returns (argparse names its class privately).
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_dispatch(args))
    except MlinfraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The ``mlinfra`` argument parser: one sub-command (and its actions) per part of the project."""
    parser = argparse.ArgumentParser(
        prog="mlinfra",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fleet_commands(sub)
    _add_sweep_command(sub)
    _add_store_commands(sub)
    _add_rules_commands(sub)
    _add_query_command(sub)
    _add_report_command(sub)
    return parser


def _add_fleet_commands(sub: Subcommands) -> None:
    fleet = sub.add_parser("fleet", help="fleet configuration").add_subparsers(dest="action", required=True)
    check = fleet.add_parser("check", help="validate a fleet file and print what it declares")
    check.add_argument("--file", help="fleet file (default: $MLINFRA_FLEET_FILE or include/fleet.yaml)")
    rbac = fleet.add_parser("rbac", help="print least-privilege Roles and RoleBindings for the fleet")
    rbac.add_argument("--file", help="fleet file (default: $MLINFRA_FLEET_FILE or include/fleet.yaml)")
    rbac.add_argument(
        "--subject",
        action="append",
        metavar="NAMESPACE/NAME",
        help="service account Airflow's workers and triggerer run as (repeat; default: the Helm chart's)",
    )


def _add_sweep_command(sub: Subcommands) -> None:
    sweep = sub.add_parser("sweep", help="run the collectors once and write one sweep to the store")
    sweep.add_argument("--collectors", help="comma-separated subset (default: all)")
    sweep.add_argument("--store-url", help="SQLAlchemy URL instead of the mlinfra_store connection")
    sweep.add_argument("--no-export", action="store_true", help="do not push to the Pushgateway")
    sweep.add_argument("--json", action="store_true", help="print the summary as JSON")


def _add_store_commands(sub: Subcommands) -> None:
    store = sub.add_parser("store", help="inspect and maintain the metrics store").add_subparsers(
        dest="action", required=True
    )
    series = store.add_parser("series", help="latest value of each series of a metric")
    series.add_argument("name")
    series.add_argument("--since", default="1h", help="look-back window (Prometheus duration)")
    series.add_argument("--store-url")
    retention = store.add_parser("retention", help="delete samples older than the retention")
    retention.add_argument("--keep", help="override the fleet's store.retention (e.g. 7d)")
    retention.add_argument("--store-url")
    upgrade = store.add_parser(
        "upgrade",
        help="bring the store's schema to this mlinfra's newest migration (keeps the data)",
        description="Run the store's migrations up to --revision (default: head). Safe to run while "
        "Airflow runs: a concurrent sweep waits for the lock and then finds the store up to date.",
    )
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.add_argument("--store-url")
    current = store.add_parser("current", help="print the store's schema revision and this mlinfra's head")
    current.add_argument("--store-url")


def _add_rules_commands(sub: Subcommands) -> None:
    rules = sub.add_parser("rules", help="Prometheus rule files (like promtool)").add_subparsers(
        dest="action", required=True
    )
    rules_check = rules.add_parser("check", help="validate rule files on the local engine")
    rules_check.add_argument("files", nargs="+", metavar="FILE")
    rules_test = rules.add_parser("test", help="run rule unit tests in promtool's test-file format")
    rules_test.add_argument("files", nargs="+", metavar="FILE")
    _add_backtest_parser(rules)
    _add_alerts_parser(sub)


def _add_query_command(sub: Subcommands) -> None:
    query = sub.add_parser(
        "query",
        help="evaluate a PromQL expression on the store (local engine)",
        description="Evaluate a PromQL expression at one instant over the metrics store, with the local "
        "engine (Prometheus 2.42 semantics), and print the resulting vector or scalar.",
    )
    query.add_argument("expr", metavar="EXPR", help="a PromQL expression, quoted for the shell")
    query.add_argument("--time", help="evaluation time: epoch seconds or RFC 3339 (default: now)")
    query.add_argument("--store-url")


def _add_report_command(sub: Subcommands) -> None:
    report = sub.add_parser(
        "report",
        help="build one day's metrics report from the store",
        description="Build the report of one UTC day, [00:00, 24:00), as metrics_report does; for today, "
        "[00:00, now): a report of today so far. Writes report.html/json/csv into --out (default: "
        "the reports base, folder named after the interval) and prints the summary.",
    )
    report.add_argument(
        "--day", default="yesterday", help="today, yesterday or YYYY-MM-DD (default: yesterday)"
    )
    report.add_argument("--out", help="folder to write the files into (default: the reports base)")
    report.add_argument("--store-url")


def _add_alerts_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``mlinfra alerts explain ALERTNAME [--at T]``."""
    alerts = sub.add_parser("alerts", help="alerts the rules raised").add_subparsers(
        dest="action", required=True
    )
    explain = alerts.add_parser(
        "explain", help="why an alert fired: the values behind its latest transitions (at --at)"
    )
    explain.add_argument("alertname")
    explain.add_argument("--at", help="epoch seconds or RFC 3339 (default: now)")
    explain.add_argument("--store-url")


def _add_backtest_parser(rules: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``mlinfra rules backtest FILE... --from T1 --to T2 [--step 5m] [--json] [--compare OLDFILE]``."""
    rules_backtest = rules.add_parser(
        "backtest",
        help="evaluate alerting rules over stored history: when would they have fired?",
        description="Evaluate the rule files at every --step from --from to --to over the store (local "
        "engine), with the alert state machine in memory: nothing is written. Prints each alert's "
        "timeline (pending from, firing from, resolved at, values); --compare OLDFILE runs the old "
        "version over the same window and prints what the change would have changed.",
    )
    rules_backtest.add_argument("files", nargs="+", metavar="FILE")
    rules_backtest.add_argument("--from", dest="start", required=True, help="epoch seconds or RFC 3339")
    rules_backtest.add_argument("--to", dest="end", required=True, help="epoch seconds or RFC 3339")
    rules_backtest.add_argument("--step", default="5m", help="evaluation interval (default 5m)")
    rules_backtest.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rules_backtest.add_argument(
        "--compare", action="append", metavar="OLDFILE", help="the old version(s) to compare with"
    )
    rules_backtest.add_argument("--store-url")


def _store(url: str | None, *, must_exist: bool = True):  # type: ignore[no-untyped-def]
    """The store to use, announced on stderr; a SQLite file that does not exist is refused when reading."""
    from mlinfra.store import MetricsStore

    store = MetricsStore.from_url(url) if url else MetricsStore.from_connection()
    print(f"mlinfra: store {store.description}", file=sys.stderr)
    engine_url = store.engine.url
    if must_exist and engine_url.get_backend_name() == "sqlite":
        path = engine_url.database
        if path and path != ":memory:" and not Path(path).exists():
            raise MlinfraError(
                f"no store at {path}: nothing was ever written there. Is this the store the sweep writes? "
                "Set AIRFLOW_HOME or the mlinfra_store connection as Airflow has them "
                "(for make demo: source .demo/env.sh), or pass --store-url"
            )
    return store


def _announce_airflow() -> None:
    import os

    from mlinfra.config import fleet_file

    home = os.environ.get("AIRFLOW_HOME")
    where = (
        f"AIRFLOW_HOME={home}"
        if home
        else f"~/airflow (AIRFLOW_HOME not set: {Path('~/airflow').expanduser()})"
    )
    conn = "set" if os.environ.get("AIRFLOW_CONN_MLINFRA_STORE") else "not set"
    print(
        f"mlinfra: Airflow {where}; AIRFLOW_CONN_MLINFRA_STORE {conn}; fleet {fleet_file()}",
        file=sys.stderr,
    )


def _check_manifests(fleet: Fleet) -> int:
    """Render each model's manifests for a sample deploy and validate them against the
    fleet's Kubernetes schema: a template typo is found here, not by the first deploy."""
    from mlinfra.deploy.manifests import manifest_values, render_manifests
    from mlinfra.deploy.params import replica_bounds, validate_request
    from mlinfra.deploy.schema import schema_problems

    failed = 0
    print(f"manifests against the Kubernetes {fleet.kubernetes_version} API schema:")
    for m in fleet.models:
        try:
            request = validate_request({"model": m.name, "version": 1, "image_tag": "fleet-check"}, fleet)
            values = manifest_values(m, request, run_id="fleet-check", replicas=replica_bounds(m)[0])
            problems = schema_problems(render_manifests(values).objects, fleet.kubernetes_version)
        except MlinfraError as e:
            problems = str(e).splitlines()
        print(f"  {m.name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"    {p.strip()}")
        failed += bool(problems)
    return 1 if failed else 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command != "rules":  # rule files need no Airflow or store; their output matches promtool's
        _announce_airflow()
    handler = _HANDLERS.get((args.command, getattr(args, "action", None)))
    if handler is None:  # argparse's required= makes this unreachable
        raise AssertionError(f"unhandled command {args}")
    return handler(args)


def _fleet_rbac(args: argparse.Namespace) -> int:
    from mlinfra.config import load_fleet
    from mlinfra.deploy.rbac import DEFAULT_SUBJECTS, render_rbac

    subjects: tuple[tuple[str, str], ...] = DEFAULT_SUBJECTS
    if args.subject:
        pairs = [tuple(s.split("/", 1)) for s in args.subject]
        if any(len(p) != 2 or not all(p) for p in pairs):
            print("error: --subject must be NAMESPACE/NAME", file=sys.stderr)
            return 2
        subjects = tuple((p[0], p[1]) for p in pairs)
    sys.stdout.write(render_rbac(load_fleet(args.file), subjects=subjects))
    return 0


def _fleet_check(args: argparse.Namespace) -> int:
    from mlinfra.config import load_fleet

    f = load_fleet(args.file)
    print(f"{f.source}: {len(f.models)} models, rule engine {f.rules.engine}")
    for m in f.models:
        s = m.scaling
        print(
            f"  {m.name}: {m.kubernetes.conn_id}/{m.kubernetes.namespace}/{m.kubernetes.deployment} "
            f"serving {m.serving.model_name} via {m.serving.conn_id}; "
            f"replicas {s.min_replicas}..{s.max_replicas}; gpus {m.resources.gpus}; "
            f"p99 <= {m.slo.p99_latency_ms:g} ms"
        )
    return _check_manifests(f)


def _sweep(args: argparse.Namespace) -> int:
    from mlinfra.config import load_fleet
    from mlinfra.export import push_from_connection
    from mlinfra.sweep import COLLECTORS, collect_and_stage, write_sweep

    names = args.collectors.split(",") if args.collectors else list(COLLECTORS)
    unknown = sorted(set(names) - set(COLLECTORS))
    if unknown:
        print(f"error: unknown collectors {unknown}; known: {', '.join(COLLECTORS)}", file=sys.stderr)
        return 2
    fleet, store = load_fleet(), _store(args.store_url, must_exist=False)
    run_id, ts = f"cli__{uuid.uuid4().hex[:12]}", time.time()
    summaries = [collect_and_stage(n, fleet=fleet, store=store, run_id=run_id, ts=ts) for n in names]
    summary = write_sweep(
        store=store,
        run_id=run_id,
        ts=ts,
        summaries=summaries,
        fleet=fleet,
        expected=names,
        export=(lambda _s: None) if args.no_export else push_from_connection,
    )
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"sweep written to {store.description}: {summary['samples']} samples")
        for name, s in summary["collectors"].items():
            state = "up" if s["up"] else "DOWN"
            extra = "; ".join(s.get("errors", []) + [f"skipped {x}" for x in s.get("skipped", [])])
            print(f"  {name:<11} {state:<5} {s['samples']:>5} samples  {extra}")
    return 0


def _store_series(args: argparse.Namespace) -> int:
    store = _store(args.store_url)
    now = time.time()
    rows = store.query_range(args.name, (), now - _duration_option("--since", args.since), now)
    for s, points in sorted(rows, key=lambda r: sorted(r[0].labels.items())):
        t, v = points[-1]
        labels = ",".join(f'{k}="{val}"' for k, val in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {v:g}  at {rfc3339(t)} ({format_duration(round(now - t))} ago)")
    if not rows:
        print(f"no samples of {args.name} in the last {args.since} in {store.description}")
    return 0


def _store_retention(args: argparse.Namespace) -> int:
    from mlinfra.config import load_fleet

    store = _store(args.store_url, must_exist=False)
    keep = _duration_option("--keep", args.keep) if args.keep else load_fleet().store.retention
    cutoff = time.time() - keep
    deleted, series = store.apply_retention(cutoff)
    # The per-sweep records the sweep's own tasks prune with the same retention.
    from mlinfra.rules.state import StoreAlertStates
    from mlinfra.scaling.records import ScaleRecords

    recommendations = ScaleRecords(store).prune_recommendations(cutoff)
    snapshots = StoreAlertStates(store).prune(cutoff)
    print(
        f"deleted {deleted} samples, {series} empty series, {recommendations} scale recommendations "
        f"and {snapshots} rule-group snapshots older than {format_duration(keep)} (before {rfc3339(cutoff)})"
    )
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    from mlinfra.rules.promtool import check_rule_files

    return check_rule_files(args.files)


def _rules_test(args: argparse.Namespace) -> int:
    from mlinfra.rules.promtool import run_test_files

    return run_test_files(args.files)


def _store_schema(args: argparse.Namespace) -> int:
    """``store upgrade`` and ``store current``: the store's migrations (:mod:`mlinfra.migrations`)."""
    import sqlalchemy as sa

    from mlinfra import migrations
    from mlinfra.store_engine import db_error_reason

    store = _store(args.store_url, must_exist=args.action == "current")
    try:
        if args.action == "upgrade":
            if args.revision != "head" and args.revision not in migrations.revisions():
                raise MlinfraError(
                    f"--revision {args.revision!r}: unknown; known: {', '.join(migrations.revisions())}"
                )
            print(
                f"{store.description}: {migrations.describe(migrations.upgrade(store.engine, args.revision))}"
            )
            return 0
        at, head = migrations.current(store.engine), migrations.head()
    except sa.exc.DBAPIError as e:
        raise MlinfraError(f"metrics store {store.description}: {db_error_reason(e)}") from e
    if at == head:
        print(f"{at} (head)")
    elif at is None:
        print(
            f"none: an empty store, or one made before migrations (head: {head}); run: mlinfra store upgrade"
        )
    else:
        print(f"{at} (head: {head}); run: mlinfra store upgrade")
    return 0


def _duration_option(flag: str, text: str) -> float:
    """A Prometheus duration given on the command line; a bad one is a usage error, not a traceback."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise MlinfraError(f"{flag} {text!r}: {e}") from None


def parse_time(text: str | None) -> float:
    """``--time``: epoch seconds, RFC 3339 (``2026-01-01T12:00:00Z``), or now when absent."""
    from datetime import UTC, datetime

    if text is None or text == "now":
        return time.time()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # float() accepts "nan" and "inf", which no evaluation time can be.
        if not math.isfinite(seconds):
            raise MlinfraError(
                f"--time {text!r}: use finite epoch seconds or RFC 3339 (2026-01-01T12:00:00Z)"
            )
        return seconds
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MlinfraError(f"--time {text!r}: use epoch seconds or RFC 3339 (2026-01-01T12:00:00Z)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _backtest(args: argparse.Namespace) -> int:
    from mlinfra.promql.engine import LocalEngine
    from mlinfra.rules.backtest import backtest_files

    start, end = parse_time(args.start), parse_time(args.end)
    step = _duration_option("--step", args.step)
    engine = LocalEngine(_store(args.store_url))
    try:
        return backtest_files(
            args.files, engine, start=start, end=end, step=step, compare_with=args.compare, as_json=args.json
        )
    except ValueError as e:
        raise MlinfraError(str(e)) from None


def _query(args: argparse.Namespace) -> int:
    from mlinfra.promql.engine import LocalEngine
    from mlinfra.promql.gonum import go_float
    from mlinfra.promql.interface import QueryError

    at = parse_time(args.time)
    engine = LocalEngine(_store(args.store_url))
    try:
        result = engine.instant(args.expr, at)
    except QueryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if isinstance(result, float | int):
        print(f"scalar: {go_float(float(result))}")
        return 0
    for s in sorted(result, key=lambda s: sorted(s.labels.items())):
        name = s.labels.get("__name__", "")
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k != "__name__")
        print(f"{name}{{{labels}}} => {go_float(s.value)} @ {rfc3339(at)}")
    if not result:
        print("empty result")
    return 0


def day_interval(day: str, now: float) -> tuple[float, float]:
    """``[start, end)`` of ``today`` (until ``now``), ``yesterday`` or ``YYYY-MM-DD`` (UTC)."""
    from datetime import UTC, datetime

    midnight = now - now % 86400
    if day == "today":
        return midnight, now
    if day == "yesterday":
        return midnight - 86400, midnight
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise MlinfraError(f"--day {day!r}: use today, yesterday or a date like 2026-11-30") from None
    if start >= now:
        raise MlinfraError(f"--day {day}: that day has not started yet (now is {rfc3339(now)})")
    return start, min(start + 86400, now)


def _report(args: argparse.Namespace) -> int:
    from mlinfra.config import load_fleet
    from mlinfra.reports.aggregate import build_report
    from mlinfra.reports.publish import reports_base, write_report_files

    start, end = day_interval(args.day, time.time())
    store = _store(args.store_url)
    report = build_report(store, load_fleet(), start, end)
    if args.out:
        from airflow.sdk import ObjectStoragePath

        base = ObjectStoragePath(Path(args.out).resolve().as_uri())
    else:
        base = reports_base()
    folder = write_report_files(report, base)
    print(f"report of [{rfc3339(start)}, {rfc3339(end)}): {report.status}: {report.message}")
    for m in report.models:
        p99 = "-" if m.latency_p99_ms is None else f"{m.latency_p99_ms:.1f} ms"
        print(f"  {m.name}: {m.requests:,.0f} requests, p99 {p99}")
    print(f"  cost {report.cost.total:,.2f} {report.cost.currency} ({report.cost.gpu_hours:.1f} GPU-hours)")
    print(f"written to {folder}/report.html")
    return 0


def _alerts_explain(args: argparse.Namespace) -> int:
    from mlinfra.rules.explain import print_explanations
    from mlinfra.rules.state import StoreAlertStates

    rows = StoreAlertStates(_store(args.store_url)).explanations(args.alertname, at=parse_time(args.at))
    return print_explanations(args.alertname, rows, sys.stdout)


# (command, action) -> what runs it; commands without actions have action None.
_HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("fleet", "check"): _fleet_check,
    ("fleet", "rbac"): _fleet_rbac,
    ("sweep", None): _sweep,
    ("store", "series"): _store_series,
    ("store", "retention"): _store_retention,
    ("store", "upgrade"): _store_schema,
    ("store", "current"): _store_schema,
    ("rules", "check"): _rules_check,
    ("rules", "test"): _rules_test,
    ("rules", "backtest"): _backtest,
    ("alerts", "explain"): _alerts_explain,
    ("query", None): _query,
    ("report", None): _report,
}


if __name__ == "__main__":
    sys.exit(main())
