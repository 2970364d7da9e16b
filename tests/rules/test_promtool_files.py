"""Reading promtool test files: expanding notation, series, the file's top level and its messages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mlinfra.rules.promtool_files import (
    STALE,
    UnitTestFileError,
    duration_field,
    expand_values,
    expected_value,
    parse_expected_metric,
    parse_series,
    read_test_file,
    string_map,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1+2x3", [1, 3, 5, 7]),
        ("5-1x3", [5, 4, 3, 2]),
        ("1x3", [1, 1, 1, 1]),
        ("0x2", [0, 0, 0]),  # no hexadecimal in series values: "0x2" is 0 repeated
        ("_ 1 _x2 3", [None, 1, None, None, 3]),
        ("-1+1x2", [-1, 0, 1]),
        ("1 2 3", [1, 2, 3]),
        ("1.5e3 -2", [1500, -2]),
        ("stale 4", [STALE, 4]),
        ("", []),
    ],
)
def test_expanding_notation(text: str, expected: list[object]) -> None:
    assert expand_values(text) == expected


def test_special_values() -> None:
    inf, nan, minus_inf = expand_values("Inf NaN -Inf")
    assert inf == math.inf and minus_inf == -math.inf  # noqa: PT018
    assert isinstance(nan, float)
    assert math.isnan(nan)


@pytest.mark.parametrize("text", ["1+x3", "abc", "1x", "1x2.5", "1 % 2"])
def test_bad_notation_is_an_error(text: str) -> None:
    with pytest.raises(UnitTestFileError, match="bad series values"):
        expand_values(text)


def test_series() -> None:
    assert parse_series('up{job="a", le="+Inf"}') == ("up", {"job": "a", "le": "+Inf"})
    assert parse_series('{__name__="x:y", a="b"}') == ("x:y", {"a": "b"})
    with pytest.raises(UnitTestFileError):
        parse_series('up{job=~"a"}')
    with pytest.raises(UnitTestFileError):
        parse_series("rate(up[5m])")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1+2x", "bad series values '1+2x': expected num, got 'end of input'"),
        ("1+2x1.5", "bad series values '1+2x1.5': repetition count must be an integer, got '1.5'"),
        ("1 foo", "bad series values '1 foo': expected number or \"stale\", got 'foo'"),
    ],
)
def test_bad_notation_messages(text: str, message: str) -> None:
    with pytest.raises(UnitTestFileError) as e:
        expand_values(text)
    assert str(e.value) == message


def test_expected_samples() -> None:
    assert parse_expected_metric("{}") == ("", {})
    assert parse_expected_metric('{__name__="up", a="b"}') == ("up", {"a": "b"})
    assert expected_value(None) == 0.0
    assert expected_value("-Inf") == -math.inf
    with pytest.raises(UnitTestFileError, match="exp_samples value 'abc' is not a number"):
        expected_value("abc")


def test_fields() -> None:
    assert duration_field(None, 60.0, "interval") == 60.0
    assert duration_field(0, 60.0, "interval") == 0.0
    assert duration_field("1m30s", 60.0, "interval") == 90.0
    with pytest.raises(UnitTestFileError, match='^eval_time: not a valid duration string: "5q"$'):
        duration_field("5q", 0, "eval_time")
    assert string_map({"a": 1.5, "b": True, "c": None, "d": 2.0}) == {
        "a": "1.5",
        "b": "true",
        "c": "",
        "d": "2.0",
    }


def test_a_test_file_is_read_with_its_rule_files_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("groups: []\n")
    (tmp_path / "a.yaml").write_text("groups: []\n")
    f = tmp_path / "t.yaml"
    f.write_text(
        "rule_files: ['*.yaml']\nevaluation_interval: 30s\ngroup_eval_order: [g2, g1]\ntests: [{name: x}]\n"
    )
    read = read_test_file(f)
    assert read.rule_files == [str(tmp_path / n) for n in ("a.yaml", "b.yaml", "t.yaml")]
    assert read.evaluation_interval == 30.0
    assert read.group_eval_order == {"g2": 0, "g1": 1}
    assert read.groups == [{"name": "x"}]
    f.write_text("tests: []\n")
    assert read_test_file(f).evaluation_interval == 60.0  # promtool's default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("group_eval_order: [a, a]\n", "group name repeated in evaluation order: a"),
        ("rule_files: ['nope*.yaml']\n", "failed to match rule file pattern '{dir}/nope*.yaml'"),
        ("rule_files: [nope.yaml]\n", "open {dir}/nope.yaml: no such file or directory"),
        (
            "foo: 1\ntests: [{bar: 2}, 3]\n",
            "yaml: unmarshal errors:\n  the test file: field foo not found in type main.unitTestFile\n"
            "  tests[0]: field bar not found in type main.testGroup\n  tests[1]: expected a mapping",
        ),
        ("evaluation_interval: zz\n", 'evaluation_interval: not a valid duration string: "zz"'),
    ],
)
def test_an_invalid_test_file_is_refused_with_promtools_message(
    tmp_path: Path, text: str, message: str
) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(text)
    with pytest.raises(UnitTestFileError) as e:
        read_test_file(f)
    assert str(e.value) == message.format(dir=tmp_path)
