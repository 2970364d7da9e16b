"""Alert templates: Prometheus's output, byte for byte, for the subset rule files use."""

from __future__ import annotations

import math

import pytest

from mlinfra.rules.templates import (
    TemplateData,
    TemplateError,
    go_sprintf,
    humanize,
    humanize1024,
    humanize_duration,
    humanize_percentage,
    parse_template,
)

DATA = TemplateData(
    labels={"__name__": "ml_gpu_temperature_celsius", "gpu_id": "3", "host": "node-1"},
    value=91.25,
    external_labels={"cluster": "prod-eu"},
    external_url="http://airflow.example",
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1234567, "1.235M"),
        (0, "0"),
        (1, "1"),
        (999, "999"),
        (1000, "1k"),
        (1500, "1.5k"),
        (12345.678, "12.35k"),
        (-2500, "-2.5k"),
        (0.5, "500m"),
        (0.000123, "123u"),
        (1e27, "1000Y"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        ("2048", "2.048k"),
    ],
)
def test_humanize(value: float, expected: str) -> None:
    assert humanize(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1024, "1ki"), (1048576, "1Mi"), (1536, "1.5ki"), (1, "1"), (0.5, "0.5"), (5 * 2**30, "5Gi")],
)
def test_humanize1024(value: float, expected: str) -> None:
    assert humanize1024(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, "1m 30s"),
        (0, "0s"),
        (1, "1s"),
        (59.5, "59.5s"),
        (3600, "1h 0m 0s"),
        (90061, "1d 1h 1m 1s"),
        (-90, "-1m 30s"),
        (0.25, "250ms"),
        (0.0005, "500us"),
        (math.nan, "NaN"),
    ],
)
def test_humanize_duration(value: float, expected: str) -> None:
    assert humanize_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(0.1234, "12.34%"), (1, "100%"), (0.5, "50%"), (0.000012345, "0.001234%")]
)
def test_humanize_percentage(value: float, expected: str) -> None:
    assert humanize_percentage(value) == expected


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%.2f", (91.256,), "91.26"),
        ("%d restarts", (7,), "7 restarts"),
        ("%s/%s", ("serving", "pod-1"), "serving/pod-1"),
        ("%5.1f|%-4s|", (3.14159, "ab"), "  3.1|ab  |"),
        ("%v", (0.5,), "0.5"),
        ("%g", (1234567.0,), "1.234567e+06"),
        ("%q", ('a"b',), '"a\\"b"'),
        ("100%%", (), "100%"),
        ("%d", (1.5,), "%!d(float64=1.5)"),
        ("%s %s", ("one",), "one %!s(MISSING)"),
    ],
)
def test_printf(fmt: str, args: tuple[object, ...], expected: str) -> None:
    assert go_sprintf(fmt, *args) == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        # Go's fmt refuses widths and precisions above 1e6 (parsenum's tooLarge) and stops.
        ("x%50000000dy", "x%!(NOVERB)%!(EXTRA float64=1)"),
        ("%.50000000f", "%!(NOVERB)%!(EXTRA float64=1)"),
        ("%5.50000000f", "%!(NOVERB)%!(EXTRA float64=1)"),
    ],
)
def test_printf_refuses_huge_widths_like_go(fmt: str, expected: str) -> None:
    assert go_sprintf(fmt, 1.0) == expected


def test_printf_allows_widths_up_to_gos_limit() -> None:
    assert len(go_sprintf("%1000000d", 7)) == 1_000_000


@pytest.mark.parametrize("value", [1e300, -1e300, 1e18])
def test_humanize_timestamp_out_of_range_is_a_template_error_not_a_crash(value: float) -> None:
    rendered = parse_template("at {{ $value | humanizeTimestamp }}").render(TemplateData(value=value))
    assert rendered.startswith("<error expanding template: error executing template __alert_: template: ")
    assert "error calling humanizeTimestamp: " in rendered
    assert "cannot be represented as a nanoseconds timestamp since it overflows int64" in rendered


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("plain text, no actions", "plain text, no actions"),
        ("{{ $labels.host }}", "node-1"),
        ("{{ .Labels.gpu_id }}", "3"),
        ("{{ $value }}", "91.25"),
        ("{{ .Value }}", "91.25"),
        ("{{ $value | humanize }}", "91.25"),
        ("{{ humanize $value }}", "91.25"),
        ('{{ printf "%.1f" $value }}°C', "91.2°C"),
        ('{{ $value | printf "%.0f" }}', "91"),
        ("{{ $externalLabels.cluster }}", "prod-eu"),
        ("{{ .ExternalLabels.cluster }} {{ $externalURL }}", "prod-eu http://airflow.example"),
        ("[{{ $labels.missing }}]", "[]"),
        ("a {{- $labels.host -}} b", "anode-1b"),
        ("{{/* a comment */}}x", "x"),
        ("{{ humanizePercentage 0.1234 }}", "12.34%"),
        ("{{ humanizeDuration 90 }}", "1m 30s"),
        ("{{ 1234567 | humanize }}", "1.235M"),
        ("{{ $labels.host | toUpper }}", "NODE-1"),
        ('{{ "x}}y" }}', "x}}y"),
        ("{{ (humanize 2000) | toLower }}", "2k"),
        ("{{ `raw` }}", "raw"),
    ],
)
def test_render(source: str, expected: str) -> None:
    assert parse_template(source).render(DATA) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ $value ", "unclosed action"),
        ("{{ humanise $value }}", 'function "humanise" not defined'),
        ("{{ $lables.host }}", 'undefined variable "$lables"'),
        ("{{ if gt $value 80.0 }}hot", "unexpected EOF"),
        ("{{ range $labels }}{{ else if 1 }}{{ end }}", "unexpected <if> in input"),
        ("{{ }}", "missing value"),
        ("{{ (humanize 1 }}", "unclosed left paren"),
        ("{{ $x }}{{ $x := 1 }}", 'undefined variable "$x"'),
        ('{{ "unterminated }}', "unterminated quoted string"),
    ],
)
def test_parse_errors_are_found_at_load(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as excinfo:
        parse_template(source)
    assert message in str(excinfo.value)


def test_a_render_failure_becomes_the_annotation_text_and_does_not_raise() -> None:
    out = parse_template('ok {{ humanize "abc" }}').render(DATA)
    assert out.startswith("<error expanding template: ")
    assert 'strconv.ParseFloat: parsing "abc": invalid syntax' in out


def test_an_argument_to_a_value_is_a_render_error_as_in_go() -> None:
    out = parse_template("{{ $value $value }}").render(DATA)
    assert "can't give argument to non-function $value" in out


def test_wrong_argument_count_is_a_render_error() -> None:
    assert "wrong number of args for humanize: want 1 got 2" in parse_template("{{ humanize 1 2 }}").render(
        DATA
    )
