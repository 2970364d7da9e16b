"""Go's ``text/template`` language: nodes and lexer, following Go 1.19's ``text/template/parse``.

Prometheus 2.42 (built with Go 1.19) parses alert templates with this grammar, so the
same text is accepted or refused here as there::

    toks = _Lexer("{{ if gt $value 80.0 }}hot{{ end }}", "t").run()
    # [_Tok("left", "{{", 0), _Tok("space", " ", 2), _Tok("keyword", "if", 3), ...]

:mod:`mlinfra.rules.gotemplate_parse` builds the tree from these tokens (nodes below).
The tree is executed by :mod:`mlinfra.rules.gotemplate_exec`. Node positions are
offsets into the source, so execution errors can name ``name:line:col`` the way Go
does (the column counted in bytes, as Go counts it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlinfra.exceptions import MlinfraError


class GoTemplateSyntaxError(MlinfraError):
    """The template text does not parse (Go's ``template: name:line: message``)."""


# ---------------------------------------------------------------------- nodes


@dataclass
class Node:
    pos: int


@dataclass
class TextNode(Node):
    text: str


@dataclass
class StringNode(Node):
    quoted: str
    value: str

    def __str__(self) -> str:
        return self.quoted


@dataclass
class NumberNode(Node):
    text: str
    is_int: bool
    int_value: int
    is_float: bool
    float_value: float

    def __str__(self) -> str:
        return self.text


@dataclass
class BoolNode(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass
class FieldNode(Node):
    idents: tuple[str, ...]

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass
class VariableNode(Node):
    idents: tuple[str, ...]  # ("$x", "Field", ...)

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass
class IdentifierNode(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class ChainNode(Node):
    node: Node
    fields: tuple[str, ...]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


@dataclass
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass
class PipeNode(Node):
    decl: list[VariableNode] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(d) for d in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


@dataclass
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)


@dataclass
class ActionNode(Node):
    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass
class BranchNode(Node):
    kind: str  # "if" | "range" | "with"
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None

    def __str__(self) -> str:
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


@dataclass
class TemplateNode(Node):
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        return "{{template " + f'"{self.name}"' + (f" {self.pipe}" if self.pipe else "") + "}}"


@dataclass
class BreakNode(Node):
    is_continue: bool = False


@dataclass
class _EndNode(Node):
    pass


@dataclass
class _ElseNode(Node):
    pass


@dataclass
class Tree:
    """A parsed template: its main list and the templates it defines."""

    name: str
    text: str
    root: ListNode
    defined: dict[str, ListNode]

    def location(self, pos: int) -> str:
        """Go's ``ErrorContext``: ``name:line:col`` with a 0-based byte column."""
        before = self.text[:pos]
        nl = before.rfind("\n")
        col = len(before.encode()) if nl < 0 else len(before[nl + 1 :].encode())
        return f"{self.name}:{1 + before.count(chr(10))}:{col}"


# ---------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: str
    val: str
    pos: int


_KEYWORDS = {"block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with"}
_SPACE = " \t\r\n"
_LEFT, _RIGHT = "{{", "}}"


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


class _Lexer:
    def __init__(self, text: str, name: str):
        self.text, self.name = text, name
        self.pos = 0
        self.toks: list[_Tok] = []
        self.paren = 0

    def error(self, msg: str) -> GoTemplateSyntaxError:
        line = 1 + self.text[: self.pos].count("\n")
        return GoTemplateSyntaxError(f"template: {self.name}:{line}: {msg}")

    def run(self) -> list[_Tok]:
        t = self.text
        while True:
            start = t.find(_LEFT, self.pos)
            if start < 0:
                if self.pos < len(t):
                    self.toks.append(_Tok("text", t[self.pos :], self.pos))
                self.toks.append(_Tok("eof", "", len(t)))
                return self.toks
            trim = t.startswith("-", start + 2) and t[start + 3 : start + 4] in tuple(_SPACE)
            text = t[self.pos : start]
            if trim:
                text = text.rstrip(_SPACE)
            if text:
                self.toks.append(_Tok("text", text, self.pos))
            self.pos = start + 2 + (2 if trim else 0)
            self._action(start)

    def _at_right(self) -> tuple[bool, bool]:
        t, p = self.text, self.pos
        if t.startswith(_RIGHT, p):
            return True, False
        if t.startswith(" -" + _RIGHT, p) or (
            t[p : p + 1] in tuple(_SPACE) and t.startswith("-" + _RIGHT, p + 1)
        ):
            return True, True
        return False, False

    def _close(self, trim: bool) -> None:
        self.pos = self.text.index(_RIGHT, self.pos) + 2
        if trim:
            while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
                self.pos += 1

    def _action(self, start: int) -> None:
        t = self.text
        if t.startswith("/*", self.pos):
            self._comment()
            return
        self.toks.append(_Tok("left", _LEFT, start))
        self.paren = 0
        while True:
            at_right, trim = self._at_right()
            if at_right and self.paren > 0:
                raise self.error("unclosed left paren")
            if at_right:
                self.toks.append(_Tok("right", _RIGHT, self.pos))
                self._close(trim)
                return
            if self.pos >= len(t):
                raise self.error("unclosed action")
            self._token()

    def _comment(self) -> None:
        t = self.text
        self.pos = t.index("/*", self.pos)
        end = t.find("*/", self.pos + 2)
        if end < 0:
            raise self.error("unclosed comment")
        self.pos = end + 2
        at_right, trim = self._at_right()
        if not at_right:
            raise self.error("comment ends before closing delimiter")
        self._close(trim)

    def _token(self) -> None:
        t, p = self.text, self.pos
        c = t[p]
        if c in _SPACE:
            end = p
            while end < len(t) and t[end] in _SPACE and not t.startswith("-" + _RIGHT, end + 1):
                end += 1
            self._emit("space", p, end)
        elif t.startswith(":=", p):
            self._emit("declare", p, p + 2)
        elif c == "=":
            self._emit("assign", p, p + 1)
        elif c == "|":
            self._emit("pipe", p, p + 1)
        elif c == ",":
            self._emit("char", p, p + 1)
        elif c == '"':
            self._quote(p, '"', "unterminated quoted string")
        elif c == "`":
            end = t.find("`", p + 1)
            if end < 0:
                raise self.error("unterminated raw quoted string")
            self._emit("raw", p, end + 1)
        elif c == "'":
            self._quote(p, "'", "unterminated character constant")
        elif c == "$":
            end = p + 1
            while end < len(t) and _is_alnum(t[end]):
                end += 1
            self._emit("var", p, end)
        elif c == "." and not (p + 1 < len(t) and t[p + 1].isdigit()):
            end = p + 1
            while end < len(t) and _is_alnum(t[end]):
                end += 1
            self._emit("dot" if end == p + 1 else "field", p, end)
        elif c in "+-." or c.isdigit():
            self._number(p)
        elif _is_alnum(c):
            end = p
            while end < len(t) and _is_alnum(t[end]):
                end += 1
            word = t[p:end]
            if end < len(t) and t[end] not in _SPACE + ".,|:()" and not self._at_right_of(end):
                raise self.error(f"bad character {t[end]!r}")
            kind = "keyword" if word in _KEYWORDS else "bool" if word in ("true", "false") else "ident"
            self._emit(kind, p, end)
        elif c == "(":
            self.paren += 1
            self._emit("lparen", p, p + 1)
        elif c == ")":
            self.paren -= 1
            if self.paren < 0:
                raise self.error("unexpected right paren")
            self._emit("rparen", p, p + 1)
        else:
            raise self.error(f"unrecognized character in action: {c!r}")

    def _at_right_of(self, pos: int) -> bool:
        return self.text.startswith(_RIGHT, pos) or self.text.startswith(" -" + _RIGHT, pos)

    def _emit(self, kind: str, start: int, end: int) -> None:
        self.toks.append(_Tok(kind, self.text[start:end], start))
        self.pos = end

    def _quote(self, p: int, q: str, msg: str) -> None:
        t, i = self.text, p + 1
        while True:
            if i >= len(t) or t[i] == "\n":
                raise self.error(msg)
            if t[i] == "\\":
                i += 2
                continue
            if t[i] == q:
                break
            i += 1
        self._emit("string" if q == '"' else "charconst", p, i + 1)

    def _number(self, p: int) -> None:
        t, i = self.text, p
        if i < len(t) and t[i] in "+-":
            i += 1
        digits = "0123456789_"
        if t.startswith(("0x", "0X"), i):
            i += 2
            digits = "0123456789abcdefABCDEF_"
        elif t.startswith(("0o", "0O"), i):
            i, digits = i + 2, "01234567_"
        elif t.startswith(("0b", "0B"), i):
            i, digits = i + 2, "01_"
        while i < len(t) and t[i] in digits:
            i += 1
        if i < len(t) and t[i] == ".":
            i += 1
            while i < len(t) and t[i] in digits:
                i += 1
        if i < len(t) and t[i] in ("pP" if "f" in digits else "eEpP"):
            i += 1
            if i < len(t) and t[i] in "+-":
                i += 1
            while i < len(t) and t[i] in "0123456789_":
                i += 1
        if i < len(t) and t[i] == "i":
            i += 1
        if i < len(t) and _is_alnum(t[i]):
            raise self.error(f"bad number syntax: {t[p : i + 1]!r}")
        self._emit("number", p, i)


# ---------------------------------------------------------------------- literals


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def go_unquote(quoted: str) -> str:
    """Go's ``strconv.Unquote`` for interpreted (``"..."``) and raw strings; ValueError if malformed."""
    if quoted.startswith("`"):
        return quoted[1:-1].replace("\r", "")
    q, body = quoted[0], quoted[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        e = body[i + 1 : i + 2]
        if e in _ESCAPES or e == q:
            out += (_ESCAPES.get(e) or e).encode()
            i += 2
        elif e in ("x", "u", "U"):
            n = {"x": 2, "u": 4, "U": 8}[e]
            hexd = body[i + 2 : i + 2 + n]
            if len(hexd) != n or any(h not in "0123456789abcdefABCDEF" for h in hexd):
                raise ValueError("invalid syntax")
            out += bytes([int(hexd, 16)]) if e == "x" else chr(int(hexd, 16)).encode()
            i += 2 + n
        elif e and e in "01234567":
            octd = body[i + 1 : i + 4]
            if len(octd) != 3 or any(h not in "01234567" for h in octd) or int(octd, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(int(octd, 8))
            i += 4
        else:
            raise ValueError("invalid syntax")
    return out.decode(errors="replace")


def _number_node(tok: _Tok) -> NumberNode:
    text = tok.val
    if text.startswith("'"):
        ch = go_unquote(text)
        if len(ch) != 1:
            raise ValueError(f"malformed character constant: {text}")
        return NumberNode(tok.pos, text, True, ord(ch), True, float(ord(ch)))
    if text.endswith("i"):
        raise ValueError(f"illegal number syntax: {text!r}")  # complex constants: rare, refused
    clean = text.replace("_", "")
    is_int, int_value = False, 0
    try:
        int_value = int(clean, 0)
        is_int = -(2**63) <= int_value < 2**63
    except ValueError:
        pass
    if is_int:
        return NumberNode(tok.pos, text, True, int_value, True, float(int_value))
    try:
        value = float.fromhex(clean) if clean.lstrip("+-")[:2] in ("0x", "0X") else float(clean)
    except ValueError:
        raise ValueError(f"illegal number syntax: {text!r}") from None
    exact = value == int(value) if value == value and abs(value) != float("inf") else False
    if exact and abs(value) < 2**63:
        return NumberNode(tok.pos, text, True, int(value), True, value)
    return NumberNode(tok.pos, text, False, 0, True, value)
