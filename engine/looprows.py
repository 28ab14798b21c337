"""The rows of a loop's ``result()``, read from the store on demand.

``result('loop')`` lists, per action inside the loop, every iteration's result. A loop of
200,000 iterations has 200,000 rows per action: built whole they are ~200 MB and take longer
than a template may run. Instead each action's rows are a ``LoopRows``: a sequence over the
steps the store recorded, counted and sized by one aggregate query, read a page at a time
(each page a primary-key lookup of its paths) only when a template reads them.

- ``| length``, ``[0]``, ``[-1]``, slices, ``| first``, ``| last`` read only what they return;
- ``selectattr('status', 'eq', 'Failed')`` (and ``ne``, ``in``, ``rejectattr``) is a view of
  the steps with those statuses, found by the store, not by reading every row;
- ``{% for %}``, ``map``, ``select``, ``sum``, ``==`` stream through the pages, ticking the budget;
- anything that needs the whole value (text, ``tojson``, ``| list``, ``+``, the value an
  evaluation returns) materializes it under the budget (``sandbox.Lazy``).

Loops of at most ``EAGER_ROWS`` rows per action get plain lists, read in one go.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Iterable, Iterator

from . import sandbox
from .errors import ExpressionLimit
from .frames import ActionResult
from .state import fold, is_terminal

EAGER_ROWS = 1_000  # per action: at most this many rows are a plain list
_PAGES = (16, 64, 256, 512)  # rows per read: the first pages small (| first reads 16 rows)
_SAMPLE_TIME = "2026-01-01T00:00:00.000000Z"


class _Loop:
    """One finished loop as the store holds it: per inner action and status, how many steps,
    the highest iteration index and the stored bytes (``Store.loop_summary``)."""

    __slots__ = ("store", "run_id", "path", "label", "types", "stats", "_indexes")

    def __init__(self, store: Any, run_id: str, path: str, label: str, types: dict[str, str]):
        self.store, self.run_id, self.path, self.label, self.types = store, run_id, path, label, types
        self.stats: dict[str, dict[str, tuple[int, int, int, int]]] = {n: {} for n in types}
        with _store_time():
            summary = store.loop_summary(run_id, path, list(types))
        for action, status, count, top, size, blobs in summary:
            self.stats[action][status] = (count, -1 if top is None else int(top), int(size or 0), int(blobs or 0))
        self._indexes: dict[tuple, Any] = {}

    def count(self, name: str, statuses: frozenset | None = None) -> int:
        return sum(v[0] for s, v in self.stats[name].items() if statuses is None or s in statuses)

    def indexes(self, name: str, statuses: frozenset | None) -> Sequence[int]:
        """The iteration indexes of ``name``'s steps (with ``statuses``), ascending."""
        stats = self.stats[name]
        if statuses is not None and set(stats) <= statuses:
            statuses = None
        total = self.count(name, statuses)
        if total == 0 or statuses is None and total == max((v[1] for v in stats.values()), default=-1) + 1:
            return range(total)  # every iteration has its step: positions are indexes
        key = (name, statuses)
        found = self._indexes.get(key)
        if found is None:
            sandbox.current().tick(1 + total // 64)
            with _store_time():
                found = self._indexes[key] = self.store.loop_indexes(
                    self.run_id, self.path, name, None if statuses is None else tuple(sorted(statuses)))
        return found

    def row_overhead(self, name: str, status: str) -> int:
        """The JSON text of one row beyond its inputs, outputs and error (stored as text)."""
        empty = {"name": name, "type": self.types[name], "status": status, "inputs": None, "outputs": None,
                 "error": None, "startTime": _SAMPLE_TIME, "endTime": _SAMPLE_TIME, "attempts": 1}
        return len(json.dumps(empty, separators=(",", ":"), ensure_ascii=False)) - 12  # 3 x null: stored sizes

    def rows(self, name: str, indexes: Iterable[int]) -> list[dict]:
        paths = [f"{self.path}[{i}]/{name}" for i in indexes]
        sandbox.current().tick(1 + len(paths) // 16)
        steps = self.store.steps_at(self.run_id, paths)
        return [_row(steps[p]) for p in paths if p in steps]


class _store_time:
    """A pass of the store over a whole loop (counting, or listing indexes: once per loop and
    view, kept) is not the template's time, as compiling is not: the budget's deadline moves
    by what it took. Reading rows is the template's time."""

    def __enter__(self) -> None:
        if sandbox.current().inline:  # never on the event loop: in a worker thread
            raise sandbox.OffloadSignal()
        self.started = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        sandbox.current().extend(time.perf_counter() - self.started)


def _row(step: Any) -> dict:
    return ActionResult(step.action, step.type, step.status, step.inputs, step.outputs, step.error,
                        step.started, step.ended, step.attempts, path=step.path,
                        interrupted=step.interrupted).as_dict()


def _pages(indexes: Sequence[int]) -> Iterator[Sequence[int]]:
    at, k = 0, 0
    while at < len(indexes):
        size = _PAGES[min(k, len(_PAGES) - 1)]
        yield indexes[at:at + size]
        at, k = at + size, k + 1


class LoopRows(sandbox.Lazy, Sequence):
    """The rows of one action inside a loop (``result('loop')[i].outputs``), in iteration
    order: all of them, those with some statuses, or an explicit run of iteration indexes."""

    __slots__ = ("_loop", "_name", "_statuses", "_idx")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, loop: _Loop, name: str, statuses: frozenset | None = None, idx: Sequence[int] | None = None):
        self._loop, self._name, self._statuses, self._idx = loop, name, statuses, idx

    def _indexes(self) -> Sequence[int]:
        """The iteration indexes of this view, in its order (the loop keeps any it lists)."""
        return self._idx if self._idx is not None else self._loop.indexes(self._name, self._statuses)

    def __len__(self) -> int:
        return len(self._idx) if self._idx is not None else self._loop.count(self._name, self._statuses)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return LoopRows(self._loop, self._name, idx=self._indexes()[i])
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"an array index must be an integer, not {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        rows = self._loop.rows(self._name, [self._indexes()[i % n]])
        if not rows:
            raise IndexError(i)
        return rows[0]

    def __iter__(self) -> Iterator[dict]:
        for page in _pages(self._indexes()):
            yield from self._loop.rows(self._name, page)

    def __reversed__(self) -> Iterator[dict]:
        backwards = self._indexes()[::-1]
        for page in _pages(backwards):
            yield from self._loop.rows(self._name, page)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, (list, sandbox.Lazy)):
            return NotImplemented
        if len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other))

    def __str__(self) -> str:
        return str(self.materialize(sandbox.current()))

    def __repr__(self) -> str:
        return f"<{len(self):,} rows of {self._name} in result('{self._loop.label}')>"

    # -- sandbox.Lazy ----------------------------------------------------------------------
    def text_size(self, cap: int) -> int:
        loop, name = self._loop, self._name
        if self._idx is None:  # all the steps (with some statuses): from the loop's summary
            chosen = [(s, v) for s, v in loop.stats[name].items() if self._statuses is None or s in self._statuses]
            blobs = any(v[3] for _, v in chosen)
            if not blobs or self._statuses is None:
                total = sum(v[2] + v[0] * loop.row_overhead(name, s) for s, v in chosen)
                return total + (loop.store.blob_sizes(loop.run_id, loop.path, name) if blobs else 0)
        total, budget = 0, sandbox.current()
        each = loop.row_overhead(name, "Succeeded")
        for page in _pages(self._indexes()):
            paths = [f"{loop.path}[{i}]/{name}" for i in page]
            budget.tick(1 + len(paths) // 16)
            size, blobs = loop.store.stored_size(loop.run_id, paths)
            total += size + each * len(paths)
            if blobs:
                total += loop.store.blob_sizes(loop.run_id, loop.path, name, paths)
            if total > cap:
                break
        return total

    def materialize(self, budget: sandbox.Budget) -> list:
        limit = budget.limits.max_bytes
        size = self.text_size(limit)
        budget.read += size
        if size > limit or budget.read > limit:
            also = "" if size > limit else f" (with the {sandbox._mb(budget.read - size)} read before it)"
            raise ExpressionLimit(
                f"result('{self._loop.label}') has {len(self):,} rows of '{self._name}': about {sandbox._mb(size)} as "
                f"JSON{also}, more than the {sandbox._mb(limit)} a template may build; read a part of it: "
                f"| length, [0], [-1], [a:b], | selectattr('status', 'eq', 'Failed')")
        return list(self)

    def filtered(self, name: str, args: tuple, kwargs: dict) -> Any:
        if name not in ("selectattr", "rejectattr") or kwargs or not args or args[0] != "status":
            return NotImplemented
        keep = _status_test(args[1:])
        if keep is None:
            return NotImplemented
        known = set(self._loop.stats[self._name])
        chosen = frozenset(s for s in known if keep(s) == (name == "selectattr"))
        if self._statuses is not None:
            chosen &= self._statuses
        if self._idx is None:
            return LoopRows(self._loop, self._name, statuses=chosen)
        from array import array

        matching = self._loop.indexes(self._name, chosen)  # ascending
        own = self._idx
        if isinstance(own, range):
            kept = array("q", (i for i in matching if i in own))
            if own.step < 0:
                kept.reverse()
        else:  # this view's own order (a reversed slice stays reversed)
            wanted = frozenset(matching)
            kept = array("q", (i for i in own if i in wanted))
        return LoopRows(self._loop, self._name, idx=kept)


def _status_test(rest: tuple) -> Any:
    """``selectattr('status', test, operand)`` as a predicate on a status, when it is one we know."""
    if not rest:
        return bool
    test, operand = rest[0], rest[1:]
    if test in ("eq", "equalto", "==") and len(operand) == 1:
        return lambda s: s == operand[0]
    if test in ("ne", "!=") and len(operand) == 1:
        return lambda s: s != operand[0]
    if test == "in" and len(operand) == 1 and isinstance(operand[0], (list, tuple)):
        return lambda s: s in operand[0]
    return None


def loop_result(runtime: Any, container: ActionResult, owner: Any) -> list[dict]:
    """``result()`` of a loop: per action inside it, its rows in iteration order and their
    folded status. The summary of a finished loop is kept on its result (a few numbers)."""
    loop = container.rows
    if loop is None:
        types = {n: a.type for b in owner.blocks.values() for n, a in b.actions.items()}
        loop = _Loop(runtime.store, runtime.run_id, container.path, owner.name, types)
        if is_terminal(container.status):
            container.rows = loop
    out = []
    for name in loop.types:
        rows: Any = LoopRows(loop, name)
        if len(rows) <= EAGER_ROWS:
            rows = list(rows)
        else:  # (views made from it belong to the same evaluation)
            sandbox.handed_out()
        out.append({"name": name, "status": fold(loop.stats[name]), "outputs": rows})
    return out
