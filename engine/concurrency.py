"""Per-flow and per-key concurrency: at most ``limit`` runs of a flow (per key) execute at once.

    concurrency: {limit: 5, key: "{{ triggerBody().customer }}", onLimit: queue, maxQueued: 1000}

A run of such a flow gets a row in ``run_slots`` when it starts (its slot key: the flow's name
and the key's value, evaluated on the trigger). It *holds* a slot while it executes; the slot
is a lease, not a counter: a holder counts only while its run lease is live (engine.runlock /
engine.pglease) or the run is parked (Waiting), so a crashed holder frees its slot without
anyone cleaning up. Taking a slot counts the live holders under a lock on the key
(PostgreSQL: a transaction advisory lock on the key's hash; SQLite: the write lock), so two
processes never both take the last one.

A run that finds no free slot, per ``onLimit``: ``queue`` stays Queued (its reason shown by
``flowrun runs --status Queued``) and is taken again when a slot frees; ``cancelNew`` ends
Cancelled; ``fail`` ends Failed. ``maxQueued`` bounds how many runs of one key may wait: one
more is refused at start (ConcurrencyLimit).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .errors import ConcurrencyLimit  # noqa: F401  (raised here; the listener answers 429)

TABLE = "run_slots"
DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT PRIMARY KEY, slot_key TEXT NOT NULL, "
       f"slot_limit INTEGER NOT NULL, held INTEGER NOT NULL DEFAULT 0, since REAL NOT NULL)")
INDEX = f"CREATE INDEX IF NOT EXISTS run_slots_by_key ON {TABLE} (slot_key, held)"
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["limit"],
    "description": "at most `limit` runs of this flow (per value of `key`) execute at once",
    "properties": {
        "limit": {"type": "integer", "minimum": 1},
        "key": {"type": "string", "description": "template on the trigger: runs with the same value share the limit"},
        "onLimit": {"enum": ["queue", "cancelNew", "fail"], "default": "queue",
                    "description": "no free slot: wait Queued, or end the new run Cancelled, or Failed"},
        "maxQueued": {"type": "integer", "minimum": 0, "description": "runs of one key that may wait (queue)"},
    },
}


@dataclass(frozen=True)
class Concurrency:
    limit: int
    key: str | None = None
    on_limit: str = "queue"
    max_queued: int | None = None

    @classmethod
    def of(cls, raw: Any) -> "Concurrency | None":
        if not isinstance(raw, dict) or not isinstance(raw.get("limit"), int):
            return None
        return cls(raw["limit"], raw.get("key"), raw.get("onLimit", "queue"), raw.get("maxQueued"))


class _TriggerScope:
    """What a concurrency key sees: the trigger and the parameters, nothing of a run."""

    def __init__(self, trigger: str, outputs: dict, params: dict):
        self._trigger, self._params = {"name": trigger, "outputs": outputs}, params

    def trigger(self) -> dict:
        return self._trigger

    def triggerBody(self) -> Any:
        return (self._trigger["outputs"] or {}).get("body")

    def triggerOutputs(self) -> dict:
        return self._trigger["outputs"]

    def parameters(self, name: str) -> Any:
        return self._params.get(name)

    def names(self, functions: tuple[str, ...]) -> dict:
        return {n: getattr(self, n) for n in functions}

    def __getattr__(self, name: str) -> Any:
        from .errors import ActionError

        def unavailable(*_: Any) -> Any:
            raise ActionError(f"{name}() is not available in a concurrency key")
        return unavailable


def slot_key(flow: Any, evaluator: Any, trigger: str, outputs: dict, params: dict) -> str:
    """The flow's name and the key's value: the runs that share one limit."""
    conc = flow.concurrency
    if not conc.key:
        return flow.name
    from .expressions import to_text

    value = evaluator.evaluate(conc.key, _TriggerScope(trigger, outputs, params))
    return f"{flow.name}\x1f{'' if value is None else to_text(value)}"


def _ensure(store: Any) -> None:
    """The table exists. Inside an open transaction (a trigger's run and checkpoint in one
    savepoint) it is created in that transaction: ``ensure_table`` would commit it early."""
    if TABLE in store._ensured:
        return
    if not store.db.in_transaction:
        store.ensure_table(TABLE, DDL)
        store.ensure_table(TABLE + "_by_key", INDEX)
        return
    if store.backend == "postgresql":
        store.db.execute("SELECT pg_advisory_xact_lock(?)", (0x666C6F7772756E,))  # as ensure_table does
    store.db.execute(DDL)
    store.db.execute(INDEX)


def check_room(store: Any, key: str, conc: Concurrency) -> None:
    """Refuse a new run (ConcurrencyLimit) when ``maxQueued`` runs of its key already wait."""
    _ensure(store)
    if conc.on_limit == "queue" and conc.max_queued is not None:
        waiting = store.db.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE slot_key = ? AND held = 0",
                                   (key,)).fetchone()[0]
        if waiting >= conc.max_queued:
            raise ConcurrencyLimit(f"flow {key.split(chr(31))[0]}: {waiting} runs of "
                                   f"{_shown(key)} already wait for a slot (maxQueued {conc.max_queued})")


def enter(store: Any, run_id: str, key: str, conc: Concurrency) -> None:
    """Record (uncommitted, with the run) that ``run_id`` needs a slot of ``key``."""
    store.db.execute(f"INSERT INTO {TABLE} (run_id, slot_key, slot_limit, held, since) VALUES (?, ?, ?, 0, ?)",
                     (run_id, key, conc.limit, time.time()))


def _shown(key: str) -> str:
    flow, _, value = key.partition("\x1f")
    return f"key {value!r}" if _ else f"flow {flow}"


def acquire(store: Any, run_id: str) -> bool | None:
    """Take a slot for ``run_id`` (committed); None when the run needs none, False when all
    of its key's slots are held by live runs."""
    try:
        _ensure(store)
        row = store.db.execute(f"SELECT slot_key, slot_limit, held FROM {TABLE} WHERE run_id = ?",
                               (run_id,)).fetchone()
    except store.Error:
        return None
    if row is None:
        return None
    key, limit, _ = row  # a run resumed after its holder died counts again: others may hold its slot by now
    if store.backend == "postgresql":
        return _acquire_pg(store, run_id, key, limit)
    return _acquire_sqlite(store, run_id, key, limit)


