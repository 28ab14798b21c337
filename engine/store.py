"""Runs and steps in SQLite: the durable record every other part reads.

One writer per process (the event loop thread), WAL so readers (``flowrun runs`` while a
server writes) never block it, a busy timeout for a second process, and a schema version
in ``PRAGMA user_version`` with forward-only migrations.

Every text written passes through the redactor first, so a secret value never reaches the
file. Values over ``blob_threshold`` bytes are stored once, content-addressed, in
``<db>.blobs/`` and referenced as ``{"$blob": sha256, "size": n}``; over ``blob_cap`` the
action fails (never silently truncated).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ActionError, OutputTooLarge, StoreError
from .lru import LRU
from .safejson import utf8_json
from .runs import Attempt, Run, Step
from .storage import not_this_runs_file, shares_lineage

MIGRATIONS = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, flow TEXT NOT NULL, file TEXT, flow_hash TEXT, git_commit TEXT,
        definition TEXT, trigger TEXT, payload TEXT, params TEXT, status TEXT NOT NULL,
        created REAL NOT NULL, started REAL, ended REAL, outputs TEXT, error TEXT, response TEXT,
        parent_id TEXT, rerun_of TEXT, request TEXT, dedupe_key TEXT, attempts INTEGER DEFAULT 0
    );
    CREATE INDEX runs_by_flow ON runs(flow, created);
    CREATE INDEX runs_by_status ON runs(status, created);
    CREATE UNIQUE INDEX runs_by_dedupe ON runs(flow, dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE TABLE steps (
        run_id TEXT NOT NULL, path TEXT NOT NULL, action TEXT NOT NULL, type TEXT,
        status TEXT NOT NULL, attempts INTEGER DEFAULT 0, inputs TEXT, outputs TEXT, error TEXT,
        started REAL, ended REAL, seq INTEGER,
        PRIMARY KEY (run_id, path)
    );
    """,
    # 2: schedule firings (no longer written: a Recurrence keeps its checkpoint in trigger_checkpoints)
    """
    CREATE TABLE schedule_firings (
        flow TEXT NOT NULL, trigger TEXT NOT NULL, scheduled REAL NOT NULL, run_id TEXT,
        fired REAL NOT NULL,
        PRIMARY KEY (flow, trigger, scheduled)
    );
    """,
    # flow definitions stored once per content hash instead of once per run
    """
    CREATE TABLE definitions (hash TEXT PRIMARY KEY, source TEXT NOT NULL);
    INSERT OR IGNORE INTO definitions SELECT flow_hash, definition FROM runs
        WHERE definition IS NOT NULL AND flow_hash IS NOT NULL;
    UPDATE runs SET definition = NULL WHERE flow_hash IN (SELECT hash FROM definitions);
    """,
    # steps in the order they happened, read in pages by resume and rerun
    """
    CREATE INDEX IF NOT EXISTS steps_by_seq ON steps(run_id, seq);
    """,
]
log = logging.getLogger("flowrun.store")
# the runs table's columns a Run carries (``orphaned`` and ``waiting`` are what other reads add), in order
_RUN_COLS = tuple(f for f in Run.__dataclass_fields__ if f not in ("_load_steps", "_steps", "orphaned", "waiting"))
_SELECT_RUN = (f"SELECT {', '.join('r.' + c for c in _RUN_COLS)}, d.source FROM runs r "
               "LEFT JOIN definitions d ON d.hash = r.flow_hash ")  # (a definition is stored once per hash)
RUN_JSON = ("payload", "params", "outputs", "error", "response", "request", "trace")
STEP_JSON = ("inputs", "outputs", "error")
STEP_COLS = "path, action, type, status, attempts, inputs, outputs, error, started, ended, seq, interrupted"  # _step's row
CACHE_DDL = ("CREATE TABLE IF NOT EXISTS node_cache (namespace TEXT NOT NULL, key TEXT NOT NULL, "
             "value TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (namespace, key))")
_DIGEST = frozenset("0123456789abcdef")


