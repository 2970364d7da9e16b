"""Evaluate rule groups at one instant: recording rules write back, alerting rules move their state.

As Prometheus does, the rules of a group run in order, so a recording rule's
output (written to the store at ``t``) is visible to the rules after it; an
evaluation error of one rule is reported with its name and never stops the
others::

    rules = load_rules("include/alert_rules", engine=engine)
    result = evaluate_groups(rules.groups, engine, at=t, store=store, states=StoreAlertStates(store))
    result.firing        # [EvaluatedAlert(labels={'alertname': 'HighCPUUsage', ...}, state='firing', ...)]
    result.errors        # [RuleEvaluationError(file=..., group='host', rule='X', message='...')]

The sweep's ``evaluate_rules`` task runs :func:`evaluate_rules_for_sweep`: load
``include/alert_rules`` (a bad file is logged once with its location, the others
still run), evaluate at the run's logical time with the fleet's engine, persist the
alert states, post to Alertmanager when its connection exists, and return the
firing alerts as small dicts for XCom.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.exceptions import AlertmanagerError, StoreError
from mlinfra.promql.interface import InstantSample, QueryError, QueryResult
from mlinfra.rules.alert_series import (
    RestoreSettings,
    alert_series_samples,
    ended_series_markers,
    is_gap,
    restore_for_state,
)
from mlinfra.rules.alerts import (
    ActiveAlert,
    AlertInstance,
    DuplicateLabelSetError,
    Transition,
    advance,
    count_active,
)
from mlinfra.rules.explain import explain_transition
from mlinfra.rules.files import Rule, RuleGroup
from mlinfra.rules.gotemplate_exec import GoCallError
from mlinfra.rules.state import AlertStates, MemoryAlertStates
from mlinfra.rules.templates import TemplateData
from mlinfra.samples import Sample
from mlinfra.settings import SWEEP_INTERVAL

if TYPE_CHECKING:
    from mlinfra.config import Fleet
    from mlinfra.promql.interface import QueryEngine
    from mlinfra.store import MetricsStore

log = logging.getLogger(__name__)

DEFAULT_RULES_DIR = Path(__file__).resolve().parents[3] / "include" / "alert_rules"
# Prometheus's default --rules.alert.resend-delay.
RESEND_DELAY = 60.0
# The sweep's evaluation interval, for groups that do not set their own.
DEFAULT_GROUP_INTERVAL = SWEEP_INTERVAL


@dataclass(frozen=True)
class EvaluatedAlert:
    """An alert after an evaluation (pending, firing or recently resolved)."""

    group: str
    file: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    state: str
    active_at: float
    value: float
    fired_at: float | None = None
    resolved_at: float | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def to_xcom(self) -> dict[str, Any]:
        """A small JSON-safe dict (what the scaling step reads)."""
        return {
            "alertname": self.alertname,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "state": self.state,
            "active_at": self.active_at,
            "fired_at": self.fired_at,
            "value": self.value if math.isfinite(self.value) else str(self.value),
            "group": self.group,
        }


@dataclass(frozen=True)
class RuleEvaluationError:
    file: str
    group: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: group {self.group!r}, rule {self.rule!r}: {self.message}"


@dataclass
class EvaluationResult:
    at: float
    alerts: list[EvaluatedAlert] = field(default_factory=list)
    errors: list[RuleEvaluationError] = field(default_factory=list)
    recorded: int = 0
    rules: int = 0

    @property
    def firing(self) -> list[EvaluatedAlert]:
        return [a for a in self.alerts if a.state == "firing"]

    @property
    def pending(self) -> list[EvaluatedAlert]:
        return [a for a in self.alerts if a.state == "pending"]

    @property
    def resolved(self) -> list[EvaluatedAlert]:
        return [a for a in self.alerts if a.state == "resolved"]


class _RuleFailed(Exception):
    pass


class _Evaluator:
    """Runs expressions at one instant, sharing the engine's reads between writes when it can."""

    def __init__(self, engine: QueryEngine, at: float, exprs: Sequence[str] = ()):
        self.engine = engine
        self.at = at
        self.exprs = list(exprs)  # announced to each new session, so one metric's windows are read once
        self._stack: contextlib.ExitStack | None = None
        self._session: Any = None

    def instant(self, expr: str) -> QueryResult:
        opener = getattr(self.engine, "session", None)
        if opener is None:
            return self.engine.instant(expr, self.at)
        if self._session is None:
            self._stack = contextlib.ExitStack()
            self._session = self._stack.enter_context(opener(self.at))
            prepare = getattr(self._session, "prepare", None)
            if callable(prepare) and self.exprs:
                prepare(self.exprs)
        result: QueryResult = self._session.instant(expr)
        return result

    def close(self) -> None:
        """End the shared read (before writing: a new session sees the write)."""
        if self._stack is not None:
            self._stack.close()
        self._stack, self._session = None, None