def _acquire_pg(store: Any, run_id: str, key: str, limit: int) -> bool:
    from .pglease import LIVE

    store.flush()
    conn = store.conn
    try:
        store.begin()
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
        used = conn.execute(
            f"SELECT COUNT(*) FROM {TABLE} s JOIN runs r ON r.id = s.run_id WHERE s.slot_key = %s AND s.held = 1 "
            f"AND s.run_id <> %s AND (r.status = 'Waiting' OR EXISTS (SELECT 1 FROM run_leases l "
            f"WHERE l.run_id = s.run_id AND {LIVE}))", (key, run_id)).fetchone()[0]
        if used >= limit:
            conn.execute(f"UPDATE {TABLE} SET held = 0 WHERE run_id = %s", (run_id,))
            store.commit()
            return False
        conn.execute(f"UPDATE {TABLE} SET held = 1, since = %s WHERE run_id = %s", (time.time(), run_id))
        store.commit()
        return True
    except BaseException:
        store.rollback()
        raise


def _acquire_sqlite(store: Any, run_id: str, key: str, limit: int) -> bool:
    from .runlock import holder_alive, leases

    store.flush()
    db = store.db
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute(f"SELECT s.run_id, r.status FROM {TABLE} s JOIN runs r ON r.id = s.run_id "
                          f"WHERE s.slot_key = ? AND s.held = 1 AND s.run_id <> ?", (key, run_id)).fetchall()
        held = leases(db, [r[0] for r in rows if r[1] != "Waiting"])
        now = time.time()
        used = sum(1 for rid, status in rows
                   if status == "Waiting" or (rid in held and holder_alive(*held[rid], now=now)))
        if used >= limit:
            db.execute(f"UPDATE {TABLE} SET held = 0 WHERE run_id = ?", (run_id,))
            db.execute("COMMIT")
            return False
        db.execute(f"UPDATE {TABLE} SET held = 1, since = ? WHERE run_id = ?", (now, run_id))
        db.execute("COMMIT")
        return True
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def key_of(store: Any, run_id: str) -> str | None:
    row = store.db.execute(f"SELECT slot_key FROM {TABLE} WHERE run_id = ?", (run_id,)).fetchone()
    return row[0] if row else None


def release(store: Any, run_id: str) -> str | None:
    """The run ended: its slot goes (uncommitted: with the run's outcome, which it precedes:
    the outcome ends the lease that fences it), and workers are told. Returns the slot's key
    (None: the run had none)."""
    if TABLE not in getattr(store, "_ensured", ()):
        return None  # no flow with a limit ran in this process
    key = key_of(store, run_id)
    if key is None:
        return None
    if store.backend == "postgresql":  # fenced by the run's lease: a stalled holder's frees a slot it no longer holds
        store._fenced(run_id, f"DELETE FROM {TABLE} WHERE run_id = %s AND {{fence}}", (run_id,))
        store._notify = True
    else:
        store.db.execute(f"DELETE FROM {TABLE} WHERE run_id = ?", (run_id,))
    return key


def reasons(store: Any, run_ids: list[str]) -> dict[str, str]:
    """Why each of these (Queued) runs waits, for those that wait for a slot."""
    if not run_ids:
        return {}
    try:
        _ensure(store)
        out = {}
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start:start + 500]
            for rid, key, limit in store.db.execute(
                    f"SELECT run_id, slot_key, slot_limit FROM {TABLE} WHERE held = 0 AND run_id IN "
                    f"({', '.join('?' * len(chunk))})", chunk):
                out[rid] = f"waiting for a slot of {_shown(key)} (limit {limit})"
        return out
    except store.Error:
        return {}
