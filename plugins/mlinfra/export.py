"""Export one sweep's samples to Prometheus: push to a Pushgateway, or render for a scrape.

A sweep's samples become one Pushgateway *group* (``job`` + ``instance``); a push
is a PUT, which replaces the whole group, so pushing the same sweep twice is
idempotent and series that disappeared from a sweep disappear from the gateway::

    from mlinfra.export import push_samples, push_from_connection, render_exposition

    push_samples(samples, gateway="http://pushgateway:9091")   # -> number of samples pushed
    push_from_connection(samples)   # reads Airflow connection "prometheus_pushgateway"; None = not configured
    body = render_exposition(samples)   # Prometheus text format, for a /metrics endpoint

Samples are exported untyped (a :class:`~mlinfra.samples.Sample` does not say
whether it is a gauge or a counter) and without timestamps: the Pushgateway
rejects pushed samples that carry one, and a scrape stamps them anyway.
"""

from __future__ import annotations

import logging
import re
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from mlinfra.connections import get_connection
from mlinfra.exceptions import ExportError
from mlinfra.redaction import redact_url
from mlinfra.samples import Sample, is_stale_nan

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DEFAULT_CONN_ID",
    "DEFAULT_INSTANCE",
    "DEFAULT_JOB",
    "SampleCollector",
    "push_from_connection",
    "push_samples",
    "render_exposition",
    "sample_registry",
]

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "prometheus_pushgateway"
DEFAULT_JOB = "mlinfra_sweep"
# The grouping key must not depend on which worker ran the sweep: with several Celery
# workers (or one pod per task) a per-host group would leave a stale copy of every
# series behind on the gateway for each worker, for ever.
DEFAULT_INSTANCE = "mlinfra"
# Labels the push's grouping key sets on every series; a sample's own label of the
# same name is kept as exported_<name>, as Prometheus does on a scrape.
GROUPING_LABELS = ("job", "instance")
PUSH_ATTEMPTS = 3

# The classic (pre-UTF-8) Prometheus character sets: what the Pushgateway 1.x and
# Prometheus 2.x accept. Colons are legal in metric names (TF Serving's
# ":tensorflow:serving:request_count") but not in label names.
_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _exported_name(label: str, taken: Iterable[str]) -> str:
    """``exported_<label>``, prefixed again while that name is also taken (Prometheus's rule)."""
    taken = set(taken)
    name = f"exported_{label}"
    while name in taken:
        name = f"exported_{name}"
    return name


