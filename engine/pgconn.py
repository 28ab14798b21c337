"""The PostgreSQL connection as flowrun uses it: URLs shown without passwords, a connection
opened with one clear error (``connect``: transient or not), ``Writer`` (an idle read sent
again after a loss, engine.pgreconnect), and ``Adapter``, the writer connection as the helpers
around the store see it (``store.db``): the SQLite words they use (``?`` placeholders, ``INSERT OR
IGNORE/REPLACE``, ``instr``, ``BEGIN``/``COMMIT``) said in PostgreSQL's.

Where connections come from. The store's writer connection comes from a psycopg-pool
``ConnectionPool`` of one (engine.pgreconnect): the pool opens it in its own thread with
``session(...)``'s settings (``connection_class=Writer``), checks it before handing it out (a
connection that died while it sat in the pool is never handed out), discards a broken one
given back and opens its replacement, and counts all of it (``store.pool.get_stats()``). The
store's Backoff decides when a replacement is asked for; the pool never retries on its own
(``reconnect_timeout=0``). Everything that must die with the writer's backend uses that one
connection: run leases, trigger and key leases (engine.pglease) are rows stamped with its
backend. The LISTEN connections (a worker's, engine.replies') stay direct (``connect``): each
is held for the process's life by one thread (``Listening``: one home for LISTEN, reconnect
and backoff) and holds session state (LISTEN) that must never be handed to anyone else, so a
pool would only add a second connection to manage.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Any
from urllib.parse import unquote

import psycopg
import psycopg.conninfo
from psycopg import pq

from .errors import StoreError, StoreUnavailable

# SQLite idioms the helpers around the store use, and their PostgreSQL words (Adapter)
_PRIMARY_KEYS = {"cancel_requests": "run_id", "validated_flows": "key", "server_keys": "name",
                 "run_leases": "run_id", "trigger_checkpoints": "flow, trigger, key", "definitions": "hash"}
_OR_REPLACE = re.compile(r"^\s*INSERT OR REPLACE INTO (\w+) \(([^)]*)\)", re.I)
_OR_IGNORE = re.compile(r"^\s*INSERT OR IGNORE INTO", re.I)
_TYPES = ((re.compile(r"\bBLOB\b"), "BYTEA"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"))


def shown(url: str) -> str:
    """The URL as it may be printed: no password (in the authority or the query). A password
    written without percent-encoding may hold '@', '/' or '?': everything up to the last '@'
    after ``user:`` is hidden, whatever a parser would make of it."""
    try:
        # in the query first: to the next '&', or to the end when the URL does not parse
        url = re.sub(r"(?i)(password=)[^&]*" if _parses(url) else r"(?is)(password=).*", r"\1***", url)
        scheme, sep, rest = url.partition("://")
        if sep and "@" in rest:
            userinfo, _, host = rest.rpartition("@")
            if ":" in userinfo:
                rest = f"{userinfo.split(':', 1)[0]}:***@{host}"
        return f"{scheme}{sep}{rest}"
    except (ValueError, TypeError):
        return "postgresql://(unreadable URL)"


def _parses(url: str) -> bool:
    """libpq reads ``url`` (its keywords and escapes; not whether the server is there)."""
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except Exception:  # noqa: BLE001  ProgrammingError, and whatever a hostile string raises
        return False
    return True


def _password_text(url: str) -> str | None:
    """The password as written in the URL (what ``shown`` hides), or None."""
    rest = url.partition("://")[2]
    userinfo = rest.rpartition("@")[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else None


_ENCODED = re.compile(r"(?:[^@/?#%]|%[0-9A-Fa-f]{2})*")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite's words as PostgreSQL's (only the subset flowrun's helpers use). Cached: the store's
    reads run through here, and their statements are a few hundred constant strings."""
    m = _OR_REPLACE.match(sql)
    if m:
        table, cols = m.group(1), [c.strip() for c in m.group(2).split(",")]
        keys = _PRIMARY_KEYS[table]
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys.split(", "))
        sql = (sql[:m.start()] + f"INSERT INTO {table} ({m.group(2)})" + sql[m.end():] +
               f" ON CONFLICT ({keys}) DO UPDATE SET {sets}")
    elif _OR_IGNORE.match(sql):
        sql = _OR_IGNORE.sub("INSERT INTO", sql) + " ON CONFLICT DO NOTHING"
    sql = sql.replace("LIMIT -1", "LIMIT ALL").replace("instr(", "strpos(")
    for pattern, word in _TYPES:
        sql = pattern.sub(word, sql) if sql.lstrip().upper().startswith("CREATE") else sql
    return sql.replace("%", "%%").replace("?", "%s")


