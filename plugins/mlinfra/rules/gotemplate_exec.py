"""Executing a parsed Go template (Go 1.19's ``text/template`` ``exec.go`` and builtins).

    tree = parse_go_template(text, name="t", functions=BUILTINS.keys() | mine.keys())  # gotemplate_builtins
    out = execute(tree, dot=data, functions=BUILTINS | mine, variables={"$value": 3.5})

Functions are :class:`GoFunc` records carrying Go's parameter types, because Go
converts constants and checks argument types by them (``gt $value 80`` compares a
float64 with an int and fails: "incompatible types for comparison"). Errors read as
Go's: ``template: t:1:12: executing "t" at <humanize "x">: error calling humanize: ...``.
Go structs and pointers are :class:`GoStruct` values; maps are dicts (``AnyMap`` for
``map[string]interface {}``, whose missing keys are nil rather than "").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlinfra.exceptions import MlinfraError
from mlinfra.rules.gofmt import go_print, go_type
from mlinfra.rules.gotemplate_lex import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    StringNode,
    TemplateNode,
    TextNode,
    Tree,
    VariableNode,
)


class GoTemplateExecError(MlinfraError):
    """Executing a template failed (the message is Go's)."""


class GoCallError(Exception):
    """Raised by a template function: becomes ``error calling NAME: message``."""


class AnyMap(dict[str, Any]):
    """A ``map[string]interface {}``: a missing key is nil (prints ``<no value>``)."""

    go_type = "map[string]interface {}"


@dataclass
class GoStruct:
    """A Go struct (or pointer to one): exported fields and methods by name."""

    go_type: str
    fields: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, GoFunc] = field(default_factory=dict)
    text: Callable[[], str] | None = None  # a String() method, when the type has one

    def go_string(self, *, top: bool = True) -> str:
        if self.text is not None:
            return self.text()
        if self.go_type.startswith("*") and not top:
            return "0xc000000000"  # fmt prints a nested pointer as its address
        return "{" + " ".join(go_print(v, top=False) for v in self.fields.values()) + "}"


@dataclass(frozen=True)
class GoFunc:
    """A template function with Go's parameter types.

    Types: ``string``, ``float64``, ``int``, ``bool``, ``interface {}`` (anything),
    ``reflect.Value`` (anything, nil included), or a named Go type matched against
    :func:`go_type` of the argument (``template.queryResult``, ``*template.sample``).
    ``variadic`` is the element type of a trailing ``...`` parameter.
    """

    fn: Callable[..., Any]
    params: tuple[str, ...] = ()
    variadic: str | None = None


_MISSING: Any = object()
_NILABLE_PREFIXES = ("*", "[]", "map[", "template.queryResult", "interface", "reflect")


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def is_true(v: Any) -> bool:
    """Go's ``isTrue``: zero values, empty collections and nil are false; structs are true."""
    if v is None:
        return False
    if isinstance(v, GoStruct):
        return True
    if isinstance(v, bool | int | float | str):
        return bool(v)
    try:
        return len(v) > 0
    except TypeError:
        return True


def _number_value(n: NumberNode) -> Any:
    """Go's ``idealConstant``: a float when the text looks like one, else an int."""
    if n.is_float and not n.text.lstrip("+-").lower().startswith("0x") and any(c in n.text for c in ".eEpP"):
        return n.float_value
    if n.is_int:
        return n.int_value
    return n.float_value


