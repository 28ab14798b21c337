"""A parsed `@` field compiled to Python closures, and evaluated against a scope.

``compile_field(text)`` returns a ``Program``: a literal, a whole-value expression or
interpolation parts. Unknown functions and wrong argument counts are found when compiling
(so ``flowrun validate`` reports them); running a program ticks the evaluation's budget
(engine.sandbox) once per call and measures what each call builds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, Callable

from .. import sandbox
from ..errors import ExpressionSyntaxError
from .library import Fn, load, lookup
from .parser import Access, Call, Lit, Node, WdlSyntaxError, split
from .values import InvalidTemplate, exported, member, to_text

Code = Callable[[dict], Any]


CompileError = ExpressionSyntaxError  # an unknown function or a wrong argument count


@dataclass
class Program:
    kind: str                      # "literal" | "whole" | "parts"
    literal: str = ""
    code: Code | None = None
    parts: list = field(default_factory=list)   # str | Code
    calls: list = field(default_factory=list)   # (function, constant first argument, offset)
    functions: set = field(default_factory=set)  # canonical names of every function called

    def run(self, names: dict) -> Any:
        if self.kind == "literal":
            return self.literal
        if self.kind == "whole":
            return exported(self.code(names))
        budget = sandbox.current()
        out = []
        total = 0
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                total += len(p)
                continue
            v = p(names)
            if isinstance(v, (dict, list)):
                sandbox.check_text(budget, v)
            t = to_text(v)
            total += len(t)
            budget.size(total, "the interpolated text")
            out.append(t)
        return "".join(out)


def suggest_function(name: str) -> str:
    names = [f.name for f in load().values()]
    close = get_close_matches(name, names, n=1, cutoff=0.7) or get_close_matches(name.lower(),
                                                                                [n.lower() for n in names], n=1)
    if close:
        found = lookup(close[0])
        return f" (did you mean {found.name}()?)" if found else ""
    return ""


class _Compiler:
    def __init__(self, text: str, src: tuple[int, int]):
        self.text = text
        self.where = text[src[0]:src[1]].strip()
        self.calls: list = []
        self.functions: set = set()

    def node(self, n: Node) -> Code:
        if isinstance(n, Lit):
            v = n.value
            return lambda names: v
        if isinstance(n, Access):
            return self.access(n)
        return self.call(n)

    def access(self, n: Access) -> Code:
        target = self.node(n.target)
        safe, where = n.safe, self.where
        if isinstance(n.key, Lit):
            key = n.key.value

            def get(names: dict) -> Any:
                t = target(names)
                if type(t) is dict and key in t:
                    return t[key]
                return member(t, key, safe, where)
            return get
        keyc = self.node(n.key)
        return lambda names: member(target(names), keyc(names), safe, where)

    def call(self, n: Call) -> Code:
        fn = lookup(n.name)
        if fn is None:
            raise CompileError(f"The template function '{n.name}' is not defined or not valid"
                               f"{suggest_function(n.name)}.", n.start)
        problem = fn.arity_problem(len(n.args))
        if problem:
            raise CompileError(problem, n.start)
        self.functions.add(fn.name)
        if n.args and isinstance(n.args[0], Lit) and isinstance(n.args[0].value, str):
            self.calls.append((fn.name, n.args[0].value, n.start))
        elif not n.args and (fn.workflow or fn.scope):  # item(), trigger(): what a place may not read
            self.calls.append((fn.name, "", n.start))
        args = [self.node(a) for a in n.args]
        return _bind(fn, args)


def _bind(fn: Fn, args: list[Code]) -> Code:
    name = fn.name
    impl = fn.impl
    state = sandbox._state
    if fn.workflow:
        def wf(names: dict) -> Any:
            f = names.get(name)
            if f is None:
                raise InvalidTemplate(f"The template language function '{name}' is not available here.")
            _tick(state)
            return f(*[a(names) for a in args])
        return wf
    if fn.lazy:
        def lazy(names: dict) -> Any:
            _tick(state)
            try:
                return _checked(impl(*[_thunk(a, names) for a in args]))
            except ArithmeticError as exc:
                raise _arithmetic(name, exc) from None
        return lazy
    if fn.scope:
        def scoped(names: dict) -> Any:
            _tick(state)
            try:
                return _checked(impl(names, *[a(names) for a in args]))
            except ArithmeticError as exc:
                raise _arithmetic(name, exc) from None
        return scoped
    if len(args) == 1:
        a0 = args[0]

        def one(names: dict) -> Any:
            _tick(state)
            v = a0(names)
            try:
                return _checked(impl(v))
            except ArithmeticError as exc:
                raise _arithmetic(name, exc) from None
        return one
    if len(args) == 2:
        a0, a1 = args

        def two(names: dict) -> Any:
            _tick(state)
            v0, v1 = a0(names), a1(names)
            try:
                return _checked(impl(v0, v1))
            except ArithmeticError as exc:
                raise _arithmetic(name, exc) from None
        return two

    def many(names: dict) -> Any:
        _tick(state)
        vs = [a(names) for a in args]
        try:
            return _checked(impl(*vs))
        except ArithmeticError as exc:
            raise _arithmetic(name, exc) from None
    return many


def _arithmetic(name: str, exc: ArithmeticError) -> InvalidTemplate:
    """A number or a date out of what Python computes (a decimal's exponent, a date before year 1
    once its offset is applied), in Logic Apps' words, naming the function."""
    what = "divides by zero" if isinstance(exc, ZeroDivisionError) else "gives a result out of range"
    return InvalidTemplate(f"The template language function '{name}' {what}.")


def _thunk(code: Code, names: dict) -> Callable[[], Any]:
    return lambda: code(names)


def _tick(state: Any) -> None:
    b = getattr(state, "budget", None)
    if b is not None:
        b.tick()


def _checked(value: Any) -> Any:
    if type(value) is str and len(value) > 4096:
        budget = sandbox.current()
        budget.size(len(value), "a text")
        budget.alloc(len(value), "text")
    elif type(value) in (list, dict) and len(value) > 512:
        budget = sandbox.current()
        budget.size(len(value) * 8, "a collection")
        budget.alloc(len(value) * 8, "collections")
    return value


def compile_field(text: str) -> Program:
    """The program of one field; WdlSyntaxError or CompileError (each with an ``offset``)."""
    kind, found = split(text)
    if kind == "literal":
        return Program("literal", literal=found)
    load()
    if kind == "whole":
        c = _Compiler(text, (1, len(text)))
        code = c.node(found)
        return Program("whole", code=code, calls=c.calls, functions=c.functions)
    calls, functions, parts = [], set(), []
    for p in found:
        if isinstance(p, str):
            parts.append(p)
            continue
        c = _Compiler(text, (0, len(text)))
        parts.append(c.node(p))
        calls += c.calls
        functions |= c.functions
    return Program("parts", parts=parts, calls=calls, functions=functions)


__all__ = ["CompileError", "Program", "WdlSyntaxError", "compile_field", "suggest_function"]
