"""The scale decision: HPA's algorithm as a pure function of the policy and the inputs.

Nothing here talks to Kubernetes, the store or Airflow: the caller hands in the
current replica count, the metric value, the firing alerts, the recommendation
history and the time of the last scale action, and gets a :class:`ScaleDecision`
that says what to do and why::

    >>> from mlinfra.config import ScalingPolicy
    >>> policy = ScalingPolicy(min_replicas=1, max_replicas=10, target={"expr": "x", "value": 100},
    ...                        scale_down_stabilization=0)
    >>> d = decide(policy, model="m", at=0.0, current=1, metric=200.0)
    >>> (d.action, d.from_replicas, d.to_replicas, d.trigger)
    ('scale', 1, 2, 'metric')
    >>> d.reason
    'scale up 1 -> 2: metric 200 vs target 100 (ratio 2.00)'

The steps, in the HPA controller's order (``pkg/controller/podautoscaler``):

1. **owner**: a HorizontalPodAutoscaler or KEDA ScaledObject targets the Deployment
   -> ``skipped: owned by <kind>/<name>`` (never fight another controller);
2. **bounds**: a count outside ``[min_replicas, max_replicas]`` goes to the bound;
3. **recommendation**: metric ``ratio = metric / target`` (``average_value``:
   ``metric / (target x current)``); within ``tolerance`` (``|ratio - 1| <= tolerance``,
   so exactly 10 % is *no change*) the recommendation is the current count, else
   ``ceil(current x ratio)``. Alert-driven steps recommend ``current + up_pods`` while
   an ``up`` alert fires, ``current - down_pods`` while only ``down`` alerts do. With
   both, the higher recommendation wins (as the HPA across metrics);
4. **stabilization**: scaling up goes no higher than the *lowest* recommendation of the
   scale-up window, scaling down no lower than the *highest* of the scale-down window
   (the history holds the raw recommendations of earlier sweeps);
5. **step limits**: at most ``max_step_pods`` pods and/or ``max_step_percent`` % of the
   current count (rounded up) per action; with both, ``select_policy`` picks the larger
   (``max``, the HPA default) or the smaller (``min``) change;
6. **bounds** again, then **cooldown**: no action within ``cooldown`` seconds of the last one.

Every decision carries its trail (:attr:`ScaleDecision.steps`), its inputs and the
policy, so "no change" and "skipped" are explained as well as a scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mlinfra.config import Model, ScalingPolicy

Action = Literal["scale", "none", "skipped"]
Trigger = Literal["metric", "alert", "manual", "bounds"]

# |ratio - 1| is compared with a little slack: 110 / 100 is 1.1000000000000001 in
# binary floating point, and "exactly 10 % away" must read as inside a 10 % tolerance.
_TOLERANCE_SLACK = 1e-9


@dataclass(frozen=True)
class Recommendation:
    """A raw recommendation of an earlier sweep (what the stabilization windows look at)."""

    ts: float
    replicas: int


@dataclass(frozen=True)
class ScaleDecision:
    """What to do with one Deployment, and why.

    ``action`` is ``scale`` (``to_replicas`` differs from ``from_replicas``), ``none``
    or ``skipped`` (not ours to decide: another controller owns it, no cluster).
    ``recommendation`` is the raw recommendation kept for later stabilization
    (``None`` when there was no signal to recommend anything).
    """

    model: str
    at: float
    action: Action
    reason: str
    from_replicas: int | None
    to_replicas: int | None
    namespace: str = ""
    deployment: str = ""
    trigger: Trigger | None = None
    recommendation: int | None = None
    dry_run: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.action == "scale"

    @property
    def direction(self) -> str:
        if not self.changes or self.from_replicas is None or self.to_replicas is None:
            return "none"
        return "up" if self.to_replicas > self.from_replicas else "down"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: what ``decision`` holds in ``mlinfra_scale_events`` and XCom.

        Built field by field (``dataclasses.asdict`` deep-copies every nested value,
        which dominated planning 500 models).
        """
        out = {name: getattr(self, name) for name in _DECISION_FIELDS}
        out["inputs"] = dict(self.inputs)
        out["policy"] = dict(self.policy)
        out["steps"] = list(self.steps)
        return out


