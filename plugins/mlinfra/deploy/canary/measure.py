"""One analysis round of a canary step: measure what is due, judge, say what comes next.

The canary operator (:mod:`mlinfra.operators.canary`) calls :func:`measure_step` on the
worker each time an analysis step wakes up; it records what comes back and defers for
``next_in_seconds`` while the phase is ``running``::

    round = measure_step(MeasureRequest(plan=plan, run_id=..., step=1, template="serving-health", ...))
    round.phase            # 'running' | 'successful' | 'failed' | 'inconclusive' | 'error'
    round.measurements     # [Measurement.to_json(), ...] taken in this round

Where each metric's ``result`` comes from (``analyses.<name>.metrics`` in the fleet file):

* ``query``: PromQL through the fleet's rule engine at this instant, once with
  ``{{ track }}`` = ``canary`` and, for a ``compare``, once with ``stable``. With the
  local engine the series come from here: each round first reads every pod's
  ``/monitoring/prometheus/metrics`` of both tracks (:func:`~.tracks.scrape_track_samples`,
  labelled ``track``, ``version``, ``pod``) into the store, and the first round of a step
  only reads (a ``rate()`` needs two scrapes; Argo Rollouts calls this ``initialDelay``).
  With ``rules.engine: prometheus`` Prometheus scrapes the pods itself (relabel the pod
  label ``track`` onto the series) and nothing is written here.
* ``latency``: ``requests`` timed gRPC predictions of the model's smoke cases (those of
  the first case's signature) on each track's pods, interleaved in blocks of
  :data:`PROBE_BLOCK` so both tracks see the same moment, each block's channels warmed up first; the samples go
  to the rank test of ``compare``.
* ``golden``: every case of the golden file sent to the stable's pods (its version) and
  to the canary's pods (the new version); agreement rate and drift per output tensor.

A metric is measured again once its ``interval`` has passed since its last
measurement, until its run is decided (:func:`~.analysis.assess`); the step's phase is
the worst of its metrics' (:func:`~.analysis.run_phase`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mlinfra.deploy.canary import analysis
from mlinfra.deploy.canary.rollout import AnalysisRound, MeasureRequest
from mlinfra.deploy.canary.spec import AnalysisMetric, render_query
from mlinfra.deploy.canary.tracks import PodAddress, Track, predict_on_pods, scrape_track_samples, track_pods

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model
    from mlinfra.deploy.canary.golden import GoldenSpec
    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)

# Written with each scrape of a track: the next round knows a first scrape exists.
SCRAPE_SERIES = "mlinfra_canary_scrape_timestamp_seconds"
# Latency probes alternate between the tracks in blocks of this many requests.
PROBE_BLOCK = 10


def measure_step(request: MeasureRequest) -> AnalysisRound:
    """The operator's analysis seam: one round of ``request.template`` (see the module docstring)."""
    from mlinfra.config import load_fleet

    fleet = load_fleet()
    return Round(request, fleet).run()


