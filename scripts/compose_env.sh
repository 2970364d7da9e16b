#!/usr/bin/env bash
# Write .env for docker compose (once): generated secrets and passwords, never committed.
#   scripts/compose_env.sh            # keeps an existing .env untouched
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="$ROOT/.env"
if [[ -f "$ENV_FILE" ]]; then
	echo "compose: $ENV_FILE exists, left as it is"
	exit 0
fi
rand() { python3 -c "import secrets; print(secrets.token_urlsafe($1))"; }
fernet() { python3 -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"; }
umask 077
cat >"$ENV_FILE" <<ENV
# docker compose settings for mlinfra (written by scripts/compose_env.sh; do not commit)
AIRFLOW_UID=$(id -u)
_AIRFLOW_WWW_USER_USERNAME=airflow
_AIRFLOW_WWW_USER_PASSWORD=$(rand 12)
AIRFLOW_JWT_SECRET=$(rand 48)
AIRFLOW_FERNET_KEY=$(fernet)
AIRFLOW_DB_PASSWORD=$(rand 18)
MLINFRA_DB_PASSWORD=$(rand 18)
MLINFRA_METRICS_PASSWORD=$(rand 18)
# MLINFRA_KUBECONFIG_DIR=$HOME/.kube
ENV
echo "compose: wrote $ENV_FILE (Airflow login: airflow / see _AIRFLOW_WWW_USER_PASSWORD)"