# dataclasses.fields() rebuilds its tuple on every call: once per decision was a tenth of a plan.
_DECISION_FIELDS = tuple(f.name for f in fields(ScaleDecision))


def _fmt(value: float) -> str:
    return f"{value:.6g}"


_policy_dicts: dict[int, tuple[ScalingPolicy, dict[str, Any]]] = {}


def _policy_dict(policy: ScalingPolicy) -> dict[str, Any]:
    # Policies are frozen and shared by every sweep of a process: dump each one once.
    hit = _policy_dicts.get(id(policy))
    if hit is None or hit[0] is not policy:
        if len(_policy_dicts) > 10_000:
            _policy_dicts.clear()
        hit = _policy_dicts[id(policy)] = (policy, policy.model_dump(mode="json"))
    return hit[1]


def skipped(
    model: str,
    at: float,
    reason: str,
    *,
    namespace: str = "",
    deployment: str = "",
    current: int | None = None,
) -> ScaleDecision:
    """A decision not to decide (another controller owns it, the cluster cannot be read)."""
    return ScaleDecision(
        model=model,
        at=at,
        action="skipped",
        reason=f"skipped: {reason}",
        from_replicas=current,
        to_replicas=current,
        namespace=namespace,
        deployment=deployment,
        steps=[f"skipped: {reason}"],
    )


def allowed_change(current: int, policy: ScalingPolicy) -> int | None:
    """Pods one action may add or remove (None: unlimited), as the HPA's Pods/Percent policies.

    >>> from mlinfra.config import ScalingPolicy
    >>> allowed_change(80, ScalingPolicy(min_replicas=1, max_replicas=100, max_step_pods=4, max_step_percent=10))
    8
    >>> allowed_change(72, ScalingPolicy(min_replicas=1, max_replicas=100, max_step_percent=10))  # 7.2 -> 8
    8
    """
    limits = []
    if policy.max_step_pods is not None:
        limits.append(policy.max_step_pods)
    if policy.max_step_percent is not None:
        limits.append(math.ceil(current * policy.max_step_percent / 100 - _TOLERANCE_SLACK))
    if not limits:
        return None
    return max(limits) if policy.select_policy == "max" else min(limits)


def metric_recommendation(policy: ScalingPolicy, current: int, metric: float) -> tuple[int, float, bool]:
    """(recommended replicas, usage ratio, within tolerance) for a metric reading."""
    target = policy.target
    if target is None:  # pragma: no cover - callers check
        raise ValueError("the policy has no metric target")
    if target.type == "average_value":
        ratio = metric / (target.value * current)
        raw = math.ceil(metric / target.value - _TOLERANCE_SLACK)
    else:
        ratio = metric / target.value
        raw = math.ceil(current * ratio - _TOLERANCE_SLACK)
    if abs(ratio - 1.0) <= policy.tolerance + _TOLERANCE_SLACK:
        return current, ratio, True
    return raw, ratio, False


def scale_signals(alerts: Iterable[Mapping[str, Any]], policy: ScalingPolicy) -> tuple[list[str], list[str]]:
    """Names of the firing ``up`` and ``down`` alerts among ``alerts`` (already the model's)."""
    steps = policy.alerts
    if steps is None:
        return [], []
    up, down = [], []
    for alert in alerts:
        labels = alert.get("labels") or {}
        name = str(alert.get("alertname") or labels.get("alertname") or "")
        if steps.alerts and name not in steps.alerts:
            continue
        direction = labels.get(steps.label)
        if direction == "up":
            up.append(name)
        elif direction == "down":
            down.append(name)
    return sorted(set(up)), sorted(set(down))