def _as_vector(result: QueryResult) -> list[InstantSample]:
    if isinstance(result, float | int):
        return [InstantSample({}, float(result))]
    return list(result)


def _template_query(evaluator: _Evaluator) -> Callable[[str], list[tuple[dict[str, str], float]]]:
    """The templates' ``query``: PromQL on the rule's engine at the evaluation time (Prometheus's
    ``EngineQueryFunc``: a scalar is one unlabelled sample, any other type is an error)."""

    def query(expr: str) -> list[tuple[dict[str, str], float]]:
        try:
            result = evaluator.instant(expr)
        except QueryError as e:
            raise GoCallError(str(e)) from None
        return [(dict(s.labels), s.value) for s in _as_vector(result)]

    return query


def _render_labels_and_annotations(
    rule: Rule,
    sample: InstantSample,
    external_labels: Mapping[str, str],
    external_url: str,
    query: Callable[[str], list[tuple[dict[str, str], float]]] | None = None,
) -> AlertInstance:
    data = TemplateData(
        labels=dict(sample.labels),
        value=sample.value,
        external_labels=external_labels,
        external_url=external_url,
        query=query,
    )
    labels = {k: v for k, v in sample.labels.items() if k != "__name__"}
    for name, tmpl in rule.label_templates.items():
        labels[name] = tmpl.render(data, alertname=rule.name)
    labels["alertname"] = rule.name
    # Prometheus drops labels whose value renders empty.
    labels = {k: v for k, v in labels.items() if v != ""}
    annotations = {
        name: tmpl.render(data, alertname=rule.name) for name, tmpl in rule.annotation_templates.items()
    }
    return AlertInstance(labels=labels, annotations=annotations, value=sample.value)


def evaluate_groups(
    groups: Sequence[RuleGroup],
    engine: QueryEngine,
    *,
    at: float,
    store: MetricsStore | None = None,
    states: AlertStates | None = None,
    run_id: str | None = None,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
    restore: RestoreSettings | None = None,
) -> EvaluationResult:
    """Evaluate every group at ``at`` (seconds); see the module docstring.

    ``store`` receives recording rules' output and the ``ALERTS``/``ALERTS_FOR_STATE``
    series (none is written without one); ``states`` holds the alert states between
    evaluations (in memory by default). With ``restore``, a group evaluated after a gap
    starts afresh as Prometheus does after a restart, and rebuilds its ``for`` clocks from
    ``ALERTS_FOR_STATE`` (:mod:`mlinfra.rules.alert_series`); without it (promtool's
    runner) every evaluation continues from the one before.
    """
    states = states if states is not None else MemoryAlertStates()
    result = EvaluationResult(at=at)
    ext = dict(external_labels or {})
    for group in groups:
        series = _alert_series_for(group, states, at, store, restore)
        _evaluate_group(group, engine, at, store, states, run_id, ext, external_url, result, series)
    return result


