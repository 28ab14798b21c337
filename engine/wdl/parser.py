"""The `@` language's grammar: text → AST, every node with its character offset.

A field is WDL when it starts with ``@`` (one expression, a typed value) or holds ``@{…}``
(interpolation: literal text and expressions, a string). ``@@`` at the start, and ``@@{``
inside text, escape a literal ``@``. ``split(text)`` cuts a field into these parts;
``parse(expr)`` reads one expression::

    expr   := literal | name '(' [expr (',' expr)*] ')' deref*
    deref  := ['?'] ('.' name | '[' expr ']')
    literal:= 'text' ('' is a quote) | integer | float | true | false | null

There are no operators, no object or array literals and no calls on call results.
Offsets are 0-based positions in the *field* text, so a problem can name file:line:col.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from ..errors import ExpressionSyntaxError

MAX_EXPRESSION = 8_192   # characters per expression (Logic Apps' limit)
MAX_DEPTH = 64           # calls and brackets inside each other


WdlSyntaxError = ExpressionSyntaxError  # a field that is not valid `@` language


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any
    start: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str          # as written (names are matched case-insensitively)
    args: tuple
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Access:
    target: "Node"
    key: "Node"        # a Lit for .name, any expression for [expr]
    safe: bool         # ?. / ?[ : null instead of an error
    dotted: bool       # .name (else [expr])
    start: int


Node = Union[Lit, Call, Access]

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*'?)
  | (?P<num>[-+]?(?:[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?))
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[()\[\],.?])
""", re.X)

_LITERALS = {"true": True, "false": False, "null": None}


class _Parser:
    __slots__ = ("text", "pos", "end", "depth")

    def __init__(self, text: str, pos: int, end: int):
        self.text, self.pos, self.end, self.depth = text, pos, end, 0

    # -- tokens ---------------------------------------------------------------------------
    def skip(self) -> None:
        t, p = self.text, self.pos
        while p < self.end and t[p] in " \t\r\n":
            p += 1
        self.pos = p

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < self.end else ""

    def expect(self, ch: str, what: str) -> None:
        if self.peek() != ch:
            raise WdlSyntaxError(f"expected {what}{self._found()}", self.pos)
        self.pos += 1

    def _found(self) -> str:
        if self.pos >= self.end:
            return " but the expression ended"
        return f" at {self.text[self.pos:self.pos + 12]!r}"

    # -- grammar --------------------------------------------------------------------------
    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WdlSyntaxError(f"the expression is nested more than {MAX_DEPTH} levels deep", self.pos)
        node = self.primary()
        node = self.derefs(node)
        self.depth -= 1
        return node

    def primary(self) -> Node:
        self.skip()
        start = self.pos
        m = _TOKEN.match(self.text, start, self.end)
        if m is None or m.lastgroup == "ws":
            if start >= self.end:
                raise WdlSyntaxError("expected a value or a function call but the expression ended", start)
            ch = self.text[start]
            hint = " (strings use single quotes)" if ch == '"' else ""
            raise WdlSyntaxError(f"unexpected character {ch!r}{hint}", start)
        kind, tok = m.lastgroup, m.group()
        if kind == "str":
            if len(tok) < 2 or not tok.endswith("'") or _odd_end(tok):
                raise WdlSyntaxError("a string literal is not closed (a quote inside a string is written '')",
                                     start)
            self.pos = m.end()
            return Lit(tok[1:-1].replace("''", "'"), start)
        if kind == "num":
            self.pos = m.end()
            return Lit(_number(tok, start), start)
        if kind == "name":
            self.pos = m.end()
            low = tok.lower()
            if self.peek() != "(":
                if low in _LITERALS:
                    return Lit(_LITERALS[low], start)
                raise WdlSyntaxError(f"'{tok}' is not a value: a function is called with (), "
                                     f"a string is written in single quotes", start)
            self.pos += 1
            args = []
            if self.peek() != ")":
                while True:
                    args.append(self.expr())
                    if self.peek() == ",":
                        self.pos += 1
                        continue
                    break
            self.expect(")", f"',' or ')' to close {tok}(")
            return Call(tok, tuple(args), start, self.pos)
        if tok in "([":
            raise WdlSyntaxError(f"unexpected {tok!r}: there are no array literals or parentheses "
                                 f"(use createArray(...))", start)
        raise WdlSyntaxError(f"unexpected {tok!r}: expected a value or a function call", start)

    def derefs(self, node: Node) -> Node:
        while True:
            ch = self.peek()
            start = self.pos
            safe = False
            if ch == "?":
                safe = True
                self.pos += 1
                ch = self.peek()
                if ch == "" or ch not in ".[":
                    raise WdlSyntaxError("expected '.' or '[' after '?'", self.pos)
            if ch == ".":
                self.pos += 1
                self.skip()
                m = re.compile(r"[A-Za-z0-9_$@#-]+").match(self.text, self.pos, self.end)
                if m is None:
                    raise WdlSyntaxError(f"expected a property name after '.'{self._found()}", self.pos)
                self.pos = m.end()
                node = Access(node, Lit(m.group(), m.start()), safe, True, start)
            elif ch == "[":
                self.pos += 1
                key = self.expr()
                self.expect("]", "']'")
                node = Access(node, key, safe, False, start)
            elif ch == "(":
                raise WdlSyntaxError("a call's result cannot be called", self.pos)
            else:
                return node


