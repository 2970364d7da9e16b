"""Every setting mlinfra reads from the environment, and the sweep's cadence: one source each.

The README's settings table is generated from :data:`ENVIRONMENT`
(``python -m mlinfra.settings`` prints it; a test keeps the README equal to it), so
a setting, its default and its meaning are written once::

    >>> SWEEP_SCHEDULE
    '*/5 * * * *'
    >>> setting("MLINFRA_SCALE_TIMEOUT").default
    '10m'
    >>> sweep_scale_timeout({"MLINFRA_SWEEP_SCALE_TIMEOUT": "1m"})
    60.0

Durations are Prometheus durations (``90s``, ``3m``, ``1h30m``). A value that cannot be
read raises ``ValueError`` naming the variable, when the DAG file is parsed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from mlinfra.durations import parse_duration

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- the sweep's cadence

SWEEP_INTERVAL = 300.0
"""Seconds between two health sweeps: the sweep DAG's schedule, the reports' step, the
interval alerts are re-sent at."""

if SWEEP_INTERVAL % 60 or 3600 % SWEEP_INTERVAL:  # pragma: no cover - a constant
    raise ValueError("SWEEP_INTERVAL must be a whole number of minutes dividing an hour")
SWEEP_SCHEDULE = f"*/{int(SWEEP_INTERVAL // 60)} * * * *"
"""The sweep DAG's cron schedule, aligned on the clock (``*/5 * * * *``)."""

SWEEP_RUN_TIMEOUT = 240.0
"""The sweep run's ``dagrun_timeout``: shorter than :data:`SWEEP_INTERVAL`, so a slow run
is stopped before the next one is due."""

SWEEP_SCALE_MARGIN = 60.0
"""Seconds of the run that the collectors, rules and the scaling plan get before the
scale tasks start waiting: a scale wait longer than ``SWEEP_RUN_TIMEOUT`` minus this
would be cut off by the run timeout."""


# ---------------------------------------------------------------------- environment variables


@dataclass(frozen=True)
class EnvSetting:
    """One environment variable: its default as written in the docs, what it does, who reads it."""

    name: str
    default: str
    what: str
    read_by: str


ENVIRONMENT: tuple[EnvSetting, ...] = (
    EnvSetting(
        "MLINFRA_FLEET_FILE",
        "include/fleet.yaml",
        "the fleet file (models, connections, policies)",
        "DAGs, CLI, UI",
    ),
    EnvSetting(
        "MLINFRA_STORE_BUSY_TIMEOUT",
        "30",
        "seconds a SQLite store write waits for another writer's lock",
        "store",
    ),
    EnvSetting(
        "MLINFRA_REPORTS_BASE",
        "file://$AIRFLOW_HOME/reports",
        "where daily reports go, when neither the Variable `mlinfra_reports_conn_id` nor "
        "`mlinfra_reports_base` is set",
        "`metrics_report`",
    ),
    EnvSetting(
        "MLINFRA_SWEEP_SCALE_TIMEOUT",
        "3m",
        "how long a sweep's scale task waits for the new replicas; at most the sweep's run "
        f"timeout ({SWEEP_RUN_TIMEOUT:.0f}s) minus {SWEEP_SCALE_MARGIN:.0f}s, a longer value is "
        "cut to that (logged)",
        "`infra_health_sweep`",
    ),
    EnvSetting(
        "MLINFRA_SCALE_TIMEOUT",
        "10m",
        "how long a manual scale (`model_scale`) waits for the new replicas",
        "`model_scale`",
    ),
    EnvSetting(
        "MLINFRA_SCALE_POLL_INTERVAL",
        "5s",
        "how often a scale wait looks at the Deployment",
        "`infra_health_sweep`, `model_scale`",
    ),
    EnvSetting(
        "MLINFRA_DEPLOY_ROLLOUT_TIMEOUT",
        "15m",
        "rollout of a new (or rolled back) spec",
        "`model_deploy`, `model_rollback`",
    ),
    EnvSetting(
        "MLINFRA_DEPLOY_MODEL_TIMEOUT",
        "10m",
        "TF Serving reporting the version AVAILABLE",
        "`model_deploy`, `model_rollback`",
    ),
    EnvSetting(
        "MLINFRA_DEPLOY_POLL_INTERVAL",
        "5s",
        "the deploy triggers' polling interval",
        "`model_deploy`, `model_rollback`",
    ),
    EnvSetting(
        "MLINFRA_DEPLOY_PROGRESS_DEADLINE",
        "10m",
        "the Deployment's `progressDeadlineSeconds`",
        "`model_deploy`",
    ),
    EnvSetting(
        "MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE",
        "10m",
        "unused version ConfigMaps younger than this are kept",
        "`model_deploy`",
    ),
    EnvSetting(
        "MLINFRA_DEPLOY_EXPECTED_DURATION",
        "(from the timeouts)",
        "how long a deploy run may take before its Deadline Alert fires (logged; posted to "
        "Alertmanager when `alertmanager_default` exists); unset: the longest model's sum of "
        "the deploy's timeouts, pauses, approval timeouts and analysis rounds "
        "(`mlinfra.deploy.deadline`); `off`: no Deadline Alert",
        "`model_deploy`",
    ),
    EnvSetting(
        "MLINFRA_DEMO",
        "false",
        "the ML Fleet page says the cluster is simulated (set by `make demo`)",
        "UI",
    ),
    EnvSetting(
        "MLINFRA_HOST_PROC",
        "/proc",
        "the host's process table, for GPU process -> pod attribution (mount it, or run with hostPID)",
        "GPU collector",
    ),
    EnvSetting("MLINFRA_INSTALLER", "uv", "`uv` or `pip`: what `make setup` installs with", "`make setup`"),
    EnvSetting(
        "MLINFRA_ENV_CACHE",
        "~/.cache/mlinfra/envs",
        "where the shared environments (one per set of pins) live",
        "`make setup`",
    ),
    EnvSetting(
        "MLINFRA_SHARED_ENV",
        "1",
        "`0`: install everything into `.venv` instead of a thin venv on a shared environment",
        "`make setup`",
    ),
    EnvSetting("MLINFRA_VENV", ".venv", "the virtualenv the scripts run from", "`make demo`, scripts"),
    EnvSetting("MLINFRA_DEMO_DIR", ".demo", "the demo's state folder", "`make demo`"),
    EnvSetting(
        "MLINFRA_DEMO_READY_TIMEOUT", "300", "seconds the demo waits for Airflow to start", "`make demo`"
    ),
    EnvSetting(
        "MLINFRA_AIRFLOW_IMAGE",
        "mlinfra-airflow:3.3.2",
        "the Airflow image of the compose stack",
        "docker compose",
    ),
    EnvSetting(
        "MLINFRA_DB_PASSWORD",
        "mlinfra",
        "password of the store's PostgreSQL user in the compose stack",
        "docker compose",
    ),
    EnvSetting(
        "MLINFRA_KUBECONFIG_DIR",
        "./deploy/kube",
        "folder holding the kubeconfig the compose stack mounts",
        "docker compose",
    ),
    EnvSetting(
        "MLINFRA_METRICS_USER",
        "prometheus",
        "the Airflow user Prometheus scrapes `/mlinfra/metrics` as",
        "docker compose",
    ),
    EnvSetting(
        "MLINFRA_METRICS_PASSWORD",
        "(required)",
        "its password (`scripts/compose_env.sh` writes one to `.env`)",
        "docker compose",
    ),
    EnvSetting(
        "MLINFRA_TOKEN_FILE",
        "/tokens/mlinfra.jwt",
        "where the compose stack's token fetcher writes Prometheus's bearer token",
        "docker compose",
    ),
    EnvSetting(
        "MLINFRA_TOKEN_REFRESH_S",
        "1800",
        "seconds between two token fetches",
        "docker compose",
    ),
    EnvSetting(
        "MLINFRA_REQUIRE_INTEGRATION",
        "0",
        "`1`: a missing component fails an integration test instead of skipping it",
        "tests",
    ),
    EnvSetting("MLINFRA_TEST_CACHE", ".pytest_cache/mlinfra", "where tests keep built test models", "tests"),
    EnvSetting("MLINFRA_PG_BINDIR", "(Debian's)", "folder of `initdb` and `postgres` for the tests", "tests"),
    EnvSetting("MLINFRA_KEEP_SERVICE_DIRS", "0", "`1`: keep the test services' folders", "tests"),
)

