"""One live owner per run on PostgreSQL: a lease row judged by the server, not by hosts.

The PostgreSQL counterpart of engine.runlock. A lease is a ``run_leases`` row (run id, owner,
pid, host, token, expiry) written by the holder's writer connection, with that connection's
backend pid and start time. It is live while both hold:

- its expiry, set and compared on the *server's* clock (``clock_timestamp()``), lies ahead:
  hosts whose clocks disagree judge it the same way, so no watching for renewals is needed;
- the backend that wrote it still exists (``pg_stat_activity``, with the same start time): a holder killed with
  ``kill -9`` drops its connection, PostgreSQL ends that backend, and the run is free at
  once instead of after the ttl. A holder cut off from the database loses its connection,
  so its backend too.

Taking a lease is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE (the old one is dead)``:
two claimants serialise on the row and exactly one gets it. Every write the store makes for
a run this process holds carries ``EXISTS (lease with our token)`` (PgStore._fenced), so a
holder stalled past its expiry, whose run another process took over, writes nothing more
and stops (``lost``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from typing import Any, Callable

import psycopg

from .errors import RunBusy, StoreError, StoreUnavailable
from .runlock import _printable, keep_renewing

log = logging.getLogger("flowrun.run")
HOST = socket.gethostname()
NOW = "extract(epoch from clock_timestamp())"
# the backend list (pg_stat_activity) is read once per statement and scanned from memory after:
# cheaper per lease than pg_stat_get_activity(l.backend), a function call per lease judged
LIVE = (f"(l.expires > {NOW} AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend "
        f"AND a.backend_start = l.backend_start))")
ME = "pg_stat_get_activity(pg_backend_pid()) a"  # this backend's own row: its pid and start time
# the run's row is held by no other transaction (and by this one from now on): a holder's fenced
# writes not yet committed hold it (engine.pgstore.FENCE), expired or not. A taker finds the run
# busy, never waiting for a process that may be stalled; it is free once they commit or its
# backend ends. (The worker's claim takes its runs' rows so itself: FOR UPDATE SKIP LOCKED.)
UNHELD = ("(NOT EXISTS (SELECT 1 FROM runs h WHERE h.id = %s) OR EXISTS (SELECT 1 FROM "
          "runs h WHERE h.id = %s FOR NO KEY UPDATE SKIP LOCKED))")


def leases(store: Any, run_ids: list[str]) -> dict[str, tuple[int, str, float | None]]:
    """{run id: (pid, host, expires)} of the *live* leases of these runs."""
    rows = store.conn.execute(f"SELECT l.run_id, l.pid, l.host, l.expires FROM run_leases l "
                              f"WHERE l.run_id = ANY(%s) AND {LIVE}", (list(run_ids),)).fetchall()
    return {r[0]: (r[1], _printable(r[2]), r[3]) for r in rows}


def orphans(store: Any, run_ids: list[str]) -> set[str]:
    """The runs among these that no live process holds."""
    return set(run_ids) - set(leases(store, run_ids))


class PgRunClaim:
    """``with store.claim(run_id, ttl=...)``: hold the run or raise RunBusy; ``keep(on_lost)``
    renews the lease every ttl/3 until ``stop()``. ``token``: adopt a lease a worker took
    when it claimed the run (engine.worker)."""

    def __init__(self, store: Any, run_id: str, *, ttl: float, token: str | None = None,
                 owner: str | None = None):
        self.store, self.run_id, self.ttl = store, run_id, ttl
        self.token = token or secrets.token_hex(16)
        self.adopted = token is not None  # a worker wrote this lease when it claimed the run, just now
        self.owner = owner or f"{HOST}:{os.getpid()}"
        self.lost = False
        self.dropped = False  # lost with the database connection (engine.pgreconnect), not taken over
        self._timer: Any = None
        self._on_lost: Callable[[], None] | None = None
        self._loop: Any = None

    async def settle(self, interval: float | None = None) -> None:
        """Nothing to watch: the server's clock judges every lease."""

    def __enter__(self) -> "PgRunClaim":
        store = self.store
        try:
            got = self.adopted or take(store, self.run_id, self.token, self.owner, self.ttl)
            if not got:
                holder = store.conn.execute("SELECT pid, host, expires - " + NOW + " FROM run_leases "
                                            "WHERE run_id = %s", (self.run_id,)).fetchone()
                store.flush()
                who = f"pid {holder[0]} on host {_printable(holder[1])}" if holder else "another process"
                left = f" (its lease runs {max(holder[2], 0):.0f} s more)" if holder else ""
                raise RunBusy(f"run {self.run_id} is being executed by {who}{left}; "
                              "wait for it to finish or stop, then resume it")
            store.fences[self.run_id] = self.token
            store.on_fenced[self.run_id] = self._fenced
            store.abandoned.discard(self.run_id)  # held again: its writes count
            if not self.adopted:  # an adopted lease is committed (a worker's claim) or commits with its run
                store.flush()  # the lease committed before anything runs
        except psycopg.Error as exc:
            store.rollback()
            kind = StoreUnavailable if store.unavailable(exc) else StoreError
            raise kind(f"{store.path}: cannot take the lease of run {self.run_id}: {exc}") from None
        return self

    def _fenced(self, connection_lost: bool = False) -> None:
        """A write was fenced off, or (``connection_lost``) the connection that wrote the lease
        is gone: stop executing. The store may say so from a thread (engine.looprows' reads)."""
        self.lost = True
        self.dropped = self.dropped or connection_lost
        if self._on_lost is None:
            return
        import asyncio

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is None or running is self._loop:
            self._on_lost()
        else:
            self._loop.call_soon_threadsafe(self._on_lost)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        store = self.store
        released = self.run_id not in store.fences  # with the run's outcome (PgStore.run_finished)
        if store.fences.get(self.run_id) == self.token:
            store.fences.pop(self.run_id, None)
            store.on_fenced.pop(self.run_id, None)
        if self.dropped:  # the lease died with the connection (or its writes were rolled back): discarded
            store._notify = True  # the run is claimable: workers are told with the next commit
            try:
                if not store._torn:  # the backend lives (a rollback): give the lease up, so no one waits out its ttl
                    store._write("DELETE FROM run_leases WHERE run_id = %s AND token = %s", (self.run_id, self.token))
                store.flush_soon()
            except (StoreError, psycopg.Error):  # (no loop: flushed now) still away: the slow poll finds the run
                pass
            return
        try:
            store.flush()  # the run's last writes, still fenced above: committed before the lease goes
            if not self.lost and not released:
                store._write("DELETE FROM run_leases WHERE run_id = %s AND token = %s", (self.run_id, self.token))
                store._notify = True  # a run released unfinished (a worker stopping) is claimable
                store.flush()
        except (StoreError, psycopg.Error) as error:  # it expires, or its backend ends, by itself
            log.warning("%s", error)

    def renew(self) -> bool:
        if self.store.fences.get(self.run_id) != self.token:  # its outcome went with the lease (run_finished), or it
            return not self.lost  # was released: nothing to renew (the row is gone, which is no takeover)
        try:
            count = self.store._write(f"UPDATE run_leases SET expires = {NOW} + %s WHERE run_id = %s AND token = %s",
                                      (self.ttl, self.run_id, self.token))
            self.store.flush()
        except psycopg.Error as exc:
            raise StoreError(f"{self.store.path}: run lease of {self.run_id}: {exc}") from None
        if count == 0:
            self.lost = True
        return not self.lost

    def keep(self, on_lost: Callable[[], None]) -> None:
        import asyncio

        self._on_lost, self._loop = on_lost, asyncio.get_running_loop()
        if self.lost:  # lost before it was kept (its connection, while the run was being read)
            on_lost()
            return
        keep_renewing(self, on_lost)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def take(store: Any, run_id: str, token: str, owner: str, ttl: float) -> bool:
    """Write our lease of ``run_id`` unless a live one of someone else's holds it (uncommitted)."""
    store.begin()
    row = store.conn.execute(
        f"INSERT INTO run_leases AS l (run_id, owner, pid, host, token, backend, backend_start, acquired, expires) "
        f"SELECT %s, %s, %s, %s, %s, pg_backend_pid(), a.backend_start, {NOW}, {NOW} + %s "
        f"FROM {ME} WHERE {UNHELD} "
        f"ON CONFLICT (run_id) DO UPDATE SET owner = EXCLUDED.owner, pid = EXCLUDED.pid, "
        f"host = EXCLUDED.host, "
        f"token = EXCLUDED.token, backend = EXCLUDED.backend, backend_start = EXCLUDED.backend_start, "
        f"acquired = EXCLUDED.acquired, expires = EXCLUDED.expires WHERE l.token = EXCLUDED.token OR NOT {LIVE} "
        f"RETURNING token", (run_id, owner, os.getpid(), HOST, token, ttl, run_id, run_id)).fetchone()
    store._dirty = True
    return row is not None


