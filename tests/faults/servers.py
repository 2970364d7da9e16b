"""Fault injectors in front of the real components (or their stand-ins).

:class:`FaultyHTTP` is a loopback HTTP server the client under test talks to. Healthy,
it forwards every request to the real upstream; otherwise it plays one fault:

* ``refused``: nothing listens on its port (the listener is closed, reopened on heal);
* ``timeout``: it accepts and reads the request and never answers;
* ``5xx``: ``503 Service Unavailable`` with a short text body;
* ``malformed``: ``200`` with a truncated JSON body;
* ``recovery``: the first ``fail_first`` requests get a 503, the rest are forwarded.

:class:`FaultyGRPC` does the same for gRPC (``5xx`` is ``UNAVAILABLE``, ``malformed``
a response that is not the expected protobuf, ``timeout`` a call that never ends).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

FAULTS = ("refused", "timeout", "5xx", "malformed", "recovery")
HEALTHY = "healthy"
MALFORMED_BODY = b'{"status": "succ'
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FaultyHTTP:
    """A fault-injecting HTTP front for ``upstream`` (see the module docstring)."""

    def __init__(self, upstream: str | None, *, fail_first: int = 1, timeout: float = 30.0):
        self.upstream = upstream.rstrip("/") if upstream else None
        self.fail_first = fail_first
        self.port = free_port()
        self.mode = HEALTHY
        self.requests = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ control

    def set(self, mode: str) -> None:
        """Switch to ``mode`` (a fault of :data:`FAULTS` or ``healthy``)."""
        self._release.set()  # let hanging requests go before anything else
        self._release = threading.Event()
        self.mode, self.requests = mode, 0
        if mode == "refused":
            self._stop()
        elif self._server is None:
            self._start()

    def _start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests += 1
                mode = owner.mode
                if mode == "timeout":
                    owner._release.wait(60)
                    self.close_connection = True
                    return
                if mode == "5xx" or (mode == "recovery" and owner.requests <= owner.fail_first):
                    self._reply(503, b"injected fault: service unavailable", "text/plain")
                    return
                if mode == "malformed":
                    self._reply(200, MALFORMED_BODY, "application/json")
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                if owner.upstream is None:
                    self._reply(200, b"{}", "application/json")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                answer = owner._client.request(
                    self.command, owner.upstream + self.path, headers=headers, content=body
                )
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in _HOP_HEADERS:
                        self.send_header(k, v)
                if self.command == "HEAD":  # the object's size, without the object
                    self.send_header("Content-Length", answer.headers.get("content-length", "0"))
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self._release.set()
        self._stop()
        self._client.close()

    def __enter__(self) -> FaultyHTTP:
        self.set(HEALTHY)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FaultyGRPC:
    """A fault-injecting gRPC front for ``upstream`` (``host:port``), forwarding raw bytes."""

    def __init__(self, upstream: str, *, fail_first: int = 1):
        import grpc

        self.upstream = upstream
        self.fail_first = fail_first
        self.port = free_port()
        self.mode = HEALTHY
        self.requests = 0
        self._release = threading.Event()
        self._server: Any = None
        self._channel = grpc.insecure_channel(upstream)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        self._release.set()
        self._release = threading.Event()
        self.mode, self.requests = mode, 0
        if mode == "refused":
            self._stop()
        elif self._server is None:
            self._start()

    def _start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        owner = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                method = details.method

                def unary(request: bytes, context: Any) -> bytes:
                    owner.requests += 1
                    mode = owner.mode
                    if mode == "timeout":
                        owner._release.wait(60)
                        context.abort(grpc.StatusCode.UNAVAILABLE, "released")
                    if mode == "5xx" or (mode == "recovery" and owner.requests <= owner.fail_first):
                        context.abort(grpc.StatusCode.UNAVAILABLE, "injected fault: unavailable")
                    if mode == "malformed":
                        return b"\xff\xff\xff\xffnot a protobuf"
                    call = owner._channel.unary_unary(method)  # raw bytes both ways
                    try:
                        answer: bytes = call(request, timeout=30)
                    except grpc.RpcError as e:
                        context.abort(e.code(), e.details())
                    return answer

                return grpc.unary_unary_rpc_method_handler(unary)

        server = grpc.server(ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((Handler(),))
        server.add_insecure_port(self.target)
        server.start()
        self._server = server

    def _stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def close(self) -> None:
        self._release.set()
        self._stop()
        self._channel.close()

    def __enter__(self) -> FaultyGRPC:
        self.set(HEALTHY)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def sqlite_write_lock(path: str, *, release_after: float | None = None) -> Iterator[None]:
    """Hold SQLite's write lock on ``path`` (another writer, e.g. a long retention), optionally for a while."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=0.1, check_same_thread=False)
    conn.isolation_level = None
    conn.execute("BEGIN IMMEDIATE")
    timer = None
    if release_after is not None:
        timer = threading.Timer(release_after, lambda: conn.execute("ROLLBACK"))
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.join()
        else:
            conn.execute("ROLLBACK")
        conn.close()
