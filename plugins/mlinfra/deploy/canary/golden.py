"""Golden-set agreement: the same inputs to stable and canary, their answers compared.

The golden file has the smoke-file format (:mod:`mlinfra.deploy.smoke`): cases with
``inputs`` and, optionally, ``expected`` outputs. :func:`agreement` compares, per case
and per output tensor, the canary's answer with the stable's:

* max absolute and max relative difference (relative to the stable's value, over the
  elements where it is not zero);
* equal within tolerance, numpy's ``isclose`` semantics with the stable as reference:
  ``|canary - stable| <= atol + rtol * |stable|`` for every element;
* with ``top1`` (a classifier), whether the arg-max of the last axis agrees.

A case agrees when every output tensor does (within tolerance; with ``top1``, by its
top-1 class). The agreement rate is agreeing cases / cases, and the verdict is
*failed* below ``min_agreement``. Where the file gives ``expected`` outputs, each
track's correctness is reported too: a canary that answers fast but wrong disagrees
with the stable and says so.

>>> check = GoldenCheck(min_agreement=1.0)
>>> report = agreement({"a": {"y": [2.5, 3.0]}}, {"a": {"y": [2.5, 3.5]}}, check=check)
>>> report.verdict, report.agreement_rate, report.cases[0].tensors[0].max_abs_diff
('failed', 0.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mlinfra.deploy.canary.spec import GoldenCheck
from mlinfra.deploy.smoke import Expectation, SmokeCase, SmokeSpec, compare, load_spec_file

Outputs = Mapping[str, Mapping[str, Any]]  # case name -> output tensor name -> nested list
GoldenVerdict = Literal["successful", "failed", "inconclusive"]


class GoldenCase(SmokeCase):
    """A smoke case whose ``expected`` outputs are optional: agreement needs only the inputs."""

    expected: dict[str, Expectation | list[Any] | float | int] = Field(default_factory=dict)


class GoldenSpec(SmokeSpec):
    """A golden file: the smoke-file format with optional ``expected``."""

    cases: list[GoldenCase] = Field(min_length=1)  # type: ignore[assignment]


def load_golden_spec(path: str | Path) -> GoldenSpec:
    """Read and validate a golden file; :class:`~mlinfra.exceptions.SmokeFileError` names the file and field."""
    return load_spec_file(path, GoldenSpec, "golden file")


@dataclass(frozen=True)
class TensorDiff:
    """One output tensor of one case: stable vs canary."""

    output: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    close: bool
    top1_agree: bool | None = None
    problem: str | None = None


@dataclass(frozen=True)
class CaseAgreement:
    case: str
    agree: bool
    tensors: list[TensorDiff]
    # None: the golden file gives no expected output for this case.
    stable_correct: bool | None = None
    canary_correct: bool | None = None


@dataclass(frozen=True)
class GoldenReport:
    """Agreement of canary with stable over the golden cases, and its verdict."""

    cases: list[CaseAgreement]
    min_agreement: float
    top1: bool
    verdict: GoldenVerdict = field(init=False)

    def __post_init__(self) -> None:
        verdict: GoldenVerdict = "inconclusive"
        if self.cases:
            verdict = "failed" if self.agreement_rate < self.min_agreement else "successful"
        object.__setattr__(self, "verdict", verdict)

    @property
    def n(self) -> int:
        return len(self.cases)

    @property
    def agreeing(self) -> int:
        return sum(c.agree for c in self.cases)

    @property
    def agreement_rate(self) -> float:
        return self.agreeing / self.n if self.n else 0.0

    def correctness(self, track: Literal["stable", "canary"]) -> float | None:
        """Share of the cases with expected outputs that ``track`` answered correctly (None: none had any)."""
        judged = [getattr(c, f"{track}_correct") for c in self.cases]
        judged = [j for j in judged if j is not None]
        return sum(judged) / len(judged) if judged else None

    def drift(self) -> dict[str, dict[str, float | None]]:
        """Per output tensor, the largest absolute and relative difference over all cases."""
        out: dict[str, dict[str, float | None]] = {}
        for case in self.cases:
            for t in case.tensors:
                d = out.setdefault(t.output, {"max_abs_diff": None, "max_rel_diff": None})
                for key in ("max_abs_diff", "max_rel_diff"):
                    value = getattr(t, key)
                    if value is not None and (d[key] is None or value > (d[key] or 0.0)):
                        d[key] = value
        return out

    @property
    def summary(self) -> str:
        text = (
            f"{self.agreeing}/{self.n} cases agree ({self.agreement_rate:.1%}, min {self.min_agreement:.1%})"
        )
        tracks: tuple[Literal["stable", "canary"], ...] = ("stable", "canary")
        for track in tracks:
            share = self.correctness(track)
            if share is not None:
                text += f"; {track} correct {share:.1%}"
        return text

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (floats finite or None): for XCom, the measurements table and the UI."""
        return _json_safe(
            {
                "verdict": self.verdict,
                "n": self.n,
                "agreeing": self.agreeing,
                "agreement_rate": self.agreement_rate,
                "min_agreement": self.min_agreement,
                "stable_correct": self.correctness("stable"),
                "canary_correct": self.correctness("canary"),
                "drift": self.drift(),
                "summary": self.summary,
                "cases": [asdict(c) for c in self.cases],
            }
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def agreement(
    stable_outputs: Outputs,
    canary_outputs: Outputs,
    expected: GoldenSpec | None = None,
    *,
    check: GoldenCheck,
) -> GoldenReport:
    """Compare the two tracks' answers, case by case (see the module docstring).

    ``stable_outputs`` / ``canary_outputs`` map case name -> output name -> value (nested
    lists, as TF Serving returns them); a case missing on either side (the request
    failed) disagrees. ``expected`` (the golden file) fixes the list of cases and gives
    the expected outputs that judge each track's correctness.
    """
    if expected is not None:
        names = [c.name for c in expected.cases]
    else:
        names = list(dict.fromkeys([*stable_outputs, *canary_outputs]))
    by_name = {c.name: c for c in expected.cases} if expected is not None else {}
    cases = []
    for name in names:
        stable, canary = stable_outputs.get(name), canary_outputs.get(name)
        tensors = _case_tensors(stable, canary, check)
        agree = bool(tensors) and all(_tensor_agrees(t, check.top1) for t in tensors)
        case = by_name.get(name)
        stable_ok = canary_ok = None
        if case is not None and expected is not None and case.expected:
            stable_ok = _correct(stable, case, expected)
            canary_ok = _correct(canary, case, expected)
        cases.append(CaseAgreement(name, agree, tensors, stable_ok, canary_ok))
    return GoldenReport(cases, check.min_agreement, check.top1)


def _tensor_agrees(t: TensorDiff, top1: bool) -> bool:
    if t.problem is not None:
        return False
    return bool(t.top1_agree) if top1 else t.close


def _case_tensors(
    stable: Mapping[str, Any] | None, canary: Mapping[str, Any] | None, check: GoldenCheck
) -> list[TensorDiff]:
    if stable is None or canary is None:
        missing = "stable" if stable is None else "canary"
        return [TensorDiff("*", None, None, False, None, f"no answer from the {missing}")]
    return [
        tensor_diff(name, stable.get(name), canary.get(name), check)
        for name in dict.fromkeys([*stable, *canary])
    ]


def tensor_diff(name: str, stable: Any, canary: Any, check: GoldenCheck) -> TensorDiff:
    """Stable vs canary for one output tensor (numbers compared numerically, anything else for equality)."""
    if stable is None or canary is None:
        return TensorDiff(
            name, None, None, False, None, f"output missing on the {'stable' if stable is None else 'canary'}"
        )
    try:
        s = np.asarray(stable, dtype=np.float64)
        c = np.asarray(canary, dtype=np.float64)
    except (TypeError, ValueError):  # strings, ragged lists: only equality means anything
        equal = bool(stable == canary)
        return TensorDiff(
            name, None, None, equal, equal if check.top1 else None, None if equal else "values differ"
        )
    if s.shape != c.shape:
        return TensorDiff(
            name,
            None,
            None,
            False,
            None,
            f"shape {list(c.shape)} on the canary, {list(s.shape)} on the stable",
        )
    if s.size == 0:
        return TensorDiff(name, 0.0, 0.0, True, True if check.top1 else None)
    diff = np.abs(c - s)
    nonzero = s != 0
    max_rel = float(np.max(diff[nonzero] / np.abs(s[nonzero]))) if nonzero.any() else None
    close = bool(np.isclose(c, s, rtol=check.rtol, atol=check.atol).all())
    top1 = None
    if check.top1:
        top1 = bool(np.all(np.argmax(c, axis=-1) == np.argmax(s, axis=-1))) if s.ndim else close
    return TensorDiff(name, float(np.max(diff)), max_rel, close, top1)


def _correct(outputs: Mapping[str, Any] | None, case: SmokeCase, spec: SmokeSpec) -> bool:
    if outputs is None:
        return False
    abs_tol = case.abs_tol if case.abs_tol is not None else spec.abs_tol
    rel_tol = case.rel_tol if case.rel_tol is not None else spec.rel_tol
    return all(
        name in outputs and compare(outputs[name], want, abs_tol, rel_tol) is None
        for name, want in case.expected.items()
    )
