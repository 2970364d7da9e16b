"""Go 1.19's ``text/template`` builtin functions: ``and or not len index slice print printf
println html js urlquery call eq ne lt le gt ge``, with Go's error messages.

    from mlinfra.rules.gotemplate_builtins import BUILTINS
    execute(tree, dot=data, functions=BUILTINS | prometheus_functions)
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from mlinfra.rules.gofmt import go_print, go_sprint, go_sprintf, go_sprintln, go_type
from mlinfra.rules.gotemplate_exec import GoCallError, GoFunc, and_or_marker, is_true

_V = "reflect.Value"
_ANY = "interface {}"


def _kind(v: Any) -> str:
    """Go's ``basicKind``; "" for the kinds comparisons refuse."""
    if v is None:
        return "invalid"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return ""


_BAD = "incompatible types for comparison"
_BAD_TYPE = "invalid type for comparison"


def _eq(arg1: Any, *args: Any) -> bool:
    if not args:
        raise GoCallError("missing argument for comparison")
    k1 = _kind(arg1)
    for arg in args:
        k2 = _kind(arg)
        if k1 != k2:
            if arg1 is not None and arg is not None:
                raise GoCallError(_BAD)
            continue
        if k1 in ("", "invalid"):
            raise GoCallError(_BAD_TYPE)
        if arg1 == arg:
            return True
    return False


def _lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _kind(arg1), _kind(arg2)
    if k1 in ("", "invalid") or k2 in ("", "invalid"):
        raise GoCallError(_BAD_TYPE)
    if k1 != k2:
        raise GoCallError(_BAD)
    if k1 == "bool":
        raise GoCallError(_BAD_TYPE)
    if k1 == "string":
        return bool(arg1.encode() < arg2.encode())
    return bool(arg1 < arg2)


def _le(arg1: Any, arg2: Any) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


def _len(item: Any) -> int:
    if item is None:
        raise GoCallError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, dict | list | tuple):
        return len(item)
    raise GoCallError(f"len of type {go_type(item)}")


def _index_arg(index: Any, cap: int) -> int:
    if index is None:
        raise GoCallError("cannot index slice/array with nil")
    if not isinstance(index, int) or isinstance(index, bool):
        raise GoCallError(f"cannot index slice/array with type {go_type(index)}")
    if index < 0 or index > cap:
        raise GoCallError(f"index out of range: {index}")
    return index


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise GoCallError("index of untyped nil")
    for index in indexes:
        if isinstance(item, str | list | tuple):
            x = _index_arg(index, len(item.encode()) if isinstance(item, str) else len(item))
            if isinstance(item, str):
                data = item.encode()
                if x == len(data):
                    raise GoCallError("reflect: string index out of range")
                item = data[x]
            else:
                if x == len(item):
                    raise GoCallError("reflect: slice index out of range")
                item = item[x]
        elif isinstance(item, dict):
            if index is None:
                raise GoCallError("value is nil; should be of type string")
            if not isinstance(index, str):
                raise GoCallError(f"value has type {go_type(index)}; should be string")
            item = item.get(index, None if go_type(item) == "map[string]interface {}" else "")
        else:
            raise GoCallError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise GoCallError("slice of untyped nil")
    if len(indexes) > 3:
        raise GoCallError(f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, str | list | tuple):
        raise GoCallError(f"can't slice item of type {go_type(item)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise GoCallError("cannot 3-index slice a string")
    seq: Any = item.encode() if isinstance(item, str) else item
    bounds = [0, len(seq)]
    for i, index in enumerate(indexes[:2]):
        bounds[i] = _index_arg(index, len(seq))
    if bounds[0] > bounds[1]:
        raise GoCallError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    out = seq[bounds[0] : bounds[1]]
    return out.decode(errors="replace") if isinstance(item, str) else list(out)


def _eval_args(args: tuple[Any, ...]) -> str:
    """Go's ``evalArgs``: one string stays itself, else ``fmt.Sprint`` of the printable values."""
    if len(args) == 1 and type(args[0]) is str:
        return args[0]
    return go_sprint(*("<no value>" if a is None else a for a in args))


def _html(*args: Any) -> str:
    s = _eval_args(args)
    for a, b in (
        ("&", "&amp;"),
        ("'", "&#39;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&#34;"),
        ("\0", "\ufffd"),
    ):
        s = s.replace(a, b)
    return s


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def _js(*args: Any) -> str:
    out = []
    for c in _eval_args(args):
        if c in _JS:
            out.append(_JS[c])
        elif ord(c) < 0x20 or not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(_eval_args(args), safe="")


def _call(fn: Any, *args: Any) -> Any:
    raise GoCallError(f"non-function of type {go_type(fn)}" if fn is not None else "call of nil")


def _not(arg: Any) -> bool:
    return not is_true(arg)


def _printf(fmt: str, *args: Any) -> str:
    return go_sprintf(fmt, *args)


BUILTINS: dict[str, GoFunc] = {
    "and": GoFunc(and_or_marker, (_V,), _V),
    "or": GoFunc(and_or_marker, (_V,), _V),
    "not": GoFunc(_not, (_V,)),
    "len": GoFunc(_len, (_V,)),
    "index": GoFunc(_index, (_V,), _V),
    "slice": GoFunc(_slice, (_V,), _V),
    "print": GoFunc(lambda *a: go_sprint(*a), (), _ANY),
    "printf": GoFunc(_printf, ("string",), _ANY),
    "println": GoFunc(lambda *a: go_sprintln(*a), (), _ANY),
    "html": GoFunc(_html, (), _ANY),
    "js": GoFunc(_js, (), _ANY),
    "urlquery": GoFunc(_urlquery, (), _ANY),
    "call": GoFunc(_call, (_V,), _V),
    "eq": GoFunc(_eq, (_V,), _V),
    "ne": GoFunc(lambda a, b: not _eq(a, b), (_V, _V)),
    "lt": GoFunc(_lt, (_V, _V)),
    "le": GoFunc(_le, (_V, _V)),
    "gt": GoFunc(lambda a, b: not _le(a, b), (_V, _V)),
    "ge": GoFunc(lambda a, b: not _lt(a, b), (_V, _V)),
}

__all__ = ["BUILTINS", "go_print"]