class _State:
    def __init__(self, tree: Tree, functions: Mapping[str, GoFunc], out: list[str], depth: int = 0):
        self.tree, self.functions, self.out, self.depth = tree, functions, out, depth
        self.vars: list[list[Any]] = []
        self.node: Node | None = None

    def error(self, msg: str) -> GoTemplateExecError:
        name = self.tree.name
        if self.node is None:
            return GoTemplateExecError(f"template: {name}: {msg}")
        context = str(self.node)
        return GoTemplateExecError(
            f'template: {self.tree.location(self.node.pos)}: executing "{name}" at <{context}>: {msg}'
        )

    # -- variables
    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        raise self.error(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        raise self.error(f"undefined variable: {name}")

    # -- walking
    def walk(self, dot: Any, node: Node) -> None:
        self.node = node
        if isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.node = node
                self.out.append(go_print(value))
        elif isinstance(node, BranchNode):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Continue() if node.is_continue else _Break()
        else:  # pragma: no cover - the parser makes no other nodes
            raise self.error(f"unknown node: {node}")

    def walk_if_or_with(self, dot: Any, node: BranchNode) -> None:
        mark = self.mark()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if is_true(value):
                self.walk(value if node.kind == "with" else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(mark)

    def walk_range(self, dot: Any, node: BranchNode) -> None:
        self.node = node
        mark = self.mark()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            items = self._range_items(value)
            if items is None or not items:
                if node.else_list is not None:
                    self.walk(dot, node.else_list)
                return
            body_mark = self.mark()
            for index, elem in items:
                self._range_vars(node.pipe, index, elem)
                try:
                    self.walk(elem, node.list)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    self.pop(body_mark)
        finally:
            self.pop(mark)

    def _range_items(self, value: Any) -> list[tuple[Any, Any]] | None:
        if value is None:
            return None
        if isinstance(value, Mapping):
            return [(k, value[k]) for k in sorted(value)]
        if isinstance(value, list | tuple):
            return list(enumerate(value))
        raise self.error(f"range can't iterate over {go_print(value)}")

    def _range_vars(self, pipe: PipeNode, index: Any, elem: Any) -> None:
        decl = [d.idents[0] for d in pipe.decl]
        if pipe.is_assign:
            if len(decl) > 1:
                self.set_var(decl[0], index)
                self.set_var(decl[1], elem)
            elif decl:
                self.set_var(decl[0], elem)
            return
        if decl:
            self.vars[-1][1] = elem
        if len(decl) > 1:
            self.vars[-2][1] = index

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        self.node = node
        body = self.tree.defined.get(node.name)
        if body is None:
            raise self.error(f'template "{node.name}" not defined')
        if self.depth >= 100_000:
            raise self.error(f"exceeded maximum template depth ({self.depth})")
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
        inner = _State(self.tree, self.functions, self.out, self.depth + 1)
        inner.push("$", new_dot)
        inner.walk(new_dot, body)

    # -- pipelines and commands
    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.node = pipe
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.idents[0], value)
            else:
                self.push(var.idents[0], value)
        return value

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.error(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            self.node = first
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            raise self.error("nil is not a command")
        if isinstance(first, NumberNode):
            return _number_value(first)
        if isinstance(first, StringNode):
            return first.value
        raise self.error(f"can't evaluate command {first}")  # pragma: no cover

    def eval_chain(self, dot: Any, chain: ChainNode, args: list[Node], final: Any) -> Any:
        self.node = chain
        if isinstance(chain.node, NilNode):
            raise self.error(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, "interface {}", chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args, final)

    def eval_variable(self, dot: Any, var: VariableNode, args: list[Node], final: Any) -> Any:
        self.node = var
        value = self.var_value(var.idents[0])
        if len(var.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, var, var.idents[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Node, idents: tuple[str, ...], args: list[Node], final: Any
    ) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, [], _MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: Node, args: list[Node], final: Any, receiver: Any) -> Any:
        if receiver is None:
            return None
        has_args = len(args) > 1 or final is not _MISSING
        if isinstance(receiver, GoStruct):
            if name in receiver.methods:
                return self.eval_call(dot, receiver.methods[name], node, name, args, final)
            if name in receiver.fields and not receiver.go_type.startswith("*time"):
                if has_args:
                    raise self.error(f"{name} has arguments but cannot be invoked as function")
                return receiver.fields[name]
        elif isinstance(receiver, Mapping):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            return None if isinstance(receiver, AnyMap) else ""
        raise self.error(f"can't evaluate field {name} in type {go_type(receiver)}")

    def eval_function(
        self, dot: Any, ident: IdentifierNode, cmd: CommandNode, args: list[Node], final: Any
    ) -> Any:
        self.node = ident
        fn = self.functions.get(ident.name)
        if fn is None:
            raise self.error(f'"{ident.name}" is not a defined function')
        return self.eval_call(dot, fn, cmd, ident.name, args, final)

    def eval_call(self, dot: Any, fn: GoFunc, node: Node, name: str, args: list[Node], final: Any) -> Any:
        args = args[1:]
        num_in = len(args) + (final is not _MISSING)
        fixed = len(fn.params)
        if fn.variadic is not None:
            if num_in < fixed:
                raise self.error(f"wrong number of args for {name}: want at least {fixed} got {len(args)}")
        elif num_in != fixed:
            raise self.error(f"wrong number of args for {name}: want {fixed} got {num_in}")
        if name in ("and", "or") and fn.fn is and_or_marker:
            return self._and_or(dot, name, args, final)
        argv: list[Any] = []
        for i, arg in enumerate(args):
            argv.append(self.eval_arg(dot, fn.params[i] if i < fixed else str(fn.variadic), arg))
        if final is not _MISSING:
            t = fn.params[num_in - 1] if num_in - 1 < fixed else str(fn.variadic)
            argv.append(self.validate_type(final, t))
        try:
            return fn.fn(*argv)
        except (GoCallError, ArithmeticError, ValueError, OSError, OverflowError) as e:
            self.node = node
            raise self.error(f"error calling {name}: {e}") from None

    def _and_or(self, dot: Any, name: str, args: list[Node], final: Any) -> Any:
        value: Any = None
        for arg in args:
            value = self.eval_arg(dot, "reflect.Value", arg)
            if is_true(value) == (name == "or"):
                return value
        if final is not _MISSING:
            value = final
        return value

    # -- arguments
    def eval_arg(self, dot: Any, typ: str, n: Node) -> Any:
        self.node = n
        if isinstance(n, DotNode):
            return self.validate_type(dot, typ)
        if isinstance(n, NilNode):
            if typ.startswith(_NILABLE_PREFIXES):
                return None
            raise self.error(f"cannot assign nil to {typ}")
        if isinstance(n, FieldNode):
            return self.validate_type(self.eval_field_chain(dot, dot, n, n.idents, [n], _MISSING), typ)
        if isinstance(n, VariableNode):
            return self.validate_type(self.eval_variable(dot, n, [], _MISSING), typ)
        if isinstance(n, PipeNode):
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if isinstance(n, IdentifierNode):
            fn_cmd = CommandNode(n.pos, [n])
            return self.validate_type(self.eval_function(dot, n, fn_cmd, [n], _MISSING), typ)
        if isinstance(n, ChainNode):
            return self.validate_type(self.eval_chain(dot, n, [], _MISSING), typ)
        return self._constant_arg(typ, n)

    def _constant_arg(self, typ: str, n: Node) -> Any:
        if typ == "bool" and isinstance(n, BoolNode):
            return n.value
        if typ == "float64" and isinstance(n, NumberNode) and n.is_float:
            return n.float_value
        if typ == "int" and isinstance(n, NumberNode) and n.is_int:
            return n.int_value
        if typ == "string" and isinstance(n, StringNode):
            return n.value
        if typ in ("interface {}", "reflect.Value"):
            if isinstance(n, BoolNode):
                return n.value
            if isinstance(n, NumberNode):
                return _number_value(n)
            if isinstance(n, StringNode):
                return n.value
        expected = {"bool": "bool", "float64": "float", "int": "integer", "string": "string"}.get(typ)
        if expected is not None:
            raise self.error(f"expected {expected}; found {n}")
        raise self.error(f"can't handle {n} for arg of type {typ}")

    def validate_type(self, value: Any, typ: str) -> Any:
        if value is None:
            if typ.startswith(_NILABLE_PREFIXES):
                return None
            raise self.error(f"invalid value; expected {typ}")
        if typ in ("interface {}", "reflect.Value"):
            return value
        actual = go_type(value)
        if actual == typ or (typ == "*time.Time" and actual == "time.Time"):
            return value
        raise self.error(f"wrong type for value; expected {typ}; got {actual}")


def and_or_marker(*args: Any) -> Any:  # pragma: no cover - and/or short-circuit in eval_call
    """The ``fn`` of the builtins ``and``/``or``, which the executor evaluates lazily itself."""
    raise NotImplementedError("and/or are evaluated by the executor")


def execute(
    tree: Tree,
    *,
    dot: Any,
    functions: Mapping[str, GoFunc],
    variables: Mapping[str, Any] | None = None,
) -> str:
    """Run ``tree`` with ``dot`` and the predeclared ``variables``; raises :class:`GoTemplateExecError`."""
    out: list[str] = []
    state = _State(tree, functions, out)
    state.push("$", dot)
    for name, value in (variables or {}).items():
        state.push(name, value)
    state.walk(dot, tree.root)
    return "".join(out)
