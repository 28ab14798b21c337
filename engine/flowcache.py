"""Validated flows remembered by content hash in the state database.

``Engine.load`` of a file whose exact text was validated before (by any process on the same
state file) skips the parse, the schema and the expression checks: the loader rebuilds the
model from the validated, canonical values stored as JSON. The key covers everything the
verdict depends on: the text, the file's path, the connections it was checked against, and
the code that checked it (flowrun's own files, every node module's, and the installed
packages: a vendor SDK installed or removed changes ``missing SDK`` problems). Only valid
flows are stored, each with a digest checked on reading (a damaged row is a miss); a flow with problems is checked in full every time, so every problem is
always reported.

The table is created on first use, outside the numbered migrations, like the trigger
checkpoints. It keeps the ``KEEP`` most recently validated flows; a write that would wait
for another process more than ``SHORT_WAIT_MS`` is skipped. Any database error makes the
cache miss, never the load fail: it is an optimisation.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

TABLE = "validated_flows"
DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, data TEXT NOT NULL, digest TEXT NOT NULL, "
       f"used REAL NOT NULL)")
KEEP = 1000
SHORT_WAIT_MS = 100


class FlowCache:
    def __init__(self, store: Any):
        self.store = store
        self._ready = False

    def _table(self) -> bool:
        if not self._ready:
            try:
                with _short_wait(self.store.db):
                    self.store.ensure_table(TABLE, DDL)
            except Exception:  # noqa: BLE001  busy, read-only or broken: no cache this time
                return False
            self._ready = True
        return True

    def key(self, text: str, file: str, registry: Any, connections: Any) -> str:
        h = hashlib.sha256()
        for part in (code_fingerprint(id(registry), tuple(registry.modules)), file, text,
                     _connections_text(connections)):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()

    def get(self, key: str) -> Any:
        if not self._table():
            return None
        try:
            row = self.store.db.execute(f"SELECT data, digest FROM {TABLE} WHERE key = ?", (key,)).fetchone()
            if row is None or row[1] != _digest(key, row[0]):
                return None  # absent, or damaged since it was written
            return json.loads(row[0])
        except (self.store.Error, ValueError):
            return None

    def put(self, key: str, data: Any, connections: Any = None) -> None:
        if not self._table():
            return
        try:
            text = json.dumps(data, separators=(",", ":"))
        except (TypeError, ValueError):
            return
        if self.store.redact(text) != text or _holds_secret(text, connections):
            return  # it would hold something secret (a value pasted into the flow): never stored
        try:
            with _short_wait(self.store.db):
                self.store.db.execute(f"INSERT OR REPLACE INTO {TABLE} (key, data, digest, used) VALUES (?, ?, ?, ?)",
                                      (key, text, _digest(key, text), time.time()))
                self.store.db.execute(f"DELETE FROM {TABLE} WHERE key IN (SELECT key FROM {TABLE} "
                                      f"ORDER BY used DESC LIMIT -1 OFFSET ?)", (KEEP,))
                self.store.flush()
        except Exception:  # noqa: BLE001  busy or read-only: not remembered this time
            pass


@contextmanager
def _short_wait(db: sqlite3.Connection) -> Iterator[None]:
    """Wait at most SHORT_WAIT_MS for another process's write lock (the cache never blocks)."""
    if not isinstance(db, sqlite3.Connection):  # PostgreSQL: row locks, no file-wide write lock
        yield
        return
    wait = db.execute("PRAGMA busy_timeout").fetchone()[0]
    db.execute(f"PRAGMA busy_timeout={SHORT_WAIT_MS}")
    try:
        yield
    finally:
        db.execute(f"PRAGMA busy_timeout={int(wait)}")


def _holds_secret(text: str, connections: Any) -> bool:
    """Whether ``text`` holds, in any encoding the redactor knows, the value of an environment
    variable that a connection of ``connections`` takes a secret from."""
    from .connections import Redactor

    redactor = Redactor()
    for entry in (getattr(connections, "specs", None) or {}).values():
        for var in (entry.get("secrets") or {}).values():
            redactor.add(os.environ.get(var))
    return bool(redactor) and redactor(text) != text


def _digest(key: str, text: str) -> str:
    return hashlib.sha256(f"{key}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()


def _connections_text(connections: Any) -> str:
    if connections is None:
        return ""
    try:
        return f"{getattr(connections, 'file', '')}\0" + json.dumps(connections.specs, sort_keys=True, default=str)
    except (TypeError, ValueError, AttributeError):
        return repr(connections)


@lru_cache(maxsize=8)
def code_fingerprint(_registry: int, modules: tuple[str, ...]) -> str:
    """Changes when flowrun's code, a node module's, or the installed packages change."""
    parts: list[str] = [sys.version]
    files: list[Path] = sorted(Path(__file__).parent.glob("*.py"))
    for name in modules:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            files += sorted(Path(path).parent.glob("*.py"))
    for p in files + [Path(p) for p in sys.path if p.endswith("-packages")]:
        try:
            st = os.stat(p)
        except OSError:
            continue
        parts.append(f"{p}:{st.st_mtime_ns}:{st.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
