"""docker-compose.yaml without a Docker engine: schema, paths, config files, connections, versions.

No Docker engine runs on the test machines, so the file is checked piece by piece:
the Compose Specification's own JSON schema (vendored in tests/support/compose_spec),
every bind-mounted host path and every config file a service is pointed at, the
Prometheus and Alertmanager configs with their own checkers (``promtool``,
``amtool``), every Airflow connection the DAGs use, and the Airflow version of the
image against requirements.txt.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.support.compose_env import interpolate

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
SCHEMA = ROOT / "tests" / "support" / "compose_spec" / "compose-spec.json"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount (named volumes left out)."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out.append((interpolate(volume["source"]), volume["target"]))
            continue
        source, target = interpolate(volume).split(":")[:2]
        if source.startswith((".", "/", "~")):
            out.append((source, target))
    return out


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The host file behind ``container_path`` through the service's bind mounts (longest match)."""
    best: tuple[int, Path] | None = None
    for source, target in bind_mounts(service):
        target_p = PurePosixPath(target)
        path = PurePosixPath(container_path)
        if path == target_p or target_p in path.parents:
            rel = path.relative_to(target_p)
            candidate = (ROOT / source / rel).resolve()
            if best is None or len(target_p.parts) > best[0]:
                best = (len(target_p.parts), candidate)
    return best[1] if best else None


# --------------------------------------------------------------------------- schema and shape


