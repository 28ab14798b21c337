"""The state store, whichever database holds it: one contract, two backends.

    open_store(".flowrun/state.db")                         -> engine.store.Store   (SQLite, one machine)
    open_store("postgresql://flowrun@db.internal/flowrun")  -> engine.pgstore.PgStore (many machines)

``--state`` and ``FLOWRUN_STATE`` take either. ``StateStore`` is what both provide and all the
engine uses; tests/engine/storage runs one contract suite over both. PostgreSQL needs the
``flowrun[postgres]`` extra, imported only when a URL is opened.

What differs between the two, for the parts that coordinate processes:

    concern            SQLite (engine.store, engine.runlock)      PostgreSQL (engine.pgstore, engine.pglease)
    run owner          lease row + kernel lock on <state>.runs.lock  lease row + the holder's backend, server clock
    schema version     PRAGMA user_version                        flowrun_schema table, advisory lock
    large values       <state>.blobs/ files                       blobs table
    waking workers     polling the file                           LISTEN/NOTIFY flowrun_runs
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from .errors import StoreError


def is_url(target: Any) -> bool:
    """A PostgreSQL URL (``postgresql://`` or ``postgres://``), not a file path."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in ("postgresql", "postgres")


def open_store(target: str | Path, **kw: Any) -> "StateStore":
    """The store at ``target``: a SQLite file path or a PostgreSQL URL."""
    if is_url(target):
        try:
            from .pgstore import PgStore
        except ImportError as exc:
            raise StoreError(f"a PostgreSQL state database needs psycopg: pip install 'flowrun[postgres]' "
                             f"({exc.name} is missing)") from None
        return PgStore(str(target), **kw)
    from .store import Store

    return Store(target, **kw)


def shares_lineage(run_id: str, savers: list[str], parents: Callable[[str], tuple[Any, Any] | None]) -> bool:
    """A file a node kept (``put_file``) may be read by a run of the saver's family only: the
    saver itself, a rerun of it, its parent or child, a sibling child run (the two share an
    ancestor through ``parent_id`` or ``rerun_of``). A reference that came in a payload, naming
    another run's file, is refused. ``parents(id)`` gives (parent_id, rerun_of), None when the
    run is gone."""
    if run_id in savers:
        return True

    def ancestors(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo and len(seen) < 64:  # a bounded walk: a cycle or a very deep lineage ends it
            row = parents(todo.pop())
            for up in row or ():
                if isinstance(up, str) and up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen

    mine = ancestors(run_id)
    return any(ancestors(s) & mine for s in savers[:256])


def not_this_runs_file(digest: str) -> Exception:
    from .errors import ActionError

    return ActionError(f"file {digest[:12]}… was not kept by this run or a run of its family: a file "
                       "reference from a payload or another run is refused", code="FileNotFound")


def claim(store: Any, run_id: str, *, ttl: float, token: str | None = None) -> Any:
    """The run's claim (``with claim:`` holds it or raises RunBusy) on this store's backend."""
    if hasattr(store, "claim"):
        return store.claim(run_id, ttl=ttl, token=token)
    from .runlock import RunClaim

    return RunClaim(store, run_id, ttl=ttl)


def orphans(store: Any, run_ids: list[str]) -> set[str]:
    """The runs among ``run_ids`` (Running ones) that no live process holds: their holder died."""
    if not run_ids:
        return set()
    if getattr(store, "backend", "sqlite") == "postgresql":
        from .pglease import orphans as pg_orphans

        return pg_orphans(store, run_ids)
    import time

    from .runlock import holder_alive, leases

    held, now = leases(store.db, run_ids), time.time()
    return {r for r in run_ids if r not in held or not holder_alive(*held[r], now=now)}


def status(target: str | Path) -> dict:
    """The schema version of the database at ``target`` against this code's (``flowrun db status``)."""
    if is_url(target):
        from .pgstore import VERSION, PgStore

        store = PgStore(str(target), migrate=False)
        try:
            have = store.schema_version()
        finally:
            store.close()
        return {"backend": "postgresql", "database": store.path, "version": have, "code": VERSION,
                "pending": max(VERSION - have, 0), "newer": have > VERSION}
    import sqlite3

    from .store import MIGRATIONS

    path = Path(target)
    have = 0
    if path.is_file():
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            try:
                have = db.execute("PRAGMA user_version").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read the state database: {exc}") from None
    return {"backend": "sqlite", "database": str(path), "version": have, "code": len(MIGRATIONS),
            "pending": max(len(MIGRATIONS) - have, 0), "newer": have > len(MIGRATIONS)}


def upgrade(target: str | Path) -> dict:
    """Apply the pending migrations (opening a store does: under a lock, once) and say where it is now."""
    open_store(target).close()
    return status(target)


class StateStore(Protocol):
    """What engine.store.Store and engine.pgstore.PgStore both provide."""

    path: Any  # what messages name (a file, or a URL without its password)
    backend: str  # "sqlite" | "postgresql"
    Error: type[Exception]  # the driver's error base class
    IntegrityError: type[Exception]  # a unique constraint (a dedupe key taken meanwhile)
    redact: Callable[[str], str]
    RUNNING_AFTER: float

    def close(self) -> None: ...
    def encode(self, value: Any) -> str | None: ...
    def decode(self, text: str | None) -> Any: ...
    def flush(self) -> None: ...
    def flush_soon(self) -> None: ...
    async def durable(self) -> None: ...
    def create_run(self, run: dict, *, commit: bool = True) -> None: ...
    def rolled_back(self) -> None: ...
    def unavailable(self, exc: BaseException) -> bool: ...
    def update_run(self, run_id: str, *, commit: bool = True, **fields: Any) -> None: ...
    def run_started(self, run_id: str, started: float, attempts: int) -> None: ...
    def forget_run_start(self, run_id: str) -> None: ...
    def execution_ended(self, run_id: str) -> None: ...
    def run_finished(self, run_id: str, **fields: Any) -> None: ...
    def continue_numbering(self, run_id: str) -> None: ...
    def step_started(self, run_id: str, path: str, action: str, type_: str, started: float,
                     attempts: int = 1, *, now: bool = False) -> None: ...
    def step_finished(self, run_id: str, path: str, action: str, type_: str, status: str, *,
                      attempts: int, inputs: Any, outputs: Any, error: Any, started: float | None,
                      ended: float, commit: bool = True, interrupted: bool = False) -> None: ...
    def step_mark(self, run_id: str, path: str, action: str, type_: str, *, attempts: int,
                  started: float | None, handle: Any, wake: float | None, commit: bool = True) -> None: ...
    def step_marks(self, run_id: str, path: str) -> tuple[Any, float | None]: ...
    def park_run(self, run_id: str, wake: float, status: str, *, children: list[str] = ()) -> None: ...
    def due_runs(self, now: float, status: str) -> list[str]: ...
    def next_wake(self, status: str) -> float | None: ...
    def claim_parked(self, run_id: str, status: str) -> bool: ...
    def get_run(self, run_id: str) -> Any: ...
    def find_run(self, flow: str, dedupe_key: str) -> Any: ...
    def list_runs(self, *, flow: str | None = None, status: str | None = None, limit: int = 50) -> list: ...
    def steps(self, run_id: str) -> list: ...
    def iter_steps(self, run_id: str, *, prefix: str | None = None, after_seq: int = 0,
                   page: int = 1000) -> Iterator: ...
    def get_step(self, run_id: str, path: str) -> Any: ...
    def unfinished_runs(self) -> list[str]: ...
    def ensure_table(self, name: str, ddl: str) -> None: ...
