"""Alert templates against a real Prometheus 2.42: the same rule fires there and here, same annotations.

Every template below is an annotation of its own alerting rule in one rule file;
Prometheus evaluates the file (``for: 0s``: firing at the first evaluation) and
``/api/v1/alerts`` gives what it rendered. Each template is rendered here with the
labels and value of that alert, the same external labels and URL, and ``query``
running against that same server, so the comparison is of the template language,
not of the engines. Templates that do not parse are checked with ``promtool check
rules``: refused there and at load here, with Go's message.
"""

from __future__ import annotations

import math
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlinfra.promql.interface import QueryResult
from mlinfra.rules.prometheus_engine import PrometheusEngine
from mlinfra.rules.templates import TemplateData, TemplateError, parse_template
from tests.support.integration import require_binary
from tests.support.services import ServerHandle, prometheus_server

pytestmark = pytest.mark.integration

EXPR = 'label_replace(label_replace(vector(91.25), "host", "node-1:9100", "", ""), "gpu_id", "3", "", "")'
SMALL_EXPR = 'label_replace(vector(0.000123), "host", "[::1]:80", "", "")'
TWO = '(label_replace(vector(1), "job", "b", "", "") or label_replace(vector(0.5), "job", "a", "", ""))'
EXTERNAL_LABELS = {"cluster": "prod-eu", "region": "eu-1"}

