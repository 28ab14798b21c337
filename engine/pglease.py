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

import logging
import os
import secrets
import socket
from typing import Any, Callable

import psycopg

from .errors import RunBusy, StoreError
from .runlock import _printable, keep_renewing

log = logging.getLogger("flowrun.run")
HOST = socket.gethostname()
NOW = "extract(epoch from clock_timestamp())"
# the backend list (pg_stat_activity) is read once per statement and scanned from memory after:
# cheaper per lease than pg_stat_get_activity(l.backend), a function call per lease judged
LIVE = (f"(l.expires > {NOW} AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend "
        f"AND a.backend_start = l.backend_start))")
ME = "pg_stat_get_activity(pg_backend_pid()) a"  # this backend's own row: its pid and start time


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
        self._timer: Any = None
        self._on_lost: Callable[[], None] | None = None

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
            if not self.adopted:  # an adopted lease is committed (a worker's claim) or commits with its run
                store.flush()  # the lease committed before anything runs
        except psycopg.Error as exc:
            store.rollback()
            raise StoreError(f"{store.path}: cannot take the lease of run {self.run_id}: {exc}") from None
        return self

    def _fenced(self) -> None:
        self.lost = True
        if self._on_lost is not None:
            self._on_lost()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        store = self.store
        released = self.run_id not in store.fences  # with the run's outcome (PgStore.run_finished)
        store.fences.pop(self.run_id, None)
        store.on_fenced.pop(self.run_id, None)
        try:
            store.flush()  # the run's last writes, still fenced above: committed before the lease goes
            if not self.lost and not released:
                store._write("DELETE FROM run_leases WHERE run_id = %s AND token = %s", (self.run_id, self.token))
                store._notify = True  # a run released unfinished (a worker stopping) is claimable
                store.flush()
        except (StoreError, psycopg.Error) as error:  # it expires, or its backend ends, by itself
            log.warning("%s", error)

    def renew(self) -> bool:
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
        self._on_lost = on_lost
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
        f"FROM {ME} ON CONFLICT (run_id) DO UPDATE SET owner = EXCLUDED.owner, pid = EXCLUDED.pid, "
        f"host = EXCLUDED.host, "
        f"token = EXCLUDED.token, backend = EXCLUDED.backend, backend_start = EXCLUDED.backend_start, "
        f"acquired = EXCLUDED.acquired, expires = EXCLUDED.expires WHERE l.token = EXCLUDED.token OR NOT {LIVE} "
        f"RETURNING token", (run_id, owner, os.getpid(), HOST, token, ttl)).fetchone()
    store._dirty = True
    return row is not None


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
        """Take or renew the lease (committed); False while another live instance holds it."""
        store = self.store
        try:
            store.begin()
            row = store.conn.execute(
                f"INSERT INTO {TRIGGER_TABLE} AS l (flow, trigger, owner, token, backend, backend_start, expires) "
                f"SELECT %s, %s, %s, %s, pg_backend_pid(), a.backend_start, {NOW} + %s FROM {ME} "
                f"ON CONFLICT (flow, trigger) DO UPDATE SET owner = EXCLUDED.owner, "
                f"token = EXCLUDED.token, backend = EXCLUDED.backend, backend_start = EXCLUDED.backend_start, "
                f"expires = EXCLUDED.expires WHERE l.token = EXCLUDED.token OR NOT {LIVE} RETURNING token",
                (self.flow, self.trigger, f"{HOST}:{os.getpid()}", self.token, self.ttl)).fetchone()
            store._dirty = True
            store.flush()
        except psycopg.Error as exc:
            store.rollback()
            raise StoreError(f"{store.path}: trigger lease of {self.flow}/{self.trigger}: {exc}") from None
        return row is not None

    def release(self) -> None:
        try:
            self.store._write(f"DELETE FROM {TRIGGER_TABLE} WHERE flow = %s AND trigger = %s AND token = %s",
                              (self.flow, self.trigger, self.token))
            self.store.flush()
        except (psycopg.Error, StoreError) as exc:
            log.warning("%s", exc)