class Adapter:
    """The writer connection as the helpers around the store see it (``store.db``)."""

    def __init__(self, store: Any):
        self.store = store

    @property
    def in_transaction(self) -> bool:
        return bool(self.store._batch) or self.store._conn.info.transaction_status != pq.TransactionStatus.IDLE

    def execute(self, sql: str, args: Any = ()) -> psycopg.Cursor:
        """(Under the store's lock: engine.looprows reads through here from worker threads.)"""
        with self.store.lock:
            return self._execute(sql, args)

    def _execute(self, sql: str, args: Any) -> psycopg.Cursor:
        word = sql.lstrip()[:16].upper()
        if word.startswith("BEGIN"):
            self.store.begin()
            return self.store.conn.cursor()
        if word.startswith("COMMIT"):
            self.store.commit()
            return self.store.conn.cursor()
        if word.startswith("ROLLBACK") and "TO" not in word:
            self.store.rollback()
            return self.store.conn.cursor()
        was_dirty = self.store._dirty
        if not word.startswith("SELECT"):
            self.store.begin()
            self.store._dirty = True
        try:
            return self.store.conn.execute(translate(sql), tuple(args))
        except psycopg.Error:
            if not was_dirty and self.in_transaction:  # nothing else pending: a clean slate again
                self.store.rollback()
            raise

    def commit(self) -> None:
        self.store.commit()

    def rollback(self) -> None:
        self.store.rollback()


class Writer(psycopg.Connection):
    """The store's writer connection: a read that finds it lost while no transaction was open
    (the server ended it while it sat idle) is sent again once on the store's new connection
    (``store._check`` replaces it, dropping what died with it, or raises StoreUnavailable).
    Nothing else is sent again: a statement in a transaction died with the transaction.

    The store's pool opens it (``connect``, in the pool's thread) and the store waits for the
    outcome: ``store._opened`` is told the connection's error, or None, so the store learns at
    once why an attempt failed (a refused login ends ``flowrun worker``; a refusal is waited
    out) instead of after a pool timeout that says nothing."""

    store: Any = None

    @classmethod
    def connect(cls, conninfo: str = "", *, store: Any = None, **kwargs: Any) -> "Writer":  # type: ignore[override]
        try:
            conn = super().connect(conninfo, **kwargs)
        except BaseException as exc:
            if store is not None:
                store._opened(exc)
            raise
        try:
            if "synchronous_commit" not in conninfo:
                # like SQLite's WAL + synchronous=NORMAL: a commit survives this process dying at
                # once, the server's crash after ~3 x wal_writer_delay; the URL's options may say "on"
                conn.execute("SET synchronous_commit = off")
        except BaseException as exc:
            conn.close()
            if store is not None:
                store._opened(exc)
            raise
        if store is not None:
            store._opened(None)
        return conn

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:  # type: ignore[override]
        idle = self.info.transaction_status == pq.TransactionStatus.IDLE
        try:
            return super().execute(query, params, **kw)
        except psycopg.OperationalError:
            again = idle and self.store is not None and broken(self) and \
                isinstance(query, str) and query.lstrip()[:6].upper().startswith(("SELECT", "SHOW", "BEGIN"))
            if not again:
                raise
        self.store._check()
        return self.store._conn.execute(query, params, **kw)


def connect(url: str, role: str, *, timeout: float = 10.0, cls: type = psycopg.Connection) -> psycopg.Connection:
    """A connection to ``url`` for ``role`` (``writer``, ``listen``), autocommitting, named
    ``flowrun-<role>-<pid>`` in ``pg_stat_activity`` unless the URL names itself
    (``application_name``): an operator, or a test, can find this process's backends. TCP
    keepalives find a peer that vanished without a word. Failing: StoreUnavailable (one line,
    never the password) when it may pass later, StoreError when the URL or the login is wrong."""
    try:
        return cls.connect(url, **session(role, timeout))
    except Exception as exc:  # noqa: BLE001  OperationalError, a malformed URL (ProgrammingError)
        raise connect_error(url, exc) from None


def session(role: str, timeout: float = 10.0) -> dict[str, Any]:
    """The settings every flowrun connection is opened with (``connect``, the writer's pool)."""
    return dict(autocommit=True, connect_timeout=max(1, int(timeout)),
                fallback_application_name=f"flowrun-{role}-{os.getpid()}",
                keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)


def connect_error(url: str, exc: BaseException) -> StoreError:
    """Why a connection to ``url`` could not be opened, in one line without the password:
    StoreUnavailable when it may pass later, StoreError when the URL or the login is wrong."""
    kind = StoreUnavailable if transient(exc) and not _unreadable(url) else StoreError
    return kind(f"{shown(url)}: cannot connect to PostgreSQL: {_scrub(exc, url)}")


