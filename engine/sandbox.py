"""The bounded Jinja2 sandbox: what a template may cost.

Jinja2's sandbox stops escapes; this module stops a template from eating the machine. Every
evaluation runs under a *budget* (``Limits``): a deadline (default 1 s), a count of operations
(loop iterations, calls, filters, intercepted operators) and a size cap on every value it
builds (default 16 MB). Exceeding any of them raises ``ExpressionLimit``.

The checks are cheap and deterministic, and they come *before* the expensive C-level call
wherever one call could take long by itself:

- ``+ * % **`` are intercepted: the size of the result (string, list, or the bits of an
  integer) is estimated from the operands before it is computed; integers stay below
  Python's 4,300-digit printing limit;
- ``~`` and ``{% for %}`` are rewritten at compile time (``_Guard``): concatenation checks the
  size of its parts, each loop iteration ticks the budget and charges the literal text the
  loop body writes;
- calls tick the budget; ``str`` methods that grow text (``ljust``, ``center``, ``zfill``,
  ``expandtabs``, ``replace``, ``join``, ``translate``) and ``int.to_bytes`` are bounded by
  their arguments; ``%`` and ``str.format`` bound widths and precisions, literal or ``*``;
- every filter is wrapped: counts (``slice``, ``batch``) and widths (``center``, ``indent``)
  are bounded, values are measured before they are turned into text, results after;
- ``range`` is bounded (100,000 items) and rendered output is counted as it is produced.

The budget lives in a thread-local, so evaluations in different threads (the event loop and
the worker threads of ``Evaluator.evaluate_async``) never share one. An evaluation on the
event loop can carry a short *slice* of its thread's CPU time: past it, ``OffloadSignal`` is raised and the caller starts the
same evaluation again in a worker thread under the full budget.
"""
from __future__ import annotations

import functools
import math
import types
import operator
import os
import re
import threading
import time
from dataclasses import dataclass
from itertools import chain
from string import Formatter
from typing import Any, Callable, Iterable, Iterator

from jinja2 import nodes
from jinja2.visitor import NodeTransformer
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg

from .errors import ExpressionLimit

MAX_INT_BITS = 14_280          # about 4,300 decimal digits: Python's int <-> str limit
MAX_ITEMS = 100_000            # range(), slice(), batch()
_SLOW_TEXT = 1_000_000         # pure-Python text filters (wordwrap, urlize) read at most this


@dataclass(frozen=True)
class Limits:
    """What one evaluation may spend."""

    seconds: float = 1.0          # wall-clock time
    max_bytes: int = 16_000_000   # the size of any one value it builds, and of its output
    max_ops: int = 2_000_000      # loop iterations + calls + filters + intercepted operators

    @classmethod
    def from_env(cls) -> "Limits":
        """Defaults, overridden by FLOWRUN_TEMPLATE_SECONDS / _MAX_BYTES / _MAX_OPS when set
        to a positive number (anything else is ignored)."""
        out = {}
        for name, field_, kind in (("SECONDS", "seconds", float), ("MAX_BYTES", "max_bytes", int),
                                   ("MAX_OPS", "max_ops", int)):
            raw = os.environ.get(f"FLOWRUN_TEMPLATE_{name}")
            try:
                value = kind(raw) if raw else None
            except ValueError:
                value = None
            if value is not None and value > 0:
                out[field_] = value
        return cls(**out)

    def describe(self) -> str:
        return f"{self.seconds:g} s, {self.max_bytes:,} bytes, {self.max_ops:,} operations"


class OffloadSignal(Exception):
    """An inline evaluation used up its slice; run it again in a worker thread."""


