"""Analysis conditions: what the grammar accepts, what it refuses, how it evaluates."""

from __future__ import annotations

import pytest

from mlinfra.deploy.canary.conditions import Condition, is_number_result
from mlinfra.exceptions import ConditionError


@pytest.mark.parametrize(
    ("text", "result", "holds"),
    [
        ("result < 0.01", 0.002, True),
        ("result < 0.01", 0.01, False),
        ("result >= 0.99 and result <= 1", 0.995, True),
        ("result >= 0.99 and result <= 1", 1.2, False),
        ("0.99 <= result <= 1", 0.98, False),
        ("not result > 5", 3, True),
        ("result > 5 or result < 1", 0.5, True),
        ("result == 2", 2.0, True),
        ("result != 2", 2.0, False),
        ("len(result) == 0", [], True),
        ("len(result) > 0 and result[0] < 0.1", [0.05, 0.5], True),
        ("result[-1] > 0.4", [0.05, 0.5], True),
        ("max(result) < 0.5", [0.1, 0.7], False),
        ("min(result) < 0.5", [0.1, 0.7], True),
        ("max(result, 0.2) == 0.3", 0.3, True),
        ("abs(result - 1) < 0.01", 1.005, True),
        ("result * 100 > 5", 0.06, True),
        ("result / 2 + 1 == 2", 2, True),
        ("-result < 0", 1, True),
        ("True", 0, True),
    ],
)
def test_conditions_evaluate(text: str, result: float | list[float], holds: bool) -> None:
    assert Condition.parse(text).holds(result) is holds


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("__import__('os') == 1", "calling __import__() (only len, abs, min, max)"),
        ("__import__('os').system('true')", "calling __import__('os').system()"),
        ("result.__class__", "attribute access (.__class__)"),
        ("result.real > 0", "attribute access (.real)"),
        ("open('/etc/passwd')", "calling open()"),
        ("sum(result) > 1", "calling sum()"),
        ("(lambda: 1)() == 1", "calling lambda: 1()"),
        ("(lambda: 1) == 1", "Lambda"),
        ("x > 1", "the name 'x' (only 'result' is known)"),
        ("result > 'a'", "the constant 'a' (only numbers and True/False)"),
        ("result ** 2 > 1", "the operator Pow"),
        ("result in [1]", "the comparison In"),
        ("[r for r in result] == 1", "ListComp"),
        ("result[0:1] == 1", "slicing"),
        ("len(result=1) == 1", "len() with keywords"),
        ("len == 1", "len without calling it"),
        ("result", "must be a comparison"),
        ("result + 1", "must be a comparison"),
        ("result <", "not a valid expression"),
        ("", "a condition must be a non-empty expression"),
        ("result > 1; import os", "not a valid expression"),
    ],
)
def test_refusals_name_the_condition_and_what_is_not_allowed(text: str, refusal: str) -> None:
    with pytest.raises(ConditionError) as e:
        Condition.parse(text)
    assert refusal in str(e.value)
    if text:
        assert repr(text) in str(e.value)


def test_refusal_lists_what_is_allowed() -> None:
    with pytest.raises(ConditionError, match=r"allowed: result, numbers"):
        Condition.parse("result.x")


def test_a_condition_error_is_a_value_error_so_pydantic_locates_it() -> None:
    with pytest.raises(ValueError, match="attribute access"):
        Condition.parse("result.x > 1")


@pytest.mark.parametrize(
    ("text", "result", "problem"),
    [
        ("result < 1", [0.1, 0.2], "result is a list, not a number"),
        ("result[2] < 1", [0.1, 0.2], "index out of range (the result has 2 values)"),
        ("result[0] < 1", 0.3, "is a number, it cannot be indexed"),
        ("len(result) == 1", 0.3, "len() takes the list result"),
        ("max(result) > 0", [], "max() of an empty result"),
        ("result / 0 > 1", 3, "division by zero"),
        ("result[0.5] > 1", [1.0], "is not an integer"),
        ("(result > 1) > 0", 3, "result > 1 is True, not a number"),
    ],
)
def test_evaluation_errors_say_what_went_wrong(text: str, result: float | list[float], problem: str) -> None:
    with pytest.raises(ConditionError) as e:
        Condition.parse(text).holds(result)
    assert problem in str(e.value)
    assert repr(text) in str(e.value)


def test_parse_is_cached_and_equal_by_text() -> None:
    assert Condition.parse("result < 1") is Condition.parse("result < 1")
    assert Condition.parse("result < 1") == Condition("result < 1", Condition.parse("result < 2").tree)


def test_is_number_result() -> None:
    assert is_number_result(1.0)
    assert is_number_result([1.0, 2])
    assert is_number_result([])
    assert not is_number_result(float("nan"))
    assert not is_number_result([1.0, float("inf")])
    assert not is_number_result(True)
    assert not is_number_result("1")
    assert not is_number_result([[1.0]])
