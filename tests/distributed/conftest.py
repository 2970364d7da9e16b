"""The distributed stack of docker-compose.yaml, started on this machine for one test module.

PostgreSQL (the session's server: one database for Airflow's metadata, one for the
mlinfra store, as deploy/postgres/init-mlinfra-db.sh makes them), Redis, a Pushgateway
of the module's own (so its groups are this stack's only), the deploy environment's
Kubernetes and TF Serving stand-ins, and Airflow's api-server, scheduler,
dag-processor, triggerer and two Celery workers with the compose file's environment.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.distributed.stack import DistributedStack, create_stack
from tests.support.compose_env import compose_airflow_environment
from tests.support.services import PostgresServer, ServerHandle, pushgateway_server, redis_server

DAG_IDS = ("infra_health_sweep", "metrics_report", "model_deploy", "model_rollback", "model_scale")


@dataclass
class Cluster:
    """What the stack's DAGs talk to: stand-ins, the store, the Pushgateway, the reports folder."""

    deploy: Any  # tests.deploy.environment.DeployEnv
    store_url: str
    pushgateway: ServerHandle
    reports: Path


def _create_database(postgres: PostgresServer, prefix: str) -> sa.URL:
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(postgres.url).set(database=name)


@pytest.fixture
def cluster(tmp_path: Path, deploy_serving: Any, postgres: PostgresServer) -> Iterator[Cluster]:
    from tests.deploy.environment import deploy_env

    serving, base_path = deploy_serving
    # The stand-in is the session's: an earlier test may have left a fault set (a failing
    # version 2 made this test's deploy roll back under one test order).
    serving.clear_faults()
    store_url = _create_database(postgres, "mlinfra").render_as_string(hide_password=False)
    (tmp_path / "deploy").mkdir()
    with pushgateway_server() as gw, deploy_env(tmp_path / "deploy", serving, base_path) as env:
        env.seed(version=1, replicas=1)
        # The fleet's second model: a Deployment with no TF Serving connection (reported skipped).
        env.kube.add_deployment("serving", "resnet50-classifier", replicas=2)
        try:
            yield Cluster(env, store_url, gw, tmp_path / "reports")
        finally:
            serving.clear_faults()


@pytest.fixture
def stack(tmp_path: Path, cluster: Cluster, postgres: PostgresServer) -> Iterator[DistributedStack]:
    store = sa.make_url(cluster.store_url)
    gw_host, gw_port = cluster.pushgateway.url.removeprefix("http://").split(":")
    airflow_db = _create_database(postgres, "airflow").render_as_string(hide_password=False)
    with redis_server() as redis:
        stack = create_stack(
            tmp_path / "airflow",
            compose_airflow_environment({"AIRFLOW_JWT_SECRET": secrets.token_hex(16)}),
            airflow_db_url=airflow_db,
            broker_url=redis.url,
            replacements={
                "MLINFRA_FLEET_FILE": str(cluster.deploy.fleet_file),
                "MLINFRA_REPORTS_BASE": cluster.reports.as_uri(),
                "AIRFLOW_CONN_MLINFRA_STORE": json.dumps(
                    {
                        "conn_type": "postgres",
                        "host": store.host,
                        "port": store.port,
                        "login": store.username,
                        "password": store.password,
                        "schema": store.database,
                    }
                ),
                # The deploy environment's stand-ins (it exports their connections).
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"],
                "AIRFLOW_CONN_TF_SERVING_HALF_PLUS_TWO": os.environ["AIRFLOW_CONN_TF_SERVING_HALF_PLUS_TWO"],
                # The stack serves half_plus_two only (as the compose file says of resnet50).
                "AIRFLOW_CONN_TF_SERVING_RESNET50": None,
                "AIRFLOW_CONN_PROMETHEUS_PUSHGATEWAY": json.dumps(
                    {"conn_type": "http", "host": gw_host, "port": int(gw_port)}
                ),
                # rules.engine is local and no Alertmanager is configured in the fleet file.
                "AIRFLOW_CONN_PROMETHEUS_DEFAULT": None,
                "AIRFLOW_CONN_ALERTMANAGER_DEFAULT": None,
            },
            additions={
                # The stand-ins answer in milliseconds (tests/deploy/environment.py's values).
                "MLINFRA_DEPLOY_ROLLOUT_TIMEOUT": "60s",
                "MLINFRA_DEPLOY_MODEL_TIMEOUT": "30s",
                "MLINFRA_DEPLOY_POLL_INTERVAL": "500ms",
                "MLINFRA_DEPLOY_PROGRESS_DEADLINE": "60s",
                "MLINFRA_DEPLOY_CONFIG_GC_MIN_AGE": "0s",
                "MLINFRA_SCALE_POLL_INTERVAL": "500ms",
                "MLINFRA_SCALE_TIMEOUT": "60s",
                "MLINFRA_SWEEP_SCALE_TIMEOUT": "60s",
                # Pick up and hand out work every second or two instead of every five.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            },
        )
        try:
            stack.migrate()
            stack.launch()
            yield stack
        finally:
            stack.stop()
            stack.engine.dispose()
