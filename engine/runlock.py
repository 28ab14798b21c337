"""One executor per run: a run is executed by at most one process (and one engine) at a time.

Two ``flowrun resume RUN`` at once, a hand resume of a run that ``flowrun serve`` is waking, a
child run resumed by its parent while someone resumes it by hand: without a claim each would
run the in-flight actions again (and start a long-running job twice). ``Engine.execute`` holds
the run's claim while it executes, and a second claimant gets ``RunBusy`` at once.

The claim is an exclusive byte-range lock (``fcntl``) on ``<state>.runs.lock``, at an offset
derived from the run id: the kernel releases it when the holder exits, also after ``kill -9``,
so a crashed run is never left claimed, and no file per run accumulates. Inside one process
(two engines on one state file) a set of held ids does the same job: POSIX locks never
conflict within a process. The lock file is opened once per process and never closed (closing
any descriptor of a file drops every POSIX lock the process holds on it).
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from .errors import RunBusy

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the in-process guard only
    fcntl = None  # type: ignore[assignment]

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
            return None  # a read-only state folder: the in-process guard still holds
    return fd


class RunClaim:
    """``with RunClaim(state_path, run_id):`` executes the run, or raises ``RunBusy``."""

    def __init__(self, state: str | Path, run_id: str):
        self.path = str(Path(state).resolve()) + ".runs.lock"
        self.run_id = run_id
        self._key = (self.path, run_id)

    def __enter__(self) -> "RunClaim":
        with _lock:
            if self._key in _held:
                raise RunBusy(f"run {self.run_id} is already being executed by this process")
            fd = _fd(self.path)
            if fd is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _offset(self.run_id))
                except OSError:
                    raise RunBusy(f"run {self.run_id} is being executed by another process; "
                                  "wait for it to finish or stop, then resume it") from None
            _held.add(self._key)
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _held.discard(self._key)
            fd = _files.get(self.path)
            if fd is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, _offset(self.run_id))
                except OSError:
                    pass