# what libpq says when the server is there but refuses *us*: the URL or the login is wrong,
# and trying again will not help (every other connect failure may pass: refused, timed out, starting up)
_CONFIG = re.compile(r'authentication failed|no pg_hba\.conf entry|role "[^"]*" does not exist|'
                     r'database "[^"]*" does not exist|invalid (?:connection option|sslmode|port|integer)|'
                     r'password|certificate|SSL (?:is not enabled|off)|server does not support SSL', re.I)


def transient(exc: BaseException) -> bool:
    """A failure that may pass by itself (the server restarting, a network blip, a backend
    terminated): not a wrong URL, a refused login, or a statement PostgreSQL rejected."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    if state is not None:  # connection exceptions (08), operator intervention (57P0x), too many connections
        return state.startswith("08") or state in ("57P01", "57P02", "57P03", "53300", "57P05")
    return not _CONFIG.search(str(exc))


def broken(conn: psycopg.Connection) -> bool:
    """The connection can no longer be used (lost, terminated, closed): it must be replaced."""
    return conn.closed or conn.broken


def _unreadable(url: str) -> bool:
    """libpq cannot read ``url``, or would read its password otherwise than written."""
    written = _password_text(url)
    return written is not None and not _ENCODED.fullmatch(written) or not _parses(url)


def _scrub(exc: BaseException, url: str) -> str:
    """The first line of a driver error, without the URL or its password. A password not
    percent-encoded is not parsed as one (the driver's message may quote a piece of it): the
    message then says only that."""
    written = _password_text(url)
    if _unreadable(url):
        # libpq's own message would quote the piece it stumbled on: maybe a piece of the password
        return ("the URL cannot be read (check its syntax; percent-encode '@', ':', '/', '?', '#', '&' "
                "and '%' in the password)")
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.replace(url, shown(url))
    secrets_ = [written, *re.findall(r"(?i)password=([^&]+)", url)]
    secrets_ += [unquote(s) for s in secrets_ if s]
    for value in sorted(filter(None, set(secrets_)), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


class Listening:
    """A thread that LISTENs on ``channels`` on a connection of its own (``connect``), until
    ``stop()``, and hands what it hears to an asyncio ``loop``: ``on_note(channel, payload)``
    per notification, ``on_back()`` once a lost connection is open again (a NOTIFY may have
    come meanwhile: everyone looks again). A lost connection is opened again with ``backoff``;
    ``on_lost(text, first, down_for)`` is called, from the thread, at each failure (``first``:
    this outage's first; ``down_for``: seconds since it began), to log as its owner sees fit.
    ``ready`` is set once listening, or once the first try failed (the owner's slow poll
    covers an outage). One per worker (engine.worker), one per replying server (engine.replies)."""

    def __init__(self, url: str, role: str, channels: list[str], loop: Any, *, on_note: Any,
                 on_back: Any = None, on_lost: Any = None, backoff: Any = None):
        import asyncio
        import threading

        from .backoff import Backoff

        self.url, self.role, self.channels, self.loop = url, role, list(channels), loop
        self.on_note, self.on_back, self.on_lost = on_note, on_back, on_lost
        self.backoff = backoff or Backoff(cap=10.0)
        self.ready = asyncio.Event()
        self._stopping = threading.Event()  # also interrupts the backoff
        self._thread = threading.Thread(target=self._run, name=f"flowrun-{role}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The thread ends within a second (a daemon: it never holds the exit)."""
        self._stopping.set()

    def _tell(self, callback: Any, *args: Any) -> bool:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
            return True
        except RuntimeError:  # the loop closed: nobody to tell
            return False

    def _run(self) -> None:
        import time

        down_since: float | None = None
        while not self._stopping.is_set():
            try:
                with connect(self.url, self.role) as conn:
                    for channel in self.channels:
                        conn.execute(f"LISTEN {channel}")
                    self.backoff.reset()
                    if down_since is not None and self.on_back is not None:
                        self._tell(self.on_back)
                    down_since = None
                    self._tell(self.ready.set)
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if not self._tell(self.on_note, note.channel, note.payload):
                                return
                            if self._stopping.is_set():
                                break
            except Exception as exc:  # noqa: BLE001  the database went away: the owner's slow poll covers it
                if self._stopping.is_set() or self.loop.is_closed():
                    return
                first = down_since is None
                if first:
                    down_since = time.monotonic()
                if self.on_lost is not None:
                    self.on_lost((str(exc).strip().splitlines() or [type(exc).__name__])[0], first,
                                 time.monotonic() - down_since)
                if not self._tell(self.ready.set):
                    return
                self._stopping.wait(self.backoff.next())
