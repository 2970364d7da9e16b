#!/bin/bash
# Runs once, when the PostgreSQL volume is created (docker-entrypoint-initdb.d): the mlinfra
# metrics store gets its own role and database next to Airflow's metadata database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -v pw="${MLINFRA_DB_PASSWORD:?}" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'EOSQL'
CREATE ROLE mlinfra LOGIN PASSWORD :'pw';
CREATE DATABASE mlinfra OWNER mlinfra;
EOSQL