def own_transaction(store: Any, work: Callable[[Any], Any], what: str) -> Any:
    """``work(conn)`` in a transaction of its own on the writer connection (a lease row is
    stamped with its backend): the store's pending writes (a run's steps, a checkpoint) are
    committed first, so a failure here rolls back nothing but this. StoreUnavailable when the
    database cannot be reached now, else StoreError; one line, naming ``what``."""
    for attempt in (1, 2):
        try:
            store.flush()
            with store.lock, store.conn.transaction():
                return work(store.conn)
        except psycopg.errors.DeadlockDetected:  # two instances clearing the same dead rows: once more
            if attempt == 2:
                raise StoreError(f"{store.path}: {what}: deadlock") from None
        except psycopg.Error as exc:
            kind = StoreUnavailable if store.unavailable(exc) else StoreError
            raise kind(f"{store.path}: {what}: {exc}") from None
        except StoreError as exc:  # the store's own (it cannot reach the database now): say what for
            raise type(exc)(f"{what}: {exc}") from None


TRIGGER_TABLE = "trigger_leases"
TRIGGER_DDL = (f"CREATE TABLE IF NOT EXISTS {TRIGGER_TABLE} (flow TEXT NOT NULL, trigger TEXT NOT NULL, "
               f"owner TEXT NOT NULL, token TEXT NOT NULL, backend INTEGER, backend_start TIMESTAMPTZ, "
               f"expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (flow, trigger))")


