"""Trigger forms prefilled with where a model stands: the fleet page's Deploy, Scale and Roll back.

Airflow 3.3's trigger dialog cannot be prefilled from a URL: its React UI has no
trigger route and reads no ``conf`` query parameter (checked in the installed
``airflow/ui/dist`` bundle: its routes are ``dags/:dagId``, ``.../runs/:runId`` and
the like, and the only prefill is "Trigger again with config" from an existing run).
So the fleet page opens its own small form for one DAG and one model, filled with
the model's current version, image tag and replicas from the same snapshot the page
shows. Submitting it posts the conf to Airflow's own REST API
(``POST /api/v2/dags/{dag_id}/dagRuns``) with the browser's Airflow session: Airflow
checks the user's permission and validates the conf against the DAG's params exactly
as for its own dialog, and the DAG's first task checks it again.

>>> [f.name for f in form_fields("model_scale", view, model)]  # doctest: +SKIP
['model', 'replicas', 'reason', 'hold', 'dry_run']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mlinfra.durations import format_duration

if TYPE_CHECKING:
    from mlinfra.config import Model

FieldType = Literal["string", "integer", "boolean", "fixed"]
# The DAGs the fleet page offers per model, with the button's label.
TRIGGER_DAGS = {"model_deploy": "Deploy", "model_scale": "Scale", "model_rollback": "Roll back"}


@dataclass(frozen=True)
class FormField:
    """One input of a prefilled trigger form (``fixed``: shown, sent, not editable)."""

    name: str
    label: str
    type: FieldType
    value: Any
    help: str = ""
    required: bool = False
    optional_integer: bool = False  # empty = not sent (the DAG's own default applies)


def image_tag(image: str | None) -> str | None:
    """The tag of an image reference (``tensorflow/serving:2.14.1`` -> ``2.14.1``), None without one."""
    if not image:
        return None
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def form_fields(dag_id: str, view: Mapping[str, Any], model: Model) -> list[FormField]:
    """The form of ``dag_id`` for ``model``, prefilled from its fleet-page ``view``.

    Raises ``KeyError`` for a DAG the fleet page does not offer.
    """
    if dag_id not in TRIGGER_DAGS:
        raise KeyError(dag_id)
    version = view.get("deployed_version")
    tag = image_tag(view.get("image"))
    replicas = (view.get("replicas") or {}).get("desired")
    low, high = model.scaling.min_replicas, model.scaling.max_replicas
    now = f"now: version {version if version is not None else 'unknown'}, tag {tag or 'unknown'}, {replicas if replicas is not None else 'unknown'} replicas"
    head = [FormField("model", "Model", "fixed", model.name, now)]
    if dag_id == "model_deploy":
        return head + [
            FormField(
                "version",
                "Model version",
                "integer",
                version,
                f"currently serving {version}; a new version is usually the next number"
                if version is not None
                else "no version recorded yet",
                required=True,
            ),
            FormField(
                "image_tag",
                "Image tag",
                "string",
                tag or "",
                f"{model.image.repository}:<tag>; currently {tag}"
                if tag
                else f"{model.image.repository}:<tag>",
                required=True,
            ),
            FormField(
                "replicas",
                "Replicas",
                "integer",
                replicas,
                f"{low}-{high} for this model; empty keeps the current count",
                optional_integer=True,
            ),
            FormField("run_smoke", "Run smoke predictions", "boolean", True),
            FormField("auto_rollback", "Roll back automatically on failure", "boolean", True),
            FormField("dry_run", "Dry run", "boolean", False, "render and show the diff; change nothing"),
        ]
    if dag_id == "model_scale":
        return head + [
            FormField(
                "replicas",
                "Replicas",
                "integer",
                replicas,
                f"{low}-{high} for this model (its scaling policy); currently {replicas}",
                required=True,
            ),
            FormField("reason", "Reason", "string", "", "why: kept in the audit trail", required=True),
            FormField(
                "hold",
                "Hold for",
                "string",
                "",
                "e.g. 2h: the autoscaler leaves this count alone until then. Empty: it may change it "
                f"again at its next sweep once the cooldown ({format_duration(model.scaling.cooldown)}) is over",
            ),
            FormField("dry_run", "Dry run", "boolean", False, "record the request; do not patch the cluster"),
        ]
    return head + [
        FormField(
            "version",
            "Version to go back to",
            "integer",
            None,
            "empty: the version before the current one, as recorded by the last successful deploy",
            optional_integer=True,
        ),
        FormField("reason", "Reason", "string", "", "why: kept in the audit trail", required=True),
    ]
