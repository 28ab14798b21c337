"""One live owner per run: a lease row, proven on this host by a kernel lock.

Two ``flowrun resume RUN`` at once, a resume started while the original ``flowrun run`` still
runs, a hand resume of a run ``flowrun serve`` is waking, a child run resumed by its parent
while someone resumes it by hand: without an owner each would run the in-flight actions
again. ``Engine.execute`` holds the run's ``RunClaim`` while it executes; a second claimant
gets ``RunBusy`` at once, and nothing runs twice.

The claim has two parts, both taken in ``__enter__`` and given back in ``__exit__``:

- the lease, a row in ``run_leases`` (run id, owner pid, host, token, expiry), written under
  ``BEGIN IMMEDIATE`` and renewed by ``keep()`` (a loop timer) every ``ttl / 3`` seconds while the run
  executes. It says who holds the run to every process on the state file, ``flowrun runs``
  included: a Running run with no live lease is shown as orphaned, not Running forever.
- on this host, an exclusive byte-range lock (``fcntl``) on ``<state>.runs.lock`` at an offset
  derived from the run id: the kernel releases it when the holder exits, also after
  ``kill -9``, so whether a same-host holder is alive never rests on a pid that may have been
  reused. Inside one process (two engines on one state file) a set of held ids does the same
  job: POSIX locks never conflict within a process. The lock file is opened once per process
  and never closed (closing any descriptor of a file drops every POSIX lock the process holds).

Taking a run over: a lease held on this host is free once the kernel lock is (its holder is
dead), whatever its row says. A lease held on another host is judged by this host's clock,
which may disagree with the holder's (``judge``): within its term it is live (``RunBusy``);
expired for longer than a ttl it is free; in between (just expired, or the holder's clock is
behind), further ahead than any renewal could put it (the holder's clock is ahead, or the
value is hostile), or malformed (text, NaN, a blob), only its renewals can tell:
``await claim.settle()`` watches the row for a ttl, and takes the run over only if nobody
renewed it meanwhile. A holder that finds its lease taken (it was stalled past the expiry
and another host took over) stops executing at once and writes nothing more (``lost``).

Rows are data another process (or a hand) wrote: every value read back is checked
(``_pid``, ``_host``, ``_expiry``) before it is compared or printed.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .errors import RunBusy, StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the in-process guard and the lease only
    fcntl = None  # type: ignore[assignment]

LEASE_TTL = 30.0  # seconds a lease lasts without renewal (renewed every third of that)
HOST = socket.gethostname()
log = logging.getLogger("flowrun.run")

_lock = threading.Lock()
_files: dict[str, int] = {}  # lock file path -> the descriptor this process keeps open
_held: set[tuple[str, str]] = set()  # (lock file, run id) claimed in this process


def _offset(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:7], "big")  # < 2**56


def _fd(path: str) -> int | None:
    fd = _files.get(path)
    if fd is None and fcntl is not None:
        try:
            fd = _files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None  # a read-only state folder: the in-process guard and the lease still hold
    return fd


SKEW = 5.0  # seconds of clock difference between hosts believed without watching


def _pid(value: Any) -> int:
    """A recorded pid, or 0 (unknown) when it is not a plausible one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2 ** 31 else 0


def _printable(value: Any) -> str:
    """A recorded value (a host name) as text, printable (no control characters reach a terminal), at most 100 chars."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 100 else text[:97] + "..."


def _expiry(value: Any) -> float | None:
    """A recorded expiry as a finite number of seconds, or None when malformed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def judge(expires: float | None, now: float, ttl: float = LEASE_TTL) -> str:
    """Another host's lease by this host's clock: ``live``, ``free`` or ``watch`` (only its
    renewals can tell: malformed, just expired, or further ahead than a renewal puts it)."""
    if expires is None or expires > now + 2 * ttl + SKEW:  # a renewal puts it at most a ttl ahead
        return "watch"
    if expires > now:
        return "live"
    return "watch" if expires > now - ttl else "free"


