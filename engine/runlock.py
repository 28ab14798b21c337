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
dead); a lease held on another host is free once it has expired (its holder stopped renewing).
A holder that finds its lease taken (it was stalled past the expiry and another host took
over) stops executing at once and writes nothing more (``lost``).
"""
from __future__ import annotations

import hashlib
import logging
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's process (or nonsense): assume it lives
    return True


def holder_alive(pid: int, host: str, expires: float, now: float | None = None) -> bool:
    """Whether a recorded lease still has a live holder, as seen from this process (for
    display: ``flowrun runs``). On this host the pid must be alive and the lease not long
    expired (a reused pid keeps no lease fresh); elsewhere, the lease must not have expired."""
    now = time.time() if now is None else now
    if host == HOST:
        return pid_alive(pid) and expires > now - LEASE_TTL
    return expires > now


def leases(db: sqlite3.Connection, run_ids: list[str]) -> dict[str, tuple[int, str, float]]:
    """{run id: (pid, host, expires)} of the leases recorded for these runs."""
    out: dict[str, tuple[int, str, float]] = {}
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        out.update({r[0]: (r[1], r[2], r[3]) for r in db.execute(
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
                row = db.execute("SELECT pid, host, expires FROM run_leases WHERE run_id = ?",
                                 (self.run_id,)).fetchone()
                now = time.time()
                if row is not None and row[1] != HOST and row[2] > now:
                    raise RunBusy(f"run {self.run_id} is being executed by pid {row[0]} on host {row[1]} "
                                  f"(its lease runs {row[2] - now:.0f} s more); wait for it to finish or "
                                  "stop, then resume it")
                # free: no lease, a lease of a dead process on this host (we hold its kernel
                # lock), or an expired lease from another host
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
        import asyncio

        loop = asyncio.get_running_loop()

        def tick() -> None:
            self._timer = None
            try:
                if not self.renew():
                    log.error("run %s: another process took its lease over; this process stops executing it",
                              self.run_id)
                    on_lost()
                    return
            except StoreError as exc:  # the file is busy: the next renewal may pass
                log.warning("%s", exc)
            self._timer = loop.call_later(self.ttl / 3, tick)
        self._timer = loop.call_later(self.ttl / 3, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