class TriggerLease:
    """One ``serve`` instance consumes a pull trigger at a time (``PullTrigger.shared == "lease"``):
    a ``trigger_leases`` row judged like a run's lease (server clock, live backend), so the
    instance standing by takes over as soon as the holder dies."""

    def __init__(self, store: Any, flow: str, trigger: str, *, ttl: float = 30.0):
        self.store, self.flow, self.trigger, self.ttl = store, flow, trigger, ttl
        self.token = secrets.token_hex(16)
        store.ensure_table(TRIGGER_TABLE, TRIGGER_DDL)

    def take(self) -> bool:
        """Take or renew the lease (committed, in a transaction of its own); False while another
        live instance holds it."""
        def work(conn: Any) -> bool:
            return conn.execute(
                f"INSERT INTO {TRIGGER_TABLE} AS l (flow, trigger, owner, token, backend, backend_start, expires) "
                f"SELECT %s, %s, %s, %s, pg_backend_pid(), a.backend_start, {NOW} + %s FROM {ME} "
                f"ON CONFLICT (flow, trigger) DO UPDATE SET owner = EXCLUDED.owner, "
                f"token = EXCLUDED.token, backend = EXCLUDED.backend, backend_start = EXCLUDED.backend_start, "
                f"expires = EXCLUDED.expires WHERE l.token = EXCLUDED.token OR NOT {LIVE} RETURNING token",
                (self.flow, self.trigger, f"{HOST}:{os.getpid()}", self.token, self.ttl)).fetchone() is not None

        return own_transaction(self.store, work, f"trigger lease of {self.flow}/{self.trigger}")

    def release(self) -> None:
        try:
            self.store._write(f"DELETE FROM {TRIGGER_TABLE} WHERE flow = %s AND trigger = %s AND token = %s",
                              (self.flow, self.trigger, self.token))
            self.store.flush()
        except (psycopg.Error, StoreError) as exc:
            log.warning("%s", exc)


KEY_TABLE = "trigger_key_leases"
KEY_DDL = (f"CREATE TABLE IF NOT EXISTS {KEY_TABLE} (flow TEXT NOT NULL, trigger TEXT NOT NULL, key TEXT NOT NULL, "
           f"owner TEXT NOT NULL, token TEXT NOT NULL, backend INTEGER, backend_start TIMESTAMPTZ, "
           f"expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (flow, trigger, key))")
