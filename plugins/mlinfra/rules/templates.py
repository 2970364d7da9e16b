"""Prometheus alert templates: Go's ``text/template`` language with Prometheus 2.42's functions.

Labels and annotations of alerting rules are templates evaluated per alert, with
the same variables, functions and output as Prometheus::

    tmpl = parse_template('{{ $labels.instance }} at {{ $value | humanizePercentage }}')
    tmpl.render(TemplateData(labels={"instance": "gpu-3"}, value=0.9712))
    # 'gpu-3 at 97.12%'

    tmpl = parse_template('''{{ if gt $value 90.0 }}critical{{ else }}warm{{ end }}:
    {{- range $i, $s := query "ml_gpu_temperature_celsius > 80" }} {{ $s.Labels.gpu_id }}{{ end }}''')
    tmpl.render(TemplateData(value=91.0, query=lambda expr: engine_samples(expr)))

The whole language (Go 1.19, Prometheus 2.42's build): ``if``/``else if``/``else``,
``range`` (``$i, $v :=``, ``break``, ``continue``, ``else``), ``with``, variables
(``:=``, ``=``), pipelines, ``define``/``template``/``block``, the builtins ``and or
not len index slice print printf println html js urlquery eq ne lt le gt ge``, and
Prometheus's ``query first label value strvalue sortByLabel args reReplaceAll match
safeHtml title toUpper toLower stripPort graphLink tableLink humanize humanize1024
humanizeDuration humanizePercentage humanizeTimestamp toTime parseDuration
externalURL pathPrefix``, with ``$labels``, ``$value``, ``$externalLabels``,
``$externalURL`` (and the dot forms ``.Labels``, ``.Value``, ...).

A template that does not parse is refused at rule-file load (:class:`TemplateError`).
One that fails while rendering renders as Prometheus's ``<error expanding template:
...>`` text, the same message Prometheus gives, so the alert itself still goes out.
No Python ``eval`` is involved: :mod:`gotemplate_lex`, :mod:`gotemplate_parse` and
:mod:`gotemplate_exec` are a lexer, a parser and an evaluator of the Go language.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mlinfra.exceptions import MlinfraError
from mlinfra.rules.gofmt import go_sprintf
from mlinfra.rules.gotemplate_builtins import BUILTINS
from mlinfra.rules.gotemplate_exec import GoStruct, GoTemplateExecError, execute
from mlinfra.rules.gotemplate_lex import TextNode, Tree
from mlinfra.rules.gotemplate_parse import GoTemplateSyntaxError, parse_go_template
from mlinfra.rules.template_functions import (
    FUNCTION_NAMES,
    humanize,
    humanize1024,
    humanize_duration,
    humanize_percentage,
    humanize_timestamp,
    prometheus_functions,
)

__all__ = [
    "Template",
    "TemplateData",
    "TemplateError",
    "TemplateExecError",
    "go_sprintf",
    "humanize",
    "humanize1024",
    "humanize_duration",
    "humanize_percentage",
    "humanize_timestamp",
    "parse_template",
]


class TemplateError(MlinfraError):
    """A template does not parse (raised at load time)."""


class TemplateExecError(MlinfraError):
    """A template failed while rendering (rendered as ``<error expanding template: ...>``)."""


QueryFunc = Callable[[str], Sequence[tuple[Mapping[str, str], float]]]


@dataclass(frozen=True)
class TemplateData:
    """What a template sees: Prometheus's ``AlertTemplateData``, and the engine ``query`` uses.

    ``query`` takes a PromQL expression and returns ``(labels, value)`` pairs at the
    evaluation time (a scalar is one pair with no labels); it raises on a query error.
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""
    query: QueryFunc | None = field(default=None, compare=False)


# Prometheus prepends these to every alert template (rules/alerting.go), so their
# positions count in error messages and the variables behave as any other.
HEADER = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}"
    "{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)
_FUNCTION_NAMES = frozenset(BUILTINS) | FUNCTION_NAMES
_DATA_TYPE = "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }"


def _dot(data: TemplateData) -> GoStruct:
    return GoStruct(
        _DATA_TYPE,
        {
            "Labels": dict(data.labels),
            "ExternalLabels": dict(data.external_labels),
            "ExternalURL": data.external_url,
            "Value": data.value,
        },
    )


@dataclass(frozen=True)
class Template:
    """A parsed template; :meth:`render` never raises (errors become Prometheus's error text)."""

    source: str
    tree: Tree = field(repr=False, compare=False)

    @property
    def is_static(self) -> bool:
        return all(isinstance(n, TextNode) for n in self.tree.root.nodes) and not self.tree.defined

    def render(self, data: TemplateData, *, alertname: str | None = None) -> str:
        """The expansion, or ``<error expanding template: ...>`` as Prometheus writes it."""
        if "{{" not in self.source:  # no action at all: the text is the expansion
            return self.source
        try:
            return self.execute(data, alertname=alertname)
        except TemplateExecError as e:
            return f"<error expanding template: {e}>"

    def execute(self, data: TemplateData, *, alertname: str | None = None) -> str:
        """Render, raising :class:`TemplateExecError` (Prometheus's ``error executing template ...``)."""
        tree = self.tree
        if alertname is not None and tree.name != "__alert_" + alertname:
            tree = dataclasses.replace(tree, name="__alert_" + alertname)
        functions = BUILTINS | prometheus_functions(query=data.query, external_url=data.external_url)
        try:
            return execute(tree, dot=_dot(data), functions=functions)
        except GoTemplateExecError as e:
            raise TemplateExecError(f"error executing template {tree.name}: {e}") from None
        except RecursionError:
            raise TemplateExecError(
                f"error executing template {tree.name}: template nests too deeply"
            ) from None


def parse_template(source: str, *, alertname: str = "") -> Template:
    """Parse ``source`` as Prometheus does (with its variable header); raises :class:`TemplateError`."""
    name = "__alert_" + alertname
    try:
        tree = parse_go_template(HEADER + source, name=name, functions=_FUNCTION_NAMES)
    except GoTemplateSyntaxError as e:
        raise TemplateError(str(e)) from None
    except RecursionError:
        raise TemplateError(f"error parsing template {name}: template nests too deeply") from None
    return Template(source, tree)
