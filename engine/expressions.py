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
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ActionError, ExpressionError

# Functions a scope must answer; the executor's frames implement them.
WORKFLOW_FUNCTIONS = ("trigger", "triggerBody", "triggerOutputs", "body", "outputs", "actions",
                      "variables", "parameters", "item", "items", "iterationIndexes", "result",
                      "workflow")
# Calls whose first argument names an action that must have finished first.
ACTION_FUNCTIONS = ("body", "outputs", "actions", "result")
LOOP_FUNCTIONS = ("items", "iterationIndexes")

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)
_MAX_SEQUENCE = 1_000_000
_MAX_WIDTH = 10_000


def _utcnow(fmt: str | None = None) -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime(fmt) if fmt else now.isoformat().replace("+00:00", "Z")


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and not isinstance(v, Undefined)), None)


def _b64decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-8")


def _b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else (value if isinstance(value, str) else json.dumps(value)).encode()
    return base64.b64encode(data).decode()


def _to_datetime(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _dateformat(value: Any, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    d = value if isinstance(value, _dt.datetime) else _to_datetime(value)
    return d.strftime(fmt)


def _add_time(value: Any, seconds: float = 0, **kw: float) -> str:
    d = value if isinstance(value, _dt.datetime) else _to_datetime(value)
    return (d + _dt.timedelta(seconds=seconds, **kw)).isoformat().replace("+00:00", "Z")


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
    "fromjson": json.loads,
    "b64encode": _b64encode,
    "b64decode": _b64decode,
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


_WIDTH = re.compile(r"(\d{6,})")  # a field width of 100,000 or more in a format spec


def _check_widths(spec: str) -> None:
    if any(int(w) > _MAX_WIDTH for w in _WIDTH.findall(spec)):
        raise SecurityError("format width too large")


def _bounded(fn: Callable[..., Any], arg: int = 1) -> Callable[..., Any]:
    """A filter whose width argument (position ``arg``) is bounded."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        width = args[arg] if len(args) > arg else kwargs.get("width", 0)
        if isinstance(width, int) and width > _MAX_WIDTH:
            raise SecurityError("width too large")
        return fn(*args, **kwargs)
    return wrapper


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on ``*``, ``**``, ``%`` and format widths, so a template
    cannot eat the machine."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_widths(value.__self__)
            return wrapped(*args, **kwargs)
        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:
        # JSON data first: `triggerBody().items` is the "items" key, not dict.items
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
            raise SecurityError("exponent too large")
        if operator == "%" and isinstance(left, str):
            _check_widths(left)
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_SEQUENCE:
                    raise SecurityError("sequence repetition too large")
        return super().call_binop(context, operator, left, right)


@dataclass
class Analysis:
    """What static analysis found in one templated string."""

    error: str | None = None
    unknown: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (function, constant first arg)


class Evaluator:
    """Compiles and evaluates templates; one per registry (filters can come from nodes)."""

    def __init__(self, filters: dict[str, Callable[..., Any]] | None = None):
        env = _Sandbox(undefined=StrictUndefined, finalize=to_text, autoescape=False,
                       keep_trailing_newline=True)
        env.globals.pop("lipsum", None)
        env.globals.update(HELPERS)
        env.filters.update(FILTERS)
        for name in ("center", "indent", "wordwrap", "truncate"):
            env.filters[name] = _bounded(env.filters[name])
        plain_format = env.filters["format"]

        def bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
            _check_widths(str(value))
            return plain_format(value, *args, **kwargs)
        env.filters["format"] = bounded_format
        env.filters.update(filters or {})
        self.env = env
        self.known = set(WORKFLOW_FUNCTIONS) | set(env.globals)
        self._cache: dict[str, tuple[str, Any]] = {}

    # -- compile --------------------------------------------------------------------------
    def _compiled(self, text: str) -> tuple[str, Any]:
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        m = _WHOLE.match(text)
        if m and "{{" not in m["expr"] and "}}" not in m["expr"] and "{%" not in text:
            kind, code = "whole", self.env.compile_expression(m["expr"], undefined_to_none=False)
        else:
            kind, code = "text", self.env.from_string(text)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[text] = (kind, code)
        return kind, code

    # -- evaluate -------------------------------------------------------------------------
    def evaluate(self, value: Any, scope: Any) -> Any:
        """Evaluate every templated string inside ``value`` (dicts and lists walked)."""
        if isinstance(value, str):
            if "{{" not in value and "{%" not in value:
                return value
            return self._evaluate_string(value, scope)
        if isinstance(value, dict):
            return {k: self.evaluate(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self.evaluate(v, scope) for v in value]
        return value

    def _evaluate_string(self, text: str, scope: Any) -> Any:
        try:
            kind, code = self._compiled(text)
            names = scope.names(WORKFLOW_FUNCTIONS)
            if kind == "whole":
                result = code(**names)
                if isinstance(result, Undefined):
                    result._fail_with_undefined_error()
                return result
            return code.render(names)
        except ActionError as exc:
            raise ExpressionError(f"{_short(text)}: {exc.message}") from None
        except UndefinedError as exc:
            raise ExpressionError(f"{_short(text)}: {exc.message}") from None
        except SecurityError as exc:
            raise ExpressionError(f"{_short(text)}: not allowed in the sandbox ({exc})") from None
        except TemplateSyntaxError as exc:
            raise ExpressionError(f"{_short(text)}: syntax error: {exc.message}") from None
        except Exception as exc:  # a filter or helper raised (bad JSON, bad date, ...)
            raise ExpressionError(f"{_short(text)}: {type(exc).__name__}: {exc}") from None

    # -- static analysis (used by the validator) -------------------------------------------
    def analyze(self, text: str) -> Analysis:
        out = Analysis()
        for flt in (f for f in _filter_names(text) if f not in self.env.filters):
            return Analysis(error=f"unknown filter '{flt}' in {_short(text)}")
        try:
            tree = self.env.parse(text)
            out.unknown = sorted(n for n in find_undeclared_variables(tree) if n not in self.known)
        except TemplateSyntaxError as exc:
            return Analysis(error=f"syntax error in {_short(text)}: {exc.message}")
        for call in tree.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.args and isinstance(call.args[0], nodes.Const) \
                    and isinstance(call.args[0].value, str):
                out.calls.append((call.node.name, call.args[0].value))
        return out


def _filter_names(text: str) -> list[str]:
    try:
        tree = ImmutableSandboxedEnvironment().parse(text)
    except TemplateSyntaxError:
        return []
    return [f.name for f in tree.find_all(nodes.Filter)]


def templated_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(sub-path, string) for every string in ``value`` that holds a template marker."""
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from templated_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from templated_strings(v, f"{path}.{i}" if path else str(i))


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _short(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= 120 else text[:117] + "...")
