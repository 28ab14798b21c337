"""Templated values: Jinja2 ``{{ }}`` in strings, evaluated in Jinja2's sandbox.

The evaluator sees only what it is given: a *scope* whose ``names(functions)`` returns the
workflow functions (``triggerBody()``, ``body('a')``, ``variables('v')``, ``item()`` ...) bound
to it (engine.frames.Frame). It never reaches into the executor or the store.

Typing rules:
- a string that is exactly one ``{{ expr }}`` (surrounding white space allowed) yields the
  value itself: dict, list, number, bool, null, or a string exactly as it was;
- any other string containing ``{{``/``{%`` renders to a string (objects as compact JSON,
  null as "", booleans as true/false);
- strings without template markers are returned untouched, and results are never
  evaluated again, so ``{{ 7*7 }}`` inside a payload stays literally that.
Undefined names or attributes raise ExpressionError naming the expression.

A string is in the `@` language (Logic Apps' WDL, engine.wdl) instead when it starts with
``@`` (one expression: a typed value) or holds ``@{...}`` (interpolation: a string); ``@@``
escapes a literal ``@``. ``@{{`` is a literal ``@`` before a Jinja ``{{``. A flow may mix
the two languages across fields, not inside one. The functions of engine.wdl.library are
Jinja globals too, from the same implementation (``{{ formatDateTime(utcNow(), 'yyyy') }}``).
"""
from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import inspect
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from . import sandbox, wdl
from .lru import LRU
from .errors import ActionError, ExpressionError, ExpressionLimit
from .sandbox import Budget, Limits, OffloadSignal

# Functions a scope must answer; the executor's frames implement them.
WORKFLOW_FUNCTIONS = ("trigger", "triggerBody", "triggerOutputs", "body", "outputs", "actions",
                      "variables", "parameters", "item", "items", "iterationIndexes", "result",
                      "workflow", "appsetting", "listCallbackUrl", "action")
# action(): the current action's own result, only where Logic Apps allows it (trackedProperties)
ACTION_SELF_FIELDS = ("trackedProperties",)
# Calls whose first argument names an action that must have finished first.
ACTION_FUNCTIONS = ("body", "outputs", "actions", "result")
LOOP_FUNCTIONS = ("items", "iterationIndexes")

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)
INLINE_SLICE = 0.003  # CPU seconds an evaluation may hold the event loop before it moves to a thread


def _utcnow(fmt: str | None = None) -> str:
    """utcNow(): ISO 8601; utcNow('%Y-%m-%d') a strftime format (as before); utcNow('yyyy-MM-dd')
    WDL's, a .NET format."""
    if fmt is None or (isinstance(fmt, str) and "%" in fmt):
        now = _dt.datetime.now(_dt.timezone.utc)
        return now.strftime(fmt) if fmt else now.isoformat().replace("+00:00", "Z")
    return wdl.lookup("utcNow").impl(fmt)


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and not isinstance(v, Undefined)), None)


def _b64decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-8")


def _b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else (value if isinstance(value, str) else json.dumps(value)).encode()
    return base64.b64encode(data).decode()


def _to_datetime(value: Any) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value
    if not isinstance(value, str):
        raise ExpressionError(f"datetime: expected an ISO 8601 date-time string, got {type_name(value)} {_show(value)}")
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ExpressionError(f"datetime: {_show(value)} is not an ISO 8601 date-time "
                              f"(e.g. 2024-01-02T03:04:05Z)") from None


def _dateformat(value: Any, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    if not isinstance(fmt, str):
        raise ExpressionError(f"dateformat: the format must be a string such as '%Y-%m-%d', got {type_name(fmt)}")
    return _to_datetime(value).strftime(fmt)


_TIME_UNITS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds")


def _add_time(value: Any, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0,
              weeks: float = 0, milliseconds: float = 0) -> str:
    amounts = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days, "weeks": weeks,
               "milliseconds": milliseconds}
    for unit, n in amounts.items():
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise ExpressionError(f"add_time: {unit} must be a number, got {type_name(n)} {_show(n)}")
    try:
        d = _to_datetime(value) + _dt.timedelta(**amounts)
    except OverflowError:
        raise ExpressionError("add_time: the date would fall outside years 1 to 9999") from None
    return d.isoformat().replace("+00:00", "Z")