def _statements(script: str) -> list[str]:
    """The statements of a migration script (no literal in them holds a semicolon)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def is_blob_ref(value: Any) -> bool:
    """``value`` is the reference a value offloaded to the blob store is stored as."""
    return isinstance(value, dict) and len(value) == 2 and "$blob" in value and "size" in value


def is_digest(text: Any) -> bool:
    """A blob's name: a sha256 in lowercase hex (nothing else names a file or a row)."""
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# a step an earlier execution left Running (in flight when it died) that the run ended without
# reaching again: a Terminate, its container skipped. A finished run has no step in flight.
ENDED_IN_FLIGHT = {"code": "Cancelled", "message": "the run ended while this action was in flight"}
_LONGEST_ID = 256  # no run id is longer: a longer "prefix" is looked up exactly, never as a LIKE pattern


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class Store:
    backend = "sqlite"
    Error = sqlite3.Error  # the driver's errors (engine.storage.StateStore)
    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path: str | Path, *, redact: Callable[[str], str] | None = None,
                 blob_threshold: int = 1_000_000, blob_cap: int = 100_000_000):
        self.path = Path(path)
        self.redact = redact if redact is not None else (lambda s: s)
        self.blob_threshold = blob_threshold
        self.blob_cap = blob_cap
        self.blobs = self.path.parent / (self.path.name + ".blobs")
        self._seq = 0
        self._flush_scheduled = False
        self._waiters: asyncio.Future | None = None
        self._stored_definitions: LRU[str, bool] = LRU(1024)
        self._pending_starts: dict[tuple[str, str], tuple] = {}
        self._starts_timer: Any = None
        self._ensured: set[str] = set()  # tables created by ensure_table
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=self.BUSY_TIMEOUT, check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout={int(self.BUSY_TIMEOUT * 1000)}")
            self._with_lock_polling(self._set_wal)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._with_lock_polling(self._migrate)
        except sqlite3.Error as exc:
            self._close_quietly()
            raise StoreError(f"{self.path}: cannot open state database: {exc}") from None

    BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's write lock before StoreError

    def _close_quietly(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _with_lock_polling(self, step: Any) -> None:
        """Run an opening ``step`` (WAL mode, migrations) that needs the write lock, trying for
        it in short waits: between tries the step looks, without the lock, whether another
        process did the work meanwhile. So 160 processes opening a new file at once wait for
        the one that migrates it, not for each other in turn (up to BUSY_TIMEOUT in all)."""
        deadline = time.monotonic() + self.BUSY_TIMEOUT
        while True:
            self.db.execute("PRAGMA busy_timeout=50")
            try:
                step()
                return
            except sqlite3.OperationalError as exc:
                if self.db.in_transaction:
                    self.db.rollback()
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
            finally:
                self.db.execute(f"PRAGMA busy_timeout={int(self.BUSY_TIMEOUT * 1000)}")

    def _set_wal(self) -> None:
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file

    def _is_current(self) -> bool:
        """The schema is up to date (read without the write lock; a newer one is refused)."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {version} is newer than this flowrun "
                             f"understands ({len(MIGRATIONS)})")
        if version < len(MIGRATIONS):
            return False
        have = {r[1] for r in self.db.execute("PRAGMA table_info(steps)")}
        names = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE name IN "
                                               "('parked_runs', 'parked_runs_by_wake', 'run_leases', 'step_attempts')")}
        if not ({"handle", "wake", "interrupted"} <= have and len(names) == 4):
            return False
        return "trace" in {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}

    def _migrate(self) -> None:
        """Bring the schema up to date in one ``BEGIN IMMEDIATE`` transaction: the version is
        read under the write lock, so any number of processes opening a new file at once
        migrate it exactly once (the others find it current, without taking the lock)."""
        if self.db.in_transaction:
            self.db.commit()
        if self._is_current():
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.path}: schema version {version} is newer than this flowrun "
                                 f"understands ({len(MIGRATIONS)})")
            for i in range(version, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[i]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={i + 1}")
            self._ensure_job_columns()
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def _ensure_job_columns(self) -> None:
        """Long-running jobs, parked runs and run leases (idempotent, so it merges with any
        numbered migration): ``steps.handle`` (a job's JSON handle), ``steps.wake`` (when the
        step wakes next), ``steps.interrupted`` (the step was in flight when its process died),
        ``parked_runs`` (a run waiting with no task, and when it is due) and ``run_leases``
        (the one live owner of a run: engine.runlock), ``steps.tracked`` (an action's
        trackedProperties, evaluated once it finished), ``runs.trace`` (the W3C trace context
        a run's spans continue: engine.telemetry), and ``step_attempts`` (each attempt of an
        action that was retried: its number, times, status and error summary)."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(steps)")}
        for col, kind in (("handle", "TEXT"), ("wake", "REAL"), ("interrupted", "INTEGER"), ("tracked", "TEXT")):
            if col not in have:
                self.db.execute(f"ALTER TABLE steps ADD COLUMN {col} {kind}")
        if "trace" not in {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}:
            self.db.execute("ALTER TABLE runs ADD COLUMN trace TEXT")
        for statement in _statements(
                "CREATE TABLE IF NOT EXISTS parked_runs (run_id TEXT PRIMARY KEY, wake REAL NOT NULL, "
                "parked REAL NOT NULL);"
                "CREATE INDEX IF NOT EXISTS parked_runs_by_wake ON parked_runs(wake);"
                "CREATE TABLE IF NOT EXISTS run_leases (run_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, "
                "host TEXT NOT NULL, token TEXT NOT NULL, acquired REAL NOT NULL, expires REAL NOT NULL);"
                "CREATE TABLE IF NOT EXISTS step_attempts (run_id TEXT NOT NULL, path TEXT NOT NULL, "
                "attempt INTEGER NOT NULL, started REAL, ended REAL, status TEXT NOT NULL, error TEXT, "
                "PRIMARY KEY (run_id, path, attempt));"
                "CREATE TABLE IF NOT EXISTS run_files (digest TEXT NOT NULL, run_id TEXT NOT NULL, "
                "PRIMARY KEY (digest, run_id));"
                "CREATE INDEX IF NOT EXISTS run_files_by_run ON run_files(run_id);"):
            self.db.execute(statement)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()

    # -- encoding --------------------------------------------------------------------------
    def encode(self, value: Any) -> str | None:
        if value is None:
            return None
        text = self.redact(json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")))
        text = utf8_json(text)
        if len(text) > self.blob_threshold:
            data = text.encode()
            if len(data) > self.blob_cap:
                raise OutputTooLarge(len(data), self.blob_cap)
            digest = hashlib.sha256(data).hexdigest()
            self._keep_blob(digest, text, data)
            return json.dumps({"$blob": digest, "size": len(data)})
        return text

    def _keep_blob(self, digest: str, text: str, data: bytes) -> None:
        """Keep an offloaded value once, under its sha256: here a file beside the database,
        written whole then renamed (where blobs live is what differs by backend)."""
        self.blobs.mkdir(exist_ok=True)
        target = self.blobs / f"{digest}.json"
        if not target.exists():
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)

    def decode(self, text: str | None, *, blobs: bool = True) -> Any:
        """The stored value; a value offloaded to the blob store is read back, or with
        ``blobs=False`` left as its reference ``{"$blob": sha256, "size": n}``."""
        if text is None:
            return None
        value = json.loads(text)
        if blobs and is_blob_ref(value):
            return json.loads(self._blob_json(value["$blob"]))
        return value

    def _blob_json(self, digest: str) -> str | bytes:
        """The JSON of an offloaded value being decoded (its file)."""
        return (self.blobs / f"{digest}.json").read_text(encoding="utf-8")

    def blob_file(self, digest: str) -> Path | None:
        """The file of an offloaded value, by its sha256 (anything else: None)."""
        if not is_digest(digest):
            return None
        path = self.blobs / f"{digest}.json"
        return path if path.is_file() else None

    def blob_data(self, digest: str) -> bytes | None:
        """The JSON of an offloaded value, by its sha256 (anything else, or none: None)."""
        path = self.blob_file(digest)
        try:
            return path.read_bytes() if path is not None else None
        except FileNotFoundError:  # pruned meanwhile
            return None

    # -- writes ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit what is pending (and the Running rows of actions still in flight)."""
        try:
            if self._pending_starts:
                self._write_pending_starts()
                self._arm_starts_timer()  # the younger ones are written when they come due
            if self.db.in_transaction:
                self.db.commit()
        except sqlite3.Error as exc:  # e.g. another process held the write lock past BUSY_TIMEOUT
            raise StoreError(f"{self.path}: commit failed: {exc}") from None

    def create_run(self, run: dict, *, commit: bool = True) -> None:
        """Insert a run; without ``commit`` the caller awaits ``durable()`` (a group commit).

        The flow's ``definition`` goes to the definitions table, once per hash."""
        row = self._run_row(run)
        cols = ", ".join(row)
        self.db.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        if commit:
            self.flush()

    def _run_row(self, run: dict) -> dict:
        """The columns of a new run as stored (values encoded, ``created`` set); its flow's
        ``definition`` is written to the definitions table instead, once per hash."""
        row = dict(run)
        source = row.pop("definition", None)
        if source is not None and row.get("flow_hash") not in self._stored_definitions:
            self.db.execute("INSERT OR IGNORE INTO definitions (hash, source) VALUES (?, ?)",
                            (row["flow_hash"], source))
            self._stored_definitions.add(row["flow_hash"])
        for key in RUN_JSON:
            if key in row:
                row[key] = self.encode(row[key])
        row.setdefault("created", time.time())
        return row

    def unavailable(self, exc: BaseException) -> bool:
        """``exc`` says the database cannot be reached now, and may be later (engine.pgstore
        reconnects); a SQLite file is either there or not."""
        return False

    def rolled_back(self) -> None:
        """Writes were rolled back (a savepoint): forget what this store believes it wrote."""
        self._stored_definitions.clear()

    def forget_run_start(self, run_id: str) -> None:
        """Drop a pending "Running" mark (the run stopped before it was written)."""
        self._pending_starts.pop((run_id, None), None)

    def execution_ended(self, run_id: str) -> None:
        """This process stops executing ``run_id`` (it finished, parked or stopped): the
        "Running" marks of its steps still held back (``step_started``) go into the batch now,
        under the lease it still holds. Written later by the timer, they would land after the
        lease went, over the rows of whichever process took the run on next."""
        for key in [k for k in self._pending_starts if k[0] == run_id and k[1] is not None]:
            self._write_pending_starts(only=key)

    def run_finished(self, run_id: str, **fields: Any) -> None:
        """Record a run's outcome (with the start a pending ``run_started`` holds); the caller
        awaits ``durable()``. Steps still Running end Cancelled (``ENDED_IN_FLIGHT``)."""
        pending = self._pending_starts.get((run_id, None))
        if pending is not None:
            fields.setdefault("started", pending[5])
            fields.setdefault("attempts", pending[4])
        self.db.execute("UPDATE steps SET status = 'Cancelled', ended = ?, error = ? WHERE run_id = ? "
                        "AND status = 'Running'", (fields.get("ended") or time.time(), self.encode(ENDED_IN_FLIGHT),
                                                   run_id))
        self.update_run(run_id, commit=False, **fields)

    def continue_numbering(self, run_id: str) -> None:
        """Number new steps after the ones a run already has (resume in a new process), so
        'in the order they happened' stays true across processes."""
        last = self.db.execute("SELECT MAX(seq) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
        self._seq = max(self._seq, last or 0)

    def update_run(self, run_id: str, *, commit: bool = True, **fields: Any) -> None:
        if "status" in fields:  # a status written here supersedes a pending "Running" mark
            self._pending_starts.pop((run_id, None), None)
        for key in RUN_JSON:
            if key in fields:
                fields[key] = self.encode(fields[key])
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*fields.values(), run_id])
        if commit:
            self.flush()

    RUNNING_AFTER = 0.05  # seconds an action runs before its Running row is written

    def step_started(self, run_id: str, path: str, action: str, type_: str, started: float,
                     attempts: int = 1, *, now: bool = False) -> None:
        """Note an action as Running. Its row is written once it has run for RUNNING_AFTER
        seconds, so fast actions cost no extra write and slow ones show as Running (and
        count their attempt) while in flight. With ``now`` the row is written at once (the
        caller awaits ``durable()`` before the action does anything): an action that must
        know, after a crash, that it was in flight (at-most-once, not idempotent)."""
        self._pending_starts[(run_id, path)] = (run_id, path, action, type_, attempts, started)
        if now:
            self._write_pending_starts(only=(run_id, path))
        else:
            self._arm_starts_timer()

    def _arm_starts_timer(self) -> None:
        if self._starts_timer or not self._pending_starts:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def due() -> None:
            self._starts_timer = None
            try:
                self.flush()
            except StoreError as exc:  # a callback: one line, and the next commit carries them
                from .errors import StoreUnavailable  # (said once per outage by the store already)

                (log.info if isinstance(exc, StoreUnavailable) else log.warning)("%s; retrying", exc)
                self.flush_soon()
        self._starts_timer = loop.call_later(self.RUNNING_AFTER, due)

    def flush_soon(self) -> None:
        """Commit at the end of this event-loop turn, together with everything else written in
        it (a group commit). Without a running loop, commit now."""
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._group_commit)

    async def durable(self) -> None:
        """Wait until everything written so far is committed. Every caller waiting in the same
        loop turn shares one commit; a failed commit raises StoreError in each of them."""
        if self._waiters is None:
            self._waiters = asyncio.get_running_loop().create_future()
        waiter = self._waiters
        self.flush_soon()
        await asyncio.shield(waiter)

    def _group_commit(self) -> None:
        self._flush_scheduled = False
        waiters, self._waiters = self._waiters, None
        try:
            self.flush()
        except StoreError as exc:
            if waiters is not None and not waiters.done():
                waiters.set_exception(exc)
                return
            # nobody waits on this commit: the writes stay in the open transaction and the
            # next commit carries them; say so in one line (never a traceback from a callback)
            from .errors import StoreUnavailable  # (said once per outage by the store already)

            (log.info if isinstance(exc, StoreUnavailable) else log.warning)("%s; retrying", exc)
            try:
                asyncio.get_running_loop().call_later(0.1, self.flush_soon)
            except RuntimeError:
                pass
            return
        if waiters is not None and not waiters.done():
            waiters.set_result(None)

    def run_started(self, run_id: str, started: float, attempts: int) -> None:
        """Note a run as Running; like a step, its row changes only if it is still running
        RUNNING_AFTER seconds later (a crash before that leaves it Queued, which resumes the same)."""
        self._pending_starts[(run_id, None)] = (run_id, None, None, None, attempts, started)
        self._arm_starts_timer()

    def _due_starts(self, only: tuple[str, str] | None) -> Iterator[tuple]:
        """The pending Running marks to write now, taken off the list: (run id, path (None: the
        run's own), action, type, attempts, started) of those noted RUNNING_AFTER ago, or ``only``.
        Each is looked up as it comes: writing one may find the connection lost, which forgets
        the marks of every run dropped with it (engine.pgreconnect)."""
        cutoff = time.time() - self.RUNNING_AFTER
        due = [only] if only is not None else [k for k, v in self._pending_starts.items() if v[5] <= cutoff]
        for key in due:
            mark = self._pending_starts.pop(key, None)
            if mark is not None:
                yield mark

    def _write_pending_starts(self, only: tuple[str, str] | None = None) -> None:
        for run_id, path, action, type_, attempts, started in self._due_starts(only):
            if path is None:
                self.db.execute("UPDATE runs SET status = 'Running', started = ?, attempts = ? WHERE id = ?",
                                (started, attempts, run_id))
                continue
            self._seq += 1
            self.db.execute(
                "INSERT INTO steps (run_id, path, action, type, status, attempts, started, seq) "
                "VALUES (?, ?, ?, ?, 'Running', ?, ?, ?) ON CONFLICT (run_id, path) DO UPDATE SET "
                "status = 'Running', attempts = excluded.attempts, started = excluded.started, "
                "ended = NULL, error = NULL, outputs = NULL",
                (run_id, path, action, type_, attempts, started, self._seq))

    def step_finished(self, run_id: str, path: str, action: str, type_: str, status: str, *,
                      attempts: int, inputs: Any, outputs: Any, error: Any, started: float | None,
                      ended: float, commit: bool = True, interrupted: bool = False) -> None:
        """Record an action's result (``interrupted``: it ran again after a crash stopped it).

        With ``commit`` the write is committed at the end of this event-loop turn, together
        with the other results of that turn (a group commit): the engine starts dependents
        with ``start_soon``, which the loop runs after that commit, so nothing downstream of
        an action ever starts before its result is durable."""
        enc_outputs = self.encode(outputs)  # may raise OutputTooLarge before anything is written
        self._pending_starts.pop((run_id, path), None)
        self._seq += 1
        self.db.execute(
            "INSERT OR REPLACE INTO steps (run_id, path, action, type, status, attempts, inputs, "
            "outputs, error, started, ended, seq, interrupted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, path, action, type_, status, attempts, self.encode(inputs), enc_outputs,
             self.encode(error), started, ended, self._seq, 1 if interrupted else None))
        if commit:
            self.flush_soon()

    # -- attempts of retried actions --------------------------------------------------------
    def attempt_finished(self, run_id: str, path: str, attempt: int, *, status: str, started: float | None,
                         ended: float | None, error: Any = None) -> None:
        """Record one attempt of an action that was retried (a first attempt that needed no retry
        is not written: the step holds it). Committed with the loop turn's other writes."""
        self.db.execute("INSERT OR REPLACE INTO step_attempts (run_id, path, attempt, started, ended, status, error) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (run_id, path, attempt, started, ended, str(status), self.encode(error)))
        self.flush_soon()

    def copy_attempts(self, from_run: str, to_run: str, path: str) -> None:
        """A rerun reuses a step: its attempts come along (in the same transaction as the step)."""
        self.db.execute("INSERT OR REPLACE INTO step_attempts (run_id, path, attempt, started, ended, status, error) "
                        "SELECT ?, path, attempt, started, ended, status, error FROM step_attempts "
                        "WHERE run_id = ? AND path = ?", (to_run, from_run, path))

    def last_attempt(self, run_id: str, path: str) -> int:
        """The highest attempt number recorded for a step (0: none): a resumed step counts the
        attempt after it as the one in flight when its process died, and goes on from there."""
        return self.db.execute("SELECT COALESCE(MAX(attempt), 0) FROM step_attempts WHERE run_id = ? AND path = ?",
                               (run_id, path)).fetchone()[0]

    def attempts(self, run_id: str, path: str) -> list[Attempt]:
        """The recorded attempts of one step, first to last (empty: it was not retried)."""
        return [Attempt(n, status, started, ended, self.decode(error)) for n, started, ended, status, error in
                self.db.execute("SELECT attempt, started, ended, status, error FROM step_attempts "
                                "WHERE run_id = ? AND path = ? ORDER BY attempt", (run_id, path))]

    def step_tracked(self, run_id: str, path: str, tracked: dict) -> None:
        """Record a finished step's trackedProperties (``{"values": {...}, "errors": {...}}``),
        in the same group commit as its result."""
        self.db.execute("UPDATE steps SET tracked = ? WHERE run_id = ? AND path = ?",
                        (self.encode(tracked), run_id, path))

    def has_tracked(self, run_id: str) -> bool:
        """Whether any step of the run recorded trackedProperties."""
        return self.db.execute("SELECT 1 FROM steps WHERE run_id = ? AND tracked IS NOT NULL LIMIT 1",
                               (run_id,)).fetchone() is not None

    def tracked(self, run_id: str, path: str) -> dict | None:
        """A step's trackedProperties (``{"values", "errors"}``), or None."""
        row = self.db.execute("SELECT tracked FROM steps WHERE run_id = ? AND path = ?", (run_id, path)).fetchone()
        return self.decode(row[0]) if row and row[0] else None

    # -- long-running jobs and parked runs --------------------------------------------------
    def step_mark(self, run_id: str, path: str, action: str, type_: str, *, attempts: int,
                  started: float | None, handle: Any, wake: float | None, commit: bool = True) -> None:
        """Record, and commit now (or with the next commit), that a step in flight holds a
        remote job ``handle`` and/or wakes at ``wake``: a resumed run polls that handle (never
        starting the job again) and sleeps only what is left. ``step_finished`` clears both."""
        self._pending_starts.pop((run_id, path), None)
        self._seq += 1
        self.db.execute(
            "INSERT INTO steps (run_id, path, action, type, status, attempts, started, seq, handle, wake) "
            "VALUES (?, ?, ?, ?, 'Running', ?, ?, ?, ?, ?) ON CONFLICT (run_id, path) DO UPDATE SET "
            "status = 'Running', attempts = excluded.attempts, started = excluded.started, ended = NULL, "
            "error = NULL, outputs = NULL, handle = excluded.handle, wake = excluded.wake",
            (run_id, path, action, type_, attempts, started, self._seq, self.encode(handle), wake))
        if commit:
            self.flush()

    def step_marks(self, run_id: str, path: str) -> tuple[Any, float | None]:
        """(handle, wake) recorded for a step still in flight (Running), else (None, None)."""
        row = self.db.execute("SELECT handle, wake FROM steps WHERE run_id = ? AND path = ? AND status = 'Running'",
                              (run_id, path)).fetchone()
        return (self.decode(row[0]), row[1]) if row else (None, None)

    def park_run(self, run_id: str, wake: float, status: str, *, children: list[str] = ()) -> None:
        """Park a run until ``wake`` with ``status`` (Waiting), in one commit. (``children``:
        only workers delegate child runs, on PostgreSQL: engine.pgstore.)"""
        self.db.execute("INSERT INTO parked_runs (run_id, wake, parked) VALUES (?, ?, ?) ON CONFLICT (run_id) "
                        "DO UPDATE SET wake = excluded.wake, parked = excluded.parked", (run_id, wake, time.time()))
        self.update_run(run_id, status=status)

    def due_runs(self, now: float, status: str) -> list[str]:
        """Parked runs (still ``status``) whose wake-up time has come, earliest first."""
        return [r[0] for r in self.db.execute(
            "SELECT p.run_id FROM parked_runs p JOIN runs r ON r.id = p.run_id WHERE p.wake <= ? AND r.status = ? "
            "ORDER BY p.wake", (now, status))]

    def next_wake(self, status: str) -> float | None:
        """The earliest wake-up time of a parked run, or None."""
        return self.db.execute("SELECT MIN(p.wake) FROM parked_runs p JOIN runs r ON r.id = p.run_id "
                               "WHERE r.status = ?", (status,)).fetchone()[0]

    def claim_parked(self, run_id: str, status: str) -> bool:
        """Take a parked run off the list and mark it Running (one commit); False if it was not
        parked any more (claimed already, or resumed by hand)."""
        cur = self.db.execute("UPDATE runs SET status = 'Running' WHERE id = ? AND status = ?", (run_id, status))
        self.db.execute("DELETE FROM parked_runs WHERE run_id = ?", (run_id,))
        self.flush()
        return cur.rowcount == 1

    # -- reads -----------------------------------------------------------------------------
    # Written once for both backends: SQL that SQLite and PostgreSQL read alike, run through
    # ``self.db`` (on PostgreSQL engine.pgconn.Adapter, which takes the ``?`` placeholders).
    def _can_match(self, *texts: str) -> bool:
        """Whether these texts (from outside: a URL, a command line) can equal stored ones. Text
        with a lone surrogate (argv's undecodable bytes) is no UTF-8 and matches nothing; nor,
        on PostgreSQL, which stores no NUL and refuses one as a parameter, does a NUL."""
        return all(t.isascii() or _utf8(t) for t in texts if isinstance(t, str))

    def get_run(self, run_id: str) -> Run:
        """A run by its id, or by a prefix of it that names one run only."""
        if not self._can_match(run_id):  # an id from outside
            raise StoreError(f"no run {run_id[:64]!r} in {self.path}")
        rows = self.db.execute(_SELECT_RUN + "WHERE r.id = ?", (run_id,)).fetchall()
        if not rows and (len(run_id) > _LONGEST_ID or "\x00" in run_id):
            # no prefix: longer than any id (too long a LIKE pattern), or with a NUL (SQLite's LIKE ends there)
            raise StoreError(f"no run {run_id[:64]!r} in {self.path}")
        if not rows:
            pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            # (the escape character as a parameter: a backslash literal breaks where standard_conforming_strings is off)
            rows = self.db.execute(_SELECT_RUN + "WHERE r.id LIKE ? ESCAPE ? ORDER BY r.created LIMIT 2",
                                   (pattern, "\\")).fetchall()
            if len(rows) != 1:
                raise StoreError(f"no run '{run_id}' in {self.path}" if not rows else
                                 f"'{run_id}' matches several runs; give more of the id")
        run = dict(zip(_RUN_COLS, rows[0]))
        for key in RUN_JSON:
            run[key] = self.decode(run[key])
        if run["definition"] is None:
            run["definition"] = rows[0][-1]
        return Run(**run, _load_steps=self.steps)

    def get_runs(self, run_ids: list[str]) -> dict[str, Run]:
        """Runs by their full ids, in one read (those not found are left out): a worker reads
        the runs it has just claimed at once, not one round trip each (engine.worker)."""
        out: dict[str, Run] = {}
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start:start + 500]
            rows = self.db.execute(_SELECT_RUN + f"WHERE r.id IN ({', '.join('?' * len(chunk))})",
                                   tuple(chunk)).fetchall()
            for row in rows:
                run = dict(zip(_RUN_COLS, row))
                for key in RUN_JSON:
                    run[key] = self.decode(run[key])
                if run["definition"] is None:
                    run["definition"] = row[-1]
                out[run["id"]] = Run(**run, _load_steps=self.steps)
        return out

    def find_run(self, flow: str, dedupe_key: str) -> Run | None:
        if not self._can_match(flow, dedupe_key):
            return None
        row = self.db.execute("SELECT id FROM runs WHERE flow = ? AND dedupe_key = ?",
                              (flow, dedupe_key)).fetchone()
        return self.get_run(row[0]) if row else None

    def list_runs(self, *, flow: str | None = None, status: str | None = None,
                  limit: int = 50) -> list[Run]:
        """Recent runs, newest first (without their definitions, payloads or outputs)."""
        if not self._can_match(flow or "", str(status or "")):
            return []
        sql, args = "SELECT id, flow, status, trigger, created, started, ended, parent_id, rerun_of FROM runs", []
        where = []
        if flow:
            where.append("flow = ?")
            args.append(flow)
        if status:
            where.append("status = ?")
            args.append(str(status))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        cols = ["id", "flow", "status", "trigger", "created", "started", "ended", "parent_id", "rerun_of"]
        return [Run(**dict(zip(cols, r)), _load_steps=self.steps) for r in self.db.execute(sql, args)]

    def steps(self, run_id: str) -> list[Step]:
        """Every step of a run (small runs; a big loop's steps: ``iter_steps``)."""
        if not self._can_match(run_id):
            return []
        rows = self.db.execute(f"SELECT {STEP_COLS} FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        return [self._step(r) for r in rows]

    def iter_steps(self, run_id: str, *, prefix: str | None = None, after_seq: int = 0,
                   page: int = 1000) -> "Iterator[Step]":
        """A run's steps in the order they finished, read a page at a time (a loop may have
        a million); with ``prefix``, only the steps inside that container or loop.

        A prefix holding at most ``page`` steps (one loop iteration) is read through the
        primary key, so its cost does not grow with the run: resuming a loop reads every
        reused iteration, and a scan of the whole run each time would be quadratic."""
        cols = STEP_COLS
        if not self._can_match(run_id, prefix or ""):
            return
        if prefix is not None:
            # (run_id, path) is the primary key: two range reads (below "prefix/" and "prefix["), in
            # one statement (one round trip on PostgreSQL), stopping after page + 1 rows
            arm = f"SELECT {cols} FROM steps WHERE run_id = ? AND path >= ? AND path < ? AND +seq > ?"
            rows = self.db.execute(f"{arm} UNION ALL {arm} LIMIT ?",
                                   (run_id, prefix + "/", prefix + "0", after_seq,
                                    run_id, prefix + "[", prefix + "\\", after_seq, page + 1)).fetchall()
            if len(rows) <= page:
                rows.sort(key=lambda r: r[10])
                for r in rows:
                    yield self._step(r)
                return
        last = after_seq
        while True:
            if prefix is None:
                rows = self.db.execute(f"SELECT {cols} FROM steps WHERE run_id = ? AND seq > ? ORDER BY seq "
                                       f"LIMIT ?", (run_id, last, page)).fetchall()
            else:
                rows = self.db.execute(
                    f"SELECT {cols} FROM steps WHERE run_id = ? AND seq > ? AND "
                    f"((path >= ? AND path < ?) OR (path >= ? AND path < ?)) ORDER BY seq LIMIT ?",
                    (run_id, last, prefix + "/", prefix + "0", prefix + "[", prefix + "\\", page)).fetchall()
            for r in rows:
                yield self._step(r)
            if len(rows) < page:
                return
            last = rows[-1][10]

    def get_step(self, run_id: str, path: str) -> Step | None:
        if not self._can_match(run_id, path):
            return None
        r = self.db.execute(f"SELECT {STEP_COLS} FROM steps WHERE run_id = ? AND path = ?", (run_id, path)).fetchone()
        return self._step(r) if r else None

    # -- a loop's rows, for result(): counted, sized and read without loading the loop ------------
    _IN_LOOP = ("FROM steps WHERE run_id = ? AND path >= ? AND path < ? AND action {} "
                "AND (type IS NULL OR type <> 'Iteration')")
    _SIZE = ("SUM(COALESCE(length(inputs), 4) + COALESCE(length(outputs), 4) + COALESCE(length(error), 4)), "
             "SUM(CASE WHEN inputs LIKE '{\"$blob\"%' OR outputs LIKE '{\"$blob\"%' "
             "OR error LIKE '{\"$blob\"%' THEN 1 ELSE 0 END)")  # (plain SQL: PostgreSQL reads it too)

    def loop_summary(self, run_id: str, loop: str, actions: list[str]) -> list[tuple]:
        """(action, status, steps, highest iteration index, bytes stored, blob references) of
        ``actions`` (directly inside the loop at path ``loop``), per action and status: one
        aggregate pass over the loop's steps, nothing of them brought into memory. (No flush:
        it may run in a worker thread, and this connection reads its own uncommitted writes.)"""
        marks = ", ".join("?" * len(actions))
        index = "CAST(substr(path, ?, length(path) - length(action) - ?) AS INTEGER)"
        return self.db.execute(
            f"SELECT action, status, COUNT(*), MAX({index}), {self._SIZE} "
            f"{self._IN_LOOP.format('IN (' + marks + ')')} GROUP BY action, status",
            (len(loop) + 2, len(loop) + 3, run_id, loop + "[", loop + "\\", *actions)).fetchall()

    def loop_indexes(self, run_id: str, loop: str, action: str, statuses: tuple[str, ...] | None = None) -> "array":
        """The iteration indexes at which ``action`` (inside the loop at ``loop``) has a step
        (with one of ``statuses``), ascending, as a compact array."""
        from array import array

        index = "CAST(substr(path, ?, length(path) - ?) AS INTEGER)"
        sql = f"SELECT {index} AS i {self._IN_LOOP.format('= ?')}"
        args: list = [len(loop) + 2, len(loop) + len(action) + 3, run_id, loop + "[", loop + "\\", action]
        if statuses is not None:
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            args += statuses
        out = array("q")
        cur = self.db.execute(sql + " ORDER BY i", args)
        while rows := cur.fetchmany(4096):
            out.extend(r[0] for r in rows)
        return out

    def steps_at(self, run_id: str, paths: list[str]) -> dict[str, Step]:
        """The steps at ``paths`` (one read; at most a few hundred paths), by path."""
        paths = [p for p in paths if self._can_match(p)]
        if not paths or not self._can_match(run_id):
            return {}
        rows = self.db.execute(
            f"SELECT {STEP_COLS} FROM steps WHERE run_id = ? AND path IN ({', '.join('?' * len(paths))})", (run_id, *paths)).fetchall()
        return {r[0]: self._step(r) for r in rows}

    def stored_size(self, run_id: str, paths: list[str]) -> tuple[int, int]:
        """(bytes stored, blob references) of the inputs, outputs and errors at ``paths``."""
        row = self.db.execute(f"SELECT {self._SIZE} FROM steps WHERE run_id = ? AND path IN "
                              f"({', '.join('?' * len(paths))})", (run_id, *paths)).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def blob_sizes(self, run_id: str, loop: str, action: str, paths: list[str] | None = None) -> int:
        """How many more bytes the blob references among these steps stand for than their own text."""
        if paths is None:
            where, args = self._IN_LOOP.format("= ?"), [run_id, loop + "[", loop + "\\", action]
        else:
            where, args = f"FROM steps WHERE run_id = ? AND path IN ({', '.join('?' * len(paths))})", [run_id, *paths]
        extra = 0
        for row in self.db.execute(f"SELECT inputs, outputs, error {where} AND (inputs LIKE '{{\"$blob\"%' "
                                   f"OR outputs LIKE '{{\"$blob\"%' OR error LIKE '{{\"$blob\"%')", args):
            for text in row:
                if text and text.startswith('{"$blob"'):
                    try:
                        extra += max(0, int(json.loads(text).get("size", 0)) - len(text))
                    except (ValueError, TypeError, AttributeError):
                        pass
        return extra

    def _step(self, r: tuple, *, blobs: bool = True) -> Step:
        return Step(r[0], r[1], r[2], r[3], r[4], self.decode(r[5], blobs=blobs), self.decode(r[6], blobs=blobs),
                    self.decode(r[7], blobs=blobs), r[8], r[9], r[10], interrupted=bool(r[11]))

    def unfinished_runs(self) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT id FROM runs WHERE status IN ('Queued', 'Running') ORDER BY created")]

    # -- files and a small cache (what nodes keep beside runs) --------------------------------
    def put_file(self, data: bytes, run_id: str | None = None) -> str:
        """Keep ``data`` (an exported PDF, a rendered PNG) once, content-addressed, beside the blobs
        (``<db>.blobs/<sha256>.bin``, written whole then renamed: a crash leaves no half file);
        returns its sha256. Over the store's ``blob_cap`` the action fails. ``run_id``: the run
        that kept it (only its family may read it, ``get_file``), recorded with the next commit."""
        if len(data) > self.blob_cap:
            raise OutputTooLarge(len(data), self.blob_cap)
        digest = hashlib.sha256(data).hexdigest()
        self.blobs.mkdir(parents=True, exist_ok=True)
        target = self.blobs / f"{digest}.bin"
        if not target.exists():
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        if run_id is not None:
            try:
                self.db.execute("INSERT OR IGNORE INTO run_files VALUES (?, ?)", (digest, run_id))
                self.flush_soon()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot record the file: {exc}") from None
        return digest

    def get_file(self, digest: Any, run_id: str | None = None) -> bytes:
        """The bytes ``put_file`` kept under ``digest`` (a 64-hex sha256; anything else is refused
        before a path is built from it). ActionError ``FileNotFound`` when there is none, or when
        ``run_id`` is given and no run of its family kept it (``storage.shares_lineage``)."""
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _DIGEST:
            raise ActionError(f"{str(digest)[:80]!r} is not a file reference (a sha256)", code="FileNotFound")
        if run_id is not None:
            savers = [r[0] for r in self.db.execute("SELECT run_id FROM run_files WHERE digest = ? LIMIT 256",
                                                    (digest,))]
            parents = lambda rid: self.db.execute("SELECT parent_id, rerun_of FROM runs WHERE id = ?",  # noqa: E731
                                                  (rid,)).fetchone()
            if not shares_lineage(run_id, savers, parents):
                raise not_this_runs_file(digest)
        return self._file_data(digest)

    def _file_data(self, digest: str) -> bytes:
        """The bytes kept under a checked ``digest`` (where they live differs by backend)."""
        try:
            return (self.blobs / f"{digest}.bin").read_bytes()
        except OSError:
            raise ActionError(f"file {digest[:12]}… is not in the blob store {self.blobs} (pruned, or "
                              "another state database)", code="FileNotFound") from None

    def cache_get(self, namespace: str, key: str, now: float) -> Any:
        """The value kept under (namespace, key) while it has not expired, else None."""
        self.ensure_table("node_cache", CACHE_DDL)
        row = self.db.execute("SELECT value, expires FROM node_cache WHERE namespace = ? AND key = ?",
                              (namespace, key)).fetchone()
        if row is None or row[1] <= now:
            return None
        return json.loads(row[0])

    def cache_put(self, namespace: str, key: str, value: Any, ttl: float, now: float) -> None:
        """Keep ``value`` (JSON, redacted like everything the store writes) for ``ttl`` seconds;
        expired rows of the namespace go at the same time."""
        self.ensure_table("node_cache", CACHE_DDL)
        text = utf8_json(self.redact(json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))))
        try:
            self.db.execute("DELETE FROM node_cache WHERE namespace = ? AND expires <= ?", (namespace, now))
            self.db.execute("INSERT OR REPLACE INTO node_cache VALUES (?, ?, ?, ?)",
                            (namespace, key, text, now + ttl))
            self.flush_soon()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write the node cache: {exc}") from None

    # -- tables other parts own (trigger checkpoints) ------------------------------------------
    def ensure_table(self, name: str, ddl: str) -> None:
        """Create a table a component owns (``CREATE TABLE IF NOT EXISTS``), once per store."""
        if name in self._ensured:
            return
        try:
            self.flush()
            self.db.execute(ddl)
            self.db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create table {name}: {exc}") from None
        self._ensured.add(name)


