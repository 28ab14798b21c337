"""``flowrun worker``: execute the queued and due runs of a shared PostgreSQL state database.

Start as many workers as needed, on any machine; each one loops:

1. **claim** up to its free capacity in one transaction: runs that are Queued (and whose
   concurrency key has a free slot), Waiting and due (their wake-up time came, or one of the
   child runs they wait for has ended), or Running with no live lease (their holder died),
   oldest first, chosen with ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent
   workers never pick the same run and never wait for each other; a lease row
   (engine.pglease) is written for each in the same transaction. A full worker claims again
   once a quarter of its capacity is free (batches, not a claim per finished run);
2. **execute** each claimed run as its lease holder: a run that recorded steps resumes from
   them (a Succeeded action never runs again; one that was in flight runs again with the same
   idempotency key, ``run_id:path``); the lease is renewed every ttl/3 and every write is
   fenced by its token. A Workflow action queues its child run for any worker and waits for
   it (``Engine.delegate_children``);
3. **wait** for a NOTIFY, on a connection of its own in a thread: ``flowrun_runs`` (a run was
   queued, parked or released: claim again) or ``flowrun_done`` (a child run finished: wake its
   parent where it waits, and claim again: it may be parked), at most until the next parked
   run is due or ``poll`` seconds (a fallback: a worker killed with kill -9 sends nothing, its
   runs are found by the next claim). No busy polling.

**Parking.** A run whose every action in flight waits ends its task and frees its slot and
lease: Waits long enough to park (``Engine.park_after``), and Workflow actions waiting for
child runs. So a parent never holds a slot its children need (C parents with queued children
on a worker of capacity C would otherwise wait forever). A parked run is ``Waiting`` in
``parked_runs`` with its earliest wake-up time and the ids of the children it waits for; the
claim takes it as soon as that time comes *or one of those children has ended* (or is gone:
the resumed action then fails ChildRunMissing rather than wait an hour for it), reading the
children's status in the claim itself, so a child that ends while its parent is deciding to
park still wakes it (no lost wake-up, nothing for the child to flag). Whichever worker is
free resumes it from its recorded steps: the Workflow action finds its child (whose id is
fixed: uuid5 of the action's idempotency key, so no child starts twice) ended and takes its
result. A parent parks at once when every slot of this worker holds a run that only waits
(``starved``: its children may need the slot), else once it has waited ``park_after`` seconds
(children that end quickly cost no park and resume), and only when nothing else is at work
in it for a few loop turns.

Losing the database (a restart, a network cut, an idle timeout, ``pg_terminate_backend``) does
not end the worker. The writer connection is replaced by the store (engine.pgstore), which
drops the runs executing here at once: their leases died with the connection's backend and
another worker may hold them already. Each such run ends quietly (``LeaseLost``: no failure
recorded) and is claimed again, here or elsewhere, resuming from its committed steps. The
claim loop waits out the outage with capped exponential backoff; the LISTEN thread reconnects
the same way (and wakes the loop: a NOTIFY may have been missed meanwhile).
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Any

import anyio

from .errors import FlowrunError, LeaseLost, RunBusy, StoreError, StoreUnavailable
from .state import TERMINAL, WAITING
from .store import RecordedSteps

log = logging.getLogger("flowrun.worker")
ENDED = "(" + ", ".join(f"'{s}'" for s in sorted(TERMINAL)) + ")"  # SQL: the statuses of a run that ended


class Worker:
    def __init__(self, engine: Any, *, capacity: int = 32, poll: float = 5.0, name: str | None = None):
        if getattr(engine.store, "backend", "sqlite") != "postgresql":
            raise StoreError("flowrun worker needs a PostgreSQL state database (--state postgresql://...); "
                             "with a SQLite file, flowrun serve executes the runs")
        self.engine, self.capacity, self.poll = engine, capacity, poll
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        from . import concurrency

        engine.store.ensure_table(concurrency.TABLE, concurrency.DDL)  # the claim reads it
        engine.store.ensure_table(concurrency.TABLE + "_by_key", concurrency.INDEX)
        self.in_flight: set[str] = set()
        self.low_water = capacity - max(1, capacity // 4)  # claim again once a quarter of the slots is free
        self.executed = 0
        self._slot_freed = anyio.Event()
        self._listen_warned = False  # the LISTEN connection's outage was warned about

    # -- claiming ---------------------------------------------------------------------------------
    def claim(self, limit: int) -> list[tuple[str, str, str, bool]]:
        """Claim up to ``limit`` runs: [(run id, lease token, status, has recorded steps)]."""
        from .pglease import LIVE, ME, NOW

        store = self.engine.store
        store.flush()  # what this process wrote so far is its own commit
        now = self.engine.clock.now()
        mine = list(self.in_flight)  # a run dropped here by a lost connection may still be unwinding
        try:
            store.begin()
            # ``live``: the runs some process holds, judged once per claim into a hashed set. Runs
            # in flight stay among the candidates (Queued or Running, oldest first), so judging
            # each candidate's lease on its own cost a lease lookup per run in flight, per claim.
            rows = store.conn.execute(
                f"WITH live AS MATERIALIZED (SELECT l.run_id FROM run_leases l WHERE {LIVE}), "
                f"c AS (SELECT r.id, r.status FROM runs r LEFT JOIN parked_runs p ON p.run_id = r.id "
                f"WHERE (r.status IN ('Queued', 'Running') OR (r.status = %s AND (p.wake <= %s "
                f"OR EXISTS (SELECT 1 FROM unnest(p.children) kid WHERE NOT EXISTS (SELECT 1 FROM runs k "
                f"WHERE k.id = kid AND k.status NOT IN {ENDED}))))) "
                f"AND r.id <> ALL(%s) AND r.id NOT IN (SELECT run_id FROM live) "
                f"AND NOT EXISTS (SELECT 1 FROM run_slots q WHERE q.run_id = r.id AND q.held = 0 AND q.slot_limit <= "
                f"(SELECT COUNT(*) FROM run_slots s JOIN runs h ON h.id = s.run_id WHERE s.slot_key = q.slot_key "
                f"AND s.held = 1 AND (h.status = 'Waiting' OR s.run_id IN (SELECT run_id FROM live)))) "
                f"ORDER BY r.created LIMIT %s FOR UPDATE OF r SKIP LOCKED), "
                f"taken AS (INSERT INTO run_leases AS l (run_id, owner, pid, host, token, backend, backend_start, "
                f"acquired, expires) SELECT c.id, %s, %s, %s, md5(random()::text || c.id), pg_backend_pid(), "
                f"a.backend_start, {NOW}, {NOW} + %s FROM c, {ME} "
                f"ON CONFLICT (run_id) DO UPDATE SET owner = EXCLUDED.owner, pid = EXCLUDED.pid, host = EXCLUDED.host, "
                f"token = EXCLUDED.token, backend = EXCLUDED.backend, backend_start = EXCLUDED.backend_start, "
                f"acquired = EXCLUDED.acquired, expires = EXCLUDED.expires WHERE NOT {LIVE} RETURNING run_id, token) "
                f"SELECT t.run_id, t.token, c.status, EXISTS (SELECT 1 FROM steps s WHERE s.run_id = t.run_id) "
                f"FROM taken t JOIN c ON c.id = t.run_id",
                (WAITING, now, mine, limit, self.name, os.getpid(), socket.gethostname(),
                 self.engine.lease_ttl)).fetchall()
            for run_id, _, status, _ in rows:
                if status == WAITING:
                    store._write("UPDATE runs SET status = 'Running' WHERE id = %s", (run_id,))
                    store._write("DELETE FROM parked_runs WHERE run_id = %s", (run_id,))
            store.commit()
        except Exception as exc:
            store.rollback()
            if isinstance(exc, store.Error):
                kind = StoreUnavailable if store.unavailable(exc) else StoreError
                raise kind(f"{store.path}: claiming runs failed: {exc}") from None
            raise
        self._read_claimed([run_id for run_id, _, status, has_steps in rows if status == "Queued" and not has_steps])
        return rows

    def _read_claimed(self, run_ids: list[str]) -> None:
        """Read the fresh runs just claimed in one statement, for ``Engine.execute``: else each
        run's own read is a round trip, ~one in two of a small run's. Under the lease just
        committed, nobody else writes them. If the read fails, each run reads itself."""
        if not run_ids:
            return
        store = self.engine.store
        try:
            runs = store.get_runs(run_ids)
            store.flush()
        except (store.Error, StoreError):  # (StoreUnavailable too) each run meets it in its own read
            return
        for run_id, run in runs.items():
            self.engine._claimed[run_id] = run

    # -- executing --------------------------------------------------------------------------------
    async def _execute(self, run_id: str, token: str, resume: bool) -> None:
        engine = self.engine
        try:
            kw: dict[str, Any] = {"lease_token": token}
            if resume:
                kw["reuse"] = RecordedSteps(engine.store, run_id)
            run = await engine.execute(run_id, **kw)
            self.executed += 1
            log.info("run %s", run.status, extra={"event": "run_done", "run_id": run_id, "status": str(run.status)})
        except LeaseLost as exc:  # its connection was lost: claimed again, here or elsewhere
            log.info("%s", exc, extra={"event": "run_dropped", "run_id": run_id})
            self._wake()  # (after this task's in_flight entry goes: the claim skips runs still unwinding)
        except RunBusy as exc:
            log.warning("%s", exc)
        except StoreUnavailable as exc:  # the database went away before the run started: claimed again
            log.info("run %s not started: %s", run_id, exc, extra={"event": "run_dropped", "run_id": run_id})
        except FlowrunError as exc:  # the run cannot execute (its flow no longer loads): record why
            log.error("run %s cannot execute: %s", run_id, exc)
            try:
                engine.fail_run(run_id, {"code": type(exc).__name__, "message": str(exc)})
            except FlowrunError:
                pass
        except Exception:  # one run's bug must not stop the worker
            log.exception("run %s failed in the engine", run_id)
        finally:
            self.engine._claimed.pop(run_id, None)  # not used (it failed first): never read stale later
            self.in_flight.discard(run_id)
            self._slot_freed.set()

    # -- waiting ----------------------------------------------------------------------------------
    def _heard(self, channel: str, payload: str) -> None:
        """A NOTIFY (engine.pgconn.Listening): a child ended (wake its parent, here or parked),
        or work may be claimable (wake the claim loop)."""
        if channel == self.engine.store.done_channel:
            self._child_finished(payload)
        else:
            self._wake()

    def _listen_lost(self, text: str, first: bool, down_for: float) -> None:
        """The LISTEN connection failed (from its thread). The writer's warning speaks for an
        outage; this one warns only if it stays away alone, after the writer looked twice."""
        text = self.engine.store.redact(text)
        if first:
            log.info("worker %s: LISTEN connection lost (%s); reconnecting", self.name, text)
            self._listen_warned = False
        elif not self._listen_warned and self.engine.store._down_since is None and down_for > 2 * self.poll + 1:
            log.warning("worker %s: LISTEN cannot reconnect (%s); polling every %.1f s until it can",
                        self.name, text, self.poll)
            self._listen_warned = True

    def _listen_back(self) -> None:
        log.info("worker %s: LISTEN connection back", self.name)
        self._wake()  # a NOTIFY may have come meanwhile: look for work now

    def starved(self) -> bool:
        """Every slot holds a run that only waits: no run here makes progress, and a queued
        child would find no slot here. A parent waiting for children then parks at once."""
        return len(self.in_flight) >= self.capacity and all(self.engine.only_waits(r) for r in self.in_flight)

    def _wake(self) -> None:
        self._woken.set()

    def _child_finished(self, parent_id: str) -> None:
        """The parent waits in a task here: it looks at its child. Else, if it is parked, claim
        again (the claim takes it: it is due). One not parked yet needs nothing: its park
        commits after the child's end (whose NOTIFY this is), so the claim its park sets off
        sees that end."""
        if self.engine.child_finished(parent_id):
            return
        store = self.engine.store
        try:
            parked = store.conn.execute("SELECT 1 FROM runs WHERE id = %s AND status = %s",
                                        (parent_id, WAITING)).fetchone()
            store.flush()
        except Exception:  # noqa: BLE001  the claim will say what is wrong
            parked = True
        if parked:
            self._wake()

    def _next_due(self) -> float:
        store = self.engine.store
        try:
            wake = store.next_wake(WAITING)
            store.flush()
        except store.Error as exc:
            if store.unavailable(exc):
                raise StoreUnavailable(f"{store.path}: {exc}") from None
            raise
        return self.poll if wake is None else max(0.0, min(self.poll, wake - self.engine.clock.now()))

    async def run(self, *, stop: anyio.Event | None = None,
                  task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim, execute and wait until ``stop`` is set (or forever)."""
        import asyncio

        from .backoff import Backoff
        from .pgconn import Listening

        self.engine.parking = True
        self.engine.delegate_children = True
        self.engine.starved = self.starved
        store = self.engine.store
        self._woken, self._listen_warned = asyncio.Event(), False
        listening = Listening(store.url, "listen", [store.channel, store.done_channel], asyncio.get_running_loop(),
                              on_note=self._heard, on_back=self._listen_back, on_lost=self._listen_lost)
        await listening.ready.wait()
        log.info("worker %s ready", self.name, extra={"event": "worker_ready"})
        task_status.started()
        backoff = Backoff(cap=10.0)
        try:
            async with anyio.create_task_group() as tg:
                while stop is None or not stop.is_set():
                    self._woken.clear()
                    free = self.capacity - len(self.in_flight)
                    try:
                        got = self.claim(free) if free > 0 else []
                    except StoreUnavailable:  # the store said so once per outage; try again after a while
                        await anyio.sleep(backoff.next())
                        continue
                    backoff.reset()
                    for run_id, token, status, has_steps in got:
                        self.in_flight.add(run_id)
                        tg.start_soon(self._execute, run_id, token, has_steps or status != "Queued")
                    if len(got) == free:  # full (maybe more waiting): claim again once a quarter is free
                        await anyio.sleep(0)
                        while len(self.in_flight) > self.low_water:
                            self._slot_freed = anyio.Event()
                            await self._slot_freed.wait()
                        continue
                    try:
                        due = self._next_due()
                    except StoreUnavailable:
                        continue  # the claim above meets it again, and waits
                    with anyio.move_on_after(due):  # drained: until a NOTIFY, or the poll
                        await self._woken.wait()
                tg.cancel_scope.cancel()
        finally:
            listening.stop()
