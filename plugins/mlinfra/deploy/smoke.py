"""Smoke predictions against one exact model version: the spec file, the run, the verdict.

A smoke file (``include/smoke/<model>.json``, named by the fleet's ``smoke_file``)::

    {
      "signature_name": "serving_default",   # default for every case
      "protocols": ["grpc", "rest"],         # both by default
      "repetitions": 40,                     # measured requests, each case, per protocol
      "warmup": 2,                           # unmeasured requests first, each case, per protocol
      "concurrency": 2,                      # requests in flight at once
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

:func:`mlinfra.deploy.smoke_run.run_smoke` sends every case ``warmup`` times and then
``repetitions`` times over each protocol and checks every answer; :class:`SmokeReport`
says whether the version passes and renders the table the task log shows.

Latency is measured the way load testers measure it. Warm-up answers are checked but
their latency is not counted: the first requests pay for channel set-up and the
model's first run, which no client sees in steady state. The SLO is judged per
protocol over all measured requests of all cases, and a percentile is judged only
with enough samples for it to be something other than the slowest request
(nearest rank: 2 for p50, 100 for p99, see :func:`min_samples`); with fewer, that
percentile's verdict is "not enough samples": neither a pass nor a fail. The smoke
test then fails only on a wrong answer, an error, or a percentile measured over the
SLO; the log and the report say which percentiles were not judged and why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlinfra.exceptions import SmokeFileError

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
    warmup: int = Field(default=1, ge=0, le=1_000)
    concurrency: int = Field(default=1, ge=1, le=64)
    abs_tol: float = Field(default=1e-6, ge=0)
    rel_tol: float = Field(default=0.0, ge=0)
    cases: list[SmokeCase] = Field(min_length=1)


def load_smoke_spec(path: str | Path) -> SmokeSpec:
    """Read and validate a smoke file; :class:`SmokeFileError` names the file and field."""
    return load_spec_file(path, SmokeSpec, "smoke file")


SpecT = TypeVar("SpecT", bound=BaseModel)


def load_spec_file(path: str | Path, spec_type: type[SpecT], what: str) -> SpecT:
    """A JSON file in the smoke-file format validated as ``spec_type`` (the canary's golden file uses it too)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise SmokeFileError(f"{p}: cannot read the {what}: {e.strerror}") from None
    except ValueError as e:
        raise SmokeFileError(f"{p}: not valid JSON: {e}") from None
    except RecursionError:
        raise SmokeFileError(f"{p}: nested deeper than {MAX_NESTING} levels") from None
    where = _too_deep(data)
    if where is not None:
        raise SmokeFileError(f"{p}: {where}: nested deeper than {MAX_NESTING} levels")
    try:
        return spec_type.model_validate(data)
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
    warmup: int = 0
    # Warm-up answers are checked too, but counted apart: errors/mismatches are of the
    # measured requests, so they compare with ``requests``.
    warmup_failures: int = 0
    errors: int = 0
    mismatches: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_problem: str | None = None
    not_sent: int = 0  # requests (warm-up or measured) the time budget left unsent

    @property
    def failed(self) -> bool:
        """Any wrong answer or error, warm-up included, or a request left unsent."""
        return bool(self.errors or self.mismatches or self.warmup_failures or self.not_sent)

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


def min_samples(q: float) -> int:
    """The fewest samples for which the nearest-rank ``q`` percentile is not the maximum.

    With fewer, "p99" is simply the slowest request, and one cold or unlucky request
    decides the verdict: ``min_samples(99) == 100``, ``min_samples(50) == 2``.
    """
    if not 0 < q < 100:
        raise ValueError(f"percentile must be in (0, 100), got {q}")
    # Below n = 1 / (1 - q/100) samples, rank ceil(q/100 * n) is n itself.
    return math.ceil(round(100 / (100 - q), 9))


Verdict = Literal["ok", "over SLO", "not enough samples"]
JUDGED_PERCENTILES = (50, 99)


@dataclass(frozen=True)
class LatencyVerdict:
    """One protocol's latency percentile against the SLO."""

    protocol: str
    q: int
    samples: int
    value_ms: float | None
    slo_ms: float

    @property
    def needed(self) -> int:
        return min_samples(self.q)

    @property
    def verdict(self) -> Verdict:
        if self.samples < self.needed or self.value_ms is None:
            return "not enough samples"
        return "over SLO" if self.value_ms > self.slo_ms else "ok"

    def describe(self) -> str:
        if self.verdict == "not enough samples":
            return (
                f"{self.protocol}: p{self.q} not judged: {self.samples} measured request(s), "
                f"{self.needed} needed (raise repetitions or add cases)"
            )
        return (
            f"{self.protocol}: p{self.q} latency {self.value_ms:.1f} ms "
            f"{'exceeds' if self.verdict == 'over SLO' else 'within'} the SLO of {self.slo_ms:g} ms "
            f"({self.samples} requests)"
        )


@dataclass
class SmokeReport:
    model: str
    version: int
    slo_p99_ms: float
    results: list[CaseResult]
    duration_s: float = 0.0

    def protocol_latencies(self, protocol: str) -> list[float]:
        return [x for r in self.results if r.protocol == protocol for x in r.latencies_ms]

    def _protocols(self) -> list[str]:
        return sorted({r.protocol for r in self.results})

    def latency_verdicts(self, protocol: str) -> list[LatencyVerdict]:
        lat = self.protocol_latencies(protocol)
        return [
            LatencyVerdict(protocol, q, len(lat), percentile(lat, q), self.slo_p99_ms)
            for q in JUDGED_PERCENTILES
        ]

    @property
    def problems(self) -> list[str]:
        out = []
        for r in self.results:
            if r.failed:
                warm = (
                    f" (and {r.warmup_failures} of {r.warmup} warm-up requests)" if r.warmup_failures else ""
                )
                unsent = f", {r.not_sent} not sent" if r.not_sent else ""
                out.append(
                    f"{r.protocol} case {r.case!r}: {r.errors} error(s), {r.mismatches} mismatch(es) "
                    f"in {r.requests} requests{warm}{unsent}; first: {r.first_problem}"
                )
        for protocol in self._protocols():
            out.extend(v.describe() for v in self.latency_verdicts(protocol) if v.verdict == "over SLO")
        return out

    @property
    def not_judged(self) -> list[str]:
        """Percentiles left without a verdict for want of samples (a warning, not a failure)."""
        return [
            v.describe()
            for protocol in self._protocols()
            for v in self.latency_verdicts(protocol)
            if v.verdict == "not enough samples"
        ]

    @property
    def passed(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The result table for the task log.

        Every row judges the same two things: "answers" (errors and mismatches, per
        case and for all cases) and "latency" (only on a protocol's "(all)" row,
        because the SLO is one figure per protocol; a case row's percentiles are
        shown for reading, not judged). The last line is the overall verdict.
        """
        header = (
            "protocol",
            "case",
            "warm-up",
            "measured",
            "errors",
            "mismatches",
            "p50 ms",
            "p99 ms",
            "answers",
            "latency",
        )
        rows = []
        for protocol in self._protocols():
            mine = [r for r in self.results if r.protocol == protocol]
            for r in mine:
                rows.append(
                    (
                        r.protocol,
                        r.case,
                        str(r.warmup),
                        str(r.requests),
                        str(r.errors),
                        str(r.mismatches),
                        _ms(r.p50_ms, len(r.latencies_ms), 50),
                        _ms(r.p99_ms, len(r.latencies_ms), 99),
                        "ok" if not r.failed else "FAIL",
                        "",
                    )
                )
            verdicts = self.latency_verdicts(protocol)
            lat_verdicts = {v.verdict for v in verdicts}
            latency = (
                "FAIL"
                if "over SLO" in lat_verdicts
                else "not enough samples"
                if "not enough samples" in lat_verdicts
                else "ok"
            )
            rows.append(
                (
                    protocol,
                    "(all)",
                    str(sum(r.warmup for r in mine)),
                    str(sum(r.requests for r in mine)),
                    str(sum(r.errors for r in mine)),
                    str(sum(r.mismatches for r in mine)),
                    _ms(verdicts[0].value_ms, verdicts[0].samples, 50),
                    _ms(verdicts[1].value_ms, verdicts[1].samples, 99),
                    "ok" if not any(r.failed for r in mine) else "FAIL",
                    f"{latency} (SLO {self.slo_p99_ms:g} ms)",
                )
            )
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
        lines.append(f"verdict: {'PASS' if self.passed else 'FAIL'}")
        lines.extend(f"  {p}" for p in self.problems)
        lines.extend(f"  note: {n}" for n in self.not_judged)
        if any(cell == "-" or cell.startswith("n<") for row in rows for cell in row[6:8]):
            lines.append("  (-: no measured requests; n<N: fewer than the N samples that percentile needs)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        protocols = {}
        for protocol in self._protocols():
            verdicts = self.latency_verdicts(protocol)
            protocols[protocol] = {
                "requests": sum(r.requests for r in self.results if r.protocol == protocol),
                "warmup": sum(r.warmup for r in self.results if r.protocol == protocol),
                "p50_ms": verdicts[0].value_ms,
                "p99_ms": verdicts[1].value_ms,
                "latency": {f"p{v.q}": v.verdict for v in verdicts},
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
                    "warmup": r.warmup,
                    "warmup_failures": r.warmup_failures,
                    "errors": r.errors,
                    "mismatches": r.mismatches,
                    "not_sent": r.not_sent,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "first_problem": r.first_problem,
                }
                for r in self.results
            ],
            "problems": self.problems,
            "not_judged": self.not_judged,
        }


def _ms(value: float | None, samples: int, q: int) -> str:
    if value is None:
        return "-"
    if samples < min_samples(q):
        return f"n<{min_samples(q)}"
    return f"{value:.1f}"


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
