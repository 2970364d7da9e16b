"""Many TF Serving endpoints in one process: the serving side of a generated fleet.

In a cluster every model of the fleet has its own Deployment and Service, so its own
TF Serving endpoint (gRPC and REST ports). This process stands in for N of them: each
model gets its own gRPC server and REST server, built from the single-model stand-in's
own pieces (:class:`~tests.support.tf_serving_standin.ServedModel`, ``Standin``, its
servicers and REST handler), so each endpoint answers exactly as that stand-in does and
knows only its own model (another model's name is NOT_FOUND, its monitoring page lists
only its own series). Every model serves ``half_plus_two`` under its own name; the
SavedModel is loaded once and shared, as pods of one Service share it in the stand-in.

Simulated traffic: each model's metrics record ``--requests`` Predict calls at start,
so its monitoring page has TF Serving's request counter and latency histogram.

Faults per endpoint, for the collector's concurrency tests (control port, JSON):

- ``POST /_fleet/faults {"model": NAME, "status": "hang"}``: its ``GetModelStatus`` never
  answers (until the process stops): a silent endpoint;
- ``{"status": "wait_for_others"}``: it answers only once every other model's
  ``GetModelStatus`` has been answered: it can succeed only if the client asked the
  others while this call was still open;
- ``{"status": null}``: normal again.

``GET /_fleet/stats`` gives ``{"max_in_flight": n, "answered": [...]}``: the most
``GetModelStatus`` calls open at once, and the models in the order they were answered.

Run it through :func:`start_serving_fleet` (a subprocess, so TensorFlow stays out of
the test process)::

    with start_serving_fleet(["model_0000", "model_0001"]) as fleet:
        fleet.endpoints["model_0000"]   # {"grpc_port": ..., "rest_port": ...}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.saved_model import PROJECT_ROOT, half_plus_two_base_path

log = logging.getLogger("serving_fleet")

# A "hang" endpoint answers after this long at most, so that a stopped test never
# leaves a thread behind for long; far beyond any timeout a test sets.
HANG_SECONDS = 600.0
STATUS_FAULTS = ("hang", "wait_for_others")


class _Control:
    """Faults and counters shared by every endpoint of the process."""

    def __init__(self, models: Sequence[str]):
        self.models = list(models)
        self.faults: dict[str, str] = {}
        self.answered: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cond = threading.Condition()
        self.stopped = threading.Event()

    def set_fault(self, model: str, status: str | None) -> None:
        if model not in self.models:
            raise ValueError(f"unknown model {model!r}")
        if status is not None and status not in STATUS_FAULTS:
            raise ValueError(f"status fault must be one of {STATUS_FAULTS} or null, got {status!r}")
        with self.cond:
            if status is None:
                self.faults.pop(model, None)
            else:
                self.faults[model] = status
            self.answered.clear()
            self.max_in_flight = 0

    def around_status(self, model: str, answer: Any) -> Any:
        with self.cond:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self.faults.get(model)
        try:
            if fault == "hang":
                self.stopped.wait(HANG_SECONDS)
            elif fault == "wait_for_others":
                others = set(self.models) - {model}
                with self.cond:
                    self.cond.wait_for(lambda: others <= set(self.answered), timeout=HANG_SECONDS)
            return answer()
        finally:
            with self.cond:
                self.in_flight -= 1
                self.answered.append(model)
                self.cond.notify_all()

    def stats(self) -> dict[str, Any]:
        with self.cond:
            return {"max_in_flight": self.max_in_flight, "answered": list(self.answered)}


def _control_handler(control: _Control) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("control: %s", format % args)

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/_fleet/stats":
                self._send(200, control.stats())
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/_fleet/faults":
                self._send(404, {"error": f"no route {self.path}"})
                return
            try:
                body = json.loads(raw or b"{}")
                control.set_fault(body["model"], body.get("status"))
            except (ValueError, KeyError) as e:
                self._send(400, {"error": str(e)})
                return
            self._send(200, control.stats())

    return Handler


def serve(args: argparse.Namespace) -> None:
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    from tests.support.saved_model import build_half_plus_two
    from tests.support.tf_serving_standin import (
        Faults,
        Metrics,
        ServedModel,
        Standin,
        _grpc_servicers,
        _rest_handler,
    )

    models = [m for m in args.models.split(",") if m]
    control = _Control(models)
    endpoints: dict[str, dict[str, int]] = {}
    grpc_servers, http_servers = [], []
    base = Path(args.model_base_path)
    build_half_plus_two(base, versions=[1])  # only when missing (a fresh clone's cache)
    for name in models:
        metrics = Metrics()
        served = ServedModel(name, base, Faults(), metrics)
        standin = Standin(served)
        prediction, status = _grpc_servicers(standin)
        answer_status = status.GetModelStatus
        status.GetModelStatus = lambda request, context, _n=name, _a=answer_status: control.around_status(
            _n, lambda: _a(request, context)
        )
        # Two workers per endpoint: a TF Serving pod serves its few callers, and 500
        # endpoints in one process must stay light.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(status, server)
        grpc_port = server.add_insecure_port(f"{args.host}:0")
        server.start()
        http = ThreadingHTTPServer((args.host, 0), _rest_handler(standin))
        http.daemon_threads = True
        threading.Thread(target=http.serve_forever, daemon=True, name=f"rest-{name}").start()
        served.poll(wait=True)
        for i in range(args.requests):
            metrics.observe_request(name, "predict", "GRPC", "OK", 0.001 * (1 + i % 7))
        endpoints[name] = {"grpc_port": grpc_port, "rest_port": http.server_address[1]}
        grpc_servers.append(server)
        http_servers.append(http)

    control_http = ThreadingHTTPServer((args.host, 0), _control_handler(control))
    control_http.daemon_threads = True
    threading.Thread(target=control_http.serve_forever, daemon=True, name="control").start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = {"control_port": control_http.server_address[1], "endpoints": endpoints, "pid": os.getpid()}
    tmp = f"{args.ready_file}.tmp"
    Path(tmp).write_text(json.dumps(ready))
    os.replace(tmp, args.ready_file)
    log.info("serving %d models", len(models))
    stop.wait()
    control.stopped.set()
    control_http.shutdown()
    for http in http_servers:
        http.shutdown()
    for server in grpc_servers:
        server.stop(grace=0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.support.serving_fleet", description=__doc__.split("\n")[0]
    )
    p.add_argument("--models", required=True, help="comma-separated model names, one endpoint each")
    p.add_argument("--model-base-path", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ready-file", required=True)
    p.add_argument("--requests", type=int, default=20, help="simulated Predict calls per model at start")
    return p.parse_args(argv)


# ============================================================================ test side (TF-free)


@dataclass
class ServingFleetProcess:
    """A running fleet of endpoints: each model's ports, and the control port for faults."""

    endpoints: dict[str, dict[str, int]]
    control_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"

    def connection(self, model: str, *, timeout: float | None = None) -> str:
        """The ``tf_serving`` connection (JSON) of ``model``'s endpoint."""
        ports = self.endpoints[model]
        extra: dict[str, Any] = {"rest_url": f"http://{self.host}:{ports['rest_port']}"}
        if timeout is not None:
            extra["timeout"] = timeout
        return json.dumps(
            {"conn_type": "tf_serving", "host": self.host, "port": ports["grpc_port"], "extra": extra}
        )

    def set_status_fault(self, model: str, status: str | None) -> dict[str, Any]:
        return self._control("POST", "/_fleet/faults", {"model": model, "status": status})

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "/_fleet/stats")

    def _control(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        import httpx

        response = httpx.request(
            method, f"http://{self.host}:{self.control_port}{path}", json=body, timeout=30
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@contextlib.contextmanager
def start_serving_fleet(
    models: Sequence[str], *, requests: int = 20, ready_timeout: float = 600.0
) -> Iterator[ServingFleetProcess]:
    """Run :func:`serve` for ``models`` in a subprocess until the block ends."""
    base = half_plus_two_base_path()
    with tempfile.TemporaryDirectory(prefix="serving-fleet-") as tmp:
        ready_file = Path(tmp) / "ready.json"
        log_path = Path(tmp) / "serving_fleet.log"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        cmd = [
            sys.executable,
            "-m",
            "tests.support.serving_fleet",
            "--models",
            ",".join(models),
            "--model-base-path",
            str(base),
            "--ready-file",
            str(ready_file),
            "--requests",
            str(requests),
        ]
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + ready_timeout
            while not ready_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
                    raise RuntimeError(
                        f"serving fleet stand-in not ready (exit {process.returncode}):\n{tail}"
                    )
                time.sleep(0.1)
            ready = json.loads(ready_file.read_text())
            yield ServingFleetProcess(ready["endpoints"], ready["control_port"], process, log_path)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(parse_args())
