"""Smoke predictions against one exact model version: the spec file, the run, the verdict.

A smoke file (``include/smoke/<model>.json``, named by the fleet's ``smoke_file``)::

    {
      "signature_name": "serving_default",   # default for every case
      "protocols": ["grpc", "rest"],         # both by default
      "repetitions": 20,                     # each case, per protocol
      "concurrency": 4,                      # requests in flight at once
      "abs_tol": 1e-6, "rel_tol": 0,         # defaults for every case
      "cases": [
        {"name": "batch", "inputs": {"x": [1.0, 2.0, 5.0]}, "expected": {"y": [2.5, 3.0, 4.5]}},
        {"name": "image", "signature_name": "predict", "dtypes": {"input_1": "float32"},
         "inputs": {"input_1": {"fill": 0.5, "shape": [1, 224, 224, 3]}},
         "expected": {"predictions": {"shape": [1, 1000], "sum": 1.0}}, "rel_tol": 1e-3}
      ]
    }

An input is a nested list, or ``{"fill": v, "shape": [...]}`` (a tensor of ``v``).
An expected output is a nested list (every element within tolerance) or an object
with any of ``shape``, ``sum`` and ``values``. A value ``e`` accepts ``a`` when
``|a - e| <= abs_tol + rel_tol * |e|`` (numpy's ``isclose``).

:func:`run_smoke` sends every case ``repetitions`` times over each protocol, checks
every answer, and measures latency; :class:`SmokeReport` says whether the version
passes (no error, no mismatch, p50 and p99 within the model's SLO) and renders the
table the task log shows.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlinfra.exceptions import SmokeFileError, TFServingError

Protocol = Literal["grpc", "rest"]
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "rest")


# A smoke tensor is small: 16M values is a 64 MB float32 request already.
MAX_FILL_VALUES = 16_000_000
# Nested lists deeper than this are no tensor anyone sends; the checks walk them recursively.
MAX_NESTING = 32


class _Strict(BaseModel):
    # allow_inf_nan=False: "abs_tol": Infinity (Python's json accepts it) would accept
    # every answer and turn the smoke test into a no-op.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Fill(_Strict):
    fill: float
    shape: list[int] = Field(min_length=0, max_length=8)

    @field_validator("shape")
    @classmethod
    def _bounded(cls, shape: list[int]) -> list[int]:
        # Building the tensor creates one list per prefix of the shape, so every prefix
        # counts: [10**12, 0] holds no value but would loop 10**12 times.
        if any(d < 0 for d in shape) or any(
            math.prod(shape[: i + 1]) > MAX_FILL_VALUES for i in range(len(shape))
        ):
            raise ValueError(
                f"dimensions must be >= 0 and every leading product at most {MAX_FILL_VALUES}, got {shape}"
            )
        return shape

    def materialize(self) -> Any:
        def build(dims: list[int]) -> Any:
            return self.fill if not dims else [build(dims[1:]) for _ in range(dims[0])]

        return build(self.shape)


class Expectation(_Strict):
    shape: list[int] | None = None
    sum: float | None = None
    values: Any = None


class SmokeCase(_Strict):
    name: str = Field(min_length=1, max_length=100)
    signature_name: str | None = None
    inputs: dict[str, Fill | list[Any] | float | int | str] = Field(min_length=1)
    dtypes: dict[str, str] = Field(default_factory=dict)
    expected: dict[str, Expectation | list[Any] | float | int] = Field(min_length=1)
    abs_tol: float | None = Field(default=None, ge=0)
    rel_tol: float | None = Field(default=None, ge=0)


class SmokeSpec(_Strict):
    signature_name: str = "serving_default"
    protocols: list[Protocol] = Field(default_factory=lambda: list(PROTOCOLS), min_length=1)
    repetitions: int = Field(default=1, ge=1, le=10_000)
    concurrency: int = Field(default=1, ge=1, le=64)
    abs_tol: float = Field(default=1e-6, ge=0)
    rel_tol: float = Field(default=0.0, ge=0)
    cases: list[SmokeCase] = Field(min_length=1)


def load_smoke_spec(path: str | Path) -> SmokeSpec:
    """Read and validate a smoke file; :class:`SmokeFileError` names the file and field."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise SmokeFileError(f"{p}: cannot read the smoke file: {e.strerror}") from None
    except ValueError as e:
        raise SmokeFileError(f"{p}: not valid JSON: {e}") from None
    except RecursionError:
        raise SmokeFileError(f"{p}: nested deeper than {MAX_NESTING} levels") from None
    where = _too_deep(data)
    if where is not None:
        raise SmokeFileError(f"{p}: {where}: nested deeper than {MAX_NESTING} levels")
    try:
        return SmokeSpec.model_validate(data)
    except ValidationError as e:
        problems = [
            f"{p}: {'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors()
        ]
        raise SmokeFileError("\n".join(problems)) from None


