"""Finding runs: the filters of a run history (the web UI's runs list), a page at a time.

    f = RunFilter.parse({"flow": "orders", "status": "failed", "q": "a1b2", "since": "2026-12-01"})
    runs = search(store, f, offset=0, limit=50)      # newest first, one page
    counts(store, f)                                  # {"Failed": 3, "Succeeded": 40, ...} (status ignored)
    fingerprint(store)                                # changes whenever any run changes status
    progress(store, run_id), related(store, run_id), recent(store, flow)

A filter is built from untrusted text (a query string): every value is checked and bounded,
and a value that cannot be understood is reported in ``problems`` and left out, never an
error. Values reach SQLite only as bound parameters.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from .runs import Run
from .state import Status
from .store import Store

MAX_TEXT = 200  # longest flow name, trigger name or search text a filter keeps
MAX_PAGE = 200  # most runs on one page
_COLS = ("id", "flow", "status", "trigger", "created", "started", "ended", "parent_id", "rerun_of",
         "dedupe_key", "attempts")


def parse_time(text: str) -> float | None:
    """An ISO 8601 date or time (``2026-12-07``, ``2026-12-07T08:00``, with a zone or UTC) as
    Unix seconds, or None when it is not one."""
    text = text.strip()
    if not text or len(text) > 40:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    try:  # a time whose UTC date falls outside years 1-9999 (0001-01-01T00:00+14:00) cannot be shown back
        stamp = when.timestamp()
        dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
        return stamp
    except (OverflowError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class RunFilter:
    flow: str | None = None
    status: Status | None = None
    trigger: str | None = None
    since: float | None = None  # created at or after (Unix seconds)
    until: float | None = None  # created before
    text: str | None = None  # found in the run id or the dedupe key
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> "RunFilter":
        """The filter a query string asks for (``flow``, ``status``, ``trigger``, ``since``,
        ``until``, ``q``); what cannot be used is named in ``problems`` and ignored."""
        problems: list[str] = []

        def text(name: str) -> str | None:
            value = query.get(name)
            if not isinstance(value, str):
                return None
            value = value.strip()
            if "\x00" in value:
                problems.append(f"{name}: not text")
                return None
            if len(value) > MAX_TEXT:
                problems.append(f"{name}: longer than {MAX_TEXT} characters")
                return None
            return value or None

        status = None
        raw = text("status")
        if raw:
            try:
                status = Status.of(raw)
            except ValueError:
                problems.append(f"status: unknown status {raw[:40]!r}; one of {', '.join(Status)}")
        times: dict[str, float | None] = {}
        for name in ("since", "until"):
            raw = text(name)
            times[name] = parse_time(raw) if raw else None
            if raw and times[name] is None:
                problems.append(f"{name}: not an ISO 8601 date or time such as 2026-12-07T08:00")
        return cls(flow=text("flow"), status=status, trigger=text("trigger"), since=times["since"],
                   until=times["until"], text=text("q"), problems=tuple(problems))

    def where(self, *, with_status: bool = True) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.flow:
            clauses.append("flow = ?")
            args.append(self.flow)
        if self.status and with_status:
            clauses.append("status = ?")
            args.append(str(self.status))
        if self.trigger:
            clauses.append("trigger = ?")
            args.append(self.trigger)
        if self.since is not None:
            clauses.append("created >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("created < ?")
            args.append(self.until)
        if self.text:
            clauses.append("(instr(id, ?) > 0 OR instr(coalesce(dedupe_key, ''), ?) > 0)")
            args += [self.text, self.text]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def query(self, **changes: Any) -> dict[str, str]:
        """This filter as query parameters (for links), with ``changes`` applied."""
        out = {"flow": self.flow, "status": str(self.status) if self.status else None, "trigger": self.trigger,
               "since": _iso(self.since), "until": _iso(self.until), "q": self.text}
        out.update(changes)
        return {k: str(v) for k, v in out.items() if v not in (None, "")}


def _iso(ts: float | None) -> str | None:
    # isoformat, not strftime("%Y"): glibc writes year 1 as "1", a link the next page cannot read back
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).replace(tzinfo=None).isoformat("T", "seconds")


def search(store: Store, f: RunFilter, *, offset: int = 0, limit: int = 50) -> list[Run]:
    """One page of the runs ``f`` selects, newest first (without payloads, outputs or steps)."""
    where, args = f.where()
    limit = max(1, min(int(limit), MAX_PAGE))
    rows = store.db.execute(f"SELECT {', '.join(_COLS)} FROM runs{where} ORDER BY created DESC, id LIMIT ? OFFSET ?",
                            (*args, limit, max(0, int(offset)))).fetchall()
    return [Run(**dict(zip(_COLS, r)), _load_steps=store.steps) for r in rows]


def total(store: Store, f: RunFilter) -> int:
    where, args = f.where()
    return store.db.execute(f"SELECT COUNT(*) FROM runs{where}", args).fetchone()[0]


def counts(store: Store, f: RunFilter) -> dict[str, int]:
    """The runs ``f`` selects, whatever their status, counted by status."""
    where, args = f.where(with_status=False)
    return {s: n for s, n in store.db.execute(f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", args)}


def fingerprint(store: Store, run_id: str | None = None) -> tuple:
    """A value that changes whenever a run starts, changes status or finishes (of one run,
    with ``run_id``: also when one of its steps finishes)."""
    if run_id is not None:
        row = store.db.execute("SELECT status, started, ended FROM runs WHERE id = ?", (run_id,)).fetchone()
        steps = store.db.execute("SELECT COUNT(*), MAX(seq) FROM steps WHERE run_id = ?", (run_id,)).fetchone()
        return (tuple(row) if row else None, tuple(steps))
    return tuple(store.db.execute("SELECT status, COUNT(*), MAX(created), MAX(started), MAX(ended) FROM runs "
                                  "GROUP BY status ORDER BY status").fetchall())


def progress(store: Store, run_id: str) -> dict:
    """How far a run is: its status and how many steps it has recorded."""
    row = store.db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    steps = store.db.execute("SELECT COUNT(*) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
    return {"status": row[0] if row else None, "steps": steps}


def related(store: Store, run_id: str) -> dict[str, list[Run]]:
    """The runs linked to ``run_id``: its child runs (Workflow actions) and the runs that re-run
    or replay it (the newest 100 of each)."""
    out: dict[str, list[Run]] = {}
    for key, column in (("children", "parent_id"), ("reruns", "rerun_of")):
        rows = store.db.execute(f"SELECT {', '.join(_COLS)} FROM runs WHERE {column} = ? ORDER BY created DESC "
                                f"LIMIT 100", (run_id,)).fetchall()
        out[key] = [Run(**dict(zip(_COLS, r)), _load_steps=store.steps) for r in rows]
    return out


def recent(store: Store, flow: str, limit: int = 100) -> list[Run]:
    """The flow's newest runs (status and times only)."""
    return search(store, RunFilter(flow=flow), limit=limit)
