"""``include/fleet.yaml`` -> validated, typed objects.

>>> fleet = load_fleet()                      # include/fleet.yaml, cached per process
>>> fleet.model("half-plus-two").serving.model_name
'half_plus_two'

A bad file raises :class:`~mlinfra.exceptions.FleetConfigError` listing every
problem with the file, the line, the field path and what would be accepted::

    include/fleet.yaml:41: models[1].scaling.max_replicas: must be >= min_replicas (2), got 1

How each problem is located and worded is :mod:`mlinfra.config_messages`'s.

The loader is cached by (path, mtime): DAG files may call it at parse time (a
local file, validated once), and a long-running dag-processor still sees edits.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlinfra.config_messages import FieldError, describe_error, line_index, named_pattern, problem_line
from mlinfra.deploy.canary.spec import AnalysisTemplate, DeployStrategy, canary_problem
from mlinfra.deploy.schema import DEFAULT_KUBERNETES_VERSION, kubernetes_version_problem
from mlinfra.durations import parse_duration
from mlinfra.exceptions import FleetConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FLEET_FILE = PROJECT_ROOT / "include" / "fleet.yaml"
FLEET_FILE_ENV = "MLINFRA_FLEET_FILE"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# A Service's name is a DNS-1035 label (it starts with a letter): the model's Service is
# named after its Deployment, so the Deployment's name must be one too.
DNS1035_LABEL = named_pattern(
    r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
    "a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a letter "
    "(the model's Service is named after its Deployment)",
)
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Kubernetes resource quantities: 500m, 2, 1.5, 4Gi, 512Mi, 1e3
K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$"
# An OCI repository without tag or digest: [registry[:port]/]path/component
OCI_REPOSITORY = r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
GRPC_TARGET = r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"
CONN_ID = r"^[A-Za-z0-9_.-]+$"


class _Strict(BaseModel):
    # allow_inf_nan=False: YAML's .inf / .nan would pass every "ge=0" bound (an infinite
    # retention, cooldown, SLO or price) and break the arithmetic done with them later.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)


Duration = Annotated[float, Field(ge=0)]


def _duration(value: Any) -> float:
    return parse_duration(value)


class KubernetesTarget(_Strict):
    conn_id: str = Field(default="kubernetes_default", pattern=CONN_ID)
    namespace: str = Field(pattern=DNS1123_LABEL)
    deployment: str = Field(pattern=DNS1035_LABEL)


# --------------------------------------------------------------------------- model artifacts

ArtifactScheme = Literal["s3", "gs", "pvc", "image"]
# One path segment of an object key or a file path: characters that mean the same in an
# S3/GCS key, a file path, a URI and a container argument (no '$(' expansion, quoting,
# percent-encoding or shell meaning).
_SEGMENT = r"[A-Za-z0-9._~+=,@-]+"
SEGMENT_RULE = "letters, digits and . _ ~ + = , @ - between single slashes; no '.' or '..' segments"
_RELATIVE = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
_BASE_PATH = re.compile(r"^(?P<scheme>[a-z0-9]+)://(?P<host>[^/]*)(?:/(?P<path>.*))?$")
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# https://cloud.google.com/storage/docs/buckets#naming
_GS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
BASE_PATH_FORMS = (
    "s3://<bucket>/<prefix>, gs://<bucket>/<prefix>, pvc://<claim>/<path>, "
    "or an absolute path inside the image (default: /models/<model_name>)"
)


@dataclass(frozen=True)
class ArtifactLocation:
    """Where a model's SavedModel versions are: ``<base>/<version>/saved_model.pb``.

    >>> loc = load_fleet().model("half-plus-two").serving.artifact
    >>> loc.scheme, loc.bucket_or_claim, loc.path
    ('image', None, '/models/half_plus_two')
    >>> ArtifactLocation("s3", "models", "prod/half_plus_two").version_uri(3)
    's3://models/prod/half_plus_two/3'

    ``path`` is the key prefix (``s3``, ``gs``; may be empty: the bucket's root), the
    path inside the claim's volume (``pvc``; may be empty), or the absolute path in
    the image (``image``: the model is baked in, today's behaviour).
    """

    scheme: ArtifactScheme
    bucket_or_claim: str | None
    path: str

    @property
    def base_uri(self) -> str:
        if self.scheme == "image":
            return self.path
        base = f"{self.scheme}://{self.bucket_or_claim}"
        return f"{base}/{self.path}" if self.path else base

    def version_uri(self, version: int) -> str:
        """The folder of one model version (TF Serving's layout: a number per version)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"a model version is an integer >= 1, got {version!r}")
        return f"{self.base_uri}/{version}"


def parse_model_base_path(text: str) -> ArtifactLocation:
    """``serving.model_base_path`` as an :class:`ArtifactLocation`; ValueError saying what is accepted."""
    problem = f"must be {BASE_PATH_FORMS}; got {text!r}"
    if text.startswith("/"):
        rest = text.rstrip("/")
        if not rest or not _RELATIVE.match(rest[1:]) or _dot_segments(rest[1:]):
            raise ValueError(f"{problem} (an absolute path: {SEGMENT_RULE})")
        return ArtifactLocation("image", None, rest)
    m = _BASE_PATH.match(text)
    if m is None:
        raise ValueError(problem)
    scheme, host, path = m["scheme"], m["host"], (m["path"] or "").rstrip("/")
    if scheme not in ("s3", "gs", "pvc"):
        raise ValueError(f"{problem} (unknown scheme {scheme}://)")
    if path and (not _RELATIVE.match(path) or _dot_segments(path)):
        after = "claim" if scheme == "pvc" else "bucket"
        raise ValueError(f"{problem} (the part after the {after}: {SEGMENT_RULE})")
    if scheme == "pvc":
        if len(host) > 253 or not re.match(DNS1123_SUBDOMAIN, host):
            raise ValueError(f"{problem} (the claim name must be a DNS-1123 subdomain, got {host!r})")
        return ArtifactLocation("pvc", host, path)
    bucket = _S3_BUCKET if scheme == "s3" else _GS_BUCKET
    if not bucket.match(host) or ".." in host:
        raise ValueError(f"{problem} (not a valid {scheme} bucket name: {host!r})")
    return ArtifactLocation("s3" if scheme == "s3" else "gs", host, path)


def _dot_segments(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


class ServingTarget(_Strict):
    """Where the model's TF Serving answers.

    ``grpc_target`` and ``rest_url`` are the in-cluster addresses; the Airflow
    connection ``conn_id`` (type ``tf_serving``) carries TLS material and may
    redirect both (a port-forward, the demo stand-in), so one fleet file serves
    every environment.
    """

    conn_id: str = Field(pattern=CONN_ID)
    model_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    grpc_target: str = Field(pattern=GRPC_TARGET)
    rest_url: str = Field(pattern=r"^https?://[^\s/]+(:[0-9]+)?/?$")
    signature_name: str = "serving_default"
    # Model artifacts (issue 10): see ArtifactLocation. None keeps today's behaviour,
    # versions baked into the image under /models/<model_name>.
    model_base_path: str | None = None
    # The Airflow connection the pre-flight reads s3:// or gs:// with (aws_default, ...).
    artifacts_conn_id: str | None = Field(default=None, pattern=CONN_ID)
    # A Secret in the model's namespace whose keys TF Serving gets as environment
    # variables (AWS_ACCESS_KEY_ID, ...): the Airflow connection never enters a manifest.
    credentials_secret: str | None = None

    @field_validator("model_base_path")
    @classmethod
    def _base_path_form(cls, value: str | None) -> str | None:
        if value is not None:
            parse_model_base_path(value)
        return value

    @field_validator("credentials_secret")
    @classmethod
    def _secret_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not re.match(DNS1123_SUBDOMAIN, value)):
            raise ValueError(
                "must be a Kubernetes Secret name (DNS-1123 subdomain: lowercase letters, digits, "
                f"'-' and '.', at most 253 characters), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _artifact_settings(self) -> ServingTarget:
        scheme = self.artifact.scheme
        if scheme in ("s3", "gs") and self.artifacts_conn_id is None:
            raise FieldError(
                ("artifacts_conn_id",),
                f"required with a model_base_path on {scheme}://: the Airflow connection the pre-flight "
                "reads the bucket with (e.g. aws_default, google_cloud_default)",
            )
        where = "a model_base_path inside the image" if scheme == "image" else "a pvc:// model_base_path"
        if scheme in ("pvc", "image"):
            for field, why in (
                ("artifacts_conn_id", "the pre-flight checks a claim through kubernetes.conn_id"),
                ("credentials_secret", "TF Serving needs no object-store credentials"),
            ):
                if getattr(self, field) is not None:
                    raise FieldError(
                        (field,), f"only used with s3:// or gs:// model_base_path; with {where} {why}"
                    )
        return self

    @property
    def artifact(self) -> ArtifactLocation:
        """Where this model's versions are (the image's /models/<model_name> by default)."""
        if self.model_base_path is None:
            return ArtifactLocation("image", None, f"/models/{self.model_name}")
        return parse_model_base_path(self.model_base_path)


class Image(_Strict):
    repository: str = Field(pattern=OCI_REPOSITORY)


class Resources(_Strict):
    cpu: str = Field(default="1", pattern=K8S_QUANTITY)
    memory: str = Field(default="2Gi", pattern=K8S_QUANTITY)
    gpus: int = Field(default=0, ge=0, le=16)


class SLO(_Strict):
    p99_latency_ms: float = Field(gt=0)
    error_rate: float = Field(default=0.01, ge=0, le=1)
    availability: float = Field(default=0.99, gt=0, le=1)


class MetricTarget(_Strict):
    """Scale on a metric: ``expr`` evaluated by the fleet's engine against ``value``.

    ``type`` says what the expression measures, as the HPA's metric targets do:

    * ``value`` (default): a per-replica figure (average GPU utilization, p99 latency):
      desired = ceil(current x metric / value);
    * ``average_value``: a total over all replicas (requests per second of the model):
      desired = ceil(metric / value), ``value`` being what one replica should carry.

    The expression must give one number: a scalar or a one-element vector.
    """

    expr: str = Field(min_length=1)
    value: float = Field(gt=0)
    type: Literal["value", "average_value"] = "value"


SCALE_LABEL = "mlinfra_scale"


class AlertSteps(_Strict):
    """Scale by a fixed step while alerts labelled ``<label>: up|down`` fire for the model.

    An alert is the model's when its ``model`` label is the fleet model's name, or its
    ``deployment`` label (and ``namespace``, when the alert has one) names the model's
    Deployment. Alerts without either label scale nothing. ``alerts`` narrows the
    signals to these alert names (empty: any alert carrying ``label``).
    """

    label: str = Field(default=SCALE_LABEL, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    alerts: list[str] = Field(default_factory=list)
    up_pods: int = Field(default=1, ge=1)
    down_pods: int = Field(default=1, ge=1)


class ScalingPolicy(_Strict):
    """How the sweep scales one model (an HPA's ``spec`` and ``behavior``, as fleet YAML).

    ``target`` (a metric) and ``alerts`` (alert-driven steps) may be used alone or
    together (the higher recommendation wins, as the HPA does across metrics); with
    neither, the policy only bounds manual scaling (the ``model_scale`` DAG).
    ``max_step_pods`` / ``max_step_percent`` limit one action like the HPA's
    ``Pods`` / ``Percent`` policies; with both, ``select_policy`` ``max`` (the HPA's
    default) allows the larger change, ``min`` the smaller.
    """

    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)
    target: MetricTarget | None = None
    alerts: AlertSteps | None = None
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_up_stabilization: Duration = 0.0
    scale_down_stabilization: Duration = 300.0
    max_step_pods: int | None = Field(default=None, ge=1)
    max_step_percent: float | None = Field(default=None, gt=0)
    select_policy: Literal["max", "min"] = "max"
    cooldown: Duration = 0.0
    dry_run: bool = False

    _durations = field_validator(
        "scale_up_stabilization", "scale_down_stabilization", "cooldown", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))

    @field_validator("max_replicas")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and value < low:
            raise ValueError(f"must be >= min_replicas ({low}), got {value}")
        return value

    @property
    def history_window(self) -> float:
        """Seconds of recommendation history the decision reads (the longer stabilization window)."""
        return max(self.scale_up_stabilization, self.scale_down_stabilization)


class Model(_Strict):
    name: str = Field(pattern=DNS1123_LABEL)
    kubernetes: KubernetesTarget
    serving: ServingTarget
    image: Image
    resources: Resources = Resources()
    smoke_file: str = Field(min_length=1)
    slo: SLO
    scaling: ScalingPolicy
    # rolling (default) or canary with steps (mlinfra.deploy.canary.spec).
    deploy: DeployStrategy = DeployStrategy()

    @field_validator("smoke_file")
    @classmethod
    def _smoke_file_inside_include(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(f"must be a path relative to include/, got {value!r}")
        return value


class Cost(_Strict):
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    gpu_hour: float = Field(ge=0)
    cpu_hour: float = Field(ge=0)


class StoreSettings(_Strict):
    retention: Duration = 30 * 86400.0

    _retention = field_validator("retention", mode="before")(classmethod(lambda cls, v: _duration(v)))


class RuleSettings(_Strict):
    engine: Literal["local", "prometheus"] = "local"
    prometheus_conn_id: str = Field(default="prometheus_default", pattern=CONN_ID)
    # Prometheus's --rules.alert.for-grace-period / --rules.alert.for-outage-tolerance:
    # how ``for`` clocks come back after a gap in evaluations (mlinfra.rules.alert_series).
    for_grace_period: Duration = 600.0
    outage_tolerance: Duration = 3600.0
    # A group not evaluated for more than this many of its intervals has had an outage: its
    # ``for`` clocks are restored from ALERTS_FOR_STATE as after a Prometheus restart.
    gap_intervals: float = Field(default=2.0, ge=1.0)

    _durations = field_validator("for_grace_period", "outage_tolerance", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


class GPUSettings(_Strict):
    """``gpu:`` in the fleet file: how the GPU collector names and samples what it reads."""

    # mlinfra: the ml_gpu_* names only; dcgm: the same samples also under dcgm-exporter's
    # names and labels (DCGM_FI_DEV_GPU_UTIL{gpu, UUID, modelName, Hostname, pod, ...}).
    metric_names: Literal["mlinfra", "dcgm"] = "mlinfra"
    # How long each sweep listens for XID events and spans the GPM activity samples.
    sample_window: Duration = Field(default=1.0, le=30.0)

    _sample_window = field_validator("sample_window", mode="before")(classmethod(lambda cls, v: _duration(v)))


class Fleet(_Strict):
    models: list[Model] = Field(min_length=1)
    cost: Cost
    store: StoreSettings = StoreSettings()
    rules: RuleSettings = RuleSettings()
    gpu: GPUSettings = GPUSettings()
    # Analysis templates the canary steps name (``analysis: <name>``).
    analyses: dict[str, AnalysisTemplate] = Field(default_factory=dict)
    # The cluster's Kubernetes minor: rendered manifests are validated against its API schema.
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    # Where the file came from; relative paths (smoke files) resolve against its folder.
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _known_kubernetes_version(cls, value: Any) -> Any:
        problem = kubernetes_version_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _unique_names(self, info: ValidationInfo) -> Fleet:
        seen: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.name in seen:
                raise FieldError(
                    ("models", i, "name"), f"duplicate model name {m.name!r} (also models[{seen[m.name]}])"
                )
            seen[m.name] = i
        deployments: dict[tuple[str, str], int] = {}
        for i, m in enumerate(self.models):
            key = (m.kubernetes.namespace, m.kubernetes.deployment)
            if key in deployments:
                raise FieldError(
                    ("models", i, "kubernetes", "deployment"),
                    f"deployment {key[0]}/{key[1]} is already used by models[{deployments[key]}]",
                )
            deployments[key] = i
        if not (info.context or {}).get("check_expressions", True):
            return self
        for i, m in enumerate(self.models):
            target = m.scaling.target
            if target is None:
                continue
            problem = _target_problem(self.rules.engine, target.expr)
            if problem:
                raise FieldError(("models", i, "scaling", "target", "expr"), problem)
        return self

    @model_validator(mode="after")
    def _canary_references(self, info: ValidationInfo) -> Fleet:
        check = (info.context or {}).get("check_expressions", True)
        engine = self.rules.engine
        found = canary_problem(
            [(i, m.deploy) for i, m in enumerate(self.models)],
            self.analyses,
            (lambda expr: _target_problem(engine, expr)) if check else None,
        )
        if found:
            raise FieldError(*found)
        return self

    def model(self, name: str) -> Model:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"no model {name!r} in the fleet; known: {', '.join(self.model_names)}")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def namespaces(self) -> dict[str, list[str]]:
        """Kubernetes connection id -> namespaces of the fleet on it (sorted, unique)."""
        out: dict[str, set[str]] = {}
        for m in self.models:
            out.setdefault(m.kubernetes.conn_id, set()).add(m.kubernetes.namespace)
        return {k: sorted(v) for k, v in out.items()}

    def include_path(self, relative: str) -> Path:
        base = self.source.parent if self.source else PROJECT_ROOT / "include"
        return base / relative


def _target_problem(engine: str, expr: str) -> str | None:
    """Why the fleet's engine cannot evaluate ``expr`` (its ``check``), or None.

    The check needs no store or server: the local engine compiles the expression,
    the Prometheus engine parses it.
    """
    # Imported here, not at the top: the DAG files import this module at parse time,
    # and the PromQL parser and compiler are only needed when a target has an expr.
    from mlinfra.promql.compile import compile_expr
    from mlinfra.promql.interface import QueryError
    from mlinfra.promql.parse import check_syntax

    try:
        if engine == "prometheus":
            check_syntax(expr)
        else:
            compile_expr(expr)
    except QueryError as e:
        return f"the {engine} engine cannot evaluate this expression: {e}"
    return None


# --------------------------------------------------------------------------- loading

_cache: dict[tuple[Path, bool], tuple[float, Fleet]] = {}
_YAMLLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_cache_lock = threading.Lock()


def fleet_file() -> Path:
    return Path(os.environ.get(FLEET_FILE_ENV) or DEFAULT_FLEET_FILE)


def load_fleet(path: str | os.PathLike[str] | None = None, *, check_expressions: bool = True) -> Fleet:
    """The validated fleet, parsed once per process and file version.

    ``check_expressions=False`` skips only asking the rule engine whether each scaling
    target expression is one it can evaluate. DAG files use it at parse time: that
    check loads the PromQL engine, and a typo in one model's expression must not make
    the deploy form vanish from the UI. Every task loads the fleet fully.
    """
    p = Path(path) if path is not None else fleet_file()
    try:
        mtime = p.stat().st_mtime
    except OSError as e:
        raise FleetConfigError(str(p), [f"cannot read the fleet file: {e.strerror}"]) from None
    with _cache_lock:
        hit = _cache.get((p, check_expressions))
        if hit and hit[0] == mtime:
            return hit[1]
        fleet = parse_fleet(p.read_text(encoding="utf-8"), source=p, check_expressions=check_expressions)
        _cache[(p, check_expressions)] = (mtime, fleet)
        return fleet


def parse_fleet(
    text: str, source: str | os.PathLike[str] = "fleet.yaml", *, check_expressions: bool = True
) -> Fleet:
    """Validate fleet YAML text; errors name ``source``, line and field path."""
    name = _display_path(source)
    try:
        # One parse (libyaml's, when PyYAML has it): the node tree gives the line numbers
        # for error messages and is then constructed into plain data.
        loader = _YAMLLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise FleetConfigError(f"{name}{where}", [f"not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise FleetConfigError(
            name, [f"must be a mapping with 'models' and 'cost', got {type(data).__name__}"]
        )
    lines = line_index(node)
    try:
        fleet = Fleet.model_validate(data, context={"check_expressions": check_expressions})
    except ValidationError as e:
        problems = [describe_error(err, lines, Fleet) for err in e.errors()]
        raise FleetConfigError(name, sorted(problems, key=problem_line)) from None
    return fleet.model_copy(update={"source": Path(source)})


def _display_path(source: str | os.PathLike[str]) -> str:
    p = Path(source)
    try:
        return str(p.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(p)
