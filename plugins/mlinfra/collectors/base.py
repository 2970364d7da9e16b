"""The wrapper every collector runs under, and its result type.

>>> result = run_collector("host", lambda: [Sample("ml_memory_usage_percent", {}, 42.0)])
>>> result.up, [s.name for s in result.samples]
(True, ['ml_memory_usage_percent', 'mlinfra_collector_up', 'mlinfra_collector_duration_seconds'])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mlinfra.exceptions import CollectorError, CollectorUnavailable
from mlinfra.samples import Sample

log = logging.getLogger(__name__)


class PartialCollection(CollectorError):
    """Some targets of a collector failed; the samples of the others are kept.

    A collector that reads several targets (namespaces, models) raises this at the
    end with what it did collect, so one broken target never hides the rest::

        raise PartialCollection(samples, errors=["namespace serving: 403 Forbidden"])
    """

    def __init__(self, samples: Iterable[Sample], errors: list[str]):
        self.samples = list(samples)
        self.errors = errors
        super().__init__("; ".join(errors))


@dataclass
class CollectorResult:
    collector: str
    samples: list[Sample]
    up: bool
    duration_seconds: float
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What goes to XCom: counts and reasons, never the samples themselves."""
        return {
            "collector": self.collector,
            "up": self.up,
            "samples": len(self.samples),
            "duration_seconds": round(self.duration_seconds, 4),
            "errors": self.errors,
            "skipped": self.skipped,
        }


def run_collector(
    name: str,
    collect: Callable[[], Iterable[Sample]],
    *,
    skipped: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CollectorResult:
    """Run ``collect`` and never raise: failures become ``up=False`` with the reason logged.

    ``skipped`` names targets left out on purpose (no connection configured);
    they are reported, not counted as failures.
    """
    start = clock()
    errors: list[str] = []
    try:
        samples = list(collect())
    except PartialCollection as e:
        samples, errors = e.samples, e.errors
        for err in errors:
            log.warning("collector %s: %s", name, err)
    except CollectorUnavailable as e:
        samples, errors = [], [str(e)]
        log.warning("collector %s unavailable: %s", name, e)
    except Exception as e:
        samples, errors = [], [f"{type(e).__name__}: {e}"]
        log.exception("collector %s failed", name)
    duration = clock() - start
    up = not errors
    samples.append(Sample("mlinfra_collector_up", {"collector": name}, 1.0 if up else 0.0))
    samples.append(Sample("mlinfra_collector_duration_seconds", {"collector": name}, duration))
    return CollectorResult(name, samples, up, duration, errors, list(skipped or []))