def decide(
    policy: ScalingPolicy,
    *,
    model: str,
    at: float,
    current: int,
    metric: float | None = None,
    metric_error: str | None = None,
    alerts: Sequence[Mapping[str, Any]] = (),
    history: Sequence[Recommendation] = (),
    last_action_at: float | None = None,
    owner: str | None = None,
    namespace: str = "",
    deployment: str = "",
) -> ScaleDecision:
    """Decide the replica count of one Deployment at ``at``; see the module docstring.

    :param current: the Deployment's ``spec.replicas`` now.
    :param metric: the target expression's value (None: no value; ``metric_error`` says why).
    :param alerts: the model's firing alerts (small dicts with ``alertname`` and ``labels``).
    :param history: raw recommendations of earlier sweeps (any order; older than the
        longer stabilization window, or not before ``at``, are ignored).
    :param last_action_at: time of the last scale action (for the cooldown).
    :param owner: ``Kind/name`` of another autoscaler targeting the Deployment.
    """
    inputs = _inputs(policy, current, metric, metric_error, alerts, last_action_at)
    d = _Decision(policy, model, at, current, namespace=namespace, deployment=deployment, inputs=inputs)
    early = _owner_and_bounds(d, owner)
    if early is not None:
        return early

    # 3. the raw recommendation of each signal; the higher one wins.
    candidates = [c for c in (_metric_candidate(d, metric, metric_error), _alert_candidate(d, alerts)) if c]
    if not candidates:
        return _no_signal(d)
    raw, trigger, why = max(candidates, key=lambda c: c[0])
    if len(candidates) > 1:
        d.steps.append(f"highest recommendation: {raw} ({trigger})")

    stabilized, up_rec, down_rec = _stabilize(d, raw, history)
    desired = _limit_and_clamp(d, stabilized)
    if desired == current:
        reason = _no_change_reason(d, raw, stabilized, up_rec, down_rec, why)
        return d.result("none", reason, current, trigger=trigger, recommendation=raw)
    if last_action_at is not None and 0 <= at - last_action_at < policy.cooldown:
        since = at - last_action_at
        d.steps.append(
            f"cooldown: last scale action {_fmt(since)}s ago, cooldown {_fmt(policy.cooldown)}s: hold {current}"
        )
        return d.result(
            "none",
            f"no change: cooldown ({_fmt(since)}s since the last scale action, cooldown "
            f"{_fmt(policy.cooldown)}s; wanted {desired})",
            current,
            trigger=trigger,
            recommendation=raw,
        )
    direction = "up" if desired > current else "down"
    return d.result(
        "scale",
        f"scale {direction} {current} -> {desired}: {why}",
        desired,
        trigger=trigger,
        recommendation=raw,
    )


# A signal's raw recommendation: (replicas, what triggered it, why, for the reason).
Candidate = tuple[int, Trigger, str]


@dataclass
class _Decision:
    """What every outcome of one :func:`decide` call shares, and its trail of steps so far."""

    policy: ScalingPolicy
    model: str
    at: float
    current: int
    namespace: str
    deployment: str
    inputs: dict[str, Any]
    steps: list[str] = field(default_factory=list)

    def result(
        self,
        action: Action,
        reason: str,
        to: int,
        *,
        trigger: Trigger | None = None,
        recommendation: int | None = None,
    ) -> ScaleDecision:
        return ScaleDecision(
            model=self.model,
            at=self.at,
            action=action,
            reason=reason,
            from_replicas=self.current,
            to_replicas=to,
            namespace=self.namespace,
            deployment=self.deployment,
            trigger=trigger,
            recommendation=recommendation,
            dry_run=self.policy.dry_run and action == "scale",
            inputs=self.inputs,
            policy=_policy_dict(self.policy),
            steps=self.steps,
        )


