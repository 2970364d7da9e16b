"""Steady gRPC traffic through a Service address, counted by outcome and by serving version.

What an application does during a deploy: it sends latest-version Predicts to the
Service and must never see one fail. End-to-end tests run it around a rollout::

    load = GrpcTraffic(serving.grpc_target, "half_plus_two", rate_per_s=40).start()
    ...  # canary steps, promotion or abort
    report = load.stop()
    assert report.failed == 0, report.describe()
    assert set(report.versions) == {1, 2}   # both versions answered while the canary ran

Requests go out one after another on one channel at ``rate_per_s`` (a late request is
not made up for by a burst); each one's outcome is ``OK`` or its gRPC status code name,
and a success is counted under the version TF Serving says answered
(``PredictResponse.model_spec.version``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrafficReport:
    """Counts of one run of :class:`GrpcTraffic`."""

    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # gRPC code name -> count
    versions: Counter[int] = field(default_factory=Counter)  # served version -> successes
    first_errors: list[str] = field(default_factory=list)  # up to 10 "CODE: details"

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def describe(self) -> str:
        errors = ", ".join(f"{code}={n}" for code, n in sorted(self.errors.items())) or "none"
        versions = ", ".join(f"v{v}={n}" for v, n in sorted(self.versions.items())) or "none"
        first = "; ".join(self.first_errors)
        return f"{self.sent} sent, {self.ok} ok, errors: {errors}; versions: {versions}" + (
            f"; first errors: {first}" if first else ""
        )


class GrpcTraffic:
    """A background client sending gRPC Predicts to ``target`` until :meth:`stop`."""

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        rate_per_s: float = 50.0,
        timeout: float = 5.0,
        signature_name: str = "serving_default",
    ):
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        self.target = target
        self.model_name = model_name
        self.inputs = dict(inputs or {"x": [1.0]})
        self.interval = 1.0 / rate_per_s
        self.timeout = timeout
        self.signature_name = signature_name
        self._report = TrafficReport()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GrpcTraffic:
        if self._thread is not None:
            raise RuntimeError("this traffic generator already ran; make a new one")
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"grpc-traffic-{self.target}")
        self._thread.start()
        return self

    def stop(self) -> TrafficReport:
        """Stop after the request in flight and return the counts."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        return self.report()

    def report(self) -> TrafficReport:
        """The counts so far (a copy)."""
        with self._lock:
            r = self._report
            return TrafficReport(r.sent, r.ok, Counter(r.errors), Counter(r.versions), list(r.first_errors))

    def __enter__(self) -> GrpcTraffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        import grpc

        from mlinfra.hooks.tf_serving_protos import load_protos, make_tensor_proto

        protos = load_protos()
        request = protos.predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature_name
        for name, value in self.inputs.items():
            request.inputs[name].CopyFrom(make_tensor_proto(value, "float32"))
        with grpc.insecure_channel(self.target) as channel:
            stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    response = stub.Predict(request, timeout=self.timeout)
                except grpc.RpcError as e:
                    code = e.code().name if e.code() is not None else "UNKNOWN"
                    self._count(None, f"{code}: {e.details()}", code)
                else:
                    self._count(int(response.model_spec.version.value), None, None)
                next_at = max(next_at + self.interval, time.monotonic())
                self._stop.wait(next_at - time.monotonic())

    def _count(self, version: int | None, message: str | None, code: str | None) -> None:
        with self._lock:
            r = self._report
            r.sent += 1
            if code is None and version is not None:
                r.ok += 1
                r.versions[version] += 1
            else:
                r.errors[code or "UNKNOWN"] += 1
                if len(r.first_errors) < 10 and message:
                    r.first_errors.append(message)
