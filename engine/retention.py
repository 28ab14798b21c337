"""Retention: finished runs older than a cut-off leave the state database.

    prune(store, older_than=30 * 86400)   -> Pruned(runs, steps, firings, blobs)

A run goes when it finished (Succeeded, Failed, TimedOut, Cancelled) before the cut-off; its
steps, their attempts and parked-run row go with it, schedule firings older than the cut-off go, and blob
files no remaining row references are deleted. A run that has not finished is never
touched, however old, nor is a child run whose parent has not finished: a parent parked on
its children reads their outputs when it resumes (a child gone would leave it waiting for
nothing, then start the child over). Rows are deleted a batch at a time, each batch its own short write
transaction, so a server or another ``flowrun run`` on the same file is never held up for
long (``prune_async`` lets a server's other tasks run between batches). ``flowrun prune
--older-than 30d`` calls it, and ``flowrun serve --retention 30d`` at start and every hour.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from .state import TERMINAL
from .store import RUN_JSON, STEP_JSON, Store

BATCH = 500
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_BLOB = re.compile(r'"\$(?:blob|file)":\s*"([0-9a-f]{64})"')  # a stored value, or a node's file


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (or ISO 8601 ``P30D``/``PT12H``) -> seconds."""
    value = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", value.lower())
    if m:
        return float(m.group(1)) * _UNITS[m.group(2)]
    from .model import parse_duration

    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError):
        raise ValueError(f"expected an age such as 30d, 12h, 90m or P30D, got {text!r}") from None
    if seconds is None or seconds < 0:
        raise ValueError(f"expected an age such as 30d, 12h, 90m or P30D, got {text!r}")
    return float(seconds)


@dataclass
class Pruned:
    runs: int = 0
    steps: int = 0
    firings: int = 0
    blobs: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def prune(store: Store, older_than: float, *, now: float | None = None, dry_run: bool = False) -> Pruned:
    """Delete what finished more than ``older_than`` seconds before ``now``."""
    done = Pruned()
    for _ in batches(store, older_than, now=now, dry_run=dry_run, done=done):
        pass
    return done


async def prune_async(store: Store, older_than: float) -> Pruned:
    """``prune`` for an event loop (``flowrun serve``): other tasks run between batches."""
    import anyio

    done = Pruned()
    for _ in batches(store, older_than, done=done):
        await anyio.sleep(0)
    return done


def batches(store: Store, older_than: float, *, now: float | None = None, dry_run: bool = False,
            done: Pruned) -> Iterator[None]:
    """Prune one batch per step (each its own transaction), counting into ``done``."""
    cutoff = (time.time() if now is None else now) - older_than
    if getattr(store, "backend", "sqlite") == "postgresql":
        yield from _pg_batches(store, cutoff, dry_run, done)
        return
    db = store.db
    store.flush()
    finished = tuple(str(s) for s in TERMINAL)
    marks = ", ".join("?" * len(finished))
    select = (f"SELECT id FROM runs WHERE status IN ({marks}) AND COALESCE(ended, created) < ? "
              f"AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = runs.parent_id AND p.status NOT IN ({marks})) "
              f"ORDER BY created LIMIT ?")
    if dry_run:
        ids = [r[0] for r in db.execute(select.replace(" LIMIT ?", ""), (*finished, cutoff, *finished))]
        done.runs = len(ids)
        for i in range(0, len(ids), BATCH):
            chunk = ids[i:i + BATCH]
            done.steps += db.execute(f"SELECT COUNT(*) FROM steps WHERE run_id IN ({', '.join('?' * len(chunk))})",
                                     chunk).fetchone()[0]
        done.firings = db.execute("SELECT COUNT(*) FROM schedule_firings WHERE fired < ?", (cutoff,)).fetchone()[0]
        return
    candidates: set[str] = set()  # blobs the deleted rows referenced
    cancels = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'cancel_requests'").fetchone() is not None
    while True:
        store.flush()  # what others wrote in this process is committed: the batch is its own transaction
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in db.execute(select, (*finished, cutoff, *finished, BATCH))]
            if not ids:
                db.execute("COMMIT")
                break
            holes = ", ".join("?" * len(ids))
            for row in db.execute(f"SELECT {', '.join(RUN_JSON)} FROM runs WHERE id IN ({holes})", ids):
                candidates.update(_blobs(row))
            for row in db.execute(f"SELECT {', '.join(STEP_JSON)} FROM steps WHERE run_id IN ({holes})", ids):
                candidates.update(_blobs(row))
            done.steps += db.execute(f"DELETE FROM steps WHERE run_id IN ({holes})", ids).rowcount
            db.execute(f"DELETE FROM step_attempts WHERE run_id IN ({holes})", ids)
            db.execute(f"DELETE FROM run_files WHERE run_id IN ({holes})", ids)
            db.execute(f"DELETE FROM parked_runs WHERE run_id IN ({holes})", ids)
            if cancels:
                db.execute(f"DELETE FROM cancel_requests WHERE run_id IN ({holes})", ids)
            done.runs += db.execute(f"DELETE FROM runs WHERE id IN ({holes})", ids).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        yield
    store.flush()
    done.firings = db.execute("DELETE FROM schedule_firings WHERE fired < ?", (cutoff,)).rowcount
    db.commit()
    done.blobs = _delete_unreferenced(store, candidates)