def _too_deep(data: Any) -> str | None:
    """The path of the first value nested deeper than :data:`MAX_NESTING`, or ``None``.

    Iterative on purpose: the point is to refuse what would exhaust the recursion of
    validation and of :func:`compare`.
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_NESTING:
            return path or "(top level)"
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


# --------------------------------------------------------------------------- checking answers


def _close(actual: Any, expected: float, abs_tol: float, rel_tol: float) -> bool:
    return (
        isinstance(actual, int | float)
        and not isinstance(actual, bool)
        and abs(actual - expected) <= abs_tol + rel_tol * abs(expected)
    )


def _shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _flat(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flat(v)]
    return [value]


def compare(actual: Any, expected: Any, abs_tol: float, rel_tol: float) -> str | None:
    """``None`` when ``actual`` meets ``expected``; otherwise what is wrong, briefly."""
    if isinstance(expected, Expectation):
        if expected.shape is not None and _shape(actual) != expected.shape:
            return f"shape {_shape(actual)}, expected {expected.shape}"
        if expected.sum is not None:
            values = _flat(actual)
            if not all(isinstance(v, int | float) for v in values):
                return "non-numeric values"
            total = float(sum(values))
            if not _close(total, expected.sum, abs_tol, rel_tol):
                return f"sum {total:.6g}, expected {expected.sum:.6g}"
        if expected.values is not None:
            return compare(actual, expected.values, abs_tol, rel_tol)
        return None
    if isinstance(expected, list):
        if _shape(actual) != _shape(expected):
            return f"shape {_shape(actual)}, expected {_shape(expected)}"
        for i, (a, e) in enumerate(zip(_flat(actual), _flat(expected), strict=True)):
            if isinstance(e, str) or isinstance(a, str):
                if a != e:
                    return f"element {i}: {a!r}, expected {e!r}"
            elif not _close(a, float(e), abs_tol, rel_tol):
                return f"element {i}: {a!r}, expected {e!r} (abs_tol {abs_tol:g}, rel_tol {rel_tol:g})"
        return None
    if not _close(actual, float(expected), abs_tol, rel_tol):
        return f"{actual!r}, expected {expected!r}"
    return None


# --------------------------------------------------------------------------- running


@dataclass
class CaseResult:
    protocol: str
    case: str
    requests: int = 0
    errors: int = 0
    mismatches: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_problem: str | None = None

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float | None:
        return percentile(self.latencies_ms, 99)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class SmokeReport:
    model: str
    version: int
    slo_p99_ms: float
    results: list[CaseResult]
    duration_s: float = 0.0

    def protocol_latencies(self, protocol: str) -> list[float]:
        return [x for r in self.results if r.protocol == protocol for x in r.latencies_ms]

    @property
    def problems(self) -> list[str]:
        out = []
        for r in self.results:
            if r.errors or r.mismatches:
                out.append(
                    f"{r.protocol} case {r.case!r}: {r.errors} error(s), {r.mismatches} mismatch(es) "
                    f"in {r.requests} requests; first: {r.first_problem}"
                )
        for protocol in sorted({r.protocol for r in self.results}):
            lat = self.protocol_latencies(protocol)
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            if p99 is not None and p99 > self.slo_p99_ms:
                out.append(f"{protocol}: p99 latency {p99:.1f} ms exceeds the SLO of {self.slo_p99_ms:g} ms")
            if p50 is not None and p50 > self.slo_p99_ms:
                out.append(f"{protocol}: p50 latency {p50:.1f} ms exceeds the SLO of {self.slo_p99_ms:g} ms")
        return out

    @property
    def passed(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The result table for the task log."""
        header = ("protocol", "case", "requests", "errors", "mismatches", "p50 ms", "p99 ms", "result")
        rows = []
        for r in self.results:
            ok = not (r.errors or r.mismatches)
            rows.append(
                (
                    r.protocol,
                    r.case,
                    str(r.requests),
                    str(r.errors),
                    str(r.mismatches),
                    _ms(r.p50_ms),
                    _ms(r.p99_ms),
                    "ok" if ok else "FAIL",
                )
            )
        for protocol in sorted({r.protocol for r in self.results}):
            mine = [r for r in self.results if r.protocol == protocol]
            lat = self.protocol_latencies(protocol)
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            ok = all(not (r.errors or r.mismatches) for r in mine) and (p99 is None or p99 <= self.slo_p99_ms)
            rows.append(
                (
                    protocol,
                    "(all)",
                    str(sum(r.requests for r in mine)),
                    str(sum(r.errors for r in mine)),
                    str(sum(r.mismatches for r in mine)),
                    _ms(p50),
                    _ms(p99),
                    f"{'ok' if ok else 'FAIL'} (SLO p99 {self.slo_p99_ms:g} ms)",
                )
            )
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        protocols = {}
        for protocol in sorted({r.protocol for r in self.results}):
            lat = self.protocol_latencies(protocol)
            protocols[protocol] = {
                "requests": sum(r.requests for r in self.results if r.protocol == protocol),
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
            }
        return {
            "model": self.model,
            "version": self.version,
            "passed": self.passed,
            "slo_p99_ms": self.slo_p99_ms,
            "duration_s": round(self.duration_s, 3),
            "protocols": protocols,
            "cases": [
                {
                    "protocol": r.protocol,
                    "case": r.case,
                    "requests": r.requests,
                    "errors": r.errors,
                    "mismatches": r.mismatches,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "first_problem": r.first_problem,
                }
                for r in self.results
            ],
            "problems": self.problems,
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _materialize(value: Any) -> Any:
    return value.materialize() if isinstance(value, Fill) else value


def _rest_outputs(body: Any, expected_names: list[str]) -> dict[str, Any]:
    # TF Serving's columnar answer: {"outputs": value} for one output, {"outputs": {name: value}} otherwise.
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if isinstance(outputs, dict) and set(expected_names) <= set(outputs):
        return outputs
    if len(expected_names) == 1:
        return {expected_names[0]: outputs}
    return outputs if isinstance(outputs, dict) else {}


def run_smoke(
    hook: Any,
    model_name: str,
    version: int,
    spec: SmokeSpec,
    *,
    slo_p99_ms: float,
    protocols: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SmokeReport:
    """Send every case of ``spec`` to ``version`` of ``model_name`` through ``hook`` (a ``TFServingHook``)."""
    started = clock()
    results: list[CaseResult] = []
    for protocol in protocols or spec.protocols:
        for case in spec.cases:
            result = CaseResult(protocol, case.name)
            results.append(result)
            inputs = {k: _materialize(v) for k, v in case.inputs.items()}
            signature = case.signature_name or spec.signature_name
            abs_tol = spec.abs_tol if case.abs_tol is None else case.abs_tol
            rel_tol = spec.rel_tol if case.rel_tol is None else case.rel_tol
            names = list(case.expected)

            def call(
                _: int,
                inputs: dict[str, Any] = inputs,
                signature: str = signature,
                case: SmokeCase = case,
                protocol: str = protocol,
                names: list[str] = names,
            ) -> tuple[float, Any, str | None]:
                t0 = clock()
                try:
                    if protocol == "grpc":
                        outputs = hook.predict(
                            model_name, inputs, version, signature, dtypes=case.dtypes or None
                        )
                    else:
                        body = hook.rest_predict(
                            model_name, inputs=inputs, version=version, signature_name=signature
                        )
                        outputs = _rest_outputs(body, names)
                except TFServingError as e:
                    return (clock() - t0) * 1000, None, f"error: {e.status}: {e.server_message or e}"
                return (clock() - t0) * 1000, outputs, None

            with ThreadPoolExecutor(max_workers=spec.concurrency, thread_name_prefix="smoke") as pool:
                answers = list(pool.map(call, range(spec.repetitions)))
            for elapsed_ms, outputs, error in answers:
                result.requests += 1
                result.latencies_ms.append(elapsed_ms)
                if error is not None:
                    result.errors += 1
                    result.first_problem = result.first_problem or error
                    continue
                for name, expected in case.expected.items():
                    problem: str | None
                    if name not in outputs:
                        problem = f"output {name!r} missing; got {sorted(outputs)}"
                    else:
                        problem = compare(outputs[name], expected, abs_tol, rel_tol)
                    if problem is not None:
                        result.mismatches += 1
                        result.first_problem = result.first_problem or f"output {name!r}: {problem}"
                        break
    return SmokeReport(model_name, version, slo_p99_ms, results, duration_s=clock() - started)
