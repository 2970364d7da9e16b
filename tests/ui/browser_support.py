"""The browser tests' harness: `make demo` in a temporary folder, its API, bounded waits.

Used by ``tests/ui/conftest.py`` (the session-scoped ``demo``, ``browser`` and signed-in
``page`` fixtures) and the browser test modules.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A shared 2-core machine: starting Airflow and TensorFlow takes minutes, not seconds.
START_TIMEOUT_S = 480
RUN_TIMEOUT_S = 420
UI_TIMEOUT_MS = 60_000


# The demo's fleet file for these tests: a copy of include/fleet.yaml in the demo's folder
# (MLINFRA_FLEET_FILE), so a test can switch half-plus-two to a canary strategy for its own
# runs (Demo.canary_strategy) without touching the checkout's fleet file.
FLEET_DIR = "fleet"
SERVED_MODEL = "half-plus-two"
# The versions of half_plus_two the demo's model store holds (scripts/demo_cluster.py).
DEMO_VERSIONS = (1, 2, 3, 4, 5)


def write_demo_fleet(directory: Path) -> Path:
    """``<directory>/fleet/fleet.yaml``: include/fleet.yaml, with the files it names (smoke,
    golden) linked next to it, since the fleet resolves them relative to its own folder."""
    folder = directory / FLEET_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("smoke", "golden"):
        link = folder / name
        if not link.exists():
            link.symlink_to(ROOT / "include" / name, target_is_directory=True)
    path = folder / "fleet.yaml"
    path.write_text((ROOT / "include" / "fleet.yaml").read_text())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, *, interval: float = 2.0, log: Path | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log and log.exists() else ""
    pytest.fail(f"{what}: not reached after {timeout:.0f}s (last: {last!r})\n{tail}")


@dataclass
class Demo:
    base: str
    password: str
    directory: Path
    log: Path
    process: subprocess.Popen[bytes]

    def token(self) -> str:
        r = httpx.post(
            f"{self.base}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(
            method,
            f"{self.base}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=30,
            **kwargs,
        )
        r.raise_for_status()
        return r.json()

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(
            self.api("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50})[
                "dag_runs"
            ]
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def wait_run(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT_S) -> str:
        def done() -> str | None:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        return str(wait_for(f"{dag_id} run {run_id} to finish", done, timeout, log=self.log))

    def trigger(self, dag_id: str, conf: dict[str, Any], logical_date: str | None = None) -> str:
        """Trigger ``dag_id`` through the REST API (as the form does); the new run's id."""
        body = {"logical_date": logical_date, "conf": conf}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def cluster_env(self) -> dict[str, str]:
        """What the simulated cluster wrote to ``env.sh``: its URLs and Airflow connections."""
        text = (self.directory / "env.sh").read_text()
        return {k: shlex.split(v)[0] for k, v in re.findall(r"^export (\w+)=(.*)$", text, re.M) if v}

    def deployment(self, name: str = "half-plus-two", namespace: str = "serving") -> dict[str, Any]:
        """The Deployment as the Kubernetes API stand-in has it (not as mlinfra recorded it)."""
        found = self.kube_get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        assert found is not None, f"no Deployment {namespace}/{name} in the simulated cluster"
        return found

    def fleet_model(self, name: str = "half-plus-two") -> dict[str, Any]:
        fleet = httpx.get(
            f"{self.base}/mlinfra/api/fleet", headers={"Authorization": f"Bearer {self.token()}"}, timeout=30
        )
        fleet.raise_for_status()
        return dict(next(m for m in fleet.json()["models"] if m["name"] == name))

    def ensure_deployed(self, version: str = "2", image_tag: str = "2.14.1") -> str:
        """``version`` is what runs now, by a successful deploy (a test's own, or one triggered here); its run id.

        The Deployment is asked, not only the run history: a canary test may have promoted
        another version since that deploy.
        """
        self.wait_deploys_idle()
        if self.stable_version() == int(version):
            for run in self.runs("model_deploy"):
                conf = run.get("conf") or {}
                if str(conf.get("version")) == version and run["state"] == "success":
                    return str(run["dag_run_id"])
        run_id = self.trigger(
            "model_deploy", {"model": "half-plus-two", "version": int(version), "image_tag": image_tag}
        )
        state = self.wait_run("model_deploy", run_id)
        assert state == "success", f"deploy {run_id}: {state}: {self.task_states('model_deploy', run_id)}"
        return run_id

    # ------------------------------------------------------------------ canary deploys

    @property
    def fleet_file(self) -> Path:
        return self.directory / FLEET_DIR / "fleet.yaml"

    @contextlib.contextmanager
    def canary_strategy(self, steps: list[dict[str, Any]], approval_timeout: str = "10m") -> Iterator[None]:
        """half-plus-two deploys by canary ``steps`` in the demo's fleet file until the block ends.

        Every task reads the fleet file when it runs (cached by its modification time), so
        runs triggered inside the block take the canary branch; the file is put back after.
        """
        import yaml

        original = self.fleet_file.read_text()
        fleet = yaml.safe_load(original)
        for model in fleet["models"]:
            if model["name"] == SERVED_MODEL:
                model["deploy"] = {"strategy": "canary", "steps": steps, "approval_timeout": approval_timeout}
        self.fleet_file.write_text(yaml.safe_dump(fleet, sort_keys=False))
        try:
            yield
        finally:
            self.fleet_file.write_text(original)

    def kube_get(self, path: str) -> dict[str, Any] | None:
        """GET ``path`` from the Kubernetes API stand-in (with the kubeconfig's token); None on 404."""
        import yaml

        url = self.cluster_env()["MLINFRA_DEMO_K8S_URL"]
        # The stand-in wants the bearer token of the demo's kubeconfig, as a real API server would.
        config = yaml.safe_load((self.directory / "kubeconfig").read_text())
        token = config["users"][0]["user"]["token"]
        r = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json())

    def stable_spec(self) -> str:
        """The stable Deployment's ``.spec`` as the API server holds it, as JSON (to compare bytes)."""
        return json.dumps(self.deployment()["spec"], sort_keys=True)

    def stable_version(self) -> int:
        """The model version the stable Deployment's pods run (its pod template's ``version`` label)."""
        return int(self.deployment()["spec"]["template"]["metadata"]["labels"]["version"])

    def canary_objects(self, name: str = SERVED_MODEL, namespace: str = "serving") -> list[str]:
        """The canary's Deployment and Service that exist (none once a canary ended)."""
        paths = {
            "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}-canary",
            "Service": f"/api/v1/namespaces/{namespace}/services/{name}-canary",
        }
        return [f"{kind}/{name}-canary" for kind, path in paths.items() if self.kube_get(path) is not None]

    def serving_versions(self, model_name: str = "half_plus_two") -> list[int]:
        """The versions TF Serving reports AVAILABLE through the Service (not a sweep's snapshot)."""
        rest = self.cluster_env()["MLINFRA_DEMO_TF_SERVING_REST"]
        status = httpx.get(f"{rest}/v1/models/{model_name}", timeout=30).json()["model_version_status"]
        return sorted(int(v["version"]) for v in status if v["state"] == "AVAILABLE")

    def grpc_target(self, conn_id: str = "tf_serving_half_plus_two") -> str:
        """The Service's gRPC address, from the connection the demo gave Airflow."""
        conn = json.loads(self.cluster_env()[f"AIRFLOW_CONN_{conn_id.upper()}"])
        return f"{conn['host']}:{conn['port']}"

    def wait_deploys_idle(self, timeout: float = RUN_TIMEOUT_S) -> None:
        """No model_deploy run is queued or running (a test's own run must not wait behind another's)."""
        wait_for(
            "no model_deploy run going",
            lambda: not [r for r in self.runs("model_deploy") if r["state"] in ("queued", "running")],
            timeout,
            log=self.log,
        )

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def hitl_detail(self, run_id: str, task_id: str, dag_id: str = "model_deploy") -> dict[str, Any]:
        """The Human-in-the-loop request of ``task_id`` (subject, body, options, the response)."""
        return dict(
            self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails")
        )


def shot(page: Any, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def open_trigger_dialog(page: Any, demo: Demo, dag_id: str) -> Any:
    page.goto(f"{demo.base}/dags/{dag_id}")
    page.get_by_role("button", name=re.compile(r"^Trigger")).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"{dag_id}").first.wait_for()
    return dialog


def sign_in(page: Any, demo: Demo, *, screenshots: bool = False) -> None:
    """Sign in through Airflow's login form (the simple auth manager's generated password)."""
    page.goto(f"{demo.base}/")
    page.wait_for_url(re.compile(r"/auth/login"))
    if screenshots:
        shot(page, "01-sign-in")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(demo.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(rf"^{re.escape(demo.base)}/?$"))