class Budget:
    """The running account of one evaluation."""

    __slots__ = ("limits", "ops", "deadline", "stop", "inline", "cpu_stop", "output", "lazy", "read", "built")

    def __init__(self, limits: Limits, inline_slice: float | None = None):
        now = time.perf_counter()
        self.limits = limits
        self.ops = 0
        self.output = 0
        self.lazy = False  # a Lazy value was handed out: results are materialized before they leave
        self.read = 0      # bytes of Lazy values materialized so far
        self.built = 0
        self.deadline = now + limits.seconds
        self.inline = inline_slice is not None
        self.stop = self.deadline
        # The inline slice is the CPU time of this thread, the time the evaluation itself holds the
        # loop: wall time would also count the machine's other work, so on a loaded host a short
        # evaluation would move to a thread (or not) by chance.
        self.cpu_stop = time.thread_time() + inline_slice if inline_slice is not None else 0.0

    def extend(self, seconds: float, cpu: float | None = None) -> None:
        """Time spent on something else (compiling) does not count: ``seconds`` of wall time,
        ``cpu`` seconds of this thread's CPU time (the inline slice)."""
        self.deadline += seconds
        self.stop += seconds
        self.cpu_stop += seconds if cpu is None else cpu

    def tick(self, n: int = 1) -> None:
        self.ops += n
        if self.ops > self.limits.max_ops:
            if self.inline:
                raise OffloadSignal()
            raise ExpressionLimit(f"the template did more than {self.limits.max_ops:,} operations "
                                  f"(loop iterations, calls, filters)")
        if self.inline and time.thread_time() > self.cpu_stop:
            raise OffloadSignal()
        if time.perf_counter() > self.stop:
            raise ExpressionLimit(f"the template ran longer than {self.limits.seconds:g} s")

    def size(self, n: int, what: str = "a value") -> None:
        if n > self.limits.max_bytes:
            raise ExpressionLimit(f"{what} would be about {_mb(n)}, more than the "
                                  f"{_mb(self.limits.max_bytes)} a template may build")

    def bits(self, n: int) -> None:
        if n > MAX_INT_BITS:
            raise ExpressionLimit(f"a number would have about {int(n * 0.30103):,} digits, "
                                  f"more than the 4,300 a template may build")

    def alloc(self, n: int, what: str = "values") -> None:
        """An `@` expression built ``n`` more bytes; all it builds stays under 4x the size cap
        (it has no loops: its calls are bounded by its text, what each builds by this)."""
        self.built += n
        if self.built > 4 * self.limits.max_bytes:
            raise ExpressionLimit(f"the expression built more than {_mb(4 * self.limits.max_bytes)} of {what}")

    def emit(self, n: int) -> None:
        self.output += n
        if self.output > self.limits.max_bytes:
            raise ExpressionLimit(f"the rendered text is larger than {_mb(self.limits.max_bytes)}")


def _mb(n: int) -> str:
    return f"{n / 1_000_000:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


_state = threading.local()
_DEFAULT = Limits()


def current() -> Budget:
    """The budget of the evaluation running in this thread (a fresh default one if none)."""
    b = getattr(_state, "budget", None)
    return b if b is not None else Budget(_DEFAULT)


class running:
    """``with running(budget):`` makes ``budget`` the current one in this thread."""

    __slots__ = ("budget", "saved")

    def __init__(self, budget: Budget):
        self.budget = budget

    def __enter__(self) -> Budget:
        self.saved = getattr(_state, "budget", None)
        _state.budget = self.budget
        return self.budget

    def __exit__(self, *exc: Any) -> None:
        _state.budget = self.saved


# -- values read on demand ----------------------------------------------------------------
class Lazy:
    """A large sequence a template reads on demand (a loop's ``result()`` rows, read from the
    store a page at a time) instead of one built whole.

    Inside an evaluation it is sized without being read (``text_size``), counted, indexed,
    sliced, iterated and filtered as it is; wherever a whole value is needed (a filter that
    turns it into text or holds all of it, an operator, the value an evaluation returns) it
    is turned into a list by ``materialize``, under the budget: past it, ``ExpressionLimit``."""

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def text_size(self, cap: int) -> int:
        """About how many bytes its JSON text has (may stop counting past ``cap``)."""
        raise NotImplementedError

    def materialize(self, budget: "Budget") -> list:
        """All of it as a list, charged to ``budget`` (``Budget.read``) before anything is read."""
        raise NotImplementedError

    def filtered(self, name: str, args: tuple, kwargs: dict) -> Any:
        """What filter ``name`` gives, when it can be answered without reading every item
        (``NotImplemented`` otherwise: the filter streams through it, or it is materialized)."""
        return NotImplemented