@dataclass
class _AlertSeries:
    """Writes ``ALERTS``/``ALERTS_FOR_STATE`` after each alerting rule, or restores after a gap."""

    store: MetricsStore | None
    restore_after_gap: RestoreSettings | None = None

    def after_rule(
        self,
        rule: Rule,
        evaluator: _Evaluator,
        at: float,
        new: dict[str, ActiveAlert],
        transitions: list[Transition],
    ) -> tuple[dict[str, ActiveAlert], list[Transition]]:
        if self.store is None:
            return new, transitions
        transitions = _explained(rule, evaluator, transitions)
        if self.restore_after_gap is not None:
            # Prometheus's first evaluation after a restart writes no ALERTS (the rules are
            # not "restored" yet); RestoreForState then moves the pending alerts' clocks.
            settings = self.restore_after_gap
            return restore_for_state(self.store, new, transitions, at=at, hold=rule.for_, settings=settings)
        samples = alert_series_samples(new, at) + ended_series_markers(transitions, at)
        if samples:
            evaluator.close()  # the next rule (and its templates' queries) read what is written now
            self.store.write_samples(samples)
        return new, transitions


def _explained(rule: Rule, evaluator: _Evaluator, transitions: list[Transition]) -> list[Transition]:
    """Each transition with why (mlinfra.rules.explain): extra queries, at transitions only."""
    out = []
    for t in transitions:
        try:
            why = explain_transition(
                rule.expr, t.labels, t.value, active_at=t.active_at, hold=rule.for_, query=evaluator.instant
            )
        except Exception:  # an explanation is extra: it must never cost the evaluation
            log.exception("rule %s: explaining a transition failed", rule.name)
            why = None
        out.append(replace(t, explanation=why))
    return out


def _alert_series_for(
    group: RuleGroup,
    states: AlertStates,
    at: float,
    store: MetricsStore | None,
    restore: RestoreSettings | None,
) -> _AlertSeries:
    if restore is None or store is None:
        return _AlertSeries(store)
    last = states.last_evaluation(group.file_name, group.name, before=at)
    if is_gap(last, at, group.interval or DEFAULT_GROUP_INTERVAL, restore):
        log.info(
            "group %s: no evaluation since %s, restoring 'for' state as after a restart", group.name, last
        )
        return _AlertSeries(store, restore)
    return _AlertSeries(store)


def _evaluate_group(
    group: RuleGroup,
    engine: QueryEngine,
    at: float,
    store: MetricsStore | None,
    states: AlertStates,
    run_id: str | None,
    ext: dict[str, str],
    external_url: str,
    result: EvaluationResult,
    series: _AlertSeries,
) -> None:
    file_key = group.file_name
    # After a gap the group starts afresh, as Prometheus does after a restart.
    previous = {} if series.restore_after_gap else states.load(file_key, group.name, before=at)
    new_states: dict[str, ActiveAlert] = {}
    transitions = []
    group_errors: list[str] = []
    evaluator = _Evaluator(engine, at, [rule.expr for rule in group.rules])
    by_rule: dict[str, dict[str, ActiveAlert]] = {}
    for fp, a in previous.items():
        by_rule.setdefault(a.alertname, {})[fp] = a
    try:
        for rule in group.rules:
            result.rules += 1
            rule_previous = by_rule.get(rule.name, {})
            try:
                if rule.is_alert:
                    rule_states, rule_transitions = _evaluate_alert(
                        rule, group, evaluator, at, rule_previous, ext, external_url, series
                    )
                    new_states.update(rule_states)
                    transitions.extend(rule_transitions)
                else:
                    result.recorded += _evaluate_record(rule, group, evaluator, at, store)
            except Exception as e:
                if _is_store_failure(e):
                    # Not this rule's fault: fail the task before anything of this group is
                    # saved, so that the retry evaluates it whole (a swallowed write would
                    # lose the recorded point, and delay the alert's state, for good).
                    raise
                if not isinstance(e, _RuleFailed):
                    # A bug in rendering or state handling must cost this rule only, never
                    # the other rules and groups (nor, by failing the task, the scaling after).
                    log.exception("rule %s: unexpected failure", rule.name)
                    e = _RuleFailed(f"{type(e).__name__}: {e}")
                if rule.is_alert:
                    new_states.update(rule_previous)  # Prometheus keeps the state on a failed evaluation
                error = RuleEvaluationError(group.file, group.name, rule.name, str(e))
                result.errors.append(error)
                group_errors.append(f"{rule.name}: {e}")
                log.warning("rule evaluation failed: %s", error)
    finally:
        evaluator.close()
    states.save(file_key, group.name, at, new_states, transitions, run_id=run_id, errors=group_errors)
    for a in new_states.values():
        result.alerts.append(
            EvaluatedAlert(
                group=group.name,
                file=file_key,
                labels=dict(a.labels),
                annotations=dict(a.annotations),
                state=a.state,
                active_at=a.active_at,
                value=a.value,
                fired_at=a.fired_at,
                resolved_at=a.resolved_at,
            )
        )


