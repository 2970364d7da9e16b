"""Go's ``text/template`` parser (Go 1.19's ``text/template/parse``), over :mod:`gotemplate_lex`.

    tree = parse_go_template("{{ if gt $value 80.0 }}hot{{ else }}ok{{ end }}",
                             name="t", functions={"gt"}, variables=("$", "$value"))

Accepts and refuses what Go 1.19 does (Prometheus 2.42's build): ``if``/``else if``,
``range`` with ``break``/``continue``, ``with``, variables declared and assigned,
``define``/``template``/``block``; functions and variables are checked while parsing
(``function "x" not defined``, ``undefined variable "$x"``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from mlinfra.rules.gotemplate_lex import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    DotNode,
    FieldNode,
    GoTemplateSyntaxError,
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
    _ElseNode,
    _EndNode,
    _Lexer,
    _number_node,
    _Tok,
    go_unquote,
)

_OPERAND_START = {
    "bool",
    "charconst",
    "dot",
    "field",
    "ident",
    "number",
    "nil",
    "raw",
    "string",
    "var",
    "lparen",
}


def _describe(tok: _Tok) -> str:
    """Go's ``item.String()``."""
    if tok.kind == "eof":
        return "EOF"
    if tok.kind == "keyword":
        return f"<{tok.val}>"
    if len(tok.val) > 10:
        return '"' + tok.val[:10] + '"...'
    return '"' + tok.val.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Parser:
    def __init__(self, text: str, name: str, functions: Collection[str], variables: Iterable[str]):
        self.name, self.text = name, text
        self.toks = _Lexer(text, name).run()
        self.i = 0
        self.functions = functions
        self.vars = list(variables)
        self.range_depth = 0
        self.defined: dict[str, ListNode] = {}

    # -- token stream
    def error(self, msg: str) -> GoTemplateSyntaxError:
        tok = self.toks[min(self.i, len(self.toks)) - 1] if self.i else self.toks[0]
        line = 1 + self.text[: tok.pos].count("\n")
        return GoTemplateSyntaxError(f"template: {self.name}:{line}: {msg}")

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next_non_space(self) -> _Tok:
        tok = self.next()
        while tok.kind == "space":
            tok = self.next()
        return tok

    def peek_non_space(self) -> _Tok:
        tok = self.next_non_space()
        self.backup()
        return tok

    def expect(self, kind: str, context: str) -> _Tok:
        tok = self.next_non_space()
        if tok.kind != kind:
            raise self.unexpected(tok, context)
        return tok

    def unexpected(self, tok: _Tok, context: str) -> GoTemplateSyntaxError:
        return self.error(f"unexpected {_describe(tok)} in {context}")

    # -- lists and actions
    def parse(self) -> Tree:
        root = ListNode(0)
        while self.peek().kind != "eof":
            if self.peek().kind == "left":
                self.next()
                if self.next_non_space().val == "define":
                    self._definition()
                    continue
                self.i -= 1
                while self.toks[self.i].kind != "left":
                    self.i -= 1
            node = self._text_or_action()
            if isinstance(node, _EndNode | _ElseNode):
                raise self.error(f"unexpected {'{{end}}' if isinstance(node, _EndNode) else '{{else}}'}")
            root.nodes.append(node)
        return Tree(self.name, self.text, root, self.defined)

    def _definition(self) -> None:
        name_tok = self.next_non_space()
        if name_tok.kind not in ("string", "raw"):
            raise self.unexpected(name_tok, "define clause")
        self.expect("right", "define clause")
        outer_vars, self.vars = self.vars, ["$"]
        body, end = self._item_list()
        self.vars = outer_vars
        if not isinstance(end, _EndNode):
            raise self.error(f"unexpected {{{{else}}}} in definition of {go_unquote(name_tok.val)!r}")
        self._add_definition(go_unquote(name_tok.val), body)

    def _add_definition(self, name: str, body: ListNode) -> None:
        existing = self.defined.get(name)
        if existing is not None and _is_non_empty(existing) and _is_non_empty(body):
            raise self.error(f"template: multiple definition of template {name!r}")
        if existing is None or _is_non_empty(body):
            self.defined[name] = body

    def _item_list(self) -> tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().kind != "eof":
            node = self._text_or_action()
            if isinstance(node, _EndNode | _ElseNode):
                return lst, node
            lst.nodes.append(node)
        raise self.error("unexpected EOF")

    def _text_or_action(self) -> Node:
        tok = self.next_non_space()
        if tok.kind == "text":
            return TextNode(tok.pos, tok.val)
        if tok.kind == "left":
            return self._action()
        raise self.unexpected(tok, "input")

    def _action(self) -> Node:
        tok = self.next_non_space()
        if tok.kind == "keyword":
            control = {
                "block": self._block,
                "break": lambda: self._break(tok, continue_=False),
                "continue": lambda: self._break(tok, continue_=True),
                "else": lambda: self._else(tok),
                "end": lambda: self._end(tok),
                "if": lambda: self._branch(tok, "if"),
                "range": lambda: self._branch(tok, "range"),
                "template": self._template,
                "with": lambda: self._branch(tok, "with"),
            }.get(tok.val)
            if control is not None:
                return control()
        self.backup()
        pos = self.peek().pos
        return ActionNode(pos, self._pipeline("command", "right"))

    def _break(self, tok: _Tok, *, continue_: bool) -> Node:
        word = "continue" if continue_ else "break"
        if self.range_depth == 0:
            raise self.error(f"{{{{{word}}}}} outside {{{{range}}}}")
        self.expect("right", f"{{{{{word}}}}}")
        return BreakNode(tok.pos, is_continue=continue_)

    def _else(self, tok: _Tok) -> Node:
        if self.peek_non_space().val == "if":
            return _ElseNode(tok.pos)  # "{{else if": the "if" stays pending for _branch
        self.expect("right", "else")
        return _ElseNode(tok.pos)

    def _end(self, tok: _Tok) -> Node:
        self.expect("right", "end")
        return _EndNode(tok.pos)

    def _branch(self, tok: _Tok, kind: str) -> Node:
        mark = len(self.vars)
        try:
            pipe = self._pipeline(kind, "right")
            self.range_depth += kind == "range"
            body, nxt = self._item_list()
            self.range_depth -= kind == "range"
            else_list: ListNode | None = None
            if isinstance(nxt, _ElseNode):
                if kind == "if" and self.peek_non_space().val == "if":
                    if_tok = self.next_non_space()
                    else_list = ListNode(nxt.pos, [self._branch(if_tok, "if")])
                else:
                    else_list, end = self._item_list()
                    if not isinstance(end, _EndNode):
                        raise self.error("expected end; found {{else}}")
            return BranchNode(tok.pos, kind, pipe, body, else_list)
        finally:
            del self.vars[mark:]

    def _template(self) -> Node:
        tok = self.next_non_space()
        name = self._template_name(tok, "template clause")
        pipe = None
        if self.next_non_space().kind != "right":
            self.backup()
            pipe = self._pipeline("template clause", "right")
        return TemplateNode(tok.pos, name, pipe)

    def _template_name(self, tok: _Tok, context: str) -> str:
        if tok.kind not in ("string", "raw"):
            raise self.unexpected(tok, context)
        try:
            return go_unquote(tok.val)
        except ValueError:
            raise self.error(f"bad string syntax: {tok.val}") from None

    def _block(self) -> Node:
        tok = self.next_non_space()
        name = self._template_name(tok, "block clause")
        pipe = self._pipeline("block clause", "right")
        outer_vars, self.vars = self.vars, ["$"]
        body, end = self._item_list()
        self.vars = outer_vars
        if not isinstance(end, _EndNode):
            raise self.error("unexpected {{else}} in block clause")
        self._add_definition(name, body)
        return TemplateNode(tok.pos, name, pipe)

    # -- pipelines
    def _pipeline(self, context: str, end: str) -> PipeNode:
        pipe = PipeNode(self.peek_non_space().pos)
        self._declarations(pipe, context)
        while True:
            tok = self.next_non_space()
            if tok.kind == end:
                self._check_pipeline(pipe, context)
                return pipe
            if tok.kind in _OPERAND_START:
                self.backup()
                pipe.cmds.append(self._command())
                continue
            raise self.unexpected(tok, context)

    def _declarations(self, pipe: PipeNode, context: str) -> None:
        while True:
            v = self.peek_non_space()
            if v.kind != "var":
                return
            start = self.i
            self.next_non_space()
            nxt = self.peek_non_space()
            if nxt.kind in ("assign", "declare"):
                pipe.is_assign = nxt.kind == "assign"
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, (v.val,)))
                self.vars.append(v.val)
                return
            if nxt.kind == "char" and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, (v.val,)))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().kind in ("var", "right", "rparen"):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            self.i = start
            return

    def _check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:], start=1):
            if isinstance(cmd.args[0], BoolNode | DotNode | NilNode | StringNode | NumberNode):
                raise self.error(f"non executable command in pipeline stage {i + 1}")

    def _command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self._operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.kind == "space":
                continue
            if tok.kind in ("right", "rparen"):
                self.backup()
            elif tok.kind != "pipe":
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def _operand(self) -> Node | None:
        node = self._term()
        if node is None:
            return None
        if self.peek().kind != "field":
            return node
        fields: list[str] = []
        pos = self.peek().pos  # Go positions a chain at its first field
        while self.peek().kind == "field":
            fields.append(self.next().val[1:])
        if isinstance(node, FieldNode):
            return FieldNode(pos, node.idents + tuple(fields))
        if isinstance(node, VariableNode):
            return VariableNode(pos, node.idents + tuple(fields))
        if isinstance(node, BoolNode | StringNode | NilNode | DotNode | NumberNode):
            raise self.error(f"unexpected . after term {str(node)!r}")
        return ChainNode(pos, node, tuple(fields))

    def _term(self) -> Node | None:
        tok = self.next_non_space()
        kind = tok.kind
        if kind == "ident":
            if tok.val not in self.functions:
                raise self.error(f'function "{tok.val}" not defined')
            return IdentifierNode(tok.pos, tok.val)
        if kind == "dot":
            return DotNode(tok.pos)
        if kind == "keyword" and tok.val == "nil":
            return NilNode(tok.pos)
        if kind == "var":
            if tok.val not in self.vars:
                raise self.error(f'undefined variable "{tok.val}"')
            return VariableNode(tok.pos, (tok.val,))
        if kind == "field":
            return FieldNode(tok.pos, (tok.val[1:],))
        if kind == "bool":
            return BoolNode(tok.pos, tok.val == "true")
        if kind in ("number", "charconst"):
            try:
                return _number_node(tok)
            except ValueError as e:
                raise self.error(str(e)) from None
        if kind == "lparen":
            return self._pipeline("parenthesized pipeline", "rparen")
        if kind in ("string", "raw"):
            try:
                return StringNode(tok.pos, tok.val, go_unquote(tok.val))
            except ValueError:
                raise self.error(f"bad string syntax: {tok.val}") from None
        self.backup()
        return None


def _is_non_empty(lst: ListNode) -> bool:
    return any(not (isinstance(n, TextNode) and not n.text.strip()) for n in lst.nodes)


def parse_go_template(
    text: str, *, name: str, functions: Collection[str], variables: Iterable[str] = ("$",)
) -> Tree:
    """Parse ``text``; raises :class:`GoTemplateSyntaxError` as Go's parser would."""
    return _Parser(text, name, functions, variables).parse()
