"""Read booleans and numbers from templated parameters, the same way everywhere.

A templated field arrives as whatever Jinja rendered: ``True`` from a native
template, ``"False"`` or ``"off"`` from a string one, ``"None"`` when the value was
missing. Coercing by hand gave different answers in different places (``"off"``
was true in one, false in another); these functions give one answer, and refuse a
word they do not know instead of guessing::

    >>> parse_bool("record_only", "off")
    False
    >>> parse_bool("run_smoke", " Yes ")
    True
    >>> parse_int("replicas", "3", minimum=0)
    3
    >>> parse_optional_int("version", "None") is None
    True
    >>> parse_bool("auto_rollback", "maybe")
    Traceback (most recent call last):
    ...
    mlinfra.exceptions.TemplatedValueError: auto_rollback must be a boolean (true/false, yes/no, on/off, 1/0), got 'maybe'
"""

from __future__ import annotations

import math
from typing import Any

from mlinfra.exceptions import TemplatedValueError

__all__ = [
    "FALSE_WORDS",
    "MISSING",
    "TRUE_WORDS",
    "parse_bool",
    "parse_int",
    "parse_optional_float",
    "parse_optional_int",
]

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
# What a missing value renders as: None itself, an empty string, or Jinja's "None".
MISSING = (None, "", "None")
_ACCEPTED = "true/false, yes/no, on/off, 1/0"


def is_missing(value: Any) -> bool:
    """True for ``None``, ``""`` and ``"None"`` (a templated ``None``), blanks included."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def parse_bool(name: str, value: Any, *, default: bool | None = None) -> bool:
    """``value`` as a boolean; words in :data:`TRUE_WORDS`/:data:`FALSE_WORDS`, any case.

    A missing value (:func:`is_missing`) is ``default``, or refused when there is none.
    """
    if isinstance(value, bool):
        return value
    if is_missing(value):
        if default is None:
            raise TemplatedValueError(f"{name} is required: a boolean ({_ACCEPTED})")
        return default
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise TemplatedValueError(f"{name} must be a boolean ({_ACCEPTED}), got {value!r}")


def parse_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an integer: an int, or a string of digits (``"3"``, not ``"3.5"`` or ``True``)."""
    bound = f" >= {minimum}" if minimum is not None else ""
    if isinstance(value, bool) or is_missing(value):
        raise TemplatedValueError(f"{name} must be an integer{bound}, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise TemplatedValueError(f"{name} must be an integer{bound}, got {value!r}")
        number = int(value)
    else:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise TemplatedValueError(f"{name} must be an integer{bound}, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise TemplatedValueError(f"{name} must be an integer{bound}, got {value!r}")
    return number


def parse_optional_int(name: str, value: Any, *, minimum: int | None = None) -> int | None:
    """Like :func:`parse_int`, but a missing value is ``None``."""
    return None if is_missing(value) else parse_int(name, value, minimum=minimum)


def parse_optional_float(name: str, value: Any) -> float | None:
    """A finite number, or ``None`` for a missing value."""
    if is_missing(value):
        return None
    if isinstance(value, bool):
        raise TemplatedValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise TemplatedValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise TemplatedValueError(f"{name} must be a finite number, got {value!r}")
    return number
