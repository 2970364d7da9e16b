"""Newcomer path: from a fresh clone, `make run` until the UI answers with the DAGs loaded.

    python3 bench/newcomer.py [--port 18080] [--cold] [--pip] [--repeat 3]

Clones this repository into a temporary folder, runs `make run` there, and polls the
API server (with the generated admin password) until every DAG of dags/ is listed.
`make setup` installs the pins once per set of pins into a shared environment
(scripts/install_env.sh) that each clone's .venv sits on top of; the bench keeps that
cache in its own temporary folder (MLINFRA_ENV_CACHE), so that what it measures does not
depend on this machine's ~/.cache/mlinfra:

- "first clone": the installers' caches as they are on this machine (warm), no shared
  environment yet: the pins are installed and compiled;
- "next clone": a second fresh clone with that shared environment in place: the
  figure every clone after the first sees (the issue's "warm" path);
- `--cold` also a first clone with empty uv and pip caches (UV_CACHE_DIR and
  PIP_CACHE_DIR in the temp folder: everything is downloaded again);
- `--pip` also a first clone with pip as the installer (MLINFRA_INSTALLER=pip).

Prints each figure and, side by side, their ratios to the next-clone one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.process_group import stop_group  # noqa: E402 - after the path

# A request waits for its answer: the API server accepts connections before its app has
# finished starting, and a short timeout would give up on a request about to be answered
# and add its timeout and the poll interval to the figure.
REQUEST_TIMEOUT = 60
POLL_INTERVAL = 0.5


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def _token(base: str, home: Path) -> str | None:
    pw_file = home / "simple_auth_manager_passwords.json.generated"
    if not pw_file.exists():
        return None
    user, password = next(iter(json.loads(pw_file.read_text()).items()))
    body = json.dumps({"username": user, "password": password}).encode()
    req = urllib.request.Request(
        f"{base}/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
            return json.loads(r.read())["access_token"]
    except OSError:
        return None


def main(port: int, cold: bool, timeout: float, env_cache: Path, label: str, installer: str = "uv") -> float:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "mlinfra"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        # What a newcomer gets is the committed tree: expect its DAG files, not the working tree's.
        expected = sorted(p.stem for p in (clone / "dags").glob("*.py") if not p.name.startswith("_"))
        env = {
            **os.environ,
            "AIRFLOW_PORT": str(port),
            "MLINFRA_INSTALLER": installer,
            "MLINFRA_ENV_CACHE": str(env_cache),
        }
        env.pop("VIRTUAL_ENV", None)
        if cold:
            env["PIP_CACHE_DIR"] = str(Path(tmp) / "pip-cache")
            env["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
        base = f"http://127.0.0.1:{port}"
        start = time.monotonic()
        log = open(Path(tmp) / "make-run.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            ["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            token = None
            while time.monotonic() - start < timeout:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"make run exited {proc.returncode}:\n{(Path(tmp) / 'make-run.log').read_text()[-3000:]}"
                    )
                token = token or _token(base, clone / ".airflow")
                if token:
                    status, body = _get(f"{base}/api/v2/dags?limit=100", token)
                    if status == 200 and sorted(d["dag_id"] for d in json.loads(body)["dags"]) == expected:
                        elapsed = time.monotonic() - start
                        print(
                            f"newcomer path ({label}, {installer}): UI answered "
                            f"with {len(expected)} DAGs after {elapsed:.0f}s",
                            flush=True,
                        )
                        return elapsed
                time.sleep(POLL_INTERVAL)
            raise TimeoutError(
                f"not ready after {timeout}s:\n{(Path(tmp) / 'make-run.log').read_text()[-3000:]}"
            )
        finally:
            # Airflow's processes outlive `make` for a moment and still write under the clone,
            # which the temporary folder's removal would race: the whole group must be gone.
            stop_group(proc.pid, timeout=30, leader=proc)
            log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--cold", action="store_true", help="also measure with empty caches")
    parser.add_argument("--pip", action="store_true", help="also measure the warm path with pip")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--repeat", type=int, default=3, help="next-clone starts measured (median)")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as caches:
        envs = Path(caches) / "envs"
        first = main(a.port, False, a.timeout, envs, "first clone, warm package caches")
        # Airflow's four processes start at once on few cores and the order they get the CPU
        # in varies: one start can differ from the next by ten seconds. The median of a few.
        nexts = sorted(
            main(
                a.port, False, a.timeout, envs, f"next clone {i + 1}/{a.repeat}, shared environment in place"
            )
            for i in range(a.repeat)
        )
        warm = statistics.median(nexts)
        spread = f"  (min {nexts[0]:.1f}s, max {nexts[-1]:.1f}s of {a.repeat})" if a.repeat > 1 else ""
        figures = {"next clone (uv)": warm, "first clone (uv)": first}
        if a.pip:
            figures["first clone (pip)"] = main(
                a.port, False, a.timeout, Path(caches) / "envs-pip", "first clone", installer="pip"
            )
        if a.cold:
            figures["cold (uv)"] = main(a.port, True, a.timeout, Path(caches) / "envs-cold", "cold caches")
    print("\nnewcomer path, seconds until the UI lists every DAG (target for the next clone: <= 30s):")
    for name, seconds in figures.items():
        print(f"  {name:<18} {seconds:7.1f}s   x{seconds / warm:.2f} of the next clone")
    print(f"next clone: median{spread}; load average at the end {os.getloadavg()[0]:.1f}")
    sys.exit(0)