class SampleCollector(Collector):
    """A ``prometheus_client`` collector serving a fixed list of samples.

    Samples are grouped into one untyped family per metric name. Samples that
    Prometheus would reject (invalid metric or label name) are skipped with one
    warning per metric name; for duplicate series the last sample wins. Labels in
    ``reserved_labels`` are renamed ``exported_<label>``.

    >>> c = SampleCollector([Sample(":tensorflow:serving:request_count", {"job": "tfs"}, 3)])
    >>> c.exported, [s.labels for f in c.collect() for s in f.samples]
    (1, [{'exported_job': 'tfs'}])
    """

    def __init__(self, samples: Iterable[Sample], *, reserved_labels: Sequence[str] = GROUPING_LABELS):
        skipped: Counter[tuple[str, str]] = Counter()
        series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for sample in samples:
            if is_stale_nan(sample.value):
                # A series that went stale is simply left out: each push replaces the whole
                # group, so it is gone from the Pushgateway. The text format has no marker:
                # it would travel as a plain NaN, a value Prometheus would keep showing.
                continue
            problem = self._problem(sample)
            if problem:
                skipped[(sample.name, problem)] += 1
                continue
            labels = dict(sample.labels)
            for label in reserved_labels:
                if label in labels:
                    labels[_exported_name(label, labels)] = labels.pop(label)
            series[(sample.name, tuple(sorted(labels.items())))] = sample.value
        for (name, problem), count in skipped.items():
            log.warning("Export skipped %d sample(s) of %r: %s", count, name, problem)
        self.skipped = sum(skipped.values())

        families: dict[str, Metric] = {}
        for (name, label_pairs), value in series.items():
            if name not in families:
                # A fixed HELP per name: the Pushgateway refuses a push whose HELP
                # differs from the same metric's HELP in another group.
                families[name] = Metric(name, f"{name} (exported by mlinfra)", "unknown")
            families[name].add_sample(name, dict(label_pairs), value)
        self._families = list(families.values())
        self.exported = len(series)

    @staticmethod
    def _problem(sample: Sample) -> str | None:
        if not _METRIC_NAME_RE.match(sample.name):
            return "invalid metric name (allowed: [a-zA-Z_:][a-zA-Z0-9_:]*)"
        for label in sample.labels:
            if not _LABEL_NAME_RE.match(label):
                return f"invalid label name {label!r} (allowed: [a-zA-Z_][a-zA-Z0-9_]*)"
            if label.startswith("__"):
                return f"label name {label!r} is reserved (starts with '__')"
        return None

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def sample_registry(
    samples: Iterable[Sample], *, reserved_labels: Sequence[str] = GROUPING_LABELS
) -> tuple[CollectorRegistry, SampleCollector]:
    """A fresh registry holding only ``samples`` (never the process-wide default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = SampleCollector(samples, reserved_labels=reserved_labels)
    registry.register(collector)
    return registry, collector


def render_exposition(samples: Iterable[Sample]) -> bytes:
    """The samples in the Prometheus text format (serve with ``CONTENT_TYPE_LATEST``).

    >>> print(render_exposition([Sample("ml_cpu_usage_percent", {"host": "a"}, 12.5)]).decode(), end="")
    # HELP ml_cpu_usage_percent ml_cpu_usage_percent (exported by mlinfra)
    # TYPE ml_cpu_usage_percent untyped
    ml_cpu_usage_percent{host="a"} 12.5
    """
    registry, _ = sample_registry(samples)
    return generate_latest(registry)


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying: the gateway was unreachable, timed out, overloaded or behind a failing proxy."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in (429, 500, 502, 503, 504)
    return isinstance(exc, OSError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        try:
            body = exc.read().decode("utf-8", "replace").strip()
        except OSError:
            body = ""
        return f"HTTP {exc.code} {exc.reason}" + (f": {body[:500]}" if body else "")
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def push_samples(
    samples: Iterable[Sample],
    *,
    gateway: str,
    job: str = DEFAULT_JOB,
    instance: str | None = None,
    timeout: float = 10,
    auth: tuple[str, str] | None = None,
    attempts: int = PUSH_ATTEMPTS,
) -> int:
    """Replace the Pushgateway group ``{job, instance}`` with ``samples``; return how many were pushed.

    ``gateway`` is the base URL (``http://host:9091``); ``instance`` defaults to
    :data:`DEFAULT_INSTANCE` (the same on every worker, so each sweep replaces the
    last); ``auth`` is ``(username, password)`` for basic auth. Connection
    errors, timeouts and 429/500/502/503/504 answers are retried (``attempts`` in all, short
    backoff); a final failure, or any other refusal (400: inconsistent metrics),
    raises :class:`~mlinfra.exceptions.ExportError` naming the gateway and status.

    >>> push_samples(samples, gateway="http://127.0.0.1:9091", instance="sweep-host")  # doctest: +SKIP
    42
    """
    instance = instance or DEFAULT_INSTANCE
    registry, collector = sample_registry(samples)
    handler: Callable[..., Callable[[], None]] = default_handler
    if auth is not None:
        handler = partial(basic_auth_handler, username=auth[0], password=auth[1])
    where = redact_url(gateway)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "Push to %s failed (attempt %d of %d): %s; retrying",
            where,
            state.attempt_number,
            attempts,
            _describe(exc) if exc else "?",
        )

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=0.25, max=2),
        retry=retry_if_exception(_is_transient),
        reraise=True,
        before_sleep=before_sleep,
    )
    try:
        retrying(
            push_to_gateway,
            gateway,
            job=job,
            registry=registry,
            grouping_key={"instance": instance},
            timeout=timeout,
            handler=handler,
        )
    except OSError as exc:  # urllib's URLError/HTTPError, timeouts, refused connections
        raise ExportError(
            f"Pushgateway {where} (job={job!r}, instance={instance!r}): {_describe(exc)}"
        ) from exc
    log.info(
        "Pushed %d sample(s) to %s as job=%s instance=%s (%d skipped)",
        collector.exported,
        where,
        job,
        instance,
        collector.skipped,
    )
    return collector.exported


def push_from_connection(samples: Iterable[Sample], conn_id: str = DEFAULT_CONN_ID) -> int | None:
    """Push ``samples`` to the Pushgateway of Airflow connection ``conn_id``.

    Returns ``None`` (export skipped) when the connection does not exist, else the
    number of samples pushed. The connection gives the schema (``http``/``https``,
    default ``http``), host, port and optional login/password (basic auth); its
    extras may set ``job``, ``instance`` and ``timeout``::

        AIRFLOW_CONN_PROMETHEUS_PUSHGATEWAY='{"conn_type": "http", "host": "pushgateway",
            "port": 9091, "extra": {"job": "mlinfra_sweep", "instance": "prod"}}'
    """
    conn = get_connection(conn_id)
    if conn is None:
        log.info("Connection %r is not defined: Pushgateway export skipped", conn_id)
        return None
    from mlinfra.hooks.extras import http_base_url, timeout_setting

    extras: Mapping[str, Any] = conn.extra_dejson or {}
    gateway = http_base_url(conn, conn_id=conn_id, what="the Pushgateway", error=ExportError)
    auth = (conn.login, conn.password or "") if conn.login else None
    parts = urlsplit(gateway)
    if parts.username is not None:
        # A pasted URL with credentials: urllib cannot send them (it takes "user:pw@host"
        # for the host name), so they become basic auth unless the login is set.
        auth = auth or (unquote(parts.username), unquote(parts.password or ""))
        gateway = redact_url(gateway)
    return push_samples(
        samples,
        gateway=gateway,
        job=str(extras.get("job") or DEFAULT_JOB),
        instance=str(extras["instance"]) if extras.get("instance") else None,
        timeout=timeout_setting(None, extras, conn_id=conn_id, default=10.0, error=ExportError),
        auth=auth,
    )
