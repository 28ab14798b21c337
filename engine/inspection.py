"""Reading a recorded run for people and scripts: what ``flowrun show`` and ``flowrun run``
print. Everything is read from the store a page at a time and handed out as it is read, so a
Foreach of a million iterations prints in bounded memory.

    header(run)                 the run's facts: times (ISO 8601), trigger, payload, parameters,
                                git commit, what it is (a run, a rerun, a replay, a child run)
    tree(store, run, ...)       the lines of the text tree: each action with status and duration;
                                a loop summarised (iterations counted by status, the actions
                                inside counted by status, failed iterations listed)
    json_chunks(store, run, ...)  the run as one JSON document, in pieces (steps streamed)

``depth`` narrows the tree to that many levels (an action is level 1, a loop's iteration
level 2, what is inside it level 3); ``failed`` keeps only what did not succeed (and the
containers and iterations that hold it); ``iterations`` lists every iteration instead of
summarising them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

from .runs import Run, Step, iso
from .state import Status
from .store import STEP_COLS as _COLS, Store

PAGE = 1000
BAD = (str(Status.FAILED), str(Status.TIMEDOUT), str(Status.CANCELLED))
LISTED_FAILURES = 20  # failed iterations named in a loop's summary (all of them with --failed)
_INDEX = re.compile(r"\[(\d+)\]$")


def kind(run: Run) -> str:
    """'replay', 'rerun', 'child' or 'run': how this run came to be."""
    request = run.request if isinstance(run.request, dict) else {}
    if request.get("via") == "replay":
        return "replay"
    if run.rerun_of:
        return "rerun"
    return "child" if run.parent_id else "run"


def level(path: str) -> int:
    """How deep a step sits: ``a`` 1, ``loop[3]`` 2, ``loop[3]/each`` 3."""
    return 1 + path.count("/") + len(re.findall(r"\[\d+\]", path))


def header(run: Run) -> dict:
    """The run's facts as ``--json`` prints them (times in ISO 8601), without its steps."""
    out = run.to_json(steps=False)
    out["kind"] = kind(run)
    out["replay_of"] = run.rerun_of if out["kind"] == "replay" else None
    if out["kind"] == "replay":
        out["rerun_of"] = None
    out["file"] = run.file
    out["payload"] = run.payload
    out["duration_ms"] = (None if run.started is None or run.ended is None
                          else round((run.ended - run.started) * 1000, 3))
    return out


def is_reused(run: Run, step: Step) -> bool:
    """A rerun's step copied from the old run (it finished before this run was created)."""
    return (run.rerun_of is not None and kind(run) == "rerun" and step.ended is not None
            and run.created is not None and step.ended < run.created)


@dataclass
class Line:
    """One line of the text tree: ``level`` (1 for a top-level action), and a step or a note."""

    level: int
    step: Step | None = None
    note: str = ""
    reused: bool = False


