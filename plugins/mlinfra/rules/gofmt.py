"""Go's ``fmt`` printing, as templates see it: ``fmt.Sprint`` and ``fmt.Sprintf`` of template values.

    go_sprintf("%.1f°C on %s", 91.25, "gpu-3")   # '91.2°C on gpu-3'
    go_print({"b": "2", "a": "1"})              # 'map[a:1 b:2]' (maps print sorted)

Values are Python's stand-ins for Go's: ``str``, ``int``, ``float`` (float64), ``bool``,
``None`` (no value), dicts (maps), lists (slices) and objects with ``go_string()``/
``go_type`` (structs and pointers such as a query's sample).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlinfra.promql.gonum import go_float, go_quote, go_special


def go_sprintf(fmt: str, *args: Any) -> str:
    """A subset of Go's ``fmt.Sprintf``: verbs v s d f F e E g G x X q t %, flags, width, precision."""
    out: list[str] = []
    i, argi, n = 0, 0, len(fmt)
    spec_re = re.compile(r"([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])")
    while i < n:
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        m = spec_re.match(fmt, i + 1)
        if m is None:
            out.append("%!(NOVERB)")
            break
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if _too_large(width) or _too_large(prec):
            # Go's parsenum gives up on a number above 1e6 and skips to the end of the
            # format: "%50000000d" renders "%!(NOVERB)", not 50 MB of padding.
            out.append("%!(NOVERB)")
            break
        i = m.end()
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(flags, int(width) if width else None, prec, verb, arg))
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={go_print(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


_GO_MAX_NUM = 1_000_000  # fmt's tooLarge(): widths and precisions above this are refused


def _too_large(digits: str | None) -> bool:
    """Whether Go's ``parsenum`` overflows on ``digits``: it checks before adding each digit."""
    num = 0
    for d in digits or "":
        if num > _GO_MAX_NUM:
            return True
        num = num * 10 + int(d)
    return False


def go_type(a: Any) -> str:
    """Go's ``%T`` of a template value."""
    named = getattr(a, "go_type", None)
    if isinstance(named, str):
        return named
    if isinstance(a, bool):
        return "bool"
    if isinstance(a, int):
        return "int"
    if isinstance(a, float):
        return "float64"
    if isinstance(a, str):
        return "string"
    if isinstance(a, Mapping):
        return "map[string]string"
    if isinstance(a, list):
        return "[]interface {}"
    return type(a).__name__


def _format_one(flags: str, width: int | None, prec: str | None, verb: str, arg: Any) -> str:
    p = int(prec) if prec not in (None, "") else (0 if prec == "" else None)
    if isinstance(arg, float) and verb in "vfFeEgG":
        special = go_special(arg)
        if special is not None:
            body = special if special != "+Inf" or "+" in flags else "+Inf"
        elif verb == "v" or (verb in "gG" and p is None):
            body = go_float(arg)
            if verb == "G":
                body = body.upper()
            if "+" in flags and arg >= 0:
                body = "+" + body
        else:
            pyfmt = "%" + flags.replace("#", "") + "." + str(6 if p is None else p) + verb.replace("F", "f")
            body = pyfmt % arg
        return _pad(body, width, flags)
    if isinstance(arg, int) and not isinstance(arg, bool) and verb in "vdxXob":
        if verb == "b":
            return _pad(("-" if arg < 0 else "") + format(abs(arg), "b"), width, flags)
        pyverb = "d" if verb == "v" else verb
        return _pad(("%" + flags + pyverb) % arg, width, flags)
    if isinstance(arg, str) and verb in "vsqxX":
        if verb == "q":
            body = go_quote(arg)
        elif verb in "xX":
            body = arg.encode().hex()
            body = body.upper() if verb == "X" else body
        else:
            body = arg if p is None else arg[:p]
        return _pad(body, width, flags)
    if isinstance(arg, bool) and verb in "vt":
        return _pad("true" if arg else "false", width, flags)
    if verb == "v" or (verb == "s" and isinstance(arg, Mapping)):
        return _pad(go_print(arg, top=False), width, flags)
    return f"%!{verb}({go_type(arg)}={go_print(arg, top=False)})"


def _pad(body: str, width: int | None, flags: str) -> str:
    if width is None or len(body) >= width:
        return body
    if "-" in flags:
        return body.ljust(width)
    if "0" in flags and body[:1] in "+-" and body[1:2].isdigit():
        return body[0] + body[1:].rjust(width - 1, "0")
    return body.rjust(width, "0" if "0" in flags and body[:1].isdigit() else " ")


def go_print(v: Any, *, top: bool = True) -> str:
    """How ``{{ x }}`` prints a value (Go's ``fmt.Fprint``); nested values print as ``%v``."""
    if v is None:
        return "<no value>" if top else "<nil>"
    custom = getattr(v, "go_string", None)
    if callable(custom):
        return str(custom(top=top))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{go_print(v[k], top=False)}" for k in sorted(v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_print(x, top=False) for x in v) + "]"
    return str(v)


def go_sprint(*args: Any) -> str:
    """Go's ``fmt.Sprint``: a space between operands when neither is a string."""
    out: list[str] = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_print(a, top=False) if a is not None else "<nil>")
    return "".join(out)


def go_sprintln(*args: Any) -> str:
    """Go's ``fmt.Sprintln``: always a space between operands, and a newline."""
    return " ".join(go_print(a, top=False) if a is not None else "<nil>" for a in args) + "\n"