def _inputs(
    policy: ScalingPolicy,
    current: int,
    metric: float | None,
    metric_error: str | None,
    alerts: Sequence[Mapping[str, Any]],
    last_action_at: float | None,
) -> dict[str, Any]:
    """The decision's inputs as kept with it (JSON-safe: a non-finite metric as text)."""
    inputs: dict[str, Any] = {
        "current": current,
        "metric": metric if metric is None or math.isfinite(metric) else str(metric),
        "metric_error": metric_error,
        "alerts": [{"alertname": a.get("alertname"), "labels": dict(a.get("labels") or {})} for a in alerts],
        "last_action_at": last_action_at,
    }
    if policy.target is not None:
        inputs["target"] = {
            "expr": policy.target.expr,
            "value": policy.target.value,
            "type": policy.target.type,
        }
    return inputs


def _owner_and_bounds(d: _Decision, owner: str | None) -> ScaleDecision | None:
    """1-2: another controller's Deployment, a count outside the bounds, or zero replicas; else None."""
    current = d.current
    if owner:
        d.steps.append(f"owned by {owner}: mlinfra does not scale it")
        return d.result("skipped", f"skipped: owned by {owner}", current)
    low, high = d.policy.min_replicas, d.policy.max_replicas
    if current < low or current > high:
        bound = low if current < low else high
        d.steps.append(f"{current} replicas is outside the policy's {low}-{high}: go to {bound}")
        return d.result(
            "scale",
            f"scale {'up' if bound > current else 'down'} {current} -> {bound}: "
            f"outside the policy's bounds {low}-{high}",
            bound,
            trigger="bounds",
        )
    if current == 0:
        # As the HPA: a Deployment scaled to zero by hand stays there until scaled up by hand.
        d.steps.append("0 replicas: automatic scaling is off until someone scales it up")
        return d.result("none", "no change: scaled to zero (automatic scaling is off at 0 replicas)", 0)
    return None


def _metric_candidate(d: _Decision, metric: float | None, metric_error: str | None) -> Candidate | None:
    target, current = d.policy.target, d.current
    if target is None:
        return None
    if metric is None or not math.isfinite(metric):
        why = metric_error or ("no value" if metric is None else f"value {metric}")
        d.steps.append(f"metric: {why}: no recommendation")
        return None
    raw, ratio, within = metric_recommendation(d.policy, current, metric)
    d.inputs["ratio"] = ratio
    versus = f"metric {_fmt(metric)} vs target {_fmt(target.value)}"
    if within:
        tolerance = f"{d.policy.tolerance:.2f}"
        d.steps.append(f"{versus}: ratio {ratio:.2f} within tolerance {tolerance}: stay at {current}")
        return current, "metric", f"ratio {ratio:.2f} within tolerance {tolerance}"
    d.steps.append(f"{versus}: ratio {ratio:.2f} -> {raw}")
    return raw, "metric", f"{versus} (ratio {ratio:.2f})"


def _alert_candidate(d: _Decision, alerts: Sequence[Mapping[str, Any]]) -> Candidate | None:
    steps, current = d.policy.alerts, d.current
    if steps is None:
        return None
    up, down = scale_signals(alerts, d.policy)
    d.inputs["signals"] = {"up": up, "down": down}
    if up:
        rec = current + steps.up_pods
        d.steps.append(f"scale-up alerts firing ({', '.join(up)}): {current} + {steps.up_pods} = {rec}")
        return rec, "alert", f"alert {', '.join(up)}"
    if down:
        rec = current - steps.down_pods
        d.steps.append(f"scale-down alerts firing ({', '.join(down)}): {current} - {steps.down_pods} = {rec}")
        return rec, "alert", f"alert {', '.join(down)}"
    d.steps.append(f"no firing alert labelled {steps.label}=up|down for this model: stay at {current}")
    return current, "alert", "no scale alert firing"


