"""Keep a fresh Airflow JWT in a file for Prometheus' ``authorization.credentials_file``.

Run by the compose service ``metrics-token``: every ``MLINFRA_TOKEN_REFRESH_S`` seconds
(default 1800, well inside Airflow's default 24 h token lifetime) it asks the API
server's ``POST /auth/token`` for a token of ``MLINFRA_METRICS_USER`` and replaces
the file atomically. Prometheus re-reads the file on every scrape.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

URL = os.environ.get("AIRFLOW_API_URL", "http://airflow-apiserver:8080").rstrip("/") + "/auth/token"
USER = os.environ.get("MLINFRA_METRICS_USER", "prometheus")
PASSWORD = os.environ["MLINFRA_METRICS_PASSWORD"]
TARGET = os.environ.get("MLINFRA_TOKEN_FILE", "/tokens/mlinfra.jwt")
REFRESH_S = float(os.environ.get("MLINFRA_TOKEN_REFRESH_S", "1800"))


def fetch() -> str:
    body = json.dumps({"username": USER, "password": PASSWORD}).encode()
    request = urllib.request.Request(URL, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access_token"]


def main() -> None:
    while True:
        try:
            token = fetch()
        except (OSError, KeyError, ValueError) as e:  # the API server may still be starting
            print(f"metrics-token: {URL}: {e}; retrying in 10s", file=sys.stderr, flush=True)
            time.sleep(10)
            continue
        tmp = f"{TARGET}.tmp"
        with open(tmp, "w") as f:
            f.write(token)
        os.replace(tmp, TARGET)
        print(f"metrics-token: refreshed {TARGET} for user {USER!r}", flush=True)
        time.sleep(REFRESH_S)


if __name__ == "__main__":
    main()
