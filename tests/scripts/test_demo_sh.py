"""scripts/demo.sh stops everything it started on SIGTERM and on Ctrl-C (SIGINT), and writes env.sh for the CLI.

The real demo needs TensorFlow and minutes to start; here a fake virtualenv stands in
for it: its ``python`` (running demo_cluster.py) and ``airflow`` (standalone) each
start a child that listens on a port, as the stand-ins and Airflow's processes do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.process_group import group_alive

ROOT = Path(__file__).resolve().parents[2]
# The demo starts the Kubernetes stand-in and Airflow stand-ins as processes on loopback ports.
pytestmark = pytest.mark.integration

FAKE = """#!/usr/bin/env bash
# A stand-in for {what}: a listening child, like the real processes.
{python} -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
open("{ports}/{what}-" + str(s.getsockname()[1]), "w").close()
time.sleep(600)' &
{extra}
wait
"""


def _fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    import sys

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    ports = tmp_path / "ports"
    ports.mkdir()
    # "python scripts/demo_cluster.py --dir DEMO": write env.sh as the real one does.
    # Like demo_cluster.py: TF Serving in a session of its own, listed in pgids; this fake
    # cluster does not stop it itself (as when the real one is killed before its clean-up).
    serving = FAKE.format(what="serving", python=sys.executable, ports=ports, extra="")
    (bin_dir / "serving").write_text(serving)
    cluster_extra = (
        'demo="$3"; setsid "$(dirname "$0")/serving" & echo $! >> "$demo/pgids"; '
        'printf "export MLINFRA_DEMO_K8S_URL=k MLINFRA_DEMO_TF_SERVING_REST=t\\n" > "$demo/env.sh"'
    )
    # The same `python` also runs scripts/demo_unpause.py: that one is real (stdlib only), and
    # with no Airflow to answer it waits until the demo stops it.
    unpause = f'case "$1" in *demo_unpause.py) exec {sys.executable} "$@" ;; esac\n'
    (bin_dir / "python").write_text(
        FAKE.format(what="cluster", python=sys.executable, ports=ports, extra=cluster_extra).replace(
            "#!/usr/bin/env bash\n", "#!/usr/bin/env bash\n" + unpause, 1
        )
    )
    (bin_dir / "airflow").write_text(
        FAKE.format(what="airflow", python=sys.executable, ports=ports, extra="")
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return tmp_path / "venv", ports


def _listening(ports: Path) -> list[int]:
    out = []
    for f in ports.iterdir():
        port = int(f.name.split("-")[1])
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                out.append(port)
    return out


@pytest.mark.parametrize(
    ("via_make", "sig"), [(False, signal.SIGTERM), (False, signal.SIGINT), (True, signal.SIGTERM)]
)
def test_the_demo_stops_everything_it_started(tmp_path: Path, via_make: bool, sig: signal.Signals) -> None:
    venv, ports = _fake_venv(tmp_path)
    demo_dir = tmp_path / "demo"
    env = {
        **os.environ,
        "MLINFRA_VENV": str(venv),
        "MLINFRA_DEMO_DIR": str(demo_dir),
        "AIRFLOW_PORT": "18999",
    }
    cmd = [str(ROOT / "scripts" / "demo.sh")]
    if via_make:
        # `make demo` with setup already done (a fresh stamp): make passes SIGTERM to its child.
        stamp = tmp_path / "installed"
        stamp.touch()
        cmd = ["make", "-s", "-C", str(ROOT), "demo", f"STAMP={stamp}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(_listening(ports)) < 3:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the fake cluster and Airflow did not start"
            time.sleep(0.2)
        env_sh = (demo_dir / "env.sh").read_text()
        # What `source .demo/env.sh` gives a second terminal: this demo's Airflow home, port and CLI.
        assert f"export AIRFLOW_HOME={demo_dir / 'airflow'}" in env_sh
        assert "export AIRFLOW__API__PORT=18999" in env_sh
        assert f"export PATH={venv / 'bin'}:$PATH" in env_sh

        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _listening(ports) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _listening(ports) == [], "a process the demo started still listens"
        # Nothing it recorded is left either (the DAG unpauser listens on no port).
        recorded = [int(g) for g in (demo_dir / "pgids").read_text().split()]
        assert len(recorded) == 4, recorded  # cluster, TF Serving, Airflow, unpauser
        assert [g for g in recorded if group_alive(g)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        # Whatever the outcome, leave nothing running: the groups the demo recorded.
        pgids = demo_dir / "pgids"
        for pgid in pgids.read_text().split() if pgids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pgid), signal.SIGKILL)