def _no_signal(d: _Decision) -> ScaleDecision:
    what = (
        "no metric target or alert steps in the policy"
        if d.policy.target is None and d.policy.alerts is None
        else d.steps[-1]
    )
    if not d.steps:
        d.steps.append(what)
    return d.result("none", f"no change: no signal ({what})", d.current)


def _stabilize(d: _Decision, raw: int, history: Sequence[Recommendation]) -> tuple[int, int, int]:
    """4. stabilization (HPA's stabilizeRecommendationWithBehaviors): (stabilized, up_rec, down_rec)."""
    policy, current = d.policy, d.current
    up_rec = down_rec = raw
    for h in history:
        age = d.at - h.ts
        if age <= 0:
            continue
        if age < policy.scale_up_stabilization:
            up_rec = min(up_rec, h.replicas)
        if age < policy.scale_down_stabilization:
            down_rec = max(down_rec, h.replicas)
    stabilized = current
    if stabilized < up_rec:
        stabilized = up_rec
    if stabilized > down_rec:
        stabilized = down_rec
    if raw < current and stabilized > raw:
        d.steps.append(
            f"scale-down stabilization ({_fmt(policy.scale_down_stabilization)}s): highest recommendation "
            f"in the window is {down_rec}: {stabilized}"
        )
    if raw > current and stabilized < raw:
        d.steps.append(
            f"scale-up stabilization ({_fmt(policy.scale_up_stabilization)}s): lowest recommendation "
            f"in the window is {up_rec}: {stabilized}"
        )
    return stabilized, up_rec, down_rec


def _limit_and_clamp(d: _Decision, desired: int) -> int:
    """5. step limits, 6. bounds."""
    current, low, high = d.current, d.policy.min_replicas, d.policy.max_replicas
    limit = allowed_change(current, d.policy)
    if limit is not None and abs(desired - current) > limit:
        limited = current + limit if desired > current else current - limit
        d.steps.append(f"step limit: at most {limit} pod(s) per action: {desired} -> {limited}")
        desired = limited
    if desired > high or desired < low:
        clamped = min(max(desired, low), high)
        d.steps.append(f"clamped to the policy's {low}-{high}: {desired} -> {clamped}")
        desired = clamped
    return desired


def _no_change_reason(d: _Decision, raw: int, stabilized: int, up_rec: int, down_rec: int, why: str) -> str:
    """Why the count stays: the signal says so, a stabilization window holds it, or a bound."""
    current, policy = d.current, d.policy
    if raw == current:
        return f"no change: {why}"
    if raw < current and stabilized > raw:
        return (
            f"no change: scale-down to {raw} held by the {_fmt(policy.scale_down_stabilization)}s "
            f"stabilization window (highest recommendation {down_rec})"
        )
    if raw > current and stabilized < raw:
        return (
            f"no change: scale-up to {raw} held by the {_fmt(policy.scale_up_stabilization)}s "
            f"stabilization window (lowest recommendation {up_rec})"
        )
    return f"no change: {current} is already at the policy's bound ({why})"


# --------------------------------------------------------------------------- alerts -> models


def alert_matches_model(labels: Mapping[str, str], model: Model) -> bool:
    """Is an alert (its labels) about ``model``?

    By its ``model`` label (the fleet model's name), or by its ``deployment`` label
    naming the model's Deployment (and ``namespace``, when the alert carries one).
    An alert with neither label is about no model: it scales nothing.
    """
    if labels.get("model") == model.name:
        return True
    k = model.kubernetes
    if labels.get("deployment") == k.deployment:
        return labels.get("namespace", k.namespace) == k.namespace
    return False


def alerts_for_model(alerts: Iterable[Mapping[str, Any]], model: Model) -> list[Mapping[str, Any]]:
    """The alerts of ``alerts`` (XCom dicts with ``labels``) that are about ``model``."""
    return [a for a in alerts if alert_matches_model(a.get("labels") or {}, model)]