def handed_out() -> None:
    """Called where a Lazy value is made: the running evaluation materializes what it returns."""
    b = getattr(_state, "budget", None)
    if b is not None:
        b.lazy = True


def materialize(value: Any, budget: Budget) -> Any:
    """``value`` with every Lazy inside it (dict values, list and tuple items) as a list; the
    same object when there is none."""
    if isinstance(value, Lazy):
        return value.materialize(budget)
    if isinstance(value, dict):
        out = None
        for k, v in value.items():
            m = materialize(v, budget)
            if m is not v:
                if out is None:
                    out = dict(value)
                out[k] = m
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items = None
        for i, v in enumerate(value):
            m = materialize(v, budget)
            if m is not v:
                if items is None:
                    items = list(value)
                items[i] = m
        return value if items is None else (items if isinstance(value, list) else tuple(items))
    return value


# -- sizes ---------------------------------------------------------------------------------
MAX_DEPTH = 1_000              # nesting weight() follows (JSON text deeper than this is not stored either)
_BULK = 64                     # containers longer (or deeper) than this are measured by _levels
_TEXT = (str, bytes, bytearray)
_FLAT = (dict, list, tuple, str)
_KINDS = (str, bytes, bytearray, int, dict, list, tuple)  # bool counts as an int here


def weight(value: Any, cap: int) -> int:
    """About how many bytes ``value`` becomes as text (shared parts counted every time they
    appear, as ``str()`` and ``json.dumps`` would write them); stops counting past ``cap``.

    Small containers are walked item by item; one of more than ``_BULK`` items is measured a
    nesting level at a time (``_levels``), so a 100,000-item JSON array costs milliseconds, not
    a Python call per value."""
    memo: dict[int, int] = {}

    def w(v: Any, depth: int) -> int:
        if isinstance(v, (str, bytes, bytearray)):
            return len(v) + 2
        if isinstance(v, bool) or v is None:
            return 5
        if isinstance(v, int):
            return v.bit_length() // 3 + 2
        if isinstance(v, (list, tuple, dict)):
            if len(v) > _BULK or depth > 64:  # (and no deep recursion: _levels is a loop)
                return _levels(v, cap, depth)
            key = id(v)
            hit = memo.get(key)
            if hit is not None:
                return hit
            total = 2
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            for k, x in items:
                total += w(x, depth + 1) + (w(k, depth + 1) if k is not None else 0) + 1
                if total > cap:
                    break
            memo[key] = total
            return total
        if isinstance(v, Lazy):
            return v.text_size(cap)
        return 16

    return w(value, 0)


def _levels(value: Any, cap: int, depth: int = 0) -> int:
    """``weight`` of a large container, one nesting level at a time: a level of one kind (the
    items of a list of objects, the values of those objects, ...) is summed by C-level
    ``map``/``chain`` calls, a mixed one by one ``filter`` pass per kind. Before a level is
    gathered its items are charged 2 bytes each, so it is never longer than ``cap / 2``."""
    total, level = 0, [value]
    while level:
        depth += 1
        if depth > MAX_DEPTH:  # a value that contains itself, or nesting no JSON text holds
            raise ExpressionLimit(f"a value nested more than {MAX_DEPTH:,} levels deep")
        kinds = set(map(type, level))
        kind = next(iter(kinds)) if len(kinds) == 1 else None
        if kind in _FLAT:
            inner = sum(map(len, level))
            total += 2 * len(level) + inner
            if kind is str:
                return total
            if total + 2 * inner > cap:
                return total + 2 * inner
            if kind is dict:
                keys = list(chain.from_iterable(level))
                values = chain.from_iterable(map(dict.values, level))
                if set(map(type, keys)) == {str}:
                    total += sum(map(len, keys)) + 2 * len(keys)
                    level = list(values)
                else:
                    level = keys + list(values)
            else:
                level = list(chain.from_iterable(level))
            if total > cap:
                return total
            continue
        # several kinds: one C-level pass per kind present (str, int, dict, list ...)
        n, nxt = len(level), []
        counted = 0
        for cls in _KINDS:
            if not any(issubclass(k, cls) for k in kinds):
                continue
            items = list(filter(cls.__instancecheck__, level))
            counted += len(items)
            if cls is int:
                total += sum(map(int.bit_length, items)) // 3 + 2 * len(items)
                continue
            inner = sum(map(len, items))
            total += inner + 2 * len(items)
            if cls is dict:
                nxt += chain.from_iterable(items)
                nxt += chain.from_iterable(map(dict.values, items))
            elif cls is list or cls is tuple:
                nxt += chain.from_iterable(items)
            if total + 2 * len(nxt) > cap:
                return total + 2 * len(nxt)
        nones = level.count(None)
        lazies = [x for x in level if isinstance(x, Lazy)] if any(issubclass(k, Lazy) for k in kinds) else []
        total += sum(x.text_size(cap) for x in lazies)
        total += 5 * nones + 16 * (n - counted - nones - len(lazies))
        if total > cap:
            return total
        level = nxt
    return total