class Reader:
    """Paged reads of one run's steps (direct children of a block, a loop's iterations, counts)."""

    def __init__(self, store: Store, run_id: str, page: int = PAGE, *, blobs: bool = True):
        self.db, self.store, self.run_id, self.page = store.db, store, run_id, page
        self.blobs = blobs  # False: offloaded values stay references ({"$blob": sha256, "size": n})

    def _rows(self, where: str, args: tuple, *, by_path: bool = False) -> Iterator[Step]:
        """Pages of steps in the order they finished. ``by_path``: the ``where`` holds a range of
        paths, read through the primary key (a block inside one iteration), never a scan of the run."""
        last = -1
        order = "+seq" if by_path else "seq"
        while True:
            rows = self.db.execute(f"SELECT {_COLS} FROM steps WHERE run_id = ? AND {where} AND {order} > ? "
                                   f"ORDER BY {order} LIMIT ?", (self.run_id, *args, last, self.page)).fetchall()
            for r in rows:
                yield self.store._step(r, blobs=self.blobs)
            if len(rows) < self.page:
                return
            last = rows[-1][10]  # seq

    def children(self, prefix: str | None) -> Iterator[Step]:
        """The actions directly inside a block (the run's root, a container, an iteration)."""
        if not prefix:
            return self._rows("instr(path, '/') = 0 AND instr(path, '[') = 0", ())
        start = len(prefix) + 2
        return self._rows("path > ? AND path < ? AND instr(substr(path, ?), '/') = 0 "
                          "AND instr(substr(path, ?), '[') = 0", (prefix + "/", prefix + "0", start, start),
                          by_path=True)

    def _inside_loop(self, path: str) -> tuple[str, tuple]:
        return "path >= ? AND path < ?", (path + "[", path + "\\")

    def inside(self, path: str) -> str | None:
        """'loop' when the step has iterations, 'block' when actions ran inside it, else None
        (primary-key range reads: an OR of the two ranges would scan the whole run)."""
        if self.has_iterations(path):
            return "loop"
        return "block" if self.has_children(path) else None

    def step(self, path: str) -> Step | None:
        r = self.db.execute(f"SELECT {_COLS} FROM steps WHERE run_id = ? AND path = ?", (self.run_id, path)).fetchone()
        return self.store._step(r, blobs=self.blobs) if r else None

    def has_iterations(self, path: str) -> bool:
        where, args = self._inside_loop(path)
        return self.db.execute(f"SELECT 1 FROM steps WHERE run_id = ? AND {where} LIMIT 1",
                               (self.run_id, *args)).fetchone() is not None

    def has_children(self, path: str) -> bool:
        return self.db.execute("SELECT 1 FROM steps WHERE run_id = ? AND path > ? AND path < ? LIMIT 1",
                               (self.run_id, path + "/", path + "0")).fetchone() is not None

    def iterations(self, path: str, *, bad_only: bool = False) -> Iterator[Step]:
        where, args = self._inside_loop(path)
        where += f" AND type = 'Iteration' AND instr(substr(path, {len(path) + 1}), '/') = 0"
        if bad_only:
            where += " AND status IN (?, ?, ?)"
            args = (*args, *BAD)
        return self._rows(where, args)

    def iteration_page(self, path: str, start: int = 0, count: int = 500, *,
                       bad_only: bool = False) -> list[Step]:
        """Up to ``count`` iterations of a loop in index order, from index ``start`` (all of them:
        read by primary key, whatever the loop's size; only failed ones: a scan of the loop)."""
        if not bad_only:
            paths = [f"{path}[{i}]" for i in range(max(0, start), max(0, start) + min(max(1, count), 1000))]
            rows = self.db.execute(f"SELECT {_COLS} FROM steps WHERE run_id = ? AND path IN "
                                   f"({', '.join('?' * len(paths))}) AND type = 'Iteration'",
                                   (self.run_id, *paths)).fetchall()
            steps = [self.store._step(r, blobs=self.blobs) for r in rows]
            return sorted(steps, key=lambda s: int(s.path[len(path) + 1:-1]))
        where, args = self._inside_loop(path)
        # the N of `path[N]`, for iteration rows only: a CASE, as PostgreSQL may evaluate a WHERE's
        # terms in any order and its CAST refuses "3]/inner[0" (SQLite's reads the leading digits)
        index = (f"CASE WHEN type = 'Iteration' AND instr(substr(path, {len(path) + 1}), '/') = 0 "
                 f"THEN CAST(substr(path, {len(path) + 2}, length(path) - {len(path) + 2}) AS INTEGER) END")
        where += f" AND type = 'Iteration' AND instr(substr(path, {len(path) + 1}), '/') = 0 AND {index} >= ?"
        args = (*args, max(0, start))
        if bad_only:
            where += " AND status IN (?, ?, ?)"
            args = (*args, *BAD)
        rows = self.db.execute(f"SELECT {_COLS} FROM steps WHERE run_id = ? AND {where} ORDER BY {index} LIMIT ?",
                               (self.run_id, *args, max(1, count))).fetchall()
        return [self.store._step(r, blobs=self.blobs) for r in rows]

    def loop_counts(self, path: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """(iterations by status, {inner action: its steps by status}) across every iteration."""
        where, args = self._inside_loop(path)
        per_iteration: dict[str, int] = {}
        inner: dict[str, dict[str, int]] = {}
        for action, type_, status, count in self.db.execute(
                f"SELECT action, type, status, COUNT(*) FROM steps WHERE run_id = ? AND {where} "
                f"GROUP BY action, type, status", (self.run_id, *args)):
            if type_ == "Iteration" and action == path.rsplit("/", 1)[-1]:
                per_iteration[status] = per_iteration.get(status, 0) + count
            else:  # a nested loop's iterations count as "inner[]"
                inner.setdefault(f"{action}[]" if type_ == "Iteration" else action, {})[status] = count
        return per_iteration, inner

    def counts(self) -> dict[str, dict[str, int]]:
        """Every action of the run: its steps (iterations included) counted by status."""
        out: dict[str, dict[str, int]] = {}
        for action, type_, status, count in self.db.execute(
                "SELECT action, type, status, COUNT(*) FROM steps WHERE run_id = ? GROUP BY action, type, status",
                (self.run_id,)):
            key = f"{action}[]" if type_ == "Iteration" else action
            out.setdefault(key, {})[status] = count
        return out

    def all(self) -> Iterator[Step]:
        return self.store.iter_steps(self.run_id, page=self.page)


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def tree(store: Store, run: Run, *, depth: int | None = None, failed: bool = False,
         iterations: bool = False) -> Iterator[Line]:
    """The lines of a run's tree, read and handed out a page at a time."""
    reader = Reader(store, run.id)

    def block(prefix: str | None, lvl: int, bad_only: bool = failed) -> Iterator[Line]:
        for step in reader.children(prefix):
            if bad_only and str(step.status) not in BAD:
                continue
            yield Line(lvl, step, reused=is_reused(run, step))
            if depth is not None and lvl >= depth:
                continue
            inside = reader.inside(step.path)
            if inside == "loop":
                yield from loop(step.path, lvl + 1)
            elif inside == "block":
                yield from block(step.path, lvl + 1, bad_only)

    def loop(path: str, lvl: int) -> Iterator[Line]:
        per_iteration, inner = reader.loop_counts(path)
        total = sum(per_iteration.values())
        if not failed:
            yield Line(lvl, note=f"{total} iteration{'s' if total != 1 else ''}: {_counted(per_iteration)}")
            for action, counts in inner.items():
                yield Line(lvl, note=f"{action}: {_counted(counts)}")
        expand = iterations or failed
        shown = 0
        bad = sum(n for s, n in per_iteration.items() if s in BAD)
        for it in reader.iterations(path, bad_only=not iterations):
            if expand:
                yield Line(lvl, it, reused=is_reused(run, it))
                if depth is None or lvl < depth:
                    yield from block(it.path, lvl + 1)
                continue
            if shown == LISTED_FAILURES:
                yield Line(lvl, note=f"... and {bad - shown} more failed iterations (--failed lists them all)")
                break
            yield Line(lvl, it, note="failed iteration", reused=is_reused(run, it))
            if depth is None or lvl < depth:
                yield from block(it.path, lvl + 1, True)  # what failed in it
            shown += 1

    yield from block(None, 1)


def text_lines(store: Store, run: Run, *, depth: int | None = None, failed: bool = False,
               iterations: bool = False, color: bool = False) -> Iterator[str]:
    """The text ``flowrun show`` prints, line by line."""
    import click

    def paint(status: Any) -> str:
        text = f"{status!s:<9}"
        colors = {"Succeeded": "green", "Failed": "red", "TimedOut": "red", "Cancelled": "yellow",
                  "Skipped": None, "Running": "cyan", "Queued": "cyan", "Waiting": "cyan"}
        return click.style(text, fg=colors.get(str(status))) if color and colors.get(str(status)) else text

    h = header(run)
    what = {"rerun": f"  rerun of {run.rerun_of}", "replay": f"  replay of {run.rerun_of}",
            "child": f"  child of {run.parent_id}"}.get(h["kind"], "")
    yield f"{run.flow}  run {run.id}  {paint(run.status).rstrip()}{what}"
    times = f"  started {h['started'] or '-'}  ended {h['ended'] or '-'}"
    if h["duration_ms"] is not None:
        times += f"  ({h['duration_ms'] / 1000:.3f} s)"
    yield times
    yield f"  trigger {run.trigger or '-'}  git {run.git_commit or '-'}  file {run.file or '-'}"
    yield f"  parameters {_short(run.params)}"
    yield f"  payload {_short(run.payload)}"
    tracked = store.has_tracked(run.id)
    for line in tree(store, run, depth=depth, failed=failed, iterations=iterations):
        pad = "  " * line.level
        if line.step is None:
            yield f"{pad}{line.note}"
            continue
        s = line.step
        name = s.path.rsplit("/", 1)[-1] if "/" in s.path else s.path
        dur = f"  {s.duration * 1000:.1f} ms" if s.duration is not None else ""
        extra = f"  ({s.attempts} attempts)" if s.attempts and s.attempts > 1 else ""
        extra += "  (reused)" if line.reused else ""
        extra += "  (retried after a crash)" if s.interrupted else ""
        yield f"{pad}{name:<24} {paint(s.status)}{dur}{extra}"
        if s.error:
            message = s.error.get("message", s.error) if isinstance(s.error, dict) else s.error
            yield f"{pad}  error: {one_line(str(message))}"
        if s.attempts and s.attempts > 1:  # a retried action: each attempt with its times
            for a in store.attempts(run.id, s.path):
                took = f"  {a.duration * 1000:.1f} ms" if a.duration is not None else ""
                why = ""
                if isinstance(a.error, dict):
                    why = f"  {a.error.get('code', 'Error')}: {one_line(str(a.error.get('message', '')), 200)}"
                yield f"{pad}  attempt {a.number:<3} {paint(a.status)} {(iso(a.started) or '-')}{took}{why}"
        found = store.tracked(run.id, s.path) if tracked else None
        if found:
            yield f"{pad}  tracked: {_short(found.get('values'))}"
            for prop, message in (found.get("errors") or {}).items():
                yield f"{pad}  tracked {prop}: {one_line(str(message))}"
    if run.error:
        message = run.error.get("message", run.error) if isinstance(run.error, dict) else run.error
        yield f"  error: {one_line(str(message))}"
    if run.outputs is not None:
        yield f"  outputs: {_short(run.outputs)}"


def one_line(text: str, most: int = 500) -> str:
    """One line of at most ``most`` characters, control characters (a vendor's ANSI escapes
    reaching the terminal) shown as backslash escapes."""
    text = " ".join(text.split())
    if not text.isprintable():
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
                       for c in text)
    return text if len(text) <= most else text[: most - 3] + "..."