def _is_store_failure(e: BaseException) -> bool:
    """The metrics store failed (a write, or a read part-way): the task's failure, not a rule's."""
    from sqlalchemy.exc import DBAPIError

    return isinstance(e, StoreError | DBAPIError)


def _query(evaluator: _Evaluator, rule: Rule) -> list[InstantSample]:
    try:
        return _as_vector(evaluator.instant(rule.expr))
    except QueryError as e:
        raise _RuleFailed(str(e)) from None
    except Exception as e:  # an engine bug must not stop the other rules either
        if _is_store_failure(e):
            raise
        log.exception("rule %s: unexpected engine failure", rule.name)
        raise _RuleFailed(f"{type(e).__name__}: {e}") from None


def _evaluate_alert(
    rule: Rule,
    group: RuleGroup,
    evaluator: _Evaluator,
    at: float,
    previous: dict[str, ActiveAlert],
    ext: dict[str, str],
    external_url: str,
    series: _AlertSeries,
) -> tuple[dict[str, ActiveAlert], list[Transition]]:
    vector = _query(evaluator, rule)
    query = _template_query(evaluator)
    instances = [_render_labels_and_annotations(rule, s, ext, external_url, query) for s in vector]
    try:
        new, transitions = advance(
            previous, instances, at=at, hold=rule.for_, keep_firing_for=rule.keep_firing_for
        )
    except DuplicateLabelSetError as e:
        raise _RuleFailed(str(e)) from None
    if group.limit > 0 and count_active(new) > group.limit:
        raise _RuleFailed(f"exceeded limit of {group.limit} with {count_active(new)} alerts")
    return series.after_rule(rule, evaluator, at, new, list(transitions))


def _evaluate_record(
    rule: Rule, group: RuleGroup, evaluator: _Evaluator, at: float, store: MetricsStore | None
) -> int:
    vector = _query(evaluator, rule)
    samples: dict[tuple[tuple[str, str], ...], Sample] = {}
    for s in vector:
        labels = {k: v for k, v in s.labels.items() if k != "__name__"}
        labels.update(rule.labels)
        labels = {k: v for k, v in labels.items() if v != ""}
        key = tuple(sorted(labels.items()))
        if key in samples:
            raise _RuleFailed("vector contains metrics with the same labelset after applying rule labels")
        samples[key] = Sample(rule.name, labels, s.value, at)
    if group.limit > 0 and len(samples) > group.limit:
        raise _RuleFailed(f"exceeded limit {group.limit} with {len(samples)} series")
    if store is None or not samples:
        return len(samples)
    evaluator.close()  # the next rule must read what is written now
    store.write_samples(samples.values())
    return len(samples)


# ---------------------------------------------------------------------- the sweep's task


def _log_load_errors(errors_by_file: Mapping[str, Sequence[object]]) -> None:
    for file, problems in errors_by_file.items():
        log.error(
            "rule file %s refused (%d problem(s)); its rules are not evaluated:\n  %s",
            file,
            len(problems),
            "\n  ".join(str(p) for p in problems),
        )


