r"""Fleet-file validation errors as people read them: ``file:line: field.path: what is accepted``.

:func:`line_index` maps each field path of the composed YAML node tree to its line;
:func:`describe_error` turns one pydantic error into a located sentence (an unknown
field lists the fields accepted there, a failed pattern quotes the value shortened);
:class:`FieldError` lets a cross-field check name the field it is about.

>>> import yaml
>>> lines = line_index(yaml.compose("cost: {}\nmodels: [{name: a}]"))
>>> lines[("models", 0, "name")]
2
>>> located(("models", 0, "name"), "duplicate model name 'a'", lines)
"line 2: models[0].name: duplicate model name 'a'"
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml
from pydantic import BaseModel


class FieldError(ValueError):
    """A cross-field error that knows which field it is about (pydantic cannot say)."""

    def __init__(self, loc: tuple[str | int, ...], message: str):
        self.loc = loc
        super().__init__(message)


def problem_line(problem: str) -> int:
    """Sort key: problems read top to bottom, as in the file."""
    head = problem.split(":", 1)[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0


def _path_text(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def located(loc: tuple[str | int, ...], message: str, lines: dict[tuple[str | int, ...], int]) -> str:
    # The nearest enclosing node that has a line: a missing field points at its parent.
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return f"line {lines[loc[:n]]}: {_path_text(loc)}: {message}"
    return f"{_path_text(loc)}: {message}"


_PATTERN_MEANINGS: dict[str, str] = {}


def named_pattern(pattern: str, meaning: str) -> str:
    """``pattern``, registered so that a value it refuses is told what it must be, not only the regex."""
    _PATTERN_MEANINGS[pattern] = meaning
    return pattern


def describe_error(err: Any, lines: dict[tuple[str | int, ...], int], root: type[BaseModel]) -> str:
    """One pydantic error of validating ``root`` as a located sentence."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        msg = "required field is missing"
    elif kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        accepted = ", ".join(parent.model_fields) if parent else "see the documentation"
        msg = f"unknown field; accepted here: {accepted}"
    elif kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern")
        meaning = _PATTERN_MEANINGS.get(str(pattern))
        msg = f"got {_short_repr(got)}, which does not match {pattern}"
        if meaning:
            msg = f"got {_short_repr(got)}, which is not {meaning} ({pattern})"
    elif kind == "literal_error":
        msg = f"must be one of {ctx.get('expected')}, got {_short_repr(got)}"
    elif kind == "value_error":
        error = ctx.get("error")
        if isinstance(error, FieldError):  # a cross-field check that knows its field
            loc = (*loc, *error.loc)
        msg = str(error) if error is not None else err["msg"]
    else:
        msg = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_short_repr(got)}"
    return located(loc, msg, lines)


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    cls: Any = root
    mapping_key = False
    for part in loc:
        if isinstance(part, int) or mapping_key:
            mapping_key = False  # a list index or a dict key (analyses.<name>): same model below
            continue
        field = cls.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        mapping_key = getattr(ann, "__origin__", None) is dict
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        cls = args[0] if args else ann
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def line_index(node: yaml.Node | None) -> dict[tuple[str | int, ...], int]:
    """Field path -> 1-based line in the YAML text, from the composed node tree.

    Each node is walked once: an alias is the same node object as its anchor, so
    following every alias path would take exponential time on a few hundred bytes
    of nested aliases (and never end on a recursive one). Paths under a repeated
    node have no line of their own; errors there point at the alias's line.
    """
    out: dict[tuple[str | int, ...], int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(node, ())] if node is not None else []
    while stack:
        n, path = stack.pop()
        out.setdefault(path, n.start_mark.line + 1)
        if id(n) in seen:
            continue
        seen.add(id(n))
        # Children pushed in reverse: walked in document order, a shared node gets the
        # lines of its first (anchored) occurrence, and an alias points at its own line.
        if isinstance(n, yaml.MappingNode):
            for key, value in reversed(n.value):
                k = key.value
                out[(*path, k)] = key.start_mark.line + 1
                stack.append((value, (*path, k)))
        elif isinstance(n, yaml.SequenceNode):
            for i in reversed(range(len(n.value))):
                stack.append((n.value[i], (*path, i)))
    return out


# Error messages quote the offending value; an alias bomb's value would print as megabytes.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 80, 80


def _short_repr(value: Any) -> str:
    return _SHORT.repr(value)
