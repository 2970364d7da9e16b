"""Label-matcher regexes as Prometheus runs them: RE2, fully anchored, ``.`` matching newlines.

Python's ``re`` backtracks: ``(a+)+b`` against a long label value takes exponential
time, and one such matcher in a rule or a UI query would stall a task or a web
worker. RE2 (the ``google-re2`` binding) matches in linear time and accepts the
same syntax Prometheus does, so a pattern that works here works there, and a
pattern Prometheus refuses (look-behind, back-references) is refused here too::

    rx = compile_label_regex("api|web-.*")
    rx.fullmatch("web-1") is not None   # True
    compile_label_regex("(?<=a)b")      # LabelRegexError: invalid perl operator: (?<=
"""

from __future__ import annotations

import threading
from typing import Any

import re2

__all__ = ["LabelRegexError", "compile_label_regex"]

_CACHE_SIZE = 4096


class LabelRegexError(ValueError):
    """A label-matcher regex RE2 cannot compile; the message says why."""


def _options(dot_nl: bool) -> Any:
    options = re2.Options()
    # Prometheus 3 compiles matchers as "^(?s:" + v + ")$": "." also matches "\n";
    # Prometheus 2 (the local PromQL engine's target) as "^(?:" + v + ")$": it does not.
    options.dot_nl = dot_nl
    # RE2 would print every refused pattern to stderr; the caller reports it instead.
    options.log_errors = False
    return options


_OPTIONS = {True: _options(True), False: _options(False)}
_cache: dict[tuple[str, bool], Any] = {}
_lock = threading.Lock()


def compile_label_regex(pattern: str, *, dot_nl: bool = True) -> Any:
    """The compiled RE2 pattern; use ``.fullmatch(value)`` (matchers are anchored at both ends).

    ``dot_nl=False`` gives Prometheus 2's matchers, where ``.`` does not match a newline.
    """
    key = (pattern, dot_nl)
    compiled = _cache.get(key)
    if compiled is not None:
        return compiled
    try:
        compiled = re2.compile(f"(?:{pattern})", options=_OPTIONS[dot_nl])
    except re2.error as e:
        reason = e.args[0] if e.args else e
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise LabelRegexError(str(reason)) from None
    with _lock:
        if len(_cache) >= _CACHE_SIZE:  # patterns come from rule files and queries: few, but unbounded
            _cache.clear()
        _cache[key] = compiled
    return compiled
