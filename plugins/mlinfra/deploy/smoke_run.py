"""The smoke run: every case of a smoke spec against one exact model version, within a time budget.

What a spec holds and how a run is judged: :mod:`mlinfra.deploy.smoke`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlinfra.deploy.smoke import (
    CaseResult,
    SmokeCase,
    SmokeReport,
    SmokeSpec,
    _materialize,
    _rest_outputs,
    compare,
)
from mlinfra.exceptions import TFServingError

# What a request the time budget left unsent answers in place of (latency, outputs, error).
_NOT_SENT = (-1.0, None, "not sent")


def run_smoke(
    hook: Any,
    model_name: str,
    version: int,
    spec: SmokeSpec,
    *,
    slo_p99_ms: float,
    protocols: list[str] | None = None,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SmokeReport:
    """Send every case of ``spec`` to ``version`` of ``model_name`` through ``hook`` (a ``TFServingHook``).

    ``budget_s``: no request starts after that many seconds; the ones left unsent fail the
    test (a version too slow to answer its smoke test in time is not promoted, and the
    report says how far it got, where a task timeout would say nothing and be retried).
    """
    started = clock()
    deadline = started + budget_s if budget_s is not None else None
    results: list[CaseResult] = []
    for protocol in protocols or spec.protocols:
        for case in spec.cases:
            result = CaseResult(protocol, case.name)
            results.append(result)
            inputs = {k: _materialize(v) for k, v in case.inputs.items()}
            signature = case.signature_name or spec.signature_name
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
                if deadline is not None and t0 >= deadline:
                    return _NOT_SENT
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

            # Warm-up runs one at a time and before any measured request, so the measured
            # ones never queue behind a channel being set up.
            warm = [call(i) for i in range(spec.warmup)]
            with ThreadPoolExecutor(max_workers=spec.concurrency, thread_name_prefix="smoke") as pool:
                measured = list(pool.map(call, range(spec.repetitions)))
            _account(result, case, spec, warm, measured, budget_s)
    return SmokeReport(model_name, version, slo_p99_ms, results, duration_s=clock() - started)


def _account(
    result: CaseResult,
    case: SmokeCase,
    spec: SmokeSpec,
    warm: list[tuple[float, Any, str | None]],
    measured: list[tuple[float, Any, str | None]],
    budget_s: float | None,
) -> None:
    """Count one case's answers into ``result``: errors, mismatches, latencies, the first problem."""
    abs_tol = spec.abs_tol if case.abs_tol is None else case.abs_tol
    rel_tol = spec.rel_tol if case.rel_tol is None else case.rel_tol
    for i, answer in enumerate(warm + measured):
        elapsed_ms, outputs, error = answer
        warming = i < len(warm)
        if answer is _NOT_SENT:
            result.not_sent += 1
            result.first_problem = result.first_problem or (
                f"not sent: the smoke test's time budget of {budget_s:g} s ran out"
            )
            continue
        if warming:
            result.warmup += 1
        else:
            result.requests += 1
            result.latencies_ms.append(elapsed_ms)
        if error is not None:
            if warming:
                result.warmup_failures += 1
            else:
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
                if warming:
                    result.warmup_failures += 1
                else:
                    result.mismatches += 1
                result.first_problem = result.first_problem or f"output {name!r}: {problem}"
                break