MEMBER_TABLE = "trigger_members"
MEMBER_DDL = (f"CREATE TABLE IF NOT EXISTS {MEMBER_TABLE} (flow TEXT NOT NULL, trigger TEXT NOT NULL, "
              f"token TEXT NOT NULL, owner TEXT NOT NULL, backend INTEGER, backend_start TIMESTAMPTZ, "
              f"expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (flow, trigger, token))")
_ME = "pg_backend_pid(), a.backend_start"  # with FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()


class KeyLeases:
    """The keys of one pull trigger (Kinesis shards, partitions ...) split among the ``serve``
    instances consuming it (``PullTrigger.shared == "keys"``): a ``trigger_key_leases`` row per
    key, judged like a run's lease (server clock, live backend), and a ``trigger_members`` row
    per instance, so each one knows how many share the keys.

    ``balance(keys)`` is called by the trigger at least every ``ttl / 3`` with the keys that
    can be read now. It renews this instance's rows, and aims at an even split: with K keys
    and M live members, the members sorted by token take ``K // M`` keys each and the first
    ``K % M`` one more, so no one holds more than ``ceil(K / M)`` and every key has a reader.
    Under its share an instance takes free keys (never held, released, or held by a dead
    instance: a killed one's backend is gone at once); over it, it gives keys up. Giving up
    is the trigger's move: a key not returned stays ours, renewed, until the trigger has
    stopped reading it at a checkpoint boundary and calls ``release``. So an owner change
    never overlaps two readers, save when a stalled instance's lease expired under it (at
    least once, as documented; runs are de-duplicated on the record's key).
    """

    def __init__(self, store: Any, flow: str, trigger: str, *, ttl: float = 30.0):
        self.store, self.flow, self.trigger, self.ttl = store, flow, trigger, ttl
        self.token = secrets.token_hex(16)
        self.owner = f"{HOST}:{os.getpid()}"
        store.ensure_table(KEY_TABLE, KEY_DDL)
        store.ensure_table(MEMBER_TABLE, MEMBER_DDL)
        store.on_reconnected.append(self._restamp)

    def _restamp(self, conn: Any) -> None:
        """The writer connection was replaced (engine.pgreconnect): our rows name a backend that
        is gone, so a peer would take our keys at its next balance and both would read them
        until ours. Stamp them with the new backend at once. Only the backend: an expired row
        stays expired, and a row a peer took meanwhile carries its token and stays its."""
        try:
            with conn.transaction():
                for table in (MEMBER_TABLE, KEY_TABLE):
                    conn.execute(f"UPDATE {table} SET backend = a.pid, backend_start = a.backend_start "
                                 f"FROM pg_stat_activity a WHERE a.pid = pg_backend_pid() AND flow = %s "
                                 f"AND trigger = %s AND token = %s", (self.flow, self.trigger, self.token))
        except psycopg.Error as exc:  # lost again, or a peer's balance in the way: the next balance renews
            log.info("key leases of %s/%s not renewed on the new connection: %s", self.flow, self.trigger, exc)

    def _transaction(self, work: Callable[[Any], Any], what: str) -> Any:
        return own_transaction(self.store, work, f"{what} of {self.flow}/{self.trigger}")

    def share(self, members: list[str], count: int) -> int:
        """How many of ``count`` keys are this instance's share among live ``members`` (tokens)."""
        if self.token not in members:
            members = sorted([*members, self.token])
        rank, n = members.index(self.token), len(members)
        return count // n + (1 if rank < count % n else 0)

    LONGEST = 256  # bytes of a key stored as it is; longer ones (and NULs) as a digest (see _column)

    @classmethod
    def _column(cls, key: str) -> str:
        """A key as its row stores it: itself, or ``#sha256:`` and its digest when PostgreSQL
        text cannot hold it (a NUL, a lone surrogate) or it is too long for a btree index entry.
        A key that starts so is digested too, so two keys never share a row."""
        raw = key.encode("utf-8", "surrogatepass")
        try:
            key.encode("utf-8")
            plain = "\x00" not in key and len(raw) <= cls.LONGEST and not key.startswith("#sha256:")
        except UnicodeEncodeError:  # a lone surrogate
            plain = False
        return key if plain else "#sha256:" + hashlib.sha256(raw).hexdigest()

    def balance(self, keys: Any) -> set[str]:
        """The keys (of ``keys``) this instance reads now; see the class docstring."""
        named = {self._column(k): k for k in set(keys)}  # row key -> the trigger's key
        return {named[k] for k in self._balance(sorted(named))}

    def _balance(self, wanted: list[str]) -> set[str]:
        ids = (self.flow, self.trigger)

        def work(conn: Any) -> set[str]:
            conn.execute(
                f"INSERT INTO {MEMBER_TABLE} AS l (flow, trigger, token, owner, backend, backend_start, expires) "
                f"SELECT %s, %s, %s, %s, {_ME}, {NOW} + %s FROM pg_stat_activity a WHERE a.pid = pg_backend_pid() "
                f"ON CONFLICT (flow, trigger, token) DO UPDATE SET backend = EXCLUDED.backend, "
                f"backend_start = EXCLUDED.backend_start, expires = EXCLUDED.expires",
                (*ids, self.token, self.owner, self.ttl))
            conn.execute(f"DELETE FROM {MEMBER_TABLE} l WHERE flow = %s AND trigger = %s AND NOT {LIVE}", ids)
            members = sorted(r[0] for r in conn.execute(
                f"SELECT token FROM {MEMBER_TABLE} l WHERE flow = %s AND trigger = %s AND {LIVE}", ids))
            mine = {r[0] for r in conn.execute(
                f"UPDATE {KEY_TABLE} SET expires = {NOW} + %s, backend = a.pid, backend_start = a.backend_start "
                f"FROM pg_stat_activity a WHERE a.pid = pg_backend_pid() AND flow = %s AND trigger = %s "
                f"AND token = %s RETURNING key", (self.ttl, *ids, self.token))}
            share = self.share(members, len(wanted))
            keep = [k for k in wanted if k in mine][:share]
            if len(keep) < share:
                busy = {r[0] for r in conn.execute(
                    f"SELECT key FROM {KEY_TABLE} l WHERE flow = %s AND trigger = %s AND key = ANY(%s) AND {LIVE}",
                    (*ids, wanted))}
                free = [k for k in wanted if k not in busy and k not in mine]
                while len(keep) < share and free:  # (again only for keys another took meanwhile)
                    batch, free = free[:share - len(keep)], free[share - len(keep):]
                    # one statement for the batch (thousands of shards: one round trip, not one
                    # each), its rows in code point order, as every instance: takers never wait on
                    # each other in a cycle
                    keep += [r[0] for r in conn.execute(
                        f"INSERT INTO {KEY_TABLE} AS l (flow, trigger, key, owner, token, backend, backend_start, "
                        f"expires) SELECT %s, %s, k, %s, %s, {_ME}, {NOW} + %s FROM unnest(%s::text[]) AS k, {ME} "
                        f"ORDER BY k COLLATE \"C\" "
                        f"ON CONFLICT (flow, trigger, key) DO UPDATE SET owner = EXCLUDED.owner, "
                        f"token = EXCLUDED.token, backend = EXCLUDED.backend, backend_start = EXCLUDED.backend_start, "
                        f"expires = EXCLUDED.expires WHERE NOT {LIVE} RETURNING key",
                        (*ids, self.owner, self.token, self.ttl, batch))]
            return set(keep)

        return self._transaction(work, "key leases")

    def release(self, keys: Any) -> None:
        """Give these keys up (their reader stopped at a checkpoint boundary): others may take them."""
        keys = [self._column(k) for k in keys]
        if keys:
            self._transaction(lambda conn: conn.execute(
                f"DELETE FROM {KEY_TABLE} WHERE flow = %s AND trigger = %s AND token = %s AND key = ANY(%s)",
                (self.flow, self.trigger, self.token, keys)), "releasing key leases")

    def close(self) -> None:
        """Leave: every key and the membership go at once (the trigger stopped reading)."""
        if self._restamp in self.store.on_reconnected:
            self.store.on_reconnected.remove(self._restamp)

        def work(conn: Any) -> None:
            for table in (KEY_TABLE, MEMBER_TABLE):
                conn.execute(f"DELETE FROM {table} WHERE flow = %s AND trigger = %s AND token = %s",
                             (self.flow, self.trigger, self.token))
        try:
            self._transaction(work, "leaving key leases")
        except StoreError as exc:  # they expire, or their backend ends, by themselves
            log.warning("%s", exc)