@dataclass
class Round:
    request: MeasureRequest
    fleet: Fleet

    @property
    def plan(self) -> dict[str, Any]:
        return self.request.plan

    @cached_property
    def model(self) -> Model:
        return self.fleet.model(str(self.plan["model"]))

    @cached_property
    def store(self) -> MetricsStore:
        from mlinfra.store import MetricsStore

        return MetricsStore.from_connection()

    @cached_property
    def core_v1(self) -> Any:
        from mlinfra.kube_import import import_kubernetes, kubernetes_hook_class

        client = import_kubernetes().client
        return client.CoreV1Api(kubernetes_hook_class()(conn_id=self.plan["kubernetes_conn_id"]).api_client)

    def pods(self, track: Track) -> list[PodAddress]:
        return track_pods(self.core_v1, self.plan["namespace"], self.plan["deployment"], track)

    # ------------------------------------------------------------------ the round

    def run(self) -> AnalysisRound:
        template = self.fleet.analyses[self.request.template]
        now = self.request.now
        previous = _previous_by_metric(self.request.previous)
        local_queries = self.fleet.rules.engine == "local" and any(m.query for m in template.metrics)
        if local_queries and not self._scraped_before(now):
            self._scrape(now)
            first = min(m.interval for m in template.metrics)
            return AnalysisRound([], "running", first, "first scrape of both tracks; measuring next round")
        if local_queries:
            self._scrape(now)
        taken: list[analysis.Measurement] = []
        phases: list[analysis.Phase] = []
        waits: list[float] = []
        for metric in template.metrics:
            before = previous.get(metric.name, [])
            run = analysis.assess(metric, before)
            if run.done:
                phases.append(run.phase)
                continue
            due_at = before[-1].at + metric.interval if before else now
            if due_at > now + 1e-6:
                phases.append("running")
                waits.append(due_at - now)
                continue
            measured = self._measure(metric, now)
            taken.append(measured)
            run = analysis.assess(metric, [*before, measured])
            phases.append(run.phase)
            if not run.done:
                waits.append(metric.interval)
        phase = analysis.run_phase(phases)
        message = "; ".join(f"{m.metric}: {m.verdict} ({m.reason})" for m in taken)
        next_in = min(waits) if waits and phase == "running" else 0.0
        return AnalysisRound([m.to_json() for m in taken], phase, next_in, message)

    def _measure(self, metric: AnalysisMetric, at: float) -> analysis.Measurement:
        try:
            if metric.query is not None:
                return self._query_metric(metric, at)
            if metric.latency is not None:
                return self._latency_metric(metric, at)
            return self._golden_metric(metric, at)
        except Exception as e:  # one metric's failure is its measurement's "error", never the task's
            log.exception("canary %s: measuring %s failed", self.plan["model"], metric.name)
            return analysis.error(metric, f"{type(e).__name__}: {e}", at=at)

    # ------------------------------------------------------------------ sources

    def _scraped_before(self, at: float) -> bool:
        from mlinfra.store import LabelMatcher

        matchers = [
            LabelMatcher("model", "=", self.model.name),
            LabelMatcher("run_id", "=", self.request.run_id),
        ]
        # Within the engine's lookback: an older scrape cannot pair with this one in a rate().
        return bool(self.store.query_range(SCRAPE_SERIES, matchers, at - 300, at - 1e-3))

    def _scrape(self, at: float) -> None:
        from mlinfra.samples import Sample

        samples: list[Sample] = []
        versions = {"canary": int(self.plan["version"]), "stable": self.request.stable_version}
        for track in ("stable", "canary"):
            pods = self.pods(track)
            scraped = scrape_track_samples(
                pods,
                model=self.model.name,
                track=track,
                version=versions[track],
                served_model_name=self.model.serving.model_name,
                tf_serving_conn_id=self.plan["serving_conn_id"],
            )
            samples.extend(Sample(s.name, s.labels, s.value, at) for s in scraped)
            labels = {"model": self.model.name, "run_id": self.request.run_id, "track": track}
            samples.append(Sample(SCRAPE_SERIES, labels, at, at))
        self.store.write_samples(samples)

    def _instant(self, expr: str, at: float) -> list[float]:
        from mlinfra.rules.engines import engine_for_fleet

        result = engine_for_fleet(self.fleet, self.store).instant(expr, at)
        if isinstance(result, float):
            return [result]
        return [s.value for s in result]

    def _render(self, metric: AnalysisMetric, track: Track) -> str:
        version = self.plan["version"] if track == "canary" else (self.request.stable_version or "")
        return render_query(
            metric.query or "",
            track=track,
            model=self.model.name,
            version=version,
            namespace=self.plan["namespace"],
        )

    def _query_metric(self, metric: AnalysisMetric, at: float) -> analysis.Measurement:
        canary = self._instant(self._render(metric, "canary"), at)
        stable_value = None
        if metric.compare is not None:
            stable = self._instant(self._render(metric, "stable"), at)
            stable_value = stable[0] if len(stable) == 1 and math.isfinite(stable[0]) else None
        return analysis.judge(metric, canary, stable_value, at=at)

    def _smoke_cases(self) -> list[tuple[dict[str, Any], str, dict[str, str]]]:
        from mlinfra.deploy.smoke import load_smoke_spec

        spec = load_smoke_spec(self.fleet.include_path(self.model.smoke_file))
        return [_request_of(case, spec.signature_name) for case in spec.cases]

    def _latency_metric(self, metric: AnalysisMetric, at: float) -> analysis.Measurement:
        assert metric.latency is not None
        cases = self._smoke_cases()
        pods = {"stable": self.pods("stable"), "canary": self.pods("canary")}
        versions = {"canary": int(self.plan["version"]), "stable": self.request.stable_version}
        latencies: dict[str, list[float]] = {"stable": [], "canary": []}
        errors: list[str] = []
        total = metric.latency.requests
        # One signature per probe: the smoke file's first case's, with every case of that
        # signature as inputs. Each block opens each pod's channel once and warms it up.
        _, signature, dtypes = cases[0]
        inputs = [c[0] for c in cases if c[1] == signature and c[2] == dtypes]
        sent = 0
        while sent < total:
            block = min(PROBE_BLOCK, total - sent)
            for track in ("stable", "canary"):
                probe = predict_on_pods(
                    _rotate(pods[track], sent),
                    self.model.serving.model_name,
                    inputs[sent % len(inputs) :] + inputs[: sent % len(inputs)],
                    tf_serving_conn_id=self.plan["serving_conn_id"],
                    requests=block,
                    version=versions[track],
                    signature_name=signature,
                    dtypes=dtypes,
                    warmup=1,
                )
                latencies[track].extend(probe.latencies_s)
                errors.extend(f"{track}: {e}" for e in probe.errors)
            sent += block
        measured = analysis.judge(metric, None, None, (latencies["canary"], latencies["stable"]), at=at)
        if errors:
            detail = {**measured.detail, "errors": errors[:10], "failed_requests": len(errors)}
            measured = analysis.Measurement(
                measured.metric, measured.verdict, measured.value, measured.stable_value, detail, measured.at
            )
        return measured

    def _golden_spec(self, metric: AnalysisMetric) -> GoldenSpec:
        from mlinfra.deploy.canary.golden import load_golden_spec

        assert metric.golden is not None
        return load_golden_spec(
            self.fleet.include_path(metric.golden.path_for(self.model.serving.model_name))
        )

    def _golden_metric(self, metric: AnalysisMetric, at: float) -> analysis.Measurement:
        from mlinfra.deploy.canary.golden import agreement

        assert metric.golden is not None
        spec = self._golden_spec(metric)
        versions = {"canary": int(self.plan["version"]), "stable": self.request.stable_version}
        outputs: dict[str, dict[str, Any]] = {"stable": {}, "canary": {}}
        for track in ("stable", "canary"):
            pods = self.pods(track)
            for n, case in enumerate(spec.cases):
                inputs, signature, dtypes = _request_of(case, spec.signature_name)
                probe = predict_on_pods(
                    _rotate(pods, n),
                    self.model.serving.model_name,
                    inputs,
                    tf_serving_conn_id=self.plan["serving_conn_id"],
                    version=versions[track],
                    signature_name=signature,
                    dtypes=dtypes,
                )
                if probe.outputs and probe.outputs[0] is not None:
                    outputs[track][case.name] = probe.outputs[0]
        report = agreement(outputs["stable"], outputs["canary"], spec, check=metric.golden)
        return analysis.judge(metric, None, golden=report, at=at)


