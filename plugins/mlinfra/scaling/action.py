"""What one scale task does, decided from what it reads: a pure function, no Kubernetes.

:class:`~mlinfra.operators.scale.ScaleDeploymentOperator` reads the Deployment's
owners and its live replica count, asks these functions what to do, and does it::

    >>> request = scale_request(replicas="4", from_replicas="2", trigger="metric", reason="load")
    >>> ownership_verdict(request, where="serving/m", owner=None) is None
    True
    >>> a = scale_action(request, where="serving/m", live=2, dry_run=False)
    >>> (a.outcome, a.before, a.patch)
    ('patched', 2, True)
    >>> scale_action(request, where="serving/m", live=3, dry_run=False).outcome
    'superseded'

The rules:

* an HPA or KEDA ScaledObject owns the Deployment: ``skipped``; a person's request
  (trigger ``manual``) is refused instead, naming the owner to change;
* a manual scale holds the count (:func:`hold_verdict`): ``superseded`` for the autoscaler;
* the sweep's decision saw ``from_replicas`` but the live count is neither that nor the
  target: someone else scaled it meanwhile, ``superseded`` (left alone);
* ``dry_run``: ``dry_run`` recorded, nothing patched;
* otherwise ``patched``: patch when the live count differs from the target, else only
  wait (a retry finds the count already set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mlinfra.exceptions import ScaleRequestError
from mlinfra.templated import parse_int, parse_optional_int
from mlinfra.timestamps import rfc3339

TRIGGERS = ("metric", "alert", "manual", "bounds")

Outcome = Literal["skipped", "superseded", "dry_run", "patched"]


@dataclass(frozen=True)
class ScaleRequest:
    """A scale task's parameters, checked: ``replicas`` and ``from_replicas`` as ints."""

    replicas: int
    from_replicas: int | None
    trigger: str
    reason: str


@dataclass(frozen=True)
class ScaleAction:
    """What to do and what to record.

    :ivar outcome: the audit's outcome.
    :ivar before: the audit's "from" count (``None``: not known yet; the patch tells).
    :ivar message: why, for the log and the audit.
    :ivar patch: patch ``spec.replicas`` (``False``: the count is already right, or no write).
    :ivar refuse: fail the task without retry (a person's request for an owned Deployment).
    :ivar hint: what the person can do instead (with ``refuse``).
    """

    outcome: Outcome
    before: int | None
    message: str
    patch: bool = False
    refuse: bool = False
    hint: str = ""


def scale_request(*, replicas: Any, from_replicas: Any, trigger: Any, reason: Any) -> ScaleRequest:
    """Check templated parameters; raises :class:`ScaleRequestError` naming each bad one."""
    problems: list[str] = []
    if trigger not in TRIGGERS:
        problems.append(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    target: int | None = None
    planned: int | None = None
    try:
        target = parse_int("replicas", replicas, minimum=0)
    except ValueError as e:
        problems.append(str(e))
    try:
        planned = parse_optional_int("from_replicas", from_replicas, minimum=0)
    except ValueError as e:
        problems.append(str(e))
    if not str(reason or "").strip():
        problems.append("reason is required: say why (it goes to the audit trail)")
    if problems or target is None:
        raise ScaleRequestError(problems)
    return ScaleRequest(replicas=target, from_replicas=planned, trigger=str(trigger), reason=str(reason))


def ownership_verdict(request: ScaleRequest, *, where: str, owner: str | None) -> ScaleAction | None:
    """``skipped`` (or refused, for a person's request) when another controller owns the Deployment."""
    if not owner:
        return None
    message = f"{where} is owned by {owner}: mlinfra does not scale it"
    if request.trigger == "manual":
        kind = owner.split("/")[0]
        return ScaleAction(
            "skipped",
            request.from_replicas,
            message,
            refuse=True,
            hint=f"change the {kind}'s bounds instead, or remove it",
        )
    return ScaleAction("skipped", request.from_replicas, message)


def hold_verdict(request: ScaleRequest, *, where: str, hold: dict[str, Any] | None) -> ScaleAction | None:
    """``superseded`` when a manual scale holds the count (the autoscaler must not undo it).

    The sweep that planned this decision may still have been running when a person
    scaled by hand with a hold: the hold is checked again when the task runs. A manual
    request is the hold's own kind and is never held back by one.

    >>> r = scale_request(replicas=1, from_replicas=2, trigger="metric", reason="idle")
    >>> hold_verdict(r, where="serving/m", hold={"replicas": 2, "until": 0.0, "run_id": "manual__x"}).message
    'serving/m is held at 2 replicas by a manual scale until 1970-01-01T00:00:00Z (run manual__x): left alone'
    """
    if not hold or request.trigger == "manual":
        return None
    message = (
        f"{where} is held at {hold['replicas']} replicas by a manual scale until "
        f"{rfc3339(float(hold['until']))} (run {hold['run_id']}): left alone"
    )
    return ScaleAction("superseded", request.from_replicas, message)


def scale_action(request: ScaleRequest, *, where: str, live: int, dry_run: bool) -> ScaleAction:
    """What to do with a Deployment at ``live`` replicas (no other controller owns it)."""
    planned, target = request.from_replicas, request.replicas
    if planned is not None and live not in (planned, target):
        return ScaleAction(
            "superseded", live, f"{where} has {live} replicas, not the {planned} the decision saw: left alone"
        )
    # A retry after the patch sees the target live; the audit keeps the count the decision saw.
    before = planned if planned is not None and live == target else live
    if dry_run:
        return ScaleAction(
            "dry_run", before, f"dry run: would scale {where} {before} -> {target} ({request.reason})"
        )
    if live != target:
        return ScaleAction(
            "patched", before, f"patch {where} {before} -> {target} ({request.reason})", patch=True
        )
    return ScaleAction("patched", before, f"{where} already has {target} replicas (a retry?): only waiting")


WAIT_OUTCOMES = {"success": "available", "superseded": "superseded", "timeout": "timeout"}


def wait_outcome(status: Any) -> str:
    """The audit outcome of the trigger's event status (anything unknown is ``failed``)."""
    return WAIT_OUTCOMES.get(str(status), "failed")