def test_the_file_is_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text())
    errors = sorted(Draft202012Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_can_fail(compose: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["healthcheck"]["interval"] = ["10s"]
    broken["services"]["redis"]["no_such_key"] = 1
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert len(list(validator.iter_errors(broken))) >= 2


def test_the_stack_has_every_service_of_the_official_celery_layout_and_mlinfras(
    compose: dict[str, Any],
) -> None:
    svc = services(compose)
    expected = {
        *AIRFLOW_SERVICES,
        "postgres",
        "redis",
        "prometheus",
        "pushgateway",
        "alertmanager",
        "tf-serving",
    }
    assert expected <= set(svc)
    commands = {name: svc[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker"] == "celery worker"
    for name in AIRFLOW_SERVICES:
        env = environment(svc[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"], name
        assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        if name != "airflow-init":
            assert svc[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_dags_plugins_and_include_are_mounted_into_every_airflow_service(compose: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        if name == "airflow-init":
            continue
        mounts = {target: source for source, target in bind_mounts(services(compose)[name])}
        assert mounts.get("/opt/airflow/dags") == "./dags", name
        assert mounts.get("/opt/airflow/plugins") == "./plugins", name
        assert mounts.get("/opt/airflow/include") == "./include", name


# --------------------------------------------------------------------------- paths and config files


def test_every_bind_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    missing = [
        f"{name}: {source}"
        for name, service in services(compose).items()
        for source, _ in bind_mounts(service)
        if not (ROOT / source).exists()
    ]
    assert not missing, f"mounted paths missing from the repository: {missing}"


def test_every_named_volume_is_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {
        str(v).split(":")[0]
        for service in services(compose).values()
        for v in service.get("volumes") or []
        if isinstance(v, str) and not interpolate(v).startswith((".", "/", "~"))
    }
    assert used <= declared, f"undeclared named volumes: {sorted(used - declared)}"


def config_paths(service: dict[str, Any]) -> list[str]:
    """Absolute container paths a service's command line points at (``--flag=/path`` or ``/path``)."""
    args: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        args += value.split() if isinstance(value, str) else [str(a) for a in value]
    paths = []
    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if value.startswith("/") and "." in PurePosixPath(value).name:
            paths.append(value)
    return paths


def test_every_config_file_a_service_is_pointed_at_exists_on_the_host(compose: dict[str, Any]) -> None:
    checked = []
    for name, service in services(compose).items():
        for path in config_paths(service):
            source = host_path(service, path)
            if source is None:
                continue  # a file of the image itself (tensorflow_model_server, python3, ...)
            assert source.is_file(), f"{name}: {path} -> {source} does not exist"
            checked.append(path)
    assert "/etc/tf-serving/models.config" in checked
    assert "/etc/prometheus/prometheus.yml" in checked
    assert "/etc/alertmanager/alertmanager.yml" in checked
    assert "/opt/mlinfra/init.sh" in checked
    assert "/opt/mlinfra/fetch_token.py" in checked


def test_tf_serving_serves_the_model_directory_that_make_compose_models_builds(
    compose: dict[str, Any],
) -> None:
    tfs = services(compose)["tf-serving"]
    config = (ROOT / "deploy" / "tf-serving" / "models.config").read_text()
    base_paths = re.findall(r'base_path:\s*"([^"]+)"', config)
    assert base_paths == ["/models/half_plus_two"]
    assert (
        host_path(tfs, base_paths[0])
        == (ROOT / "deploy" / "tf-serving" / "models" / "half_plus_two").resolve()
    )
    builder = (ROOT / "scripts" / "build_compose_models.sh").read_text()
    assert '"deploy/tf-serving/models/half_plus_two"' in builder
    assert any("--monitoring_config_file=" in str(a) for a in tfs["command"])


def test_prometheus_config_passes_promtool_with_the_mounted_rule_files(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    from tests.support.integration import require_binary

    promtool = require_binary("promtool", ["promtool"])
    prom = services(compose)["prometheus"]
    config = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    # Container paths -> host paths, the way the mounts map them; the token file is made by a service.
    rules = host_path(prom, "/etc/prometheus/rules")
    assert rules == (ROOT / "include" / "alert_rules").resolve()
    token = tmp_path / "mlinfra.jwt"
    token.write_text("a-token")
    config = config.replace("/etc/prometheus/rules", str(rules)).replace(
        "/etc/prometheus/tokens/mlinfra.jwt", str(token)
    )
    (tmp_path / "prometheus.yml").write_text(config)

    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    checked_rules = re.findall(r"Checking (\S+\.yaml)", result.stdout + result.stderr)
    assert len(checked_rules) == len(list(rules.glob("*.yaml"))) > 0
    parsed = yaml.safe_load(config)
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["pushgateway:9091"]
    assert jobs["mlinfra"]["metrics_path"] == "/mlinfra/metrics"
    assert jobs["mlinfra"]["static_configs"][0]["targets"] == ["airflow-apiserver:8080"]
    assert jobs["tf-serving"]["metrics_path"] == "/monitoring/prometheus/metrics"


def test_alertmanager_config_passes_amtool() -> None:
    from tests.support.integration import require_binary

    amtool = require_binary("amtool", ["amtool"])
    result = subprocess.run(
        [amtool, "check-config", str(ROOT / "deploy" / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "script",
    [
        "deploy/postgres/init-mlinfra-db.sh",
        "deploy/airflow/init.sh",
        "scripts/demo.sh",
        "scripts/compose_env.sh",
        "scripts/build_compose_models.sh",
    ],
)
def test_shell_scripts_parse(script: str) -> None:
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run([bash, "-n", str(ROOT / script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_token_fetcher_compiles() -> None:
    compile((ROOT / "deploy" / "prometheus" / "fetch_token.py").read_text(), "fetch_token.py", "exec")


# --------------------------------------------------------------------------- connections


def connection_ids_the_dags_use() -> set[str]:
    from mlinfra import export, store
    from mlinfra.config import load_fleet
    from mlinfra.hooks.alertmanager import AlertmanagerHook
    from mlinfra.hooks.prometheus import PrometheusHook

    fleet = load_fleet(ROOT / "include" / "fleet.yaml")
    ids = {store.DEFAULT_CONN_ID, export.DEFAULT_CONN_ID}
    ids |= {AlertmanagerHook.default_conn_name, PrometheusHook.default_conn_name}
    for model in fleet.models:
        ids |= {model.kubernetes.conn_id, model.serving.conn_id}
    # And any connection id a DAG file names literally.
    for dag_file in (ROOT / "dags").glob("*.py"):
        ids |= set(re.findall(r'conn_id\s*=\s*"([A-Za-z0-9_.-]+)"', dag_file.read_text()))
    return ids


def test_every_connection_the_dags_use_is_defined_for_every_airflow_service(compose: dict[str, Any]) -> None:
    needed = connection_ids_the_dags_use()
    assert {
        "mlinfra_store",
        "kubernetes_default",
        "tf_serving_half_plus_two",
        "tf_serving_resnet50",
    } <= needed
    for name in AIRFLOW_SERVICES:
        env = environment(services(compose)[name])
        missing = sorted(c for c in needed if f"AIRFLOW_CONN_{c.upper()}" not in env)
        assert not missing, f"{name}: no AIRFLOW_CONN_* for {missing}"


def test_connection_values_are_valid_connection_json(compose: dict[str, Any]) -> None:
    from airflow.models.connection import Connection

    env = environment(services(compose)["airflow-scheduler"])
    conns = {k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
    for var, value in conns.items():
        data = json.loads(interpolate(value))
        conn = Connection.from_json(json.dumps(data), conn_id=var.removeprefix("AIRFLOW_CONN_").lower())
        assert conn.conn_type, var
    store = json.loads(interpolate(env["AIRFLOW_CONN_MLINFRA_STORE"]))
    assert (store["host"], store["login"], store["schema"]) == ("postgres", "mlinfra", "mlinfra")
    init_sql = (ROOT / "deploy" / "postgres" / "init-mlinfra-db.sh").read_text()
    assert "CREATE ROLE mlinfra" in init_sql
    assert "CREATE DATABASE mlinfra OWNER mlinfra" in init_sql
    pg_env = environment(services(compose)["postgres"])
    assert interpolate(pg_env["MLINFRA_DB_PASSWORD"]) == store["password"]


def test_a_missing_connection_would_be_noticed(compose: dict[str, Any]) -> None:
    env = environment(services(compose)["airflow-scheduler"])
    env.pop("AIRFLOW_CONN_TF_SERVING_RESNET50")
    assert "tf_serving_resnet50" in {
        c for c in connection_ids_the_dags_use() if f"AIRFLOW_CONN_{c.upper()}" not in env
    }


# --------------------------------------------------------------------------- versions


def pinned_airflow() -> str:
    match = re.search(r"^apache-airflow==([0-9][^\s;#]*)", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, "requirements.txt pins no apache-airflow"
    return match.group(1)


def test_the_airflow_image_matches_requirements(compose: dict[str, Any]) -> None:
    version = pinned_airflow()
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+apache/airflow:(\S+)", dockerfile, re.M)
    assert base, "the Dockerfile does not build FROM apache/airflow"
    assert base.group(1).split("-python")[0] == version
    for name in AIRFLOW_SERVICES:
        image = interpolate(services(compose)[name]["image"])
        assert image.rsplit(":", 1)[1] == version, f"{name}: image {image} is not Airflow {version}"
        assert services(compose)[name]["build"] == "."


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("${A:-x}/${B}") == "x/"
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("${S:?set S}") == "<S>"
    assert interpolate("$${HOSTNAME}") == "${HOSTNAME}"


# --------------------------------------------------------------------------- the distributed test's settings


def test_the_distributed_test_takes_every_setting_from_here_but_addresses_paths_and_connections(
    compose: dict[str, Any],
) -> None:
    """tests/distributed starts the stack's processes with x-airflow-common's environment
    (tests/support/compose_env.py): what it replaces must be exactly what cannot hold
    outside the compose network, and every Airflow service must get that environment."""
    from tests.support.compose_env import COMPOSE_CONNECTIONS, LOCAL_REPLACEMENTS, compose_airflow_environment

    common = compose["x-airflow-common"]["environment"]
    assert {k for k in common if k.startswith("AIRFLOW_CONN_")} == COMPOSE_CONNECTIONS
    assert set(common) >= LOCAL_REPLACEMENTS
    compose_only = ("@postgres", "redis:", "airflow-apiserver", "/opt/airflow", "://postgres", "://redis")
    kept = {k: v for k, v in compose_airflow_environment({}).items() if k not in LOCAL_REPLACEMENTS}
    leaks = {
        k: v
        for k, v in kept.items()
        if not k.startswith("AIRFLOW_CONN_") and any(s in v for s in compose_only)
    }
    assert leaks == {}, "compose addresses or paths the distributed test would copy verbatim"
    for name in AIRFLOW_SERVICES:
        env = environment(services(compose)[name])
        assert {k: str(v) for k, v in common.items()}.items() <= env.items(), name