def _short(value: Any, most: int = 500) -> str:
    return one_line(json.dumps(value, default=str, ensure_ascii=False), most)


def json_chunks(store: Store, run: Run, *, depth: int | None = None, failed: bool = False) -> Iterator[str]:
    """The run as one JSON document (``header`` plus ``summary`` and ``steps``), in pieces:
    the steps are read and written a page at a time."""
    reader = Reader(store, run.id)
    head = header(run)
    head["summary"] = reader.counts()
    body = json.dumps(head, indent=2, default=str)
    yield body[:-2] + ',\n  "steps": ['
    first = True
    tracked = store.has_tracked(run.id)
    for step in reader.all():
        if failed and str(step.status) not in BAD:
            continue
        if depth is not None and level(step.path) > depth:
            continue
        item = step.to_json()
        item["reused"] = is_reused(run, step)
        if step.attempts and step.attempts > 1:
            item["attempt_log"] = [a.to_json() for a in store.attempts(run.id, step.path)]
        found = store.tracked(run.id, step.path) if tracked else None
        if found:
            item["trackedProperties"] = found.get("values")
            if found.get("errors"):
                item["trackedPropertiesErrors"] = found["errors"]
        yield ("\n    " if first else ",\n    ") + json.dumps(item, default=str)
        first = False
    yield ("\n  " if not first else "") + "]\n}"