TEMPLATES: list[str] = [
    # values, variables and the dot
    "{{ $labels.host }} is at {{ $value }}",
    "{{ .Labels.gpu_id }} {{ .Value }} {{ $.Value }} [{{ $labels.missing }}]",
    "{{ $externalLabels.cluster }} {{ .ExternalLabels.region }} {{ $externalURL }} {{ .ExternalURL }}",
    "{{ $labels }} | {{ $externalLabels }}",
    "{{ . }}",
    "{{ $x := 1 }}{{ $x = 2 }}{{ $x }} {{ $value = 3 }}{{ $value }}",
    # if / else if / else, with, comparisons and logic
    "{{ if gt $value 90.0 }}critical{{ else if gt $value 80.0 }}warning{{ else }}ok{{ end }}",
    "{{ if gt $value 80 }}bad: int vs float{{ end }}",
    '{{ if and (gt $value 1.0) (lt $value 100.0) (ne $labels.host "x") }}in{{ end }}',
    '{{ or 0 "" $labels.missing "fallback" }} {{ and 1 "a" 0 }} {{ not $labels.missing }}',
    '{{ if eq $labels.gpu_id "1" "2" "3" }}one of{{ end }} {{ eq 1 1 }} {{ le "a" "b" }} {{ ge 2.5 2.5 }}',
    "{{ eq $value 91 }}",
    "{{ with $labels.host }}host={{ . }}{{ else }}none{{ end }} {{ with $labels.nope }}x{{ else }}none{{ end }}",
    "{{ with $h := $labels.host }}{{ $h | toUpper }}{{ end }}",
    # range
    "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
    "{{ range $labels }}[{{ . }}]{{ end }}{{ range $externalLabels }}{{ else }}empty{{ end }}",
    "{{ range $i, $s := query `" + TWO + "` }}{{ $i }}:{{ $s.Labels.job }}={{ $s.Value }} {{ end }}",
    "{{ range query `" + TWO + '` }}{{ if eq .Labels.job "b" }}{{ continue }}{{ end }}{{ .Value }}{{ end }}',
    "{{ range $i, $e := query `"
    + TWO
    + "` }}{{ if eq $i 1 }}{{ break }}{{ end }}{{ $e.Labels.job }}{{ end }}",
    "{{ range query `absent(vector(1))` }}x{{ else }}no results{{ end }}",
    # query and its helpers
    "{{ query `"
    + TWO
    + "` | first | value }} {{ with query `vector(42)` }}{{ . | first | value | humanize }}{{ end }}",
    '{{ range sortByLabel "job" (query `' + TWO + '`) }}{{ label "job" . }}{{ end }}',
    "{{ (query `1 + 1` | first).Value }} {{ len (query `" + TWO + "`) }}",
    "{{ first (query `" + TWO + "`) }}",
    "{{ query `vector(1) > 5` | first | value }}",
    "{{ strvalue (query `vector(1)` | first) }}|",
    # Prometheus's string and number helpers
    '{{ reReplaceAll "(.*):(\\\\d+)" "port $2 of $1" $labels.host }} {{ reReplaceAll "a*" "-" "baaac" }}',
    '{{ reReplaceAll "(?P<h>[a-z]+)-(\\\\d)" "${h}_$2x $$" "node-1" }}',
    '{{ match "^node-[0-9]+" $labels.host }} {{ match "gpu" $labels.host }}',
    '{{ title "hello wORLD, don\'t_stop é-x" }} {{ toUpper "straße" }} {{ toLower "ÀBC" }}',
    '{{ stripPort $labels.host }} {{ stripPort "[::1]:80" }} {{ stripPort "::1" }} {{ stripPort "[::1]" }} {{ stripPort "h" }}',
    '{{ humanize 1234567 }} {{ humanize 0.000123 }} {{ humanize "2048" }} {{ humanize -2500 }} {{ humanize 0 }}',
    "{{ humanize1024 1536 }} {{ humanize1024 5368709120 }} {{ humanize1024 0.5 }}",
    "{{ humanizeDuration 90061 }} {{ humanizeDuration 59.5 }} {{ humanizeDuration 0.25 }} {{ humanizeDuration -90 }}",
    "{{ humanizePercentage 0.1234 }} {{ $value | humanizePercentage }} {{ humanizePercentage 0.000012345 }}",
    "{{ humanizeTimestamp 1500000000.1234 }} {{ humanizeTimestamp 0 }} {{ humanizeTimestamp -1.5 }}",
    '{{ toTime 1500000000.5 }} {{ (toTime 1.5e9).Unix }} {{ (toTime 1.5e9).Format "2006-01-02T15:04:05Z07:00 Mon Jan _2" }}',
    '{{ parseDuration "1h30m" }} {{ parseDuration "90s" }} {{ parseDuration "1d" }}',
    '{{ safeHtml "<b>x</b>" }} {{ args 1 "two" 3.5 }} {{ (args 1 2).arg1 }} {{ (args 1).arg7 }}',
    "{{ externalURL }}|{{ pathPrefix }}|{{ graphLink `rate(x[5m]) > 0` }}|{{ tableLink `up` }}",
    # builtins
    '{{ printf "%.1f°C on %s (%d/%5.2f|%-4s|%q|%v|%t)" $value $labels.host 7 3.14159 "ab" "q\\"" $labels true }}',
    '{{ $value | printf "%.3e" }} {{ printf "%x %X %o %%" 255 255 8 }} {{ printf "%s %d" "only" }}',
    '{{ printf "%d" 1.5 }} {{ printf "%5s|%-5s|%05d|%+d" "a" "b" 42 7 }} {{ printf "%g %G" 1e21 1e-7 }}',
    '{{ print 1 2 "a" "b" 3 }} {{ println "x" 1 }}{{ len $labels }} {{ len "héllo" }} {{ index $labels "host" }}',
    '{{ index (args "a" "b") "arg1" }} {{ slice "abcdef" 1 3 }} {{ index "abc" 1 }}',
    '{{ html "<a href=\'x\'>&" }} {{ urlquery "a b&c=d" }} {{ js "a\'b\\"<c>" }}',
    # define / template / block, trimming, comments, literals
    '{{ define "gpu" }}GPU {{ .gpu_id }}{{ end }}{{ template "gpu" $labels }} {{ block "b" . }}block {{ .Value }}{{ end }}',
    "a  {{- $labels.gpu_id -}}  b {{/* comment */}}c {{- /* trimmed */ -}} d",
    "{{ 0x1F }} {{ 1e3 }} {{ 1_000 }} {{ 'a' }} {{ -.5 }} {{ 1.0 }} {{ `raw\\n` }} {{ \"tab\\there\" }} {{ true }}",
    '{{ $value | }} {{ (humanize 2000) | toLower }} {{ $labels.host | reReplaceAll ":.*" "" }}',
    # errors while rendering: Prometheus's <error expanding template: ...> text
    '{{ humanize "abc" }}',
    "{{ humanize 1 2 }}",
    "{{ $labels.host | humanize }}",
    "{{ first (query `absent(vector(1))`) }}",
    "{{ toUpper 5 }}",
    "{{ index (query `vector(1)`) 3 }}",
    '{{ template "nope" }}',
    "{{ $labels.host.foo }}",
    "{{ $value.foo }}",
    "{{ range $value }}x{{ end }}",
    '{{ reReplaceAll "(" "x" "y" }}',
    '{{ match "a)" "x" }}',
    '{{ reReplaceAll "[z-a]" "x" "y" }}',
    '{{ toTime "NaN" }}',
]