class RecordedSteps:
    """The steps of a run that a resume or rerun may reuse, read from the store on demand,
    never all at once (a Foreach may have recorded a million iterations).

    ``skip`` names actions that run again (a rerun's), which are never reused; with
    ``finished_only`` only terminal, not-cancelled steps count (a rerun reuses no in-flight step).
    """

    def __init__(self, store: Store, run_id: str, *, skip: frozenset[str] = frozenset(),
                 finished_only: bool = False):
        self.store, self.run_id, self.skip, self.finished_only = store, run_id, skip, finished_only

    def _keep(self, step: Step | None) -> bool:
        if step is None or step.action in self.skip:
            return False
        return not self.finished_only or (step.status.is_terminal and step.status != "Cancelled")

    def get(self, path: str) -> Step | None:
        step = self.store.get_step(self.run_id, path)
        return step if self._keep(step) else None

    def inside(self, prefix: str) -> Iterator[Step]:
        """The steps inside a container or loop, in the order they finished."""
        return (s for s in self.store.iter_steps(self.run_id, prefix=prefix) if self._keep(s))

    def in_order(self) -> Iterator[Step]:
        """Every reusable step, in the order they finished."""
        return (s for s in self.store.iter_steps(self.run_id) if self._keep(s))

    def actions(self) -> list[str]:
        """The names of the actions with a reusable step."""
        return sorted({s.action for s in self.in_order()})

    def __len__(self) -> int:  # truthy: a resume or rerun, even of a run that recorded nothing
        return 1
