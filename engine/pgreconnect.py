"""The writer connection of engine.pgstore when it is lost, and its replacement.

A restart or failover, a network cut, an idle timeout, ``pg_terminate_backend``: the connection
ends, and with it its backend, so every lease it wrote is dead (engine.pglease: a lease lives
with the backend that wrote it) and another process may hold those runs already. So losing it
is not fatal, but what died with it is dropped on purpose:

- the runs this process was executing stop at once: their claims are told (``on_fenced``,
  with True), their writes from now on are discarded (``abandoned``), until one is claimed again;
- the open transaction is gone as a whole: everyone awaiting its group commit gets
  StoreUnavailable now, and the next commit fails too (``_torn``) rather than commit the part
  written after the loss;
- ``on_connection_lost`` callbacks are told (a trigger lease died too); ``on_reconnected`` ones
  get the new connection once it is there.

The loss is noticed before a statement fails where possible (``_check``: the socket of an idle
connection the server ended turns readable), else when one fails; an idle read is sent again
on the new connection (engine.pgconn.Writer). Reconnecting is tried at once, then with capped
exponential backoff and jitter; meanwhile every use raises StoreUnavailable at once (one line,
no password). One warning per outage, one info when it is back.

The connection comes from ``pool``, a psycopg-pool ConnectionPool of one (engine.pgconn says
why of one): the lost connection is given back (the pool discards it and opens a new one at
once), and each later try asks the pool for one (``check``). One loop drives the retries, the
store's Backoff: the pool's own reconnect loop is off (``reconnect_timeout=0``: after a failed
attempt, and the one more it makes at once, it waits to be asked again; its ``reconnect_failed``
is left unset, so giving up is never fatal). Each try waits for the pool's attempt, which tells
its outcome (engine.pgconn.Writer.connect): a refusal is StoreUnavailable at once, not a pool
timeout later. The pool logs each failed attempt at WARNING (``psycopg.pool``); the store's one
warning per outage speaks for them, so that logger is quiet below ERROR unless configured.
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from typing import Any, Callable

import psycopg
from psycopg import pq

from .backoff import Backoff
from .errors import StoreError, StoreUnavailable
from .pgconn import Writer, _unreadable, broken, connect_error, session, transient

log = logging.getLogger("flowrun.store")
if logging.getLogger("psycopg.pool").level == logging.NOTSET:  # (see the module docstring)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
CONNECT_TIMEOUT = 10.0  # seconds a connection attempt may take (a host that drops packets)


class Reconnecting:
    """engine.pgstore.PgStore's part that owns the writer connection's life (a mixin: it uses
    the store's ``url``, ``lock``, ``fences``, ``on_fenced``, batch and commit state)."""

    url: str
    path: str  # the URL as it may be printed
    lock: Any
    fences: dict[str, str]
    on_fenced: dict[str, Callable[..., None]]
    notices: set[str]
    _conn: Any
    _waiters: Any
    _batch: list
    _dirty: bool
    _notify: bool
    _stored_definitions: Any
    _pending_starts: dict

    def _init_reconnecting(self) -> None:
        self.abandoned: set[str] = set()  # runs dropped by a lost connection: their writes are discarded
        self.on_connection_lost: list[Callable[[], None]] = []  # told too (trigger leases die with it)
        self.on_reconnected: list[Callable[[Any], None]] = []  # told the new connection (engine.pglease.KeyLeases)
        self._torn = False  # the connection was lost with writes pending: the next commit fails as a whole
        self._down_since: float | None = None  # monotonic time the connection was found lost
        self._retry_at = 0.0
        self._backoff = Backoff()
        self._attempt = threading.Event()  # the pool's connection attempt ended (``_opened``)
        self._attempt_error: BaseException | None = None
        if _unreadable(self.url):  # not handed to the pool: libpq's complaint may quote a piece of the password
            raise connect_error(self.url, ValueError("unreadable URL"))
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(
            self.url, connection_class=Writer, kwargs={**session("writer", CONNECT_TIMEOUT), "store": self},
            min_size=1, max_size=1, open=False, check=ConnectionPool.check_connection,
            name=f"flowrun-writer-{os.getpid()}", reconnect_timeout=0, num_workers=1)

    def _opened(self, error: BaseException | None) -> None:
        """(engine.pgconn.Writer.connect, in the pool's thread) an attempt ended: ``error`` or None."""
        self._attempt_error = error
        self._attempt.set()

    def _take(self, ask: Callable[[], Any]) -> Writer:
        """The writer connection, from the pool: ``ask()`` makes the pool open one (``open``,
        ``putconn`` of the lost one, ``check``: a no-op while an attempt runs) and this waits for
        that attempt, unless one is ready. StoreError / StoreUnavailable (one line) if it failed."""
        self._attempt.clear()
        self._attempt_error = None
        ask()
        if not self.pool.get_stats()["pool_available"]:
            if not self._attempt.wait(CONNECT_TIMEOUT + 5):
                raise StoreUnavailable(f"{self.path}: cannot connect to PostgreSQL: no answer within "
                                       f"{CONNECT_TIMEOUT + 5:g} s")
            if self._attempt_error is not None:
                raise connect_error(self.url, self._attempt_error) from None
        from psycopg_pool import PoolTimeout

        try:  # (checked first: one that died in the pool meanwhile is discarded, and another opened)
            conn = self.pool.getconn(timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            raise StoreUnavailable(f"{self.path}: cannot connect to PostgreSQL: {exc}") from None
        conn.lock, conn.store = self.lock, self
        return conn

    def _close_pool(self) -> None:
        pool = self.__dict__.get("pool")
        if pool is not None:
            pool.close(timeout=1.0)

    # -- a lost connection -----------------------------------------------------------------------
    def _check(self) -> None:
        """Replace the writer connection if it is lost (or raise StoreUnavailable). One the
        server ended while it sat idle (terminated, an idle timeout, a restart) is noticed here,
        before a statement fails on it: its socket turned readable (the server's farewell, then
        the end of the stream), which costs a ``select`` of a few microseconds to see."""
        pgconn = self._conn.pgconn
        if pgconn.status == pq.ConnStatus.OK:
            with self.lock:
                try:
                    for _ in range(4):
                        if not select.select([pgconn.socket], [], [], 0)[0]:
                            break
                        pgconn.consume_input()  # the end of the stream marks the connection bad
                except (psycopg.OperationalError, OSError, ValueError):
                    pass
        if broken(self._conn):
            self._reconnect()

    def _reconnect(self) -> None:
        """The writer connection is gone: drop what died with it (once per outage), then open a
        new one if the backoff allows, else raise StoreUnavailable."""
        with self.lock:
            if not broken(self._conn):
                return  # another thread replaced it meanwhile
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
                running = f"; the {len(self.fences)} run(s) executing here stop, to be claimed again" \
                    if self.fences else ""
                log.warning("%s: the database connection was lost%s; reconnecting", self.path, running)
                self._abandon()
                lost = self._conn
                ask: Callable[[], Any] = lambda: self.pool.putconn(lost)  # discarded; a new one opened at once
            elif now < self._retry_at:
                raise StoreUnavailable(f"{self.path}: PostgreSQL cannot be reached; the next try in "
                                       f"{self._retry_at - now:.1f} s")
            else:
                ask = self.pool.check  # the pool opens one if it holds none
            try:
                conn = self._take(ask)
            except StoreError as exc:  # a password changed meanwhile is retried too: it may be put back
                self._retry_at = time.monotonic() + self._backoff.next()
                raise StoreUnavailable(str(exc)) from None
            self._conn.close()
            self._conn = conn
            log.info("%s: reconnected after %.1f s", self.path, time.monotonic() - self._down_since)
            self._down_since, self._retry_at = None, 0.0
            self._backoff.reset()
            for callback in list(self.on_reconnected):
                self._tell(callback, conn)

    def _abandon(self) -> None:
        """Forget what the lost connection held: the open transaction (the next commit fails, so
        no one is told it happened) and the leases it wrote (the runs stop here: ``abandoned``)."""
        if self._batch or self._dirty or self._notify or self.notices:
            self._torn = True
        self._fail_waiters()
        self._batch.clear()
        self._dirty = self._notify = False
        self.notices.clear()
        self._stored_definitions.clear()  # its INSERT may have been in the lost transaction
        dropped = list(self.fences)
        self._written.clear()
        self.abandoned.update(dropped)
        self._pending_starts = {k: v for k, v in self._pending_starts.items() if k[0] not in self.abandoned}
        for run_id in dropped:
            self._tell(self.on_fenced.get(run_id), True)
        for callback in list(self.on_connection_lost):
            self._tell(callback)

    def _fail_waiters(self) -> None:
        """Everyone awaiting the next group commit (``durable``) learns now that it will not
        happen: their writes were in the lost transaction. (Whoever flushes first must not
        consume the failure and leave them an empty commit that "succeeds".)"""
        waiters, self._waiters = self._waiters, None
        if waiters is None or waiters.done():
            return
        error = StoreUnavailable(f"{self.path}: the database connection was lost before the commit; "
                                 "nothing of it was kept")

        def fail() -> None:
            if not waiters.done():
                waiters.set_exception(error)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is waiters.get_loop():
            fail()
        else:  # found lost from a thread (engine.looprows' reads)
            waiters.get_loop().call_soon_threadsafe(fail)

    @staticmethod
    def _tell(callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # noqa: BLE001  one listener's bug must not stop the others being told
            log.exception("a connection-lost callback failed")

    def unavailable(self, exc: BaseException) -> bool:
        """``exc`` says the database cannot be reached now (the connection is being replaced):
        a caller answers 503 or tries again later, and records no failure."""
        if isinstance(exc, StoreUnavailable):
            return True
        return isinstance(exc, psycopg.Error) and (transient(exc) or broken(self._conn))