def pid_alive(pid: int) -> bool:
    if _pid(pid) == 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def holder_alive(pid: int, host: str, expires: float | None, now: float | None = None) -> bool:
    """Whether a recorded lease still has a live holder, as seen from this process (for
    display: ``flowrun runs``). On this host the pid must be alive and the lease not long
    expired (a reused pid keeps no lease fresh); elsewhere, the lease must not be free."""
    now = time.time() if now is None else now
    if host == HOST:
        return pid_alive(pid) and (expires is None or expires > now - LEASE_TTL)
    return judge(expires, now) != "free"


def leases(db: sqlite3.Connection, run_ids: list[str]) -> dict[str, tuple[int, str, float | None]]:
    """{run id: (pid, host, expires)} of the leases recorded for these runs, checked
    (``expires`` None: malformed)."""
    out: dict[str, tuple[int, str, float | None]] = {}
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        out.update({r[0]: (_pid(r[1]), _printable(r[2]), _expiry(r[3])) for r in db.execute(
            f"SELECT run_id, pid, host, expires FROM run_leases WHERE run_id IN ({', '.join('?' * len(chunk))})",
            chunk)})
    return out


class RunClaim:
    """``with RunClaim(store, run_id):`` executes the run, or raises ``RunBusy``;
    ``claim.keep(on_lost)`` renews the lease while it runs, until ``claim.stop()``."""

    def __init__(self, store: Any, run_id: str, *, ttl: float = LEASE_TTL):
        self.store = store
        self.path = str(Path(store.path).resolve()) + ".runs.lock"
        self.run_id = run_id
        self.ttl = ttl
        self.token = secrets.token_hex(16)
        self.lost = False  # another process took the lease over: stop, write nothing more
        self._key = (self.path, run_id)
        self._locked = False
        self._timer: Any = None
        self._watched: tuple | None = None  # another host's lease row seen unchanged for a ttl

    # -- judging another host's lease by its renewals ----------------------------------------------
    def _row(self) -> tuple | None:
        try:
            return self.store.db.execute("SELECT token, pid, host, expires FROM run_leases WHERE run_id = ?",
                                         (self.run_id,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store.path}: cannot read the lease of run {self.run_id}: {exc}") from None

    async def settle(self, interval: float | None = None) -> None:
        """Before ``with claim``: when another host's lease can be judged only by its renewals
        (``judge`` says ``watch``), watch it for a ttl without blocking the event loop. Renewed
        meanwhile: ``RunBusy``; unchanged: ``with claim`` takes it over (if still unchanged)."""
        import anyio

        row = self._row()
        if row is None or row[2] == HOST or judge(_expiry(row[3]), time.time(), self.ttl) != "watch":
            return
        log.warning("run %s: the lease of pid %s on host %s cannot be judged by this clock (expiry %s); "
                    "watching %.0f s for a renewal", self.run_id, _pid(row[1]), _printable(row[2]), _printable(row[3]), self.ttl)
        deadline = time.monotonic() + self.ttl
        while time.monotonic() < deadline:
            await anyio.sleep(interval if interval is not None else max(self.ttl / 30, 0.05))
            now_row = self._row()
            if now_row != row:
                if now_row is None or now_row[2] == HOST:
                    return  # given back, or taken by this host meanwhile: judged again in __enter__
                raise RunBusy(f"run {self.run_id} is being executed by pid {_pid(now_row[1])} on host "
                              f"{_printable(now_row[2])}: it renewed its lease; wait for it to finish or stop, "
                              "then resume it")
        self._watched = row

    # -- taking and giving back ---------------------------------------------------------------
    def __enter__(self) -> "RunClaim":
        with _lock:
            if self._key in _held:
                raise RunBusy(f"run {self.run_id} is already being executed by this process")
            fd = _fd(self.path)
            if fd is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _offset(self.run_id))
                except OSError:
                    holder = self._holder()
                    raise RunBusy(f"run {self.run_id} is being executed by another process"
                                  f"{f' (pid {holder[0]})' if holder else ''}; "
                                  "wait for it to finish or stop, then resume it") from None
                self._locked = True
            _held.add(self._key)
        try:
            self._take_lease()
        except BaseException:
            self._release_lock()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        try:
            if not self.lost:
                self._write("DELETE FROM run_leases WHERE run_id = ? AND token = ?", (self.run_id, self.token))
        except StoreError as error:  # it expires by itself; the kernel lock goes below
            log.warning("%s", error)
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        with _lock:
            _held.discard(self._key)
            fd = _files.get(self.path)
            if fd is not None and self._locked:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, _offset(self.run_id))
                except OSError:
                    pass
            self._locked = False

    def _holder(self) -> tuple[int, str, float] | None:
        try:
            return leases(self.store.db, [self.run_id]).get(self.run_id)
        except sqlite3.Error:
            return None

    def _take_lease(self) -> None:
        db = self.store.db
        self.store.flush()  # what this process wrote so far is its own commit, not the lease's
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = self._row()
                now = time.time()
                if row is not None and row[2] != HOST and row != self._watched:
                    expires = _expiry(row[3])
                    verdict = judge(expires, now, self.ttl)
                    holder = f"pid {_pid(row[1])} on host {_printable(row[2])}"
                    if verdict == "live":
                        raise RunBusy(f"run {self.run_id} is being executed by {holder} (its lease runs "
                                      f"{expires - now:.0f} s more); wait for it to finish or stop, then resume it")
                    if verdict == "watch":
                        raise RunBusy(f"run {self.run_id} has a lease of {holder} that this host's clock cannot "
                                      "judge; resume watches it for renewals before taking it over")
                elif row is not None and not self._locked and _pid(row[1]) != os.getpid():
                    # this host, but no kernel lock to ask (the lock file cannot be opened): the pid says
                    expires = _expiry(row[3])
                    if holder_alive(_pid(row[1]), HOST, expires, now) and (expires is None or expires > now):
                        raise RunBusy(f"run {self.run_id} is being executed by pid {_pid(row[1])}; wait for it "
                                      "to finish or stop, then resume it")
                # free: no lease, a lease of a dead process on this host (we hold its kernel
                # lock, or its pid is gone), another host's lease expired for over a ttl, or one watched unchanged
                db.execute("INSERT OR REPLACE INTO run_leases (run_id, pid, host, token, acquired, expires) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (self.run_id, os.getpid(), HOST, self.token, now,
                                                         now + self.ttl))
                db.commit()
            except BaseException:
                db.rollback()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store.path}: cannot take the lease of run {self.run_id}: {exc}") from None

    def _write(self, sql: str, args: tuple) -> int:
        try:
            count = self.store.db.execute(sql, args).rowcount
            self.store.flush()
            return count
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store.path}: run lease of {self.run_id}: {exc}") from None

    # -- keeping it -----------------------------------------------------------------------------
    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (taken over after it expired)."""
        count = self._write("UPDATE run_leases SET expires = ? WHERE run_id = ? AND token = ?",
                            (time.time() + self.ttl, self.run_id, self.token))
        if count == 0:
            self.lost = True
        return not self.lost

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew every third of the ttl on the running event loop (a timer, so no task wraps the
        run's own exceptions) until ``stop()``; call ``on_lost()`` if the lease was taken over."""
        keep_renewing(self, on_lost)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def keep_renewing(claim: Any, on_lost: Callable[[], None]) -> None:
    """Renew ``claim`` (a RunClaim here, or engine.pglease's PgRunClaim: ``renew()``, ``ttl``,
    ``run_id``, ``_timer``) every third of its ttl on the running event loop (a timer, so no task
    wraps the run's own exceptions) until its ``stop()``; call ``on_lost()`` if it was taken over."""
    import asyncio

    loop = asyncio.get_running_loop()

    def tick() -> None:
        claim._timer = None
        if getattr(claim, "dropped", False):  # stopped already: its connection was lost (engine.pgreconnect)
            return
        try:
            if not claim.renew():
                log.error("run %s: another process took its lease over; this process stops executing it",
                          claim.run_id)
                on_lost()
                return
        except StoreError as exc:  # the database is busy: the next renewal may pass
            log.warning("%s", exc)
        claim._timer = loop.call_later(claim.ttl / 3, tick)
    claim._timer = loop.call_later(claim.ttl / 3, tick)