def _odd_end(tok: str) -> bool:
    """'abc'' is not closed: the last quote is half of an escape."""
    body = tok[1:]
    i, n = 0, len(body)
    while i < n:
        if body[i] == "'":
            if i + 1 < n and body[i + 1] == "'":
                i += 2
                continue
            return i != n - 1
        i += 1
    return True


def _number(tok: str, start: int) -> Any:
    if re.fullmatch(r"[-+]?[0-9]+", tok):
        value = int(tok)
        if not -2**63 <= value < 2**63:
            raise WdlSyntaxError(f"the integer {tok[:30]} is outside the 64-bit range", start)
        return value
    value = float(tok)
    if value in (float("inf"), float("-inf")):
        raise WdlSyntaxError(f"the number {tok[:30]} is too large", start)
    return value


def parse(text: str, start: int = 0, end: int | None = None) -> Node:
    """One expression filling ``text[start:end]``; WdlSyntaxError otherwise."""
    end = len(text) if end is None else end
    if end - start > MAX_EXPRESSION:
        raise WdlSyntaxError(f"the expression is {end - start:,} characters long; at most {MAX_EXPRESSION:,}", start)
    p = _Parser(text, start, end)
    if p.peek() == "":
        raise WdlSyntaxError("the expression is empty", start)
    node = p.expr()
    if p.peek() != "":
        raise WdlSyntaxError(f"unexpected {text[p.pos:p.pos + 12]!r} after the expression", p.pos)
    return node


def _close(text: str, start: int) -> Node:
    """The expression of ``@{`` at ``start`` (past the brace), and where its ``}`` is."""
    p = _Parser(text, start, len(text))
    if p.peek() == "}":
        raise WdlSyntaxError("'@{}' holds no expression", start)
    if p.peek() == "":
        raise WdlSyntaxError("'@{' is not closed with '}'", start - 2)
    node = p.expr()
    if p.peek() != "}":
        if p.pos >= len(text):
            raise WdlSyntaxError("'@{' is not closed with '}'", start - 2)
        raise WdlSyntaxError(f"unexpected {text[p.pos:p.pos + 12]!r}: expected '}}' to close '@{{'", p.pos)
    if p.pos - start > MAX_EXPRESSION:
        raise WdlSyntaxError(f"the expression is {p.pos - start:,} characters long; at most {MAX_EXPRESSION:,}", start)
    return node, p.pos


_INTERPOLATION = re.compile(r"@\{(?!\{)")


def is_wdl(text: str) -> bool:
    """Is this field `@` language (or an ``@@`` escape)? (``@{{`` is an ``@`` before Jinja's ``{{``.)"""
    if len(text) >= 2 and text[0] == "@" and not text.startswith("@{{"):
        return True
    return "@{" in text and _INTERPOLATION.search(text) is not None


def split(text: str) -> tuple[str, Any]:
    """What a field is: ``("literal", str)``, ``("whole", Node)`` or ``("parts", [str | Node, ...])``."""
    if len(text) >= 2 and text[0] == "@":
        if text[1] == "@":
            return "literal", text[1:]
        if text[1] != "{":
            return "whole", parse(text, 1)
    if not is_wdl(text):
        return "literal", text
    parts: list = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("@", i)
        if j < 0:
            buf.append(text[i:])
            break
        if text.startswith("@@{", j):
            buf.append(text[i:j] + "@{")
            i = j + 3
            continue
        if text.startswith("@{", j) and not text.startswith("@{{", j):
            buf.append(text[i:j])
            node, close = _close(text, j + 2)
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(node)
            i = close + 1
            continue
        buf.append(text[i:j + 1])
        i = j + 1
    if buf:
        parts.append("".join(buf))
    parts = [p for p in parts if p != ""]
    return "parts", parts
