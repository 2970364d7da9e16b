"""The ``mlinfra`` command line: the same code the DAGs run, without a scheduler.

    mlinfra fleet check [--file include/fleet.yaml]
    mlinfra fleet rbac [--subject airflow/airflow-worker] > include/k8s/rbac.yaml
    mlinfra sweep [--collectors host,gpu] [--store-url sqlite:////tmp/s.db] [--json]
    mlinfra store series ml_cpu_usage_percent [--since 1h]
    mlinfra store retention [--keep 30d]
    mlinfra rules check include/alert_rules/*.yaml
    mlinfra rules test include/alert_rules/tests/*.yaml
    mlinfra query 'ml_cpu_usage_percent{core="all"} > 85' [--time 2026-01-01T12:00:00Z]

The store is the Airflow connection ``mlinfra_store`` (or the SQLite default under
``$AIRFLOW_HOME``) unless ``--store-url`` names another.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlinfra.durations import format_duration, parse_duration
from mlinfra.exceptions import MlinfraError

if TYPE_CHECKING:
    from mlinfra.config import Fleet


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlinfra", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

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

    sweep = sub.add_parser("sweep", help="run the collectors once and write one sweep to the store")
    sweep.add_argument("--collectors", help="comma-separated subset (default: all)")
    sweep.add_argument("--store-url", help="SQLAlchemy URL instead of the mlinfra_store connection")
    sweep.add_argument("--no-export", action="store_true", help="do not push to the Pushgateway")
    sweep.add_argument("--json", action="store_true", help="print the summary as JSON")

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

    rules = sub.add_parser("rules", help="Prometheus rule files (like promtool)").add_subparsers(
        dest="action", required=True
    )
    rules_check = rules.add_parser("check", help="validate rule files on the local engine")
    rules_check.add_argument("files", nargs="+", metavar="FILE")
    rules_test = rules.add_parser("test", help="run rule unit tests in promtool's test-file format")
    rules_test.add_argument("files", nargs="+", metavar="FILE")

    query = sub.add_parser("query", help="evaluate a PromQL expression on the store (local engine)")
    query.add_argument("expr", metavar="EXPR")
    query.add_argument("--time", help="evaluation time: epoch seconds or RFC 3339 (default: now)")
    query.add_argument("--store-url")

    args = parser.parse_args(argv)
    try:
        return int(_dispatch(args))
    except MlinfraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _store(url: str | None):  # type: ignore[no-untyped-def]
    from mlinfra.store import MetricsStore

    return MetricsStore.from_url(url) if url else MetricsStore.from_connection()


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
    from mlinfra.config import load_fleet

    if args.command == "fleet" and args.action == "rbac":
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

    if args.command == "fleet":
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

    if args.command == "sweep":
        from mlinfra.export import push_from_connection
        from mlinfra.sweep import COLLECTORS, collect_and_stage, write_sweep

        names = args.collectors.split(",") if args.collectors else list(COLLECTORS)
        unknown = sorted(set(names) - set(COLLECTORS))
        if unknown:
            print(f"error: unknown collectors {unknown}; known: {', '.join(COLLECTORS)}", file=sys.stderr)
            return 2
        fleet, store = load_fleet(), _store(args.store_url)
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

    if args.command == "store" and args.action == "series":
        store = _store(args.store_url)
        now = time.time()
        rows = store.query_range(args.name, (), now - _duration_option("--since", args.since), now)
        for s, points in sorted(rows, key=lambda r: sorted(r[0].labels.items())):
            t, v = points[-1]
            labels = ",".join(f'{k}="{val}"' for k, val in sorted(s.labels.items()))
            print(f"{s.name}{{{labels}}} {v:g}  ({format_duration(now - t)} ago)")
        if not rows:
            print(f"no samples of {args.name} in the last {args.since}")
        return 0

    if args.command == "store" and args.action == "retention":
        store = _store(args.store_url)
        keep = _duration_option("--keep", args.keep) if args.keep else load_fleet().store.retention
        deleted, series = store.apply_retention(time.time() - keep)
        print(f"deleted {deleted} samples and {series} empty series older than {format_duration(keep)}")
        return 0
    if args.command == "rules" and args.action == "check":
        from mlinfra.rules.promtool import check_rule_files

        return check_rule_files(args.files)

    if args.command == "rules" and args.action == "test":
        from mlinfra.rules.promtool import run_test_files

        return run_test_files(args.files)

    if args.command == "query":
        return _query(args)
    raise AssertionError(f"unhandled command {args}")  # argparse's required= makes this unreachable


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


def _query(args: argparse.Namespace) -> int:
    from mlinfra.rules.engine import QueryError
    from mlinfra.rules.local import LocalEngine
    from mlinfra.rules.templates import go_float

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
        print(f"{name}{{{labels}}} => {go_float(s.value)} @[{at:.3f}]")
    if not result:
        print("empty result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
