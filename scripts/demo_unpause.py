"""Unpause the demo's DAGs once Airflow's API server answers: `scripts/demo.sh` runs it.

The demo creates its DAGs paused (``AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION``):
otherwise the scheduler starts the first sweep while the API server, which task
processes report to (the Execution API), is still starting, and every task of that
run logs connection retries. This waits for the API server, signs in with the
generated admin password, and unpauses each DAG of ``dags/`` as soon as the
dag-processor has parsed it.

It also defines the connection ``mlinfra_airflow_api`` (Airflow's own REST API, as
that admin), through the same API: report runs note their day on the run, and an
approval gate retried after its answer takes that answer instead of asking again
(``mlinfra.hooks.airflow_api``). It lives in Airflow's database like a connection
added in the UI; nothing is written to a file.

    python scripts/demo_unpause.py --base http://localhost:8080 --home .demo/airflow --dags dags
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def _request(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


API_CONN_ID = "mlinfra_airflow_api"


def define_api_connection(base: str, password: str, token: str) -> None:
    """Create (or bring up to date) the connection tasks use to reach this Airflow's REST API."""
    fields = {"conn_type": "http", "host": base, "login": "admin", "password": password}
    try:
        _request("POST", f"{base}/api/v2/connections", {"connection_id": API_CONN_ID, **fields}, token)
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise
        _request(
            "PATCH",
            f"{base}/api/v2/connections/{API_CONN_ID}",
            {"connection_id": API_CONN_ID, **fields},
            token,
        )
    print(f"demo: defined the connection {API_CONN_ID}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--home", type=Path, required=True, help="the demo's AIRFLOW_HOME")
    parser.add_argument("--dags", type=Path, required=True, help="the DAG folder")
    parser.add_argument("--timeout", type=float, default=600)
    a = parser.parse_args(argv)
    wanted = {p.stem for p in a.dags.glob("*.py") if not p.name.startswith("_")}
    passwords = a.home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + a.timeout
    done: set[str] = set()
    connection = False
    while time.monotonic() < deadline and done != wanted:
        time.sleep(2)
        try:
            password = json.loads(passwords.read_text())["admin"]
            token = _request("POST", f"{a.base}/auth/token", {"username": "admin", "password": password})[
                "access_token"
            ]
            if not connection:
                define_api_connection(a.base, password, token)
                connection = True
            dags = _request("GET", f"{a.base}/api/v2/dags?limit=100", token=token)["dags"]
            for dag in dags:
                if dag["dag_id"] not in wanted or dag["dag_id"] in done:
                    continue
                if dag["is_paused"]:
                    _request("PATCH", f"{a.base}/api/v2/dags/{dag['dag_id']}", {"is_paused": False}, token)
                    print(f"demo: unpaused {dag['dag_id']}", flush=True)
                done.add(dag["dag_id"])
        except (OSError, KeyError, ValueError, urllib.error.URLError):
            continue  # not up yet: the API server, the password file or the DAGs
    missing = sorted(wanted - done)
    if missing:
        print(f"demo: could not unpause {', '.join(missing)} in {a.timeout:.0f}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