_BY_NAME = {s.name: s for s in ENVIRONMENT}


def setting(name: str) -> EnvSetting:
    """The registered setting ``name``; ``KeyError`` for one that is not in :data:`ENVIRONMENT`."""
    return _BY_NAME[name]


def env_duration(name: str, environ: Mapping[str, str] | None = None) -> float:
    """Seconds from duration variable ``name``, or its registered default when unset or empty."""
    env = os.environ if environ is None else environ
    raw = env.get(name) or setting(name).default
    try:
        return parse_duration(raw)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={raw!r}: {e}") from None


def env_optional_duration(name: str, environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds from duration variable ``name``; None when unset or empty (its default is derived)."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if not raw:
        return None
    try:
        return parse_duration(raw)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={raw!r}: {e}") from None


def default_duration(name: str) -> float:
    """The registered default of duration variable ``name``, in seconds."""
    return parse_duration(setting(name).default)


def sweep_scale_timeout(environ: Mapping[str, str] | None = None) -> float:
    """How long a sweep's scale task waits, cut to what the sweep's run timeout leaves."""
    wanted = env_duration("MLINFRA_SWEEP_SCALE_TIMEOUT", environ)
    bound = SWEEP_RUN_TIMEOUT - SWEEP_SCALE_MARGIN
    if wanted > bound:
        log.warning(
            "MLINFRA_SWEEP_SCALE_TIMEOUT=%ss is longer than the sweep's run timeout (%ss) allows "
            "after %ss for the other tasks: waiting %ss instead",
            wanted,
            SWEEP_RUN_TIMEOUT,
            SWEEP_SCALE_MARGIN,
            bound,
        )
        return bound
    return wanted


def manual_scale_timeout(environ: Mapping[str, str] | None = None) -> float:
    """How long ``model_scale`` waits for the new replicas."""
    return env_duration("MLINFRA_SCALE_TIMEOUT", environ)


def scale_poll_interval(environ: Mapping[str, str] | None = None) -> float:
    """How often a scale wait polls (at least 50 ms)."""
    return max(env_duration("MLINFRA_SCALE_POLL_INTERVAL", environ), 0.05)


def environment_table() -> str:
    """The README's settings table (Markdown)."""
    lines = ["| variable | default | what | read by |", "|---|---|---|---|"]
    lines += [f"| `{s.name}` | `{s.default}` | {s.what} | {s.read_by} |" for s in ENVIRONMENT]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - prints the table for the README
    print(environment_table(), end="")
