"""mlinfra.templated: one reading of templated booleans and numbers, unknown words refused."""

from __future__ import annotations

import pytest

from mlinfra.exceptions import TemplatedValueError
from mlinfra.templated import parse_bool, parse_int, parse_optional_float, parse_optional_int


@pytest.mark.parametrize("word", [True, "true", "True", " YES ", "on", "1", 1])
def test_true_words(word: object) -> None:
    assert parse_bool("flag", word) is True


@pytest.mark.parametrize("word", [False, "false", "FALSE", "no", "off", "Off", "0", 0])
def test_false_words(word: object) -> None:
    # "off" was true in one place and false in another before this module.
    assert parse_bool("flag", word) is False


@pytest.mark.parametrize("word", ["maybe", "enabled", "2", 2, "tru", [], "y"])
def test_unknown_words_are_refused_naming_the_parameter(word: object) -> None:
    with pytest.raises(TemplatedValueError, match=r"record_only must be a boolean \(true/false, yes/no"):
        parse_bool("record_only", word)


@pytest.mark.parametrize("missing", [None, "", "None", "  "])
def test_missing_is_the_default_or_refused(missing: object) -> None:
    assert parse_bool("flag", missing, default=True) is True
    assert parse_bool("flag", missing, default=False) is False
    with pytest.raises(TemplatedValueError, match="flag is required"):
        parse_bool("flag", missing)


def test_the_error_is_a_value_error_too() -> None:
    with pytest.raises(ValueError, match="flag must be a boolean"):  # callers catching ValueError
        parse_bool("flag", "perhaps")


@pytest.mark.parametrize(("value", "expected"), [(3, 3), ("3", 3), (" 4 ", 4), (5.0, 5), ("0", 0)])
def test_ints(value: object, expected: int) -> None:
    assert parse_int("replicas", value, minimum=0) == expected


@pytest.mark.parametrize("value", [True, "3.5", 3.5, "three", None, "", "None", "-1", -1])
def test_bad_ints_are_refused(value: object) -> None:
    with pytest.raises(TemplatedValueError, match=r"replicas must be an integer >= 0, got"):
        parse_int("replicas", value, minimum=0)


def test_int_without_minimum_accepts_negatives() -> None:
    assert parse_int("offset", "-2") == -2


def test_optional_int() -> None:
    assert parse_optional_int("version", "None") is None
    assert parse_optional_int("version", "7") == 7
    with pytest.raises(TemplatedValueError, match="version must be an integer"):
        parse_optional_int("version", "v7")


def test_optional_float() -> None:
    assert parse_optional_float("decided_at", "1800000000.5") == 1800000000.5
    assert parse_optional_float("decided_at", 12) == 12.0
    assert parse_optional_float("decided_at", None) is None
    for bad in ("nan", "inf", "soon", True):
        with pytest.raises(TemplatedValueError, match="decided_at must be a"):
            parse_optional_float("decided_at", bad)
