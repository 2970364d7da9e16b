"""The deploy request: the ``model_deploy`` form's fields, validated once more in the first task.

The UI form (Airflow ``Param``\\ s, JSON Schema) is the first line; a CLI or API
trigger can send anything in ``--conf``, so :func:`validate_request` checks the
run's conf again against the fleet before anything touches the cluster::

    >>> from mlinfra.config import load_fleet
    >>> fleet = load_fleet()
    >>> validate_request({"model": "half-plus-two", "version": 2, "image_tag": "2.14.1"}, fleet).image
    'tensorflow/serving:2.14.1'
    >>> validate_request({"model": "half-plus-two", "version": 0, "image_tag": "x;rm"}, fleet)
    Traceback (most recent call last):
    ...
    mlinfra.exceptions.DeployRequestError: invalid deploy request:
      version: must be an integer >= 1, got 0
      image_tag: ...

:func:`form_params` builds the form from the fleet (DAG files call it at parse time:
it reads only the local, cached fleet file).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from mlinfra.exceptions import DeployRequestError
from mlinfra.forms import validate_model_conf

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model

# An OCI tag (distribution spec): at most 128 characters of [A-Za-z0-9_.-], not starting with . or -.
OCI_TAG = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
FIELDS = ("model", "version", "image_tag", "replicas", "run_smoke", "auto_rollback", "dry_run")


class DeployRequest(BaseModel):
    """One validated deploy: which model, which version, which image tag, how many replicas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=63)
    version: StrictInt = Field(ge=1, le=2**63 - 1)
    image_tag: str = Field(pattern=OCI_TAG)
    # None: keep the replica count the cluster runs now (the autoscaler's), or the
    # model's min_replicas (at least 1) for a first deploy.
    replicas: StrictInt | None = Field(default=None, ge=1)
    run_smoke: StrictBool = True
    auto_rollback: StrictBool = True
    dry_run: StrictBool = False
    # Filled in from the fleet by validate_request, never taken from the conf.
    image_repository: str = Field(default="", exclude=True)

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{self.image_tag}"


def replica_bounds(model: Model) -> tuple[int, int]:
    """The replicas a deploy may ask for: the scaling policy's range, at least 1."""
    return max(model.scaling.min_replicas, 1), max(model.scaling.max_replicas, 1)


def validate_request(conf: dict[str, Any] | None, fleet: Fleet) -> DeployRequest:
    """The run's conf as a :class:`DeployRequest`, or :class:`DeployRequestError` listing every problem."""
    request, model = validate_model_conf(
        conf,
        fleet,
        request_cls=DeployRequest,
        fields=FIELDS,
        describe=_describe,
        replica_range=replica_bounds,
        error_cls=DeployRequestError,
    )
    return request.model_copy(update={"image_repository": model.image.repository})


def _describe(err: Any) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "conf"
    got = err.get("input")
    kind = err["type"]
    if kind == "missing":
        return f"{field}: required"
    if field == "version":
        return f"version: must be an integer >= 1, got {got!r}"
    if field == "image_tag":
        return (
            f"image_tag: must be an OCI tag (letters, digits, '_', '.', '-'; at most 128; "
            f"not starting with '.' or '-'), got {got!r}"
        )
    if field == "replicas":
        return f"replicas: must be an integer >= 1 or null (keep the current count), got {got!r}"
    if field in ("run_smoke", "auto_rollback", "dry_run"):
        return f"{field}: must be true or false, got {got!r}"
    if field == "model":
        return f"model: must be a fleet model name, got {got!r}"
    return f"{field}: {err['msg']}, got {got!r}"


# --------------------------------------------------------------------------- the UI form


def model_label(model: Model) -> str:
    """What the form's model dropdown shows for ``model``."""
    low, high = replica_bounds(model)
    k = model.kubernetes
    gpus = f", {model.resources.gpus} GPU" if model.resources.gpus else ""
    return f"{model.name} ({k.namespace}/{k.deployment}, {low}-{high} replicas{gpus})"


def form_params(fleet: Fleet) -> dict[str, Any]:
    """The DAG's ``params``: Airflow ``Param``\\ s whose JSON Schema mirrors :class:`DeployRequest`.

    JSON Schema cannot bound ``replicas`` by the chosen model, so the form bounds it
    by the whole fleet and :func:`validate_request` applies the model's own range.
    """
    from airflow.sdk import Param

    names = fleet.model_names
    lows, highs = zip(*(replica_bounds(m) for m in fleet.models), strict=True)
    ranges = "; ".join(f"{m.name}: {'-'.join(map(str, replica_bounds(m)))}" for m in fleet.models)
    return {
        "model": Param(
            names[0],
            type="string",
            enum=names,
            values_display={m.name: model_label(m) for m in fleet.models},
            title="Model",
            description="The fleet model to deploy (include/fleet.yaml).",
        ),
        "version": Param(
            type="integer",
            minimum=1,
            title="Model version",
            description="The TF Serving model version to serve (a numbered directory under the model's base path).",
        ),
        "image_tag": Param(
            type="string",
            pattern=OCI_TAG,
            maxLength=128,
            title="Image tag",
            description="Tag of the TF Serving image; the repository comes from the fleet file.",
        ),
        "replicas": Param(
            None,
            type=["null", "integer"],
            minimum=min(lows),
            maximum=max(highs),
            title="Replicas",
            description=f"Empty keeps the current count. Allowed per model: {ranges}.",
        ),
        "run_smoke": Param(True, type="boolean", title="Run smoke predictions"),
        "auto_rollback": Param(True, type="boolean", title="Roll back automatically on failure"),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Render and show the diff; change nothing."
        ),
    }


def is_oci_tag(text: str) -> bool:
    return re.fullmatch(OCI_TAG, text) is not None
