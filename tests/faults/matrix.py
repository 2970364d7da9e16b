"""The fault-injection matrix: dependency x DAG step x fault -> expected outcome, and what is kept.

This is data. ``tests/faults/test_matrix.py`` runs every cell against the real
components behind a fault injector (``tests/faults/servers.py``), and
:func:`render_table` turns the same data into the README's "Failure behaviour"
table (``python -m tests.faults.matrix`` prints it; ``test_readme_table`` fails
when the README's copy differs), so the documentation cannot drift from what is
tested.

Outcomes: ``ok`` (the step did all its work), ``degraded`` (the step succeeded
without this dependency; the message says what is missing) and ``fails`` (the task
fails with the message, Airflow retries it). ``message`` is a regular expression
the step's message must match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAULTS = ("refused", "timeout", "5xx", "malformed", "recovery")
FAULT_TITLES = {
    "refused": "refused",
    "timeout": "timeout",
    "5xx": "5xx",
    "malformed": "malformed body",
    "recovery": "fails once, then answers",
}


@dataclass(frozen=True)
class Expect:
    outcome: str  # ok | degraded | fails
    message: str = ""  # regex on the step's message (error text or degradation note)

    def __post_init__(self) -> None:
        if self.outcome not in ("ok", "degraded", "fails"):
            raise ValueError(f"unknown outcome {self.outcome!r}")


@dataclass(frozen=True)
class Scenario:
    dependency: str
    step: str
    key: str  # the runner in test_matrix.py
    kept: str  # what is kept whatever happens (README)
    expect: dict[str, Expect] = field(default_factory=dict)
    fails_as: str = "task fails, retried"  # how a "fails" outcome reads in the README


@dataclass(frozen=True)
class Cell:
    scenario: Scenario
    fault: str

    @property
    def expected(self) -> Expect:
        return self.scenario.expect[self.fault]

    @property
    def id(self) -> str:
        return f"{self.scenario.key}-{self.fault}"


_UNREACHABLE = r"unreachable|refused|timed out|did not answer|timeout|Timeout"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "Pushgateway",
        "write_sweep",
        "pushgateway-write_sweep",
        "the sweep is stored with `export_error` in its summary; rules and scaling run; the next "
        "sweep's push replaces the group",
        {
            "refused": Expect("degraded", r"export_error: Pushgateway .* unreachable"),
            "timeout": Expect("degraded", r"export_error: Pushgateway .* (timed out|unreachable)"),
            "5xx": Expect("degraded", r"export_error: Pushgateway .* HTTP 503"),
            "malformed": Expect("ok"),  # a PUT's answer body is not read
            "recovery": Expect("ok"),  # retried within the task
        },
    ),
    Scenario(
        "Alertmanager",
        "evaluate_rules",
        "alertmanager-evaluate_rules",
        "alert states are saved; firing alerts still reach `plan_scaling`; every active alert is "
        "re-sent at the next evaluation",
        {
            "refused": Expect("degraded", r"post_error: Alertmanager at .* unreachable"),
            "timeout": Expect("degraded", r"post_error: Alertmanager at .* unreachable: ReadTimeout"),
            "5xx": Expect("degraded", r"post_error: Alertmanager at .* answered 503"),
            "malformed": Expect("ok"),  # a POST's answer body is not read
            "recovery": Expect("ok"),  # retried within the task
        },
    ),
    Scenario(
        "Prometheus (rules.engine: prometheus)",
        "evaluate_rules",
        "prometheus-evaluate_rules",
        "a rule that cannot be evaluated keeps its alert state (as Prometheus does) and is listed in "
        "`errors`; the other rules still run",
        {
            "refused": Expect("degraded", r"errors: .*Prometheus at .* unreachable"),
            "timeout": Expect("degraded", r"errors: .*Prometheus at .* did not answer"),
            "5xx": Expect("degraded", r"errors: .*Prometheus at .* HTTP 503"),
            "malformed": Expect("degraded", r"errors: .*Prometheus at .* no API response"),
            "recovery": Expect("ok"),  # retried within the task
        },
    ),
    Scenario(
        "Prometheus (rules.engine: prometheus)",
        "plan_scaling",
        "prometheus-plan_scaling",
        "models whose target cannot be read keep their replicas (`no change`, with the reason); "
        "alert-driven steps and the other models are still decided",
        {
            "refused": Expect(
                "degraded", r"metric unavailable: .*query failed: .*Prometheus at .* unreachable"
            ),
            "timeout": Expect("degraded", r"metric unavailable: .*query failed: .*did not answer"),
            "5xx": Expect("degraded", r"metric unavailable: .*query failed: .*HTTP 503"),
            "malformed": Expect("degraded", r"metric unavailable: .*query failed: .*no API response"),
            "recovery": Expect("ok"),
        },
    ),
    Scenario(
        "Kubernetes API",
        "collect_kubernetes",
        "kubernetes-collect",
        '`mlinfra_collector_up{collector="kubernetes"} 0` and the error in the sweep summary; the '
        "other collectors' samples are written",
        {
            "refused": Expect("degraded", r"errors: .*serving.*(refused|unreachable)"),
            "timeout": Expect("degraded", r"errors: .*serving.*(timed out|timeout)"),
            "5xx": Expect("degraded", r"errors: .*serving.*503"),
            "malformed": Expect("degraded", r"errors: .*serving"),
            "recovery": Expect("degraded", r"errors: .*serving.*503"),  # no retry inside the collector
        },
    ),
    Scenario(
        "Kubernetes API",
        "plan_scaling",
        "kubernetes-plan_scaling",
        "every model of the unreadable namespace is `skipped` with the reason (recorded); nothing "
        "is scaled blind",
        {
            "refused": Expect("degraded", r"skipped: cannot read namespace serving"),
            "timeout": Expect("degraded", r"skipped: cannot read namespace serving"),
            "5xx": Expect("degraded", r"skipped: cannot read namespace serving.*503"),
            "malformed": Expect("degraded", r"skipped: cannot read namespace serving"),
            "recovery": Expect("degraded", r"skipped: cannot read namespace serving.*503"),
        },
    ),
    Scenario(
        "Kubernetes API",
        "scale",
        "kubernetes-scale",
        "the failure is recorded in `mlinfra_scale_events` (outcome `failed`, with the reason); the "
        "retry patches the scale subresource once and records `patched`. A failure after the patch "
        "landed (reading or waiting for the rollout) leaves the row `patched`, with what failed after, "
        "so that the cooldown and a manual hold count from it; the retry keeps the count it was patched "
        "from",
        {
            "refused": Expect("fails", r"ScaleFailed: .*cannot reach the API server"),
            "timeout": Expect("fails", r"ScaleFailed: .*cannot reach the API server"),
            "5xx": Expect("fails", r"ScaleFailed: .*answered 503"),
            "malformed": Expect("fails", r"ScaleFailed: .*unreadable answer"),
            "recovery": Expect("fails", r"ScaleFailed: .*answered 503"),  # no retry inside the task
        },
    ),
    Scenario(
        "TF Serving gRPC",
        "collect_serving",
        "tfserving_grpc-collect",
        "`mlinfra_serving_up{model} 0` and the error in the sweep summary; other models and "
        "collectors are written",
        {
            "refused": Expect("degraded", r"errors: .*half-plus-two.*UNAVAILABLE"),
            "timeout": Expect("degraded", r"errors: .*half-plus-two.*DEADLINE_EXCEEDED"),
            "5xx": Expect("degraded", r"errors: .*half-plus-two.*UNAVAILABLE"),
            "malformed": Expect("degraded", r"errors: .*half-plus-two"),
            "recovery": Expect("degraded", r"errors: .*half-plus-two.*UNAVAILABLE"),
        },
    ),
    Scenario(
        "TF Serving REST",
        "collect_serving",
        "tfserving_rest-collect",
        "the model's status samples are written; its monitoring metrics are missing and the error "
        "is in the sweep summary",
        {
            "refused": Expect("degraded", r"errors: .*monitoring metrics: .*failed"),
            "timeout": Expect("degraded", r"errors: .*monitoring metrics: .*(Timeout|timed out)"),
            "5xx": Expect("degraded", r"errors: .*monitoring metrics: .*HTTP 503"),
            "malformed": Expect("degraded", r"errors: .*monitoring metrics"),
            "recovery": Expect("degraded", r"errors: .*monitoring metrics: .*HTTP 503"),
        },
    ),
    Scenario(
        "TF Serving gRPC",
        "smoke predictions",
        "tfserving_grpc-smoke",
        "the report counts every failed request; the version does not pass (no promotion); "
        "nothing is written to the store",
        {
            "refused": Expect("fails", r"grpc case 'zeros': 2 error\(s\)"),
            "timeout": Expect("fails", r"grpc case 'zeros': 2 error\(s\)"),
            "5xx": Expect("fails", r"grpc case 'zeros': 2 error\(s\)"),
            "malformed": Expect("fails", r"grpc case 'zeros': 2 error\(s\)"),
            # The one failed request is the warm-up: it still fails the case, counted apart.
            "recovery": Expect("fails", r"grpc case 'zeros': 0 error\(s\).*\(and 1 of 2 warm-up requests\)"),
        },
        fails_as="smoke test fails",
    ),
    Scenario(
        "TF Serving REST",
        "smoke predictions",
        "tfserving_rest-smoke",
        "the report counts every failed request; the version does not pass (no promotion); "
        "nothing is written to the store",
        {
            "refused": Expect("fails", r"rest case 'zeros': 2 error\(s\)"),
            "timeout": Expect("fails", r"rest case 'zeros': 2 error\(s\)"),
            "5xx": Expect("fails", r"rest case 'zeros': 2 error\(s\)"),
            "malformed": Expect("fails", r"rest case 'zeros': 2 error\(s\)"),
            # The one failed request is the warm-up: it still fails the case, counted apart.
            "recovery": Expect("fails", r"rest case 'zeros': 0 error\(s\).*\(and 1 of 2 warm-up requests\)"),
        },
        fails_as="smoke test fails",
    ),
    Scenario(
        "Metrics store (PostgreSQL down / SQLite locked)",
        "collect_host",
        "store-collect",
        "the collector's samples are not staged; the other collectors' staging is untouched; the retry stages them again",
        {
            "refused": Expect("fails", r"metrics store .* (unreachable|refused)"),
            "timeout": Expect("fails", r"metrics store .* (unreachable|timeout)"),
            "5xx": Expect("fails", r"metrics store .*database is locked"),
            "malformed": Expect("fails", r"metrics store .*file is not a database"),
            "recovery": Expect("ok"),
        },
    ),
    Scenario(
        "Metrics store (PostgreSQL down / SQLite locked)",
        "write_sweep",
        "store-write_sweep",
        "nothing half-written (one transaction); the collectors' output stays staged for the retry",
        {
            "refused": Expect("fails", r"metrics store .* (unreachable|refused)"),
            "timeout": Expect("fails", r"metrics store .* (unreachable|timeout)"),
            "5xx": Expect("fails", r"metrics store .*database is locked"),
            "malformed": Expect("fails", r"metrics store .*file is not a database"),
            "recovery": Expect("ok"),  # the lock is released within the busy timeout
        },
    ),
    Scenario(
        "Metrics store (PostgreSQL down / SQLite locked)",
        "evaluate_rules",
        "store-evaluate_rules",
        "alert states and recorded series are written in transactions; a failed run leaves the "
        "previous evaluation as it was",
        {
            "refused": Expect("fails", r"metrics store .* (unreachable|refused)"),
            "timeout": Expect("fails", r"metrics store .* (unreachable|timeout)"),
            "5xx": Expect("fails", r"metrics store .*database is locked"),
            "malformed": Expect("fails", r"metrics store .*file is not a database"),
            "recovery": Expect("ok"),
        },
    ),
    Scenario(
        "Metrics store (PostgreSQL down / SQLite locked)",
        "plan_scaling",
        "store-plan_scaling",
        "no decision is recorded and nothing is scaled; the retry decides from the same history",
        {
            "refused": Expect("fails", r"metrics store .* (unreachable|refused)"),
            "timeout": Expect("fails", r"metrics store .* (unreachable|timeout)"),
            "5xx": Expect("fails", r"metrics store .*database is locked"),
            "malformed": Expect("fails", r"metrics store .*file is not a database"),
            "recovery": Expect("ok"),
        },
    ),
    Scenario(
        "Metrics store (PostgreSQL down / SQLite locked)",
        "metrics_report",
        "store-metrics_report",
        "no report files or record are written; the previous reports are untouched",
        {
            "refused": Expect("fails", r"metrics store .* (unreachable|refused)"),
            "timeout": Expect("fails", r"metrics store .* (unreachable|timeout)"),
            "5xx": Expect("fails", r"metrics store .*database is locked"),
            "malformed": Expect("fails", r"metrics store .*file is not a database"),
            "recovery": Expect("ok"),
        },
    ),
    Scenario(
        "Report object storage (S3 API)",
        "metrics_report",
        "reports-publish",
        "no report record is written before the files; a previous complete report is never "
        "half-overwritten; the retry rewrites the interval",
        {
            "refused": Expect("fails", r"cannot write to s3://reports/mlinfra: .*Could not connect"),
            "timeout": Expect("fails", r"cannot write to s3://reports/mlinfra: .*(timeout|Timeout)"),
            "5xx": Expect("fails", r"cannot write to s3://reports/mlinfra: .*(503|Unavailable|SlowDown)"),
            "malformed": Expect("fails", r"cannot write to s3://reports/mlinfra: "),
            "recovery": Expect("ok"),  # botocore retries
        },
    ),
)

CELLS: tuple[Cell, ...] = tuple(Cell(s, f) for s in SCENARIOS for f in FAULTS)


def _cell_text(s: Scenario, e: Expect) -> str:
    return {"ok": "ok", "degraded": "degraded", "fails": s.fails_as}[e.outcome]


def render_table() -> str:
    """The README's "Failure behaviour" table (Markdown), from :data:`SCENARIOS`."""
    head = ["dependency", "step", *(FAULT_TITLES[f] for f in FAULTS), "what is kept"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in SCENARIOS:
        cells = [s.dependency, f"`{s.step}`" if " " not in s.step else s.step]
        cells += [_cell_text(s, s.expect[f]) for f in FAULTS]
        cells.append(s.kept)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- failure-behaviour: generated by `python -m tests.faults.matrix`, do not edit -->"
README_END = "<!-- /failure-behaviour -->"


if __name__ == "__main__":
    print(README_BEGIN)
    print(render_table(), end="")
    print(README_END)