def check_value(budget: Budget, value: Any, what: str = "a value") -> None:
    """After an operation: is what it built within the limits?"""
    if isinstance(value, (str, bytes, bytearray)):
        budget.size(len(value), what)
    elif isinstance(value, int) and not isinstance(value, bool):
        budget.bits(value.bit_length())
    elif isinstance(value, (list, tuple, dict)):
        budget.size(len(value) * 8, what)


def check_text(budget: Budget, value: Any, what: str = "the text of a value") -> None:
    """Before turning ``value`` into text: will the text fit?"""
    if isinstance(value, (list, tuple, dict)):
        budget.size(weight(value, budget.limits.max_bytes), what)


def _length(value: Any) -> int:
    try:
        return len(value) if isinstance(value, (str, bytes, list, tuple, dict, range, Lazy)) else 0
    except Exception:
        return 0


# -- printf and str.format widths ----------------------------------------------------------
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_SPEC_NUMBERS = re.compile(r"\d+")


def check_printf(budget: Budget, fmt: str, args: Any) -> None:
    """``fmt % args``: no width or precision (literal or ``*``) past the size limit, and no
    argument whose text is past it."""
    positional = list(args) if isinstance(args, tuple) else [args]
    i = 0
    total = len(fmt)
    for m in _PRINTF.finditer(fmt):
        for part in (m.group(1), m.group(2)):
            if part == "*":
                n = positional[i] if i < len(positional) else 0
                i += 1
            else:
                n = int(part) if part else 0
            if isinstance(n, int):
                budget.size(n, "a formatted field")
                total += n
        if m.group(3) != "%":
            i += 1
    for a in positional if not isinstance(args, dict) else args.values():
        check_text(budget, a, "a formatted value")
    budget.size(total, "the formatted text")


class _BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox with every field's width and precision bounded (nested
    ``{:{}}`` included: the check runs on the spec after substitution)."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = current()
        for n in _SPEC_NUMBERS.findall(format_spec):
            budget.size(int(n), "a formatted field")
        check_text(budget, value, "a formatted value")
        return super().format_field(value, format_spec)


# -- bounded str / int methods -------------------------------------------------------------
def _int_arg(args: tuple, kwargs: dict, i: int, name: str, default: int) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _estimate_method(owner: Any, name: str, args: tuple, kwargs: dict) -> int | None:
    """The size of what ``owner.name(*args)`` builds, for methods that can grow text."""
    n = len(owner)
    if name in ("ljust", "rjust", "center", "zfill"):
        width = _int_arg(args, kwargs, 0, "width", 0)
        return max(n, width) if isinstance(width, int) else None
    if name == "expandtabs":
        size = _int_arg(args, kwargs, 0, "tabsize", 8)
        return n + owner.count("\t" if isinstance(owner, str) else b"\t") * size if isinstance(size, int) else None
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, (str, bytes)) and isinstance(new, (str, bytes)):
            hits = owner.count(old) if old else n + 1
            count = _int_arg(args, kwargs, 2, "count", -1)
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            return n + hits * max(0, len(new) - len(old))
    if name == "join" and args:
        return None  # measured by the caller, which materializes the items
    if name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, (str, bytes))), default=1)
        return n * max(1, longest)
    return None


