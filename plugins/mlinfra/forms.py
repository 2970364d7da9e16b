"""What the UI-triggered DAGs (``model_deploy``, ``model_scale``) share about their forms.

Airflow validates a form against its JSON Schema, but a CLI or API trigger can carry
anything, and JSON Schema cannot bound ``replicas`` by the model chosen in the same
form. :func:`validate_model_conf` is the first task's check: every problem is listed
at once, before anything touches the cluster::

    request, model = validate_model_conf(
        conf, fleet, request_cls=ScaleRequest, fields=FIELDS, describe=_describe,
        replica_range=replica_range, error_cls=ScaleRequestError,
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from mlinfra.config import Fleet, Model

RequestT = TypeVar("RequestT", bound=BaseModel)


def validate_model_conf(
    conf: Any,
    fleet: Fleet,
    *,
    request_cls: type[RequestT],
    fields: Sequence[str],
    describe: Callable[[Any], str],
    replica_range: Callable[[Model], tuple[int, int]],
    error_cls: Callable[[list[str]], Exception],
) -> tuple[RequestT, Model]:
    """The conf as ``request_cls`` plus its fleet model, or ``error_cls(problems)``.

    ``describe`` turns one pydantic error into a line naming the parameter and what is
    accepted; ``replica_range`` gives the chosen model's allowed ``replicas``.
    """
    if not isinstance(conf, dict):
        raise error_cls([f"conf must be a JSON object with {', '.join(fields)}, got {conf!r}"])
    problems: list[str] = []
    unknown = sorted(set(conf) - set(fields))
    if unknown:
        problems.append(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(fields)}"
        )
    known = {k: v for k, v in conf.items() if k in fields}
    request: RequestT | None = None
    try:
        request = request_cls.model_validate(known)
    except ValidationError as e:
        problems.extend(describe(err) for err in e.errors())
    model = None
    name = known.get("model")
    if isinstance(name, str):
        try:
            # Exact names only: a padded name that passed here would reach later tasks
            # (and templates) unstripped and fail there, after the cluster was touched.
            model = fleet.model(name)
        except KeyError:
            if not any(p.startswith("model:") for p in problems):
                problems.append(f"model: must be one of {', '.join(fleet.model_names)}, got {name!r}")
    replicas = known.get("replicas")
    if model is not None and isinstance(replicas, int) and not isinstance(replicas, bool):
        low, high = replica_range(model)
        if not low <= replicas <= high:
            problems.append(
                f"replicas: must be between {low} and {high} for model {model.name} "
                f"(its scaling policy in the fleet file), got {replicas}"
            )
    if problems or request is None or model is None:
        raise error_cls(problems or ["model: required"])
    return request, model


def triggered_by(context: Any) -> str:
    """Who started the run: the UI/API user, else the run type (``scheduled``, ``backfill``)."""
    dag_run = context["dag_run"]
    return str(
        getattr(dag_run, "triggering_user_name", None) or getattr(dag_run, "run_type", "") or "unknown"
    )
