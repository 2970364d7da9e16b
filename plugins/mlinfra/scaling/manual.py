"""A person's scale request: the ``model_scale`` form, validated again in the first task.

The form's JSON Schema bounds ``replicas`` by the whole fleet (a schema cannot depend
on the chosen model); :func:`validate_scale_request` applies the model's own policy
range before anything talks to the cluster::

    >>> validate_scale_request({"model": "half-plus-two", "replicas": 3, "reason": "launch"}, load_fleet())
    ScaleRequest(model='half-plus-two', replicas=3, reason='launch', dry_run=False)
    >>> validate_scale_request({"model": "half-plus-two", "replicas": 40, "reason": ""}, load_fleet())
    Traceback (most recent call last):
    ...
    mlinfra.exceptions.ScaleRequestError: invalid scale request:
      replicas: must be between 1 and 4 for model half-plus-two (its scaling policy), got 40
      reason: required: say why (it goes to the audit trail)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from mlinfra.exceptions import ScaleRequestError
from mlinfra.forms import validate_model_conf

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model

FIELDS = ("model", "replicas", "reason", "dry_run")
REASON_MAX = 500


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model: str = Field(min_length=1, max_length=63)
    replicas: StrictInt = Field(ge=0)
    reason: str = Field(min_length=1, max_length=REASON_MAX)
    dry_run: StrictBool = False


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
    return f"{field}: {err['msg']}, got {got!r}"


def form_params(fleet: Fleet) -> dict[str, Any]:
    """The ``model_scale`` DAG's ``params`` (the UI form), built from the fleet."""
    from airflow.sdk import Param

    names = fleet.model_names
    ranges = {m.name: replica_range(m) for m in fleet.models}
    allowed = "; ".join(f"{n}: {lo}-{hi}" for n, (lo, hi) in ranges.items())
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
        "replicas": Param(
            type="integer",
            minimum=min(lo for lo, _ in ranges.values()),
            maximum=max(hi for _, hi in ranges.values()),
            title="Replicas",
            description=f"The new replica count, within the model's scaling policy: {allowed}.",
        ),
        "reason": Param(
            type="string",
            minLength=1,
            maxLength=REASON_MAX,
            title="Reason",
            description="Why (required; kept in the audit trail, mlinfra_scale_events).",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Record the request; do not patch the cluster.",
        ),
    }
