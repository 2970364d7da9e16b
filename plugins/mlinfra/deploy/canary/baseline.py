"""Judging the canary against the stable track: one value each, or samples of each.

``max_relative_increase`` is how much worse the canary may be than the stable, as a
fraction of the stable's value: 0.2 lets a latency rise by 20 %, and (with
``direction: higher_is_better``) lets a success ratio fall by 20 %.

>>> spec = BaselineCompare(max_relative_increase=0.2)
>>> compare_values(0.013, 0.010, spec).verdict
'failed'
>>> round(compare_values(0.011, 0.010, spec).relative_increase, 3)
0.1

Samples (per-request latencies) are compared by their medians and, with
``test: mann_whitney``, by a one-sided Mann-Whitney U test (SciPy's ``mannwhitneyu``):
the canary fails when it is worse by more than ``max_relative_increase`` AND the test
says the difference is not chance (p < ``alpha``). Fewer than ``min_samples`` on either
side is *inconclusive*, never successful: too little evidence proves nothing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mlinfra.deploy.canary.spec import BaselineCompare

ComparisonVerdict = Literal["successful", "failed", "inconclusive"]


@dataclass(frozen=True)
class Comparison:
    """What the comparison found; ``relative_increase`` is how much worse the canary is (negative: better)."""

    verdict: ComparisonVerdict
    canary: float | None
    stable: float | None
    relative_increase: float | None
    reason: str
    p_value: float | None = None
    n_canary: int | None = None
    n_stable: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: every float finite or None."""
        return {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _worse_by(canary: float, stable: float, direction: str) -> float:
    """The canary's relative deterioration against the stable (inf when the stable is 0 and the canary worse)."""
    change = canary - stable if direction == "lower_is_better" else stable - canary
    if stable == 0:
        return 0.0 if change == 0 else math.copysign(math.inf, change)
    return change / abs(stable)


def compare_values(canary: float, stable: float, spec: BaselineCompare) -> Comparison:
    """One value per track (an error ratio, a p99 from a query): failed when worse by more than allowed."""
    if not (math.isfinite(canary) and math.isfinite(stable)):
        return Comparison(
            "inconclusive", _finite(canary), _finite(stable), None,
            f"no number to compare (canary {canary}, stable {stable}): no traffic on a track?",
        )  # fmt: skip
    worse = _worse_by(canary, stable, spec.direction)
    allowed = spec.max_relative_increase
    verdict: ComparisonVerdict = "failed" if worse > allowed else "successful"
    word = "worse" if worse >= 0 else "better"
    amount = "infinitely" if math.isinf(worse) else f"{abs(worse):.1%}"
    reason = f"canary {canary:.6g} vs stable {stable:.6g}: {amount} {word} (allowed: {allowed:.1%} worse)"
    return Comparison(verdict, canary, stable, _finite(worse), reason)


def compare_samples(
    canary_samples: Sequence[float], stable_samples: Sequence[float], spec: BaselineCompare
) -> Comparison:
    """Samples per track (request latencies): medians, and the rank test ``spec.test``."""
    canary = [float(v) for v in canary_samples if math.isfinite(v)]
    stable = [float(v) for v in stable_samples if math.isfinite(v)]
    n_c, n_s = len(canary), len(stable)
    if min(n_c, n_s) < spec.min_samples:
        return Comparison(
            "inconclusive",
            statistics.median(canary) if canary else None,
            statistics.median(stable) if stable else None,
            None,
            f"too few samples to judge: canary {n_c}, stable {n_s} (min_samples {spec.min_samples})",
            n_canary=n_c,
            n_stable=n_s,
        )
    med_c, med_s = statistics.median(canary), statistics.median(stable)
    worse = _worse_by(med_c, med_s, spec.direction)
    p_value = _one_sided_p(canary, stable, spec) if spec.test == "mann_whitney" else None
    too_much = worse > spec.max_relative_increase
    significant = p_value is None or p_value < spec.alpha
    verdict: ComparisonVerdict = "failed" if too_much and significant else "successful"
    word = "worse" if worse >= 0 else "better"
    amount = "infinitely" if math.isinf(worse) else f"{abs(worse):.1%}"
    reason = (
        f"median canary {med_c:.6g} vs stable {med_s:.6g} over {n_c}/{n_s} samples: {amount} {word} "
        f"(allowed: {spec.max_relative_increase:.1%} worse)"
    )
    if p_value is not None:
        reason += f"; Mann-Whitney U one-sided p={p_value:.3g} (alpha {spec.alpha:g})"
    return Comparison(verdict, med_c, med_s, _finite(worse), reason, _finite(p_value), n_c, n_s)


def _one_sided_p(canary: list[float], stable: list[float], spec: BaselineCompare) -> float:
    """p of "the canary's values are stochastically worse than the stable's" (1.0 when undefined)."""
    # Imported here: DAG files import the fleet's models at parse time, SciPy only the analysis.
    from scipy.stats import mannwhitneyu

    alternative = "greater" if spec.direction == "lower_is_better" else "less"
    p = float(mannwhitneyu(canary, stable, alternative=alternative).pvalue)
    # All values equal on both sides gives NaN: no evidence of a difference.
    return p if math.isfinite(p) else 1.0