def _blobs(row: Any) -> set[str]:
    return {m for text in row if isinstance(text, str) and ('"$blob"' in text or '"$file"' in text) for m in _BLOB.findall(text)}


def _delete_unreferenced(store: Store, candidates: set[str]) -> int:
    """Delete the candidate blob files that no remaining run, step or checkpoint refers to."""
    if not candidates:
        return 0
    db = store.db
    still: set[str] = set()
    queries = [f"SELECT {', '.join(RUN_JSON)} FROM runs", f"SELECT {', '.join(STEP_JSON)}, handle FROM steps"]
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'trigger_checkpoints'").fetchone():
        queries.append("SELECT value FROM trigger_checkpoints")
    for sql in queries:
        cols = sql[len("SELECT "):sql.index(" FROM")].split(", ")
        where = " OR ".join(f"instr({c}, '\"${kind}\"') > 0" for c in cols for kind in ("blob", "file"))
        for row in db.execute(f"{sql} WHERE {where}"):
            still.update(_blobs(row))
    count = 0
    for digest in candidates - still:
        for suffix in (".json", ".bin"):  # a stored value, or a file a node kept (store.put_file)
            try:
                os.remove(store.blobs / f"{digest}{suffix}")
                count += 1
            except FileNotFoundError:
                pass
    return count


def summary(done: Pruned) -> str:
    return json.dumps(done.to_json())


def _pg_batches(store: Any, cutoff: float, dry_run: bool, done: Pruned) -> Iterator[None]:
    """``batches`` on PostgreSQL: runs picked with SKIP LOCKED (a run another process is
    writing is left for the next prune), blobs in the ``blobs`` table."""
    conn, finished = store.conn, [str(s) for s in TERMINAL]
    store.flush()
    where = ("status = ANY(%s) AND COALESCE(ended, created) < %s AND NOT EXISTS (SELECT 1 FROM runs p "
             "WHERE p.id = runs.parent_id AND p.status <> ALL(%s))")  # a child of an unfinished parent stays
    if dry_run:
        done.runs, done.steps = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM((SELECT COUNT(*) FROM steps s WHERE s.run_id = runs.id)), 0) FROM runs "
            f"WHERE {where}", (finished, cutoff, finished)).fetchone()
        done.firings = conn.execute("SELECT COUNT(*) FROM schedule_firings WHERE fired < %s", (cutoff,)).fetchone()[0]
        store.rollback()
        return
    optional = [t for t in ("cancel_requests", "run_slots", "step_attempts", "run_files")
                if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]]
    candidates: set[str] = set()
    while True:
        try:
            store.begin()
            ids = [r[0] for r in conn.execute(f"SELECT id FROM runs WHERE {where} ORDER BY created LIMIT %s "
                                              f"FOR UPDATE SKIP LOCKED", (finished, cutoff, finished, BATCH))]
            if not ids:
                store.commit()
                break
            for row in conn.execute(f"SELECT {', '.join(RUN_JSON)} FROM runs WHERE id = ANY(%s)", (ids,)):
                candidates.update(_blobs(row))
            for row in conn.execute(f"SELECT {', '.join(STEP_JSON)} FROM steps WHERE run_id = ANY(%s)", (ids,)):
                candidates.update(_blobs(row))
            done.steps += conn.execute("DELETE FROM steps WHERE run_id = ANY(%s)", (ids,)).rowcount
            for table in ("parked_runs", "run_leases", *optional):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s)", (ids,))
            done.runs += conn.execute("DELETE FROM runs WHERE id = ANY(%s)", (ids,)).rowcount
            store.commit()
        except BaseException:
            store.rollback()
            raise
        yield
    store.begin()
    done.firings = conn.execute("DELETE FROM schedule_firings WHERE fired < %s", (cutoff,)).rowcount
    for digest in candidates:
        # the row lock first: a writer still using the blob (engine.pgstore.encode locks it until
        # its commit) is waited for, and the check after, a new statement, sees what it committed
        if conn.execute("SELECT 1 FROM blobs WHERE digest = %s FOR UPDATE", (digest,)).fetchone() is None:
            continue
        pattern = f"%{digest}%"  # 64 hex digits: found only where the blob is referenced
        used = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE concat(payload, params, outputs, error, response, request) "
            "LIKE %s) OR EXISTS (SELECT 1 FROM steps WHERE concat(inputs, outputs, error, handle) LIKE %s)",
            (pattern, pattern)).fetchone()[0]
        if not used:
            done.blobs += conn.execute("DELETE FROM blobs WHERE digest = %s", (digest,)).rowcount
    store.commit()