def evaluate_rules_for_sweep(
    *,
    store: MetricsStore,
    fleet: Fleet,
    at: float,
    run_id: str | None = None,
    rules_dir: str | Path | None = None,
    generator_url: str = "",
    engine: QueryEngine | None = None,
    post_alerts: Callable[[Sequence[EvaluatedAlert], float, float], Any] | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The Airflow-independent body of the sweep's ``evaluate_rules`` task.

    Returns ``{"firing": [...small dicts...], "pending": n, "resolved": n,
    "errors": [...], "load_errors": [...], "posted": n | None, "post_error": str | None}``:
    an Alertmanager that fails is logged and reported in ``post_error``, not raised. ``post_alerts``
    receives (alerts, evaluation time, group interval) and defaults to the
    Alertmanager connection ``alertmanager_default`` when it exists.
    """
    from mlinfra.rules.files import load_rules
    from mlinfra.rules.state import StoreAlertStates

    if engine is None:
        from mlinfra.rules.engines import engine_for_fleet

        engine = engine_for_fleet(fleet, store)
    rules = load_rules([rules_dir or DEFAULT_RULES_DIR], engine=engine)
    _log_load_errors(rules.errors_by_file())
    states = StoreAlertStates(store)
    restore = RestoreSettings(
        for_grace_period=fleet.rules.for_grace_period,
        outage_tolerance=fleet.rules.outage_tolerance,
        gap_intervals=fleet.rules.gap_intervals,
    )
    result = evaluate_groups(
        rules.groups, engine, at=at, store=store, states=states, run_id=run_id, restore=restore
    )
    # Per-evaluation snapshots are only needed to continue (or backfill) recent evaluations.
    states.prune(now() - fleet.store.retention)
    log.info(
        "rules at %s: %d rules in %d groups, %d recorded samples, %d firing, %d pending, %d errors",
        at,
        result.rules,
        len(rules.groups),
        result.recorded,
        len(result.firing),
        len(result.pending),
        len(result.errors),
    )
    for a in result.firing:
        log.info("firing: %s %s", a.alertname, dict(a.labels))
    if post_alerts is None:
        post_alerts = _alertmanager_poster(generator_url)
    posted, post_error = _post(result, at, post_alerts, now)
    return {
        "at": at,
        "firing": [a.to_xcom() for a in result.firing],
        "pending": len(result.pending),
        "resolved": len(result.resolved),
        "errors": [str(e) for e in result.errors],
        "load_errors": [str(e) for e in rules.errors],
        "recorded": result.recorded,
        "posted": posted,
        "post_error": post_error,
    }


def _post(
    result: EvaluationResult,
    at: float,
    post_alerts: Callable[[Sequence[EvaluatedAlert], float, float], Any] | None,
    now: Callable[[], float],
) -> tuple[int | None, str | None]:
    """(alerts posted or None when not posted, the Alertmanager error if it failed)."""
    interval = DEFAULT_GROUP_INTERVAL
    to_send = [a for a in result.alerts if a.state in ("firing", "resolved")]
    if post_alerts is None:
        return None, None
    # An evaluation of the past (a backfill) would reach Alertmanager already expired.
    if now() - at > 4 * max(RESEND_DELAY, interval):
        log.info("evaluation time %s is in the past: alerts not posted to Alertmanager", at)
        return None, None
    if not to_send:
        return 0, None
    try:
        return post_alerts(to_send, at, interval), None
    except AlertmanagerError as e:
        # The states are saved and every active alert is re-sent at the next
        # evaluation; failing here would switch off the scaling downstream.
        log.warning("alerts not posted, Alertmanager failed: %s", e)
        return None, str(e)


def _alertmanager_poster(
    generator_url: str,
) -> Callable[[Sequence[EvaluatedAlert], float, float], int] | None:
    from mlinfra.connections import connection_exists
    from mlinfra.hooks.alertmanager import AlertmanagerHook

    if not connection_exists(AlertmanagerHook.default_conn_name):
        log.info("no Airflow connection %s: alerts not posted", AlertmanagerHook.default_conn_name)
        return None

    def post(alerts: Sequence[EvaluatedAlert], at: float, interval: float) -> int:
        hook = AlertmanagerHook()
        return hook.post_alerts(alerts, generator_url=generator_url, at=at, interval=interval)

    return post
