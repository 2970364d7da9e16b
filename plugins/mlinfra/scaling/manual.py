"""A person's scale request: the ``model_scale`` form, validated again in the first task.

A JSON Schema cannot bound ``replicas`` by the model chosen in the same form, and a
fleet-wide ``maximum`` made the form change a typed 9 into 8 (the largest maximum of
any model) without a word. So the form only asks for an integer >= 0 and
:func:`validate_scale_request` applies the chosen model's own range, with a message
naming it, before anything talks to the cluster.

``hold`` (a duration, e.g. ``2h``) keeps the count for that long: the sweep's
autoscaler skips the model until then and says why (:func:`hold_until`,
:meth:`~mlinfra.scaling.records.ScaleRecords.active_holds`). Without a hold the
autoscaler may change the count again at its next sweep once the cooldown is over::

    >>> from mlinfra.config import load_fleet
    >>> validate_scale_request({"model": "half-plus-two", "replicas": 3, "reason": "launch"}, load_fleet())
    ScaleRequest(model='half-plus-two', replicas=3, reason='launch', dry_run=False, hold='')
    >>> validate_scale_request({"model": "half-plus-two", "replicas": 40, "reason": ""}, load_fleet())
    Traceback (most recent call last):
    ...
    mlinfra.exceptions.ScaleRequestError: invalid scale request:
      reason: required: say why (it goes to the audit trail)
      replicas: must be between 1 and 4 for model half-plus-two (its scaling policy in the fleet file), got 40
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from mlinfra.durations import format_duration, parse_duration
from mlinfra.exceptions import ScaleRequestError
from mlinfra.forms import validate_model_conf

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model

FIELDS = ("model", "replicas", "reason", "dry_run", "hold")
REASON_MAX = 500
# A hold is for an event (a launch, an incident), not a way to switch autoscaling off
# for good: that belongs in the fleet file, where it is reviewed.
HOLD_MAX_SECONDS = 7 * 86400.0


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model: str = Field(min_length=1, max_length=63)
    replicas: StrictInt = Field(ge=0)
    reason: str = Field(min_length=1, max_length=REASON_MAX)
    dry_run: StrictBool = False
    hold: str = ""  # a Prometheus duration; "" = no hold

    @field_validator("hold")
    @classmethod
    def _duration(cls, hold: str) -> str:
        if not hold:
            return ""
        seconds = parse_duration(hold)  # ValueError -> described by _describe
        if not 0 < seconds <= HOLD_MAX_SECONDS:
            raise ValueError(f"at most {format_duration(HOLD_MAX_SECONDS)}")
        return hold

    @property
    def hold_seconds(self) -> float:
        return parse_duration(self.hold) if self.hold else 0.0


def hold_until(request: ScaleRequest, at: float) -> float | None:
    """When a hold requested at ``at`` ends (None: no hold)."""
    return at + request.hold_seconds if request.hold else None


def replica_range(model: Model) -> tuple[int, int]:
    """What a person may set: the model's scaling policy's ``min_replicas``-``max_replicas``."""
    return model.scaling.min_replicas, model.scaling.max_replicas


def validate_scale_request(conf: dict[str, Any] | None, fleet: Fleet) -> ScaleRequest:
    """The run's conf as a :class:`ScaleRequest`, or :class:`ScaleRequestError` listing every problem."""
    request, _model = validate_model_conf(
        conf,
        fleet,
        request_cls=ScaleRequest,
        fields=FIELDS,
        describe=_describe,
        replica_range=replica_range,
        error_cls=ScaleRequestError,
    )
    return request


def _describe(err: Any) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "conf"
    got = err.get("input")
    if field == "reason":
        if err["type"] in ("missing", "string_too_short"):
            return "reason: required: say why (it goes to the audit trail)"
        return f"reason: must be text of at most {REASON_MAX} characters"
    if err["type"] == "missing":
        return f"{field}: required"
    if field == "replicas":
        return f"replicas: must be an integer >= 0, got {got!r}"
    if field == "dry_run":
        return f"dry_run: must be true or false, got {got!r}"
    if field == "model":
        return f"model: must be a fleet model name, got {got!r}"
    if field == "hold":
        return (
            "hold: must be empty (no hold) or a duration up to "
            f"{format_duration(HOLD_MAX_SECONDS)} such as 30m, 2h, 1d, got {got!r}"
        )
    return f"{field}: {err['msg']}, got {got!r}"


def form_params(fleet: Fleet) -> dict[str, Any]:
    """The ``model_scale`` DAG's ``params`` (the UI form), built from the fleet."""
    from airflow.sdk import Param

    names = fleet.model_names
    ranges = {m.name: replica_range(m) for m in fleet.models}
    allowed = "; ".join(f"{n}: {lo}-{hi}" for n, (lo, hi) in ranges.items())
    cooldowns = "; ".join(f"{m.name}: {format_duration(m.scaling.cooldown)}" for m in fleet.models)
    return {
        "model": Param(
            names[0],
            type="string",
            enum=names,
            values_display={
                m.name: f"{m.name} ({m.kubernetes.namespace}/{m.kubernetes.deployment}, "
                f"{ranges[m.name][0]}-{ranges[m.name][1]} replicas)"
                for m in fleet.models
            },
            title="Model",
            description="The fleet model to scale (include/fleet.yaml).",
        ),
        # No fleet-wide maximum here: the form would clamp a value to another model's
        # range. The first task checks the chosen model's own range and names it.
        "replicas": Param(
            type="integer",
            minimum=0,
            title="Replicas",
            description=f"The new replica count, within the chosen model's own scaling range: {allowed}. "
            "A count outside it is refused with that range; it is never changed for you.",
        ),
        "reason": Param(
            type="string",
            minLength=1,
            maxLength=REASON_MAX,
            title="Reason",
            description="Why (required; kept in the audit trail, mlinfra_scale_events).",
        ),
        "hold": Param(
            "",
            type="string",
            pattern=r"^$|^([0-9]+[smhdw])+$",
            title="Hold for",
            description="Keep this count for this long (e.g. 30m, 2h, 1d; at most "
            f"{format_duration(HOLD_MAX_SECONDS)}): the sweep's autoscaler skips the model until then "
            "and says so. Empty: no hold, and the autoscaler may change the count again at its next "
            f"sweep once the model's cooldown is over ({cooldowns}).",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Record the request; do not patch the cluster.",
        ),
    }