REFUSED: list[str] = [
    "{{ if gt $value 1.0 }}no end",
    "{{ humanise $value }}",
    "{{ $lables.host }}",
    "{{ }}",
    "{{ (humanize 1 }}",
    "{{ break }}",
    "{{ else }}",
    "{{ range $a, $b, $c := $labels }}{{ end }}",
    '{{ "unterminated }}',
    "{{ 1 | 2 }}",
    "{{ $x }}{{ $x := 1 }}",
]


def _rule_file(path: Path) -> None:
    rules: list[dict[str, Any]] = []
    for i, tmpl in enumerate(TEMPLATES):
        expr = SMALL_EXPR if "stripPort $labels.host" in tmpl else EXPR
        rules.append({"alert": f"T{i:03d}", "expr": expr, "annotations": {"out": tmpl}})
    path.write_text(yaml.safe_dump({"groups": [{"name": "templates", "rules": rules}]}, sort_keys=False))


@pytest.fixture(scope="module")
def fired(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerHandle, dict[str, dict[str, Any]]]]:
    rule_file = tmp_path_factory.mktemp("templates") / "templates.yml"
    _rule_file(rule_file)
    extra = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "external_labels": EXTERNAL_LABELS}
    }
    with prometheus_server(rule_files=[rule_file], extra_config=extra) as prom:
        deadline = time.monotonic() + 60
        alerts: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline and len(alerts) < len(TEMPLATES):
            body = httpx.get(f"{prom.url}/api/v1/alerts", timeout=5).json()
            alerts = {a["labels"]["alertname"]: a for a in body["data"]["alerts"]}
            time.sleep(0.2)
        assert len(alerts) == len(TEMPLATES), prom.log_tail()
        yield prom, alerts


def _as_pairs(result: QueryResult) -> list[tuple[dict[str, str], float]]:
    if isinstance(result, float | int):
        return [({}, float(result))]
    return [(dict(s.labels), s.value) for s in result]


@pytest.mark.parametrize("index", range(len(TEMPLATES)))
def test_annotation_is_what_prometheus_renders(
    fired: tuple[ServerHandle, dict[str, dict[str, Any]]], index: int
) -> None:
    prom, alerts = fired
    alert = alerts[f"T{index:03d}"]
    engine = PrometheusEngine(prom.url, timeout=10)
    at = time.time()
    labels = {k: v for k, v in alert["labels"].items() if k != "alertname"}
    data = TemplateData(
        labels=labels,
        value=float(alert["value"]),
        external_labels=EXTERNAL_LABELS,
        external_url=f"http://{socket.gethostname()}:{prom.port}",
        query=lambda expr: _as_pairs(engine.instant(expr, at)),
    )
    ours = parse_template(TEMPLATES[index], alertname=f"T{index:03d}").render(data)
    assert ours == alert["annotations"]["out"]
    assert not math.isnan(data.value)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool (Debian package prometheus)", ["promtool"])


@pytest.mark.parametrize("template", REFUSED)
def test_refused_at_load_as_promtool_refuses(promtool: str, template: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    rule = {"alert": "Bad", "expr": "vector(1)", "annotations": {"out": template}}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    with pytest.raises(TemplateError) as excinfo:
        parse_template(template, alertname="Bad")
    assert f'annotation "out": {excinfo.value}' in done.stdout + done.stderr