def _request_of(case: Any, default_signature: str) -> tuple[dict[str, Any], str, dict[str, str]]:
    from mlinfra.deploy.smoke import Fill

    inputs = {k: v.materialize() if isinstance(v, Fill) else v for k, v in case.inputs.items()}
    return inputs, case.signature_name or default_signature, dict(case.dtypes)


def _rotate(pods: Sequence[PodAddress], n: int) -> list[PodAddress]:
    """``pods`` starting at the ``n``-th, so one-request probes still spread over every pod."""
    if not pods:
        return []
    k = n % len(pods)
    return [*pods[k:], *pods[:k]]


def _previous_by_metric(rows: Sequence[Any]) -> dict[str, list[analysis.Measurement]]:
    """The step's recorded measurements (records rows or dicts), per metric, oldest first."""
    out: dict[str, list[analysis.Measurement]] = {}
    for row in rows:
        data = row if isinstance(row, dict) else _row_dict(row)
        m = analysis.Measurement.from_json(data)
        out.setdefault(m.metric, []).append(m)
    for ms in out.values():
        ms.sort(key=lambda m: m.at)
    return out


def _row_dict(row: Any) -> dict[str, Any]:
    at = getattr(row, "measured_at", None) or getattr(row, "at", None) or time.time()
    if hasattr(at, "timestamp"):
        at = at.timestamp()
    return {
        "metric": row.metric,
        "verdict": row.verdict,
        "value": row.value,
        "stable_value": row.stable_value,
        "detail": row.detail if isinstance(row.detail, dict) else {},
        "at": float(at),
    }