def _fromjson(value: Any) -> Any:
    if not isinstance(value, (str, bytes)):
        raise ExpressionError(f"fromjson: expected a JSON string, got {type_name(value)}")
    from .safejson import loads  # bounded depth and numbers: data is untrusted

    try:
        return loads(value)
    except json.JSONDecodeError as exc:
        raise ExpressionError(f"fromjson: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:
        text = str(exc)
        if text.startswith("malformed JSON"):
            text = f"not valid JSON ({text.removeprefix('malformed JSON').lstrip(': ')})"
        raise ExpressionError(f"fromjson: {text}") from None


def _b64decode_checked(value: Any) -> str:
    try:
        return _b64decode(value)
    except (ValueError, TypeError) as exc:
        raise ExpressionError(f"b64decode: {_show(value)} is not base64 of UTF-8 text ({exc})") from None


def _finalize(value: Any) -> str:
    """``to_text`` for ``{{ }}`` inside text: measured before it is written out."""
    if isinstance(value, (dict, list, tuple, sandbox.Lazy)):
        budget = sandbox.current()
        if budget.lazy:
            value = sandbox.materialize(value, budget)
        sandbox.check_text(budget, value)
    return to_text(value)


def to_text(value: Any) -> str:
    """How a value reads inside text: JSON for objects, '' for null, true/false."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


FILTERS: dict[str, Callable[..., Any]] = {
    "json": lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str),
    "fromjson": _fromjson,
    "b64encode": _b64encode,
    "b64decode": _b64decode_checked,
    "sha256": lambda v: hashlib.sha256(to_text(v).encode()).hexdigest(),
    "datetime": _to_datetime,
    "dateformat": _dateformat,
    "add_time": _add_time,
    "text": to_text,
}
HELPERS: dict[str, Callable[..., Any]] = {
    "utcNow": _utcnow,
    "guid": lambda: str(uuid.uuid4()),
    "coalesce": _coalesce,
}


@dataclass(frozen=True)
class Function:
    """One entry of the reference: how a template calls it, and what it does."""

    name: str
    kind: str        # "workflow" (reads the run), "helper" (a global function), "filter" (value | name(...))
    signature: str
    description: str


# The reference of everything flowrun adds to Jinja2 (`flowrun functions` prints it); a test
# checks that every workflow function, helper and filter above has an entry.
_JINJA_ONLY: tuple[Function, ...] = (
    Function("range", "helper", "range([start,] stop[, step])", "Jinja only: Python's range, at most 100,000 "
             "integers (in `@` expressions range(startIndex, count) is WDL's)"),
    Function("utcNow", "helper", "utcNow(format=None)", "Jinja: with a strftime format ('%Y-%m-%d') as before; "
             "with a .NET format ('yyyy-MM-dd') as in `@` expressions"),
    Function("json", "filter", "value | json", "the value as compact JSON text"),
    Function("fromjson", "filter", "text | fromjson", "parse JSON text into a value"),
    Function("b64encode", "filter", "value | b64encode", "base64 of text (objects as JSON)"),
    Function("b64decode", "filter", "text | b64decode", "decode base64 into UTF-8 text"),
    Function("sha256", "filter", "value | sha256", "hex SHA-256 of the value's text"),
    Function("datetime", "filter", "text | datetime", "parse an ISO 8601 date-time ('Z' allowed)"),
    Function("dateformat", "filter", "date | dateformat(format='%Y-%m-%dT%H:%M:%SZ')",
             "format an ISO 8601 date-time (or a datetime) with a strftime format"),
    Function("add_time", "filter", "date | add_time(seconds=0, minutes=0, hours=0, days=0, weeks=0, "
             "milliseconds=0)", "add (or, negative, subtract) time to an ISO 8601 date-time; "
             "returns ISO 8601; e.g. `utcNow() | add_time(days=1)`"),
    Function("text", "filter", "value | text", "the value as it reads inside text: JSON for objects, '' for null"),
)
# The reference of everything templates can call (`flowrun functions` prints it): the `@`
# library (engine.wdl, each function also a Jinja global), then what only Jinja has. A test
# checks that every workflow function, helper and filter above has an entry.
FUNCTIONS: tuple[Function, ...] = tuple(
    Function(f.name, f.category, f.signature, f.description)
    for f in sorted(wdl.load().values(), key=lambda f: (wdl.library.CATEGORIES.index(f.category), f.name.lower()))
) + _JINJA_ONLY


def functions_reference(filters: dict[str, Callable[..., Any]] | None = None) -> list[Function]:
    """FUNCTIONS plus the filters nodes contribute (described by their docstrings)."""
    known = {f.name for f in FUNCTIONS if f.kind == "filter"}
    extra = [Function(name, "filter", f"value | {name}", " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split()))
             for name, fn in sorted((filters or {}).items()) if name not in known]
    return list(FUNCTIONS) + extra


_SIGNATURES = {f.name: f.signature for f in FUNCTIONS if f.kind in ("filter", "helper")}


def _with_signature(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, failing with its documented signature when called with the wrong arguments."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise ExpressionError(f"{name}: wrong arguments ({_arity(exc)}); "
                                  f"use {_SIGNATURES.get(name, name + '(...)')}") from None
        return fn(*args, **kwargs)
    return checked


def _arity(exc: TypeError) -> str:
    text = str(exc)
    if text == "too many positional arguments":
        return "too many arguments"
    m = re.search(r"takes .*? arguments? but (\d+) (?:was|were) given", text)
    if m:
        return f"{int(m[1]) - 1} given after the value" if "positional" in text else text
    m = re.search(r"unexpected keyword argument '(\w+)'", text)
    if m:
        return f"no argument named '{m[1]}'"
    m = re.search(r"missing .*?argument: '(\w+)'", text)
    if m:
        return f"'{m[1]}' is missing"
    return text


# -- how values and errors read to a user ------------------------------------------------
_TYPE_NAMES = {dict: "object", list: "array", tuple: "array", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}


def type_name(value: Any) -> str:
    """A value's type in JSON words: object, array, string, integer, number, boolean, null."""
    if isinstance(value, sandbox.Lazy):
        return "array"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys(obj: dict) -> str:
    keys = list(obj)
    shown = ", ".join(repr(k) for k in keys[:20])
    return (shown + f", ... ({len(keys)} keys)") if len(keys) > 20 else (shown or "none: it is empty")


def wdl_hint(name: Any) -> str:
    """" (did you mean formatDateTime()?)" for a name that is a function under another case."""
    fn = wdl.lookup(name) if isinstance(name, str) else None
    return f" (did you mean {fn.name}()?)" if fn is not None and fn.name != name and not fn.workflow else ""


def _jinja_global(fn: "wdl.Fn") -> Callable[..., Any]:
    """A library function as a Jinja global: same implementation, same arity check."""
    from jinja2 import pass_context

    impl, name = fn.impl, fn.name

    def check(args: tuple, kwargs: dict) -> None:
        if kwargs:
            raise ExpressionError(f"{name}() takes no named arguments; use {fn.signature}")
        problem = fn.arity_problem(len(args))
        if problem:
            raise wdl.values.InvalidTemplate(problem)
        for a in args:
            if isinstance(a, Undefined):
                a._fail_with_undefined_error()

    if fn.scope:
        @pass_context
        def scoped(context: Any, *args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            names = {n: context.get(n) for n in WORKFLOW_FUNCTIONS}
            return impl(names, *args)
        return scoped
    if fn.lazy:
        def lazy(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return impl(*[(lambda v=a: v) for a in args])
        return lazy

    def call(*args: Any, **kwargs: Any) -> Any:
        check(args, kwargs)
        return impl(*args)
    call.__name__ = name
    return call


def jinja_globals() -> dict[str, Callable[..., Any]]:
    """The `@` library as Jinja globals (not range: Jinja keeps Python's; not the workflow
    functions: the scope gives those)."""
    return {f.name: _jinja_global(f) for f in wdl.load().values()
            if not f.workflow and f.name not in ("range",)}


def _is_marked(text: str) -> bool:
    """Is ``text`` a template of either language?"""
    return "{{" in text or "{%" in text or (text[:1] == "@" and len(text) > 1) or "@{" in text


def _raise_undefined_inside(value: Any) -> None:
    """Raise the UndefinedError of the first Undefined inside a list or dict result (``xs |
    map(attribute='missing') | list`` builds a list of them): it would fail later, outside
    the expression, wherever the value is first turned into text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Undefined):
            item._fail_with_undefined_error()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


class _Undefined(StrictUndefined):
    """StrictUndefined whose message says what was there instead."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        obj, name = self._undefined_obj, self._undefined_name
        if obj is missing:
            return f"{name!r} is not defined{wdl_hint(name)}"
        if isinstance(obj, dict):
            return f"the object has no key {name!r} (its keys: {_keys(obj)})"
        if isinstance(obj, (list, tuple, sandbox.Lazy)):
            if isinstance(name, int):
                return f"index {name} is out of range: the array has {len(obj)} items"
            return f"an array has no attribute {name!r} (use an index: [0])"
        return f"{_a(type_name(obj))} value has no attribute or key {name!r}"


# Python's wording of common runtime errors -> flowrun's
_REWRITES: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    (re.compile(r"invalid literal for int\(\) with base \d+: (.*)"),
     lambda m: f"cannot read {m[1]} as an integer"),
    (re.compile(r"could not convert string to float: (.*)"), lambda m: f"cannot read {m[1]} as a number"),
    (re.compile(r"unsupported operand type\(s\) for (\S+?): '(\w+)' and '(\w+)'"),
     lambda m: f"cannot apply '{m[1]}' to {_py_type(m[2])} and {_py_type(m[3])}"),
    (re.compile(r"can only concatenate (\w+) \(not \"(\w+)\"\) to \w+"),
     lambda m: f"cannot add {_py_type(m[2])} to {_py_type(m[1])} (use ~ to join text)"),
    (re.compile(r"'(\S+)' not supported between instances of '(\w+)' and '(\w+)'"),
     lambda m: f"cannot compare {_py_type(m[2])} with {_py_type(m[3])} using '{m[1]}'"),
    (re.compile(r"'(\w+)' object is not iterable"), lambda m: f"{_a(_py_type(m[1]))} value cannot be looped over"),
    (re.compile(r"'(\w+)' object is not callable"), lambda m: f"{_a(_py_type(m[1]))} value is not a function"),
    (re.compile(r"'(\w+)' object cannot be interpreted as an integer"),
     lambda m: f"expected an integer, got {_py_type(m[1])}"),
    (re.compile(r"(?:integer |float )?(?:division|modulo) by zero"), lambda m: "division by zero"),
    (re.compile(r"%(\w) format: an? (?:real number|number|integer) is required, not (\w+)"),
     lambda m: f"'%{m[1]}' needs a number, got {_py_type(m[2])}"),
    (re.compile(r"Exceeds the limit \(\d+ digits\).*"),
     lambda m: "a number has more than 4,300 digits"),
)
_PY_TYPES = {"dict": "object", "list": "array", "tuple": "array", "str": "string", "int": "integer",
             "float": "number", "bool": "boolean", "NoneType": "null"}


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _py_type(name: str) -> str:
    return _PY_TYPES.get(name, name)


def user_message(exc: BaseException) -> str:
    """An exception raised while evaluating, in flowrun's words."""
    text = str(exc)
    for pattern, say in _REWRITES:
        m = pattern.search(text)
        if m:
            return say(m)
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__


@dataclass
class Analysis:
    """What static analysis found in one templated string."""

    error: str | None = None
    unknown: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (function, constant first arg)
    offset: int | None = None  # where in the text the error is, when known (`@` expressions)
    language: str = "jinja"    # or "wdl"


class Evaluator:
    """Compiles and evaluates templates; one per registry (filters can come from nodes).

    Every call to ``evaluate`` runs under one budget (``limits``, see engine.sandbox);
    ``evaluate_async``/``offload`` keep the event loop free of long evaluations."""

    def __init__(self, filters: dict[str, Callable[..., Any]] | None = None, limits: Limits | None = None):
        self.limits = limits or Limits.from_env()
        env = sandbox.BoundedSandbox(undefined=_Undefined, finalize=_finalize, autoescape=False,
                                     keep_trailing_newline=True, limits=self.limits)
        env.globals.pop("lipsum", None)
        env.globals.update(HELPERS)
        env.filters.update({name: _with_signature(name, fn) for name, fn in FILTERS.items()})
        env.filters.update(filters or {})
        env.bound_filters()
        self.env = env
        # the `@` library: globals of the templates that use them only (Jinja copies every global
        # into each render's context: 130 of them would make every render ~10x slower)
        self._library = {k: v for k, v in jinja_globals().items() if k not in env.globals}
        self.known = set(WORKFLOW_FUNCTIONS) | set(env.globals) | set(self._library)
        self._analyses: LRU[str, Analysis] = LRU(10_000)
        self._shapes: LRU[tuple, tuple] = LRU(10_000)
        self._cache: dict[str, tuple[str, Any]] = {}

    # -- compile --------------------------------------------------------------------------
    def _compiled(self, text: str) -> tuple[str, Any]:
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        if wdl.is_wdl(text):
            kind, code = "wdl", _compile_wdl(text)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[text] = (kind, code)
            return kind, code
        m = _WHOLE.match(text)
        extra = self._used_library(text)
        if m and "{{" not in m["expr"] and "}}" not in m["expr"] and "{%" not in text:
            kind, code = "whole", self._compile_expression(m["expr"], extra)
        else:
            kind, code = "text", self.env.from_string(text, globals=extra or None)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[text] = (kind, code)
        return kind, code

    def _used_library(self, text: str) -> dict[str, Any]:
        """The library functions ``text`` names (read from its tokens)."""
        try:
            return {v: self._library[v] for _, kind, v in self.env.lexer.tokeniter(text, None)
                    if kind == "name" and v in self._library}
        except (TemplateSyntaxError, ValueError, RecursionError):
            return {}  # the compiler reports it

    def _compile_expression(self, source: str, extra: dict[str, Any]) -> Any:
        """``env.compile_expression(source, undefined_to_none=False)``, with template globals."""
        if not extra:
            return self.env.compile_expression(source, undefined_to_none=False)
        from jinja2.environment import TemplateExpression
        from jinja2.parser import Parser

        parser = Parser(self.env, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
        expr.set_environment(self.env)
        body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
        return TemplateExpression(self.env.from_string(nodes.Template(body, lineno=1), globals=extra), False)

    # -- evaluate -------------------------------------------------------------------------
    def evaluate(self, value: Any, scope: Any) -> Any:
        """Evaluate every templated string inside ``value`` (dicts and lists walked), all of
        it under one budget. Raises ExpressionError (ExpressionLimit past the budget)."""
        if isinstance(value, str) and not _is_marked(value):
            return value
        if not isinstance(value, (str, dict, list)):
            return value
        state = sandbox._state
        if getattr(state, "budget", None) is not None:  # nested: share the budget
            return self._walk(value, scope)
        state.budget = Budget(self.limits, getattr(state, "inline_slice", None))
        try:
            return self._walk(value, scope)
        finally:
            state.budget = None

    async def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)`` (which evaluates templates) on the event loop, with each
        evaluation allowed only a few milliseconds there; one that needs longer is started
        again in a worker thread under its full budget, so the loop never waits on it."""
        sandbox._state.inline_slice = INLINE_SLICE
        try:
            return fn(*args)
        except OffloadSignal:
            pass
        finally:
            sandbox._state.inline_slice = None
        import anyio.to_thread

        return await anyio.to_thread.run_sync(fn, *args)

    async def evaluate_async(self, value: Any, scope: Any) -> Any:
        return await self.offload(self.evaluate, value, scope)

    def _walk(self, value: Any, scope: Any) -> Any:
        if isinstance(value, str):
            if not _is_marked(value):
                return value
            return self._evaluate_string(value, scope)
        if isinstance(value, dict):
            return {k: self._walk(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, scope) for v in value]
        return value

    def _evaluate_string(self, text: str, scope: Any) -> Any:
        try:
            hit = self._cache.get(text)
            if hit is None:  # compiling is not evaluating: it does not count against the budget
                started, cpu = time.perf_counter(), time.thread_time()
                hit = self._compiled(text)
                sandbox.current().extend(time.perf_counter() - started, time.thread_time() - cpu)
            kind, code = hit
            names = scope.names(WORKFLOW_FUNCTIONS)
            if kind == "wdl":
                result = code.run(names)
                if isinstance(result, (dict, list)):
                    sandbox.check_text(sandbox.current(), result, "the result")
                return result
            if kind == "whole":
                result = code(**names)
                if isinstance(result, Undefined):
                    result._fail_with_undefined_error()
                budget = sandbox.current()
                if budget.lazy:  # the value leaves the evaluation: no Lazy inside it
                    result = sandbox.materialize(result, budget)
                if isinstance(result, Decimal):  # decimal(): a number once it leaves the expression
                    result = wdl.values.exported(result)
                if isinstance(result, (dict, list, tuple)):  # stored as JSON: will the text fit?
                    sandbox.check_text(sandbox.current(), result, "the result")  # (bounds the walk below)
                    _raise_undefined_inside(result)
                elif isinstance(result, (str, int)):
                    sandbox.check_value(sandbox.current(), result, "the result")
                return result
            return code.render(names)
        except OffloadSignal:
            raise
        except ExpressionLimit as exc:
            raise ExpressionLimit(f"{_short(text)}: {exc.message} (limits: {self.limits.describe()})") from None
        except ActionError as exc:
            raise ExpressionError(f"{_short(text)}: {exc.message}", code=exc.code if isinstance(
                exc, wdl.values.InvalidTemplate) else "ExpressionError") from None
        except (wdl.WdlSyntaxError, wdl.CompileError) as exc:
            raise ExpressionError(f"{_short(text)}: {exc.message} (at character {exc.offset + 1})",
                                  code="InvalidTemplate") from None
        except UndefinedError as exc:
            raise ExpressionError(f"{_short(text)}: {exc.message}") from None
        except SecurityError as exc:
            raise ExpressionError(f"{_short(text)}: not allowed in the sandbox ({exc})") from None
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"{_short(text)}: syntax error: {exc.message}") from None
        except RecursionError:
            raise ExpressionLimit(f"{_short(text)}: nested too deeply") from None
        except MemoryError:
            raise ExpressionLimit(f"{_short(text)}: ran out of memory") from None
        except Exception as exc:  # a filter, helper or operator raised (bad JSON, bad date, ...)
            raise ExpressionError(f"{_short(text)}: {user_message(exc)}") from None

    # -- static analysis (used by the validator) -------------------------------------------
    def analyze(self, text: str) -> Analysis:
        """Syntax, unknown names and filters, and ``fn('constant')`` calls of one template
        (remembered per text: flows repeat templates, and serve reloads flows)."""
        found = self._analyses.get(text)
        if found is None:
            analyze = _analyze_wdl if wdl.is_wdl(text) else self._analyze_by_shape
            found = self._analyses[text] = analyze(text)
        return found

    def suggest_name(self, name: str) -> str:
        """The hint after "unknown name 'x'": a function of another case first, else a close name."""
        from .planner import suggest

        return wdl_hint(name) or suggest(name, self.known)

    def _analyze_by_shape(self, text: str) -> Analysis:
        """Templates that differ only in their literals (``outputs('a1')``, ``outputs('a2')``)
        parse the same: the lexer's tokens, literals left out, key the analysis of the first,
        and the others take their own literals (lexing is ~4x cheaper than parsing)."""
        try:
            tokens = list(self.env.lexer.tokeniter(text, None))
        except (TemplateSyntaxError, ValueError, RecursionError):
            return self._analyze(text)
        shape: list[str] = []
        literals: list[str] = []
        for _, kind, value in tokens:
            if kind == "string":
                if "\\" in value:
                    return self._analyze(text)  # an escape: its value is the parser's business
                literals.append(value[1:-1])
                shape.append("\0string")
            elif kind == "data":
                shape.append("\0data")
            elif kind in ("integer", "float"):
                if len(value) > 100:
                    return self._analyze(text)  # past Python's int() limit the parse fails: not shared
                shape.append("\0" + kind)
            elif kind != "whitespace":
                shape.append(f"{kind}\0{value}")
        key = tuple(shape)
        known = self._shapes.get(key)
        if known is not None:
            unknown, calls = known
            return Analysis(unknown=list(unknown), calls=[(fn, literals[i]) for fn, i in calls])
        found = self._analyze(text)
        if found.error is None:
            indexes = []
            for fn, value in found.calls:
                at = [i for i, v in enumerate(literals) if v == value]
                if len(at) != 1:  # which literal it was is ambiguous: not shared
                    break
                indexes.append((fn, at[0]))
            else:
                self._shapes[key] = (tuple(found.unknown), tuple(indexes))
        return found

    def _analyze(self, text: str) -> Analysis:
        out = Analysis()
        try:
            tree = self.env.parse(text)
        except TemplateSyntaxError as exc:
            return Analysis(error=f"syntax error in {_short(text)}: {exc.message}")
        except RecursionError:
            return Analysis(error=f"{_short(text)} is nested too deeply")
        except ValueError:  # the lexer's int() of a literal past Python's 4,300 digits
            return Analysis(error=f"a number in {_short(text)} has too many digits")
        for flt in tree.find_all(nodes.Filter):
            if flt.name not in self.env.filters:
                return Analysis(error=f"unknown filter '{flt.name}' in {_short(text)}")
        if all(isinstance(n, nodes.Output) for n in tree.body):
            # only {{ expressions }} and text: every name is read, none is bound (the common case,
            # and ~4x cheaper than jinja's scope analysis, which compiles the template)
            names = {n.name for n in tree.find_all(nodes.Name)}
        else:
            from jinja2.meta import find_undeclared_variables  # runs jinja's compiler: only when needed

            try:
                names = find_undeclared_variables(tree)
            except Exception:  # noqa: BLE001  the compiler folds constants (''.x) and may raise: walk
                bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
                names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} - bound
        out.unknown = sorted(n for n in names if n not in self.known)
        for call in tree.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.args and isinstance(call.args[0], nodes.Const) \
                    and isinstance(call.args[0].value, str):
                out.calls.append((call.node.name, call.args[0].value))
        return out


# calls whose first argument names an action, under their canonical name for the checks
_ACTION_ALIASES = {"actionOutputs": "outputs", "actionBody": "body", "formDataValue": "body",
                   "formDataMultiValues": "body", "multipartBody": "body"}


def _compile_wdl(text: str) -> "wdl.Program":
    program = wdl.compile_field(text)
    if program.kind == "parts":
        for part in program.parts:
            if isinstance(part, str) and ("{{" in part or "{%" in part):
                raise wdl.CompileError("a field cannot mix `@{...}` and Jinja `{{ }}`: write it in one "
                                       "language", text.find("{{") if "{{" in text else text.find("{%"))
    return program


def _analyze_wdl(text: str) -> Analysis:
    try:
        program = _compile_wdl(text)
    except (wdl.WdlSyntaxError, wdl.CompileError) as exc:
        return Analysis(error=f"{exc.message.rstrip('.')} in {_short(text)}", offset=exc.offset, language="wdl")
    except RecursionError:
        return Analysis(error=f"{_short(text)} is nested too deeply", language="wdl")
    return Analysis(calls=[(_ACTION_ALIASES.get(fn, fn), arg) for fn, arg, _ in program.calls], language="wdl")


def templated_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(sub-path, string) for every string in ``value`` that holds a template marker (of
    either language: ``{{ }}``/``{% %}``, or a leading ``@``/``@{...}``)."""
    if isinstance(value, str):
        if _is_marked(value) and (wdl.is_wdl(value) or "{{" in value or "{%" in value):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from templated_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from templated_strings(v, f"{path}.{i}" if path else str(i))


def is_template(value: Any) -> bool:
    return isinstance(value, str) and _is_marked(value) and (wdl.is_wdl(value) or "{{" in value or "{%" in value)


def _short(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= 120 else text[:117] + "...")
