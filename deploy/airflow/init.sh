#!/bin/bash
# airflow-init (runs once per `docker compose up`, as root, before every other Airflow service):
# migrate Airflow's metadata database, write the SimpleAuthManager passwords file, and hand the
# shared volumes to the airflow user.
set -euo pipefail

: "${AIRFLOW_UID:=50000}"
auth_file="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}"
mkdir -p /opt/airflow/logs /opt/airflow/reports "$(dirname "$auth_file")" /tokens

# Users are declared in AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS; their passwords come from .env.
python3 - "$auth_file" <<'PY'
import json, os, sys
passwords = {
    os.environ["_AIRFLOW_WWW_USER_USERNAME"]: os.environ["_AIRFLOW_WWW_USER_PASSWORD"],
    os.environ.get("MLINFRA_METRICS_USER", "prometheus"): os.environ["MLINFRA_METRICS_PASSWORD"],
}
with open(sys.argv[1], "w") as f:
    json.dump(passwords, f)
PY

chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs /opt/airflow/reports "$(dirname "$auth_file")" /tokens
chmod 0600 "$auth_file"

# /entrypoint is the official image's: it waits for the database and runs the command as given.
exec /entrypoint airflow db migrate
