"""The Airflow environment of docker-compose.yaml, read from the file, for processes on this machine.

docker-compose.yaml is the one place the distributed configuration is written: its
``x-airflow-common`` environment (``AIRFLOW__*`` settings and ``AIRFLOW_CONN_*``
connections) is what every Airflow container gets. ``tests/distributed`` starts the
same processes on this machine with the same settings, read from that file by
:func:`compose_airflow_environment`; only what a container and a local process cannot
share is replaced, and each replacement is named in :data:`LOCAL_REPLACEMENTS` (addresses
and paths) or :data:`COMPOSE_CONNECTIONS` (every connection, pointed at a stand-in).
``tests/test_compose.py`` keeps those lists equal to the file::

    env = local_airflow_environment(
        compose_airflow_environment({"AIRFLOW_JWT_SECRET": "s3cret"}),
        replacements={"AIRFLOW__CELERY__BROKER_URL": redis.url, ...},
        additions={"AIRFLOW_HOME": str(home), ...},
    )
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")

LOCAL_REPLACEMENTS = frozenset(
    {
        # Host names of the compose network (postgres, redis, airflow-apiserver) -> loopback ports.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        # Paths inside the image (/opt/airflow/...) -> the test's folders.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        "MLINFRA_FLEET_FILE",
        "MLINFRA_REPORTS_BASE",
    }
)
"""Settings of the compose file whose value is an address or a path in the compose network."""

COMPOSE_CONNECTIONS = frozenset(
    {
        "AIRFLOW_CONN_MLINFRA_STORE",
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        "AIRFLOW_CONN_TF_SERVING_HALF_PLUS_TWO",
        "AIRFLOW_CONN_TF_SERVING_RESNET50",
        "AIRFLOW_CONN_PROMETHEUS_PUSHGATEWAY",
        "AIRFLOW_CONN_PROMETHEUS_DEFAULT",
        "AIRFLOW_CONN_ALERTMANAGER_DEFAULT",
    }
)
"""Every connection the compose file defines: a local run replaces each (or leaves it out)."""


def interpolate(text: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` with ``env`` (empty by default;
    ``${VAR:?...}`` not in ``env`` becomes ``<VAR>``: those are the secrets .env must provide)."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg or ""
        if op in (":?", "?"):
            return f"<{name}>"
        return ""

    return _VAR.sub(sub, text.replace("$$", "\x00")).replace("\x00", "$")


def compose_airflow_environment(variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """``x-airflow-common``'s environment as a container sees it, ``variables`` standing for ``.env``."""
    compose = yaml.safe_load(COMPOSE.read_text())
    raw = compose["x-airflow-common"]["environment"]
    return {name: interpolate(str(value), variables) for name, value in raw.items()}


def local_airflow_environment(
    compose_env: Mapping[str, str],
    *,
    replacements: Mapping[str, str | None],
    additions: Mapping[str, str],
) -> dict[str, str]:
    """The compose environment for a process on this machine.

    ``replacements`` may only name :data:`LOCAL_REPLACEMENTS` and
    :data:`COMPOSE_CONNECTIONS` (``None`` leaves a connection out: the DAGs report it
    missing, as they would in the stack); every other compose setting is kept as written.
    ``additions`` may not name a compose setting: they are what a container gets from
    its image (AIRFLOW_HOME, folders) or what one machine running many "containers"
    needs (ports, host names).
    """
    unknown = set(replacements) - (LOCAL_REPLACEMENTS | COMPOSE_CONNECTIONS)
    if unknown:
        raise ValueError(f"not an address, path or connection of the compose file: {sorted(unknown)}")
    missing = (LOCAL_REPLACEMENTS | COMPOSE_CONNECTIONS) - set(replacements)
    if missing:
        raise ValueError(f"compose addresses, paths or connections with no local value: {sorted(missing)}")
    clash = set(additions) & set(compose_env)
    if clash:
        raise ValueError(f"additions would change compose settings: {sorted(clash)}")
    env = {k: v for k, v in compose_env.items() if k not in replacements}
    env.update({k: v for k, v in replacements.items() if v is not None})
    env.update(additions)
    return env