def _bounded_join(budget: Budget, sep: Any, items: Iterable) -> tuple[list, int]:
    seq = list(items)
    budget.tick(1 + len(seq) // 64)
    total = len(sep) * max(0, len(seq) - 1)
    for x in seq:
        total += len(x) if isinstance(x, (str, bytes)) else weight(x, budget.limits.max_bytes)
        if total > budget.limits.max_bytes:
            break
    return seq, total


# -- compile-time guards ---------------------------------------------------------------------
LOOP_FILTER = "_flowrun_loop"
CONCAT_FILTER = "_flowrun_concat"


def _loop(iterable: Any, literal: int = 0) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: one tick per iteration, plus the literal
    text the body writes."""
    budget = current()
    for x in iterable:
        budget.tick()
        if literal:
            budget.emit(literal)
        yield x


def _concat(parts: tuple) -> str:
    budget = current()
    budget.tick()
    total = 0
    for p in parts:
        total += len(p) if isinstance(p, str) else weight(p, budget.limits.max_bytes)
    budget.size(total, "a ~ concatenation")
    return "".join([p if isinstance(p, str) else str(p) for p in parts])


def _literal_bytes(body: list) -> int:
    return sum(len(d.data) for n in body for d in ([n] if isinstance(n, nodes.TemplateData) else n.find_all(nodes.TemplateData)))


class _Guard(NodeTransformer):
    """Rewrites a parsed template: loops iterate through ``_loop``, ``~`` goes through ``_concat``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        if not node.recursive:
            node.iter = nodes.Filter(node.iter, LOOP_FILTER, [nodes.Const(_literal_bytes(node.body))], [],
                                     None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.Tuple(node.nodes, "load", lineno=node.lineno), CONCAT_FILTER, [], [],
                            None, None, lineno=node.lineno)


# -- filters -----------------------------------------------------------------------------------
# Filters that work on a container without turning it into text.
_CONTAINER_FILTERS = frozenset({
    "length", "count", "first", "last", "random", "list", "sort", "unique", "map", "select", "reject",
    "selectattr", "rejectattr", "sum", "min", "max", "batch", "slice", "reverse", "dictsort", "groupby",
    "items", "attr", "default", "d", "bool", "int", "float", "abs", "round", LOOP_FILTER, CONCAT_FILTER,
})


def _indented_size(value: Any, indent: int, cap: int) -> int:
    """About how long ``json.dumps(value, indent=indent)`` is: every item on its own line,
    indented by its depth; stops counting past ``cap``."""
    total, stack = 0, [(value, 1)]
    while stack and total <= cap:
        v, depth = stack.pop()
        if isinstance(v, dict):
            total += 2 + depth * indent
            stack.extend((x, depth + 1) for x in v.values())
            total += sum(len(str(k)) + 4 for k in v)
        elif isinstance(v, (list, tuple)):
            total += 2 + depth * indent
            stack.extend((x, depth + 1) for x in v)
        else:
            total += depth * indent + (len(v) if isinstance(v, str) else 8)
    return total


_PER_ITEM_C = frozenset({"sort", "unique", "dictsort", "groupby", "min", "max"})
# Filters that go through a Lazy value item by item, holding none of it whole (any other
# filter gets it materialized first).
_STREAMING = frozenset({"length", "count", "first", "last", "random", "map", "select", "reject", "selectattr",
                        "rejectattr", "sum", "min", "max", "batch", "default", "d", "bool", "reverse"})


def n_items(value: Any) -> int:
    return _length(value) if not isinstance(value, (str, bytes)) else 0


def _precheck(name: str, budget: Budget, value: Any, args: tuple, kwargs: dict) -> None:
    if name in ("slice", "batch"):
        n = _int_arg(args, kwargs, 0, "slices" if name == "slice" else "linecount", 1)
        if isinstance(n, int) and n > MAX_ITEMS:
            raise ExpressionLimit(f"{name}({n:,}) asks for more than {MAX_ITEMS:,} parts")
    elif name == "center":
        width = _int_arg(args, kwargs, 0, "width", 80)
        if isinstance(width, int):
            budget.size(max(width, _length(value)), "a centered text")
    elif name == "indent":
        width = _int_arg(args, kwargs, 0, "width", 4)
        if isinstance(width, str):
            width = len(width)
        if isinstance(width, int) and isinstance(value, str):
            budget.size(len(value) + width * (value.count("\n") + 1), "an indented text")
    elif name in ("wordwrap", "urlize", "wordcount", "title"):
        if isinstance(value, str) and len(value) > _SLOW_TEXT:
            raise ExpressionLimit(f"{name} reads at most {_SLOW_TEXT:,} characters, not {len(value):,}")
        wrap = _int_arg(args, kwargs, 2, "wrapstring", None)
        if name == "wordwrap" and isinstance(wrap, str) and isinstance(value, str):
            budget.size(len(value) * (1 + len(wrap)), "a wrapped text")
    elif name == "replace" and len(args) >= 2 and isinstance(value, str):
        est = _estimate_method(value, "replace", args, kwargs)
        if est is not None:
            budget.size(est, "a replaced text")
    elif name == "format" and isinstance(value, str):
        check_printf(budget, value, tuple(args) if not kwargs else kwargs)
    elif name == "join":
        if not isinstance(value, (str, list, tuple, dict, range)):
            return
        sep = _int_arg(args, kwargs, 0, "d", "")
        _, total = _bounded_join(budget, sep if isinstance(sep, str) else "", value)
        budget.size(total, "a joined text")
    elif name == "round":
        precision = _int_arg(args, kwargs, 0, "precision", 0)
        if isinstance(precision, int) and abs(precision) > 400:  # 'ceil' computes 10 ** precision
            raise ExpressionLimit(f"round to {precision:,} places; at most 400")
    elif name in ("tojson", "pprint"):
        indent = _int_arg(args, kwargs, 0, "indent", None) if name == "tojson" else 1
        if isinstance(indent, str):
            indent = len(indent)
        if isinstance(indent, int) and indent > 0:
            budget.size(_indented_size(value, indent, budget.limits.max_bytes), "an indented JSON text")
    elif name in _PER_ITEM_C and n_items(value) > MAX_ITEMS:
        # one C-level call each, holding the interpreter throughout: keep them short
        raise ExpressionLimit(f"{name} over {n_items(value):,} items; at most {MAX_ITEMS:,}")
    elif name == "sum" and isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        budget.size(sum(len(x) for x in value if isinstance(x, (list, tuple))) * 8 * 2, "a summed list")
    elif name == "list" and isinstance(value, str):
        budget.size(len(value) * 8, "a list of characters")
    if name not in _CONTAINER_FILTERS:
        check_text(budget, value)


def _counted(gen: Iterator[Any]) -> Iterator[Any]:
    budget = current()
    for x in gen:
        budget.tick()
        yield x


def bound_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its cost bounded: a tick, pre-checks on its arguments, a check of its result."""
    if name in (LOOP_FILTER, CONCAT_FILTER):
        return fn
    skip = 1 if _PassArg.from_obj(fn) is not None else 0

    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        value = args[skip] if len(args) > skip else None
        n = _length(value)
        if budget.inline and n > 10_000:
            raise OffloadSignal()
        budget.tick(1 + n // 64)
        if budget.lazy:
            if isinstance(value, Lazy):
                fast = value.filtered(name, args[skip + 1:], kwargs)
                if fast is not NotImplemented:
                    return fast
            if name not in _STREAMING:
                args, kwargs = materialize(args, budget), materialize(kwargs, budget)
                value = args[skip] if len(args) > skip else None
        _precheck(name, budget, value, args[skip + 1:], kwargs)
        result = fn(*args, **kwargs)
        if isinstance(result, Iterator) and not isinstance(result, (str, bytes)):
            return _counted(result)
        check_value(budget, result, f"the result of {name}")
        return result

    return bounded


def bounded_range(*args: Any) -> range:
    rng = range(*args)
    if len(rng) > MAX_ITEMS:
        raise ExpressionLimit(f"range() of {len(rng):,} items; at most {MAX_ITEMS:,}")
    return rng


# -- the environment -----------------------------------------------------------------------------
_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "**": operator.pow, "%": operator.mod,
}


def _estimate_binop(budget: Budget, op: str, left: Any, right: Any) -> None:
    """Refuse before computing: results past the size limit, integers past 4,300 digits."""
    lint = isinstance(left, int) and not isinstance(left, bool)
    rint = isinstance(right, int) and not isinstance(right, bool)
    if op == "**":
        if lint and rint and right > 0 and abs(left) > 1:
            budget.bits(int(math.log2(abs(left)) * right) + 1)
    elif op == "*":
        if lint and rint:
            budget.bits(left.bit_length() + right.bit_length())
        # lists: the array of references is what is allocated here; the text it would become
        # (shared items written out each time) is measured where it becomes text
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and n > 0:
                unit = len(seq) if isinstance(seq, (str, bytes)) else len(seq) * 8
                budget.size(unit * n, "a repeated value")
    elif op == "+":
        if isinstance(left, (str, bytes)) and isinstance(right, (str, bytes)):
            budget.size(len(left) + len(right), "a joined text")
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            budget.size((len(left) + len(right)) * 8, "a joined list")
    elif op == "%" and isinstance(left, str):
        check_printf(budget, left, right)


_BUILTIN_VALUES = (str, bytes, int, float, list, tuple, dict)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the bounds described in this module."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, *args: Any, limits: Limits = _DEFAULT, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # no constant folding: it would run filters at compile time, outside any budget, and
        # write what they built into the compiled code ('x' | center(10**7) as a 10 MB literal)
        self.optimized = False
        self.limits = limits
        self.globals["range"] = bounded_range
        self.filters[LOOP_FILTER] = _loop
        self.filters[CONCAT_FILTER] = _concat

    def bound_filters(self) -> None:
        """Wrap every filter registered so far (call after adding your own)."""
        for name, fn in list(self.filters.items()):
            if not getattr(fn, "_flowrun_bounded", False):
                wrapped = bound_filter(name, fn)
                wrapped._flowrun_bounded = True  # type: ignore[attr-defined]
                self.filters[name] = wrapped

    # rendering: count the output as it is produced
    def concat(self, chunks: Iterable[str]) -> str:  # type: ignore[override]
        budget = current()
        out = []
        for c in chunks:
            budget.emit(len(c))
            out.append(c)
        return "".join(out)

    def _generate(self, source: nodes.Template, name: Any, filename: Any, defer_init: bool = False) -> str:
        return super()._generate(_Guard().visit(source), name, filename, defer_init)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        owner = value.__self__
        formatter = _BoundedFormatter(self)
        is_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            current().tick()
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return type(owner)(formatter.vformat(owner, args, kwargs))
        return functools.update_wrapper(bounded, value)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, Lazy):  # an index, a slice or a filter: not its machinery
            return False
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # JSON data first: `triggerBody().items` is the "items" key, not dict.items
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.tick()
        if isinstance(left, Lazy) or isinstance(right, Lazy):
            left, right = materialize(left, budget), materialize(right, budget)
        _estimate_binop(budget, operator, left, right)
        result = _BINOPS[operator](left, right)
        check_value(budget, result, f"the result of {operator}")
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = getattr(_state, "budget", None) or current()
        budget.tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, _BUILTIN_VALUES) or isinstance(__obj, (type, types.BuiltinFunctionType)):
            return __self._call_builtin(budget, owner, __context, __obj, args, kwargs)
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{__obj!r} is not safely callable")
        return __context.call(__obj, *args, **kwargs)  # a workflow function or a helper

    def _call_builtin(self, budget: Budget, owner: Any, context: Any, fn: Any, args: tuple, kwargs: dict) -> Any:
        """A method of a str, int, list ... or a builtin: bounded before, measured after."""
        name = getattr(fn, "__name__", "")
        if isinstance(owner, (str, bytes)):
            if name == "join" and args:
                seq, total = _bounded_join(budget, owner, args[0])
                budget.size(total, "a joined text")
                args = (seq,) + args[1:]
            else:
                est = _estimate_method(owner, name, args, kwargs)
                if est is not None:
                    budget.size(est, f"the result of {name}()")
        elif isinstance(owner, int) and name == "to_bytes":
            length = _int_arg(args, kwargs, 0, "length", 1)
            if isinstance(length, int):
                budget.size(length, "the result of to_bytes()")
        result = super().call(context, fn, *args, **kwargs)
        check_value(budget, result, f"the result of {name}()")
        return result
