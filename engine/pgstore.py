"""Runs and steps in PostgreSQL: the same record as engine.store, shared by many processes.

``PgStore`` keeps ``Store``'s contract (engine.storage.StateStore) and its behaviour where it
is not about SQL: every text written passes the redactor, writes of one event-loop turn share
one commit (``flush_soon``/``durable``), a Running row is written only for an action that has
run ``RUNNING_AFTER`` seconds. What differs:

- one writer connection per process (``application_name`` flowrun-writer-<pid>), from a psycopg-pool
  pool of one (engine.pgreconnect); reads go through it, so
  a process sees what it wrote before it commits, as with SQLite. It autocommits: a write
  opens a transaction (``begin``) that the group commit closes, and a read never leaves one
  open;
- the schema is versioned in ``flowrun_schema`` (``MIGRATIONS`` below), applied under a
  transaction-level advisory lock so any number of processes starting at once migrate once;
  a database newer than the code is refused;
- values over ``blob_threshold`` go to the ``blobs`` table (every host sees them), not files;
- writes for a run this process holds under a lease (engine.pglease) are fenced: each one
  carries ``EXISTS (lease with our token)``, so a process that lost its lease writes nothing;
- a queued or parked run sends ``NOTIFY flowrun_runs`` (delivered at commit) to wake workers;
  a child run's end ``flowrun_done`` (its parent's id), a run's reply ``flowrun_reply``;
- a lost writer connection is replaced, not fatal (engine.pgreconnect): the runs whose leases
  died with it stop here, and the transaction it held fails as a whole.
  In a schema other than ``public`` each channel's name carries the schema's (``channels``).

``db`` is engine.pgconn.Adapter, which speaks the SQLite subset the helpers around the store
use: checkpoints, server keys, the flow cache, cancel requests, concurrency slots and the run
inspector work on either backend unchanged, and so do ``Store``'s own reads (their SQL is
written once, in engine.store); this class keeps only what differs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Callable

import psycopg
from psycopg import pq

from .errors import OutputTooLarge, StoreError, StoreUnavailable
from .pgconn import Adapter, broken, shown, translate
from .pgreconnect import Reconnecting
from .lru import LRU
from .safejson import utf8_json
from .store import CACHE_DDL, ENDED_IN_FLIGHT, RUN_JSON, Store, _default, is_digest

log = logging.getLogger("flowrun.store")
CHANNEL = "flowrun_runs"  # NOTIFY channel: a run was queued, parked or released
DONE = "flowrun_done"  # NOTIFY channel: a child run finished (the payload: its parent's id)
REPLY = "flowrun_reply"  # NOTIFY channel: a run's reply was recorded, or it ended (engine.replies)


def channels(schema: str) -> tuple[str, str, str]:
    """The NOTIFY channels of the state in ``schema``: (runs, done, reply).

    NOTIFY reaches every listener of the *database*, whatever its search_path: state databases
    sharing one PostgreSQL database in different schemas would otherwise wake each other's
    workers, each wake a claim that finds nothing. Schema ``public`` keeps the plain names."""
    if schema == "public":
        return CHANNEL, DONE, REPLY
    tag = hashlib.sha256(schema.encode()).hexdigest()[:16]  # any schema name, as a short identifier
    return f"{CHANNEL}_{tag}", f"{DONE}_{tag}", f"{REPLY}_{tag}"

# a write's fence (``_fenced``): our lease, and the run's row and lease row held (FOR SHARE) by
# the transaction until it commits. The run's row first: a worker's claim skips a run whose row
# is locked (FOR UPDATE SKIP LOCKED) and only then takes its lease row, so the two never wait on
# each other in a cycle; the lease row too: a holder that waited for the row while a claim took
# the lease over re-reads the lease (the token changed) instead of passing on what it saw before
FENCE = ("EXISTS (SELECT 1 FROM runs fr JOIN run_leases fl ON fl.run_id = fr.id WHERE fr.id = %s "
         "AND fl.token = %s FOR SHARE OF fr, fl)")
_LOCK_KEY = 0x666C6F7772756E  # "flowrun": the advisory lock migrations take

MIGRATIONS = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, flow TEXT NOT NULL, file TEXT, flow_hash TEXT, git_commit TEXT,
        definition TEXT, trigger TEXT, payload TEXT, params TEXT, status TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, started DOUBLE PRECISION, ended DOUBLE PRECISION,
        outputs TEXT, error TEXT, response TEXT, parent_id TEXT, rerun_of TEXT, request TEXT,
        dedupe_key TEXT, attempts INTEGER DEFAULT 0
    );
    CREATE INDEX runs_by_flow ON runs(flow, created);
    CREATE INDEX runs_by_status ON runs(status, created);
    CREATE UNIQUE INDEX runs_by_dedupe ON runs(flow, dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE TABLE steps (
        run_id TEXT NOT NULL, path TEXT COLLATE "C" NOT NULL, action TEXT NOT NULL, type TEXT,
        status TEXT NOT NULL, attempts INTEGER DEFAULT 0, inputs TEXT, outputs TEXT, error TEXT,
        started DOUBLE PRECISION, ended DOUBLE PRECISION, seq BIGINT, handle TEXT,
        wake DOUBLE PRECISION, interrupted INTEGER,
        PRIMARY KEY (run_id, path)
    );
    CREATE INDEX steps_by_seq ON steps(run_id, seq);
    CREATE TABLE definitions (hash TEXT PRIMARY KEY, source TEXT NOT NULL);
    CREATE TABLE blobs (digest TEXT PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE parked_runs (run_id TEXT PRIMARY KEY, wake DOUBLE PRECISION NOT NULL,
        parked DOUBLE PRECISION NOT NULL);
    CREATE INDEX parked_runs_by_wake ON parked_runs(wake);
    CREATE TABLE run_leases (
        run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
        token TEXT NOT NULL, backend INTEGER, backend_start TIMESTAMPTZ,
        acquired DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX run_leases_by_owner ON run_leases(owner);
    CREATE TABLE schedule_firings (
        flow TEXT NOT NULL, trigger TEXT NOT NULL, scheduled DOUBLE PRECISION NOT NULL, run_id TEXT,
        fired DOUBLE PRECISION NOT NULL, PRIMARY KEY (flow, trigger, scheduled)
    )
    """,
    # 2: the W3C trace context a run's spans continue (engine.telemetry), as SQLite's runs.trace
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS trace TEXT",
    # 3: a finished step's trackedProperties (Logic Apps; engine.executor), as SQLite's steps.tracked
    "ALTER TABLE steps ADD COLUMN IF NOT EXISTS tracked TEXT",
    # 4: the child runs a parked parent waits for: it is due once one of them has ended (engine.worker)
    "ALTER TABLE parked_runs ADD COLUMN IF NOT EXISTS children TEXT[]",
]
VERSION = len(MIGRATIONS)

class PgStore(Reconnecting, Store):
    """``Store`` on PostgreSQL (see the module docstring). ``migrate=False`` opens a database
    without upgrading it (``flowrun db status``)."""

    Error = psycopg.Error
    IntegrityError = psycopg.IntegrityError
    backend = "postgresql"
    RUNNING_AFTER = 0.25  # a write is a round trip here: Running rows only for what runs a while

    def __init__(self, url: str, *, redact: Callable[[str], str] | None = None,
                 blob_threshold: int = 1_000_000, blob_cap: int = 100_000_000, migrate: bool = True):
        self.url = url
        self.path = shown(url)  # what messages name: never the password
        self.redact = redact if redact is not None else (lambda s: s)
        self.blob_threshold = blob_threshold
        self.blob_cap = blob_cap
        self.blobs = None  # blobs live in the database
        self._seq = 0
        self._flush_scheduled = False
        self._waiters = None
        self._stored_definitions: LRU[str, bool] = LRU(1024)
        self._pending_starts: dict[tuple[str, str | None], tuple] = {}
        self._starts_timer: Any = None
        self._ensured: set[str] = set()
        self._dirty = False
        self._notify = False
        self.notices: set[str] = set()  # parents to tell, at commit, that a child run finished
        self.replies: set[str] = set()  # runs whose reply (or end) to announce at commit (engine.replies)
        self.fences: dict[str, str] = {}  # run id -> lease token this process writes under
        self._written: set[str] = set()  # runs held here with writes in the open transaction
        # run id -> what to do when a write was fenced (called with True: the connection was lost)
        self.on_fenced: dict[str, Callable[..., None]] = {}
        self._batch: list[tuple[str, tuple, str | None]] = []  # fenced writes not sent yet (sql, args, run id)
        self._init_reconnecting()
        # result() of a big loop reads the store from a worker thread (engine.looprows) while the
        # event loop writes. Pipeline mode is the connection's state, not a statement's: another
        # thread's query while a batch is in the pipeline breaks both. So the connection's own
        # lock (taken by psycopg around every statement) becomes a reentrant one, held too for a
        # whole batch (``_send``) and a whole read through ``db``: any thread may use the store.
        self.lock = threading.RLock()
        try:
            self._conn = self._take(self.pool.open)  # its first connection, opened by the pool
        except BaseException:
            self._close_pool()
            raise
        self.db = Adapter(self)
        self.channel, self.done_channel, self.reply_channel = channels(self.conn.execute("SELECT current_schema()").fetchone()[0]
                                                   or "public")
        try:
            self.version = self._migrate() if migrate else self.schema_version()
        except BaseException:
            self.close()
            raise

    # -- schema --------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The version of the schema in the database (0: none yet)."""
        try:
            row = self.conn.execute("SELECT to_regclass('flowrun_schema') IS NOT NULL").fetchone()
            if not row[0]:
                return 0
            version = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM flowrun_schema").fetchone()[0]
        finally:
            self.conn.rollback()
        return version

    def _check_version(self, version: int) -> None:
        if version > VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this flowrun "
                             f"understands ({VERSION}); upgrade flowrun")

    def _migrate(self) -> int:
        """Bring the schema up to date in one transaction under an advisory lock: processes
        starting at once wait for the one that migrates, then find the schema current."""
        version = self.schema_version()
        self._check_version(version)
        if version == VERSION:
            return version
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                self.conn.execute("CREATE TABLE IF NOT EXISTS flowrun_schema (version INTEGER PRIMARY KEY, "
                                  "applied DOUBLE PRECISION NOT NULL)")
                version = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM flowrun_schema").fetchone()[0]
                self._check_version(version)
                for i in range(version, VERSION):
                    self.conn.execute(MIGRATIONS[i])
                    self.conn.execute("INSERT INTO flowrun_schema (version, applied) VALUES (%s, %s)",
                                      (i + 1, time.time()))
        except psycopg.Error as exc:
            raise StoreError(f"{self.path}: cannot migrate the schema: {exc}") from None
        return VERSION

    # -- transactions ----------------------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection:
        """The writer connection, with every write batched so far sent (so a read sees them);
        a lost one is replaced first (or StoreUnavailable)."""
        self._check()
        if self._batch:
            self._send()
        return self._conn

    def _send(self, *, commit: bool = False) -> None:
        """Send the batched writes in one round trip (psycopg's pipeline mode), with BEGIN
        first if no transaction is open, and with ``commit`` the NOTIFYs and COMMIT too: a
        group commit of any number of step writes is one round trip. A fenced write that
        changed nothing (our lease was taken over) tells its holder, after."""
        with self.lock:
            conn, batch, self._batch = self._conn, self._batch, []
            fenced = []
            with conn.pipeline():
                if conn.info.transaction_status == pq.TransactionStatus.IDLE:
                    conn.execute("BEGIN")
                for sql, args, run_id in batch:
                    cur = conn.execute(sql, args)
                    if run_id is not None:
                        fenced.append((cur, run_id))
                if commit:
                    if self._notify:
                        conn.execute(f"NOTIFY {self.channel}")
                    for parent in self.notices:  # a child run finished: its parent may wait in another worker
                        conn.execute("SELECT pg_notify(%s, %s)", (self.done_channel, parent))
                    for run_id in self.replies:  # a server may wait for this run's reply
                        conn.execute("SELECT pg_notify(%s, %s)", (self.reply_channel, run_id))
                    conn.execute("COMMIT")
        for cur, run_id in fenced:
            if cur.rowcount == 0:
                log.error("run %s: its lease was taken over; this process writes nothing more for it", run_id)
                lost = self.on_fenced.get(run_id)
                if lost is not None:
                    lost()

    def commit(self) -> None:
        self._check()
        if self._torn:  # the connection was lost under this transaction: what is left of it goes too
            self._torn = False
            self.rollback()
            raise StoreUnavailable(f"{self.path}: the database connection was lost before the commit; "
                                   "nothing of it was kept")
        self._send(commit=True)
        self._dirty = self._notify = False
        self._written.clear()
        self.notices.clear()
        self.replies.clear()

    def rollback(self) -> None:
        self._batch.clear()
        if not broken(self._conn):
            self._conn.rollback()
        self._dirty = self._notify = False
        self.notices.clear()
        self.replies.clear()
        self._stop_rolled_back()

    def _stop_rolled_back(self) -> None:
        """The runs held here whose writes were in the transaction just rolled back (a commit
        refused: a full disk, a deadlock, a timeout; a failed claim beside them) stop, as after
        a lost connection: their later writes are refused, their lease goes, and whoever claims
        them next resumes from what was committed. Going on, they would record an outcome over
        steps that were never stored (a group commit nobody awaited fails silently)."""
        lost, self._written = sorted(r for r in self._written if r in self.fences), set()
        if lost:  # one line for them all
            log.warning("a transaction holding the writes of %d run(s) was rolled back; they stop here and resume "
                        "from what was committed where they are claimed next: %s", len(lost),
                        ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else ""))
        for run_id in lost:
            self.abandoned.add(run_id)
            self._pending_starts = {k: v for k, v in self._pending_starts.items() if k[0] != run_id}
            self._tell(self.on_fenced.get(run_id), True)

    def close(self) -> None:
        conn = self.__dict__.get("_conn")
        try:
            if conn is not None and not broken(conn):
                self.flush()
        finally:
            if conn is not None:
                conn.close()  # closed, not given back: the pool would open its replacement
            self._close_pool()

    def flush(self) -> None:
        try:
            if self._pending_starts:
                self._write_pending_starts()
                self._arm_starts_timer()
            if self.db.in_transaction or self._notify or self.notices or self.replies or self._torn:
                self.commit()
        except psycopg.Error as exc:
            if broken(self._conn):  # lost while committing: it may or may not have happened
                try:
                    self._reconnect()
                except StoreUnavailable:
                    pass
                self._torn = False  # this failure is the one reported
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StoreUnavailable(f"{self.path}: the database connection was lost during a commit "
                                       f"({first})") from None
            try:
                self.rollback()
            except psycopg.Error:
                pass
            raise StoreError(f"{self.path}: commit failed: {exc}") from None

    def begin(self) -> None:
        """Open the write transaction, if none is open. The connection autocommits otherwise, so
        a read never leaves a transaction open (holding locks a migration or a DROP waits for)."""
        conn = self.conn
        if conn.info.transaction_status == pq.TransactionStatus.IDLE:
            conn.execute("BEGIN")

    def _write(self, sql: str, args: tuple) -> int:
        self.begin()
        self._dirty = True
        try:
            return self.conn.execute(sql, args).rowcount
        except psycopg.OperationalError as exc:
            if not broken(self._conn):
                raise
            try:
                self._check()  # drops what died with it (the transaction fails at its commit too)
            except StoreUnavailable:
                pass
            raise StoreUnavailable(f"{self.path}: the database connection was lost: "
                                   f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from None

    def _fenced(self, run_id: str, sql: str, args: tuple) -> None:
        """A write for ``run_id``, batched until the next commit or read (``_send``). With a
        fence (a lease this process holds) it happens only while the lease row still carries
        our token, and holds the run's row (FOR SHARE, ``FENCE``) until the commit: checked
        only when sent, a write of a holder that stalled before its commit (SIGSTOP, a long
        synchronous stretch) past its expiry landed over the rows of whoever took the run over
        meanwhile. Takers skip a run whose row is held so (the worker's claim, engine.pglease.take)
        rather than wait for a stalled process. A fenced-off write tells the holder (``on_fenced``)."""
        try:  # lost just now: the runs it held stop before anything else is written
            self._check()
        except StoreUnavailable:
            pass
        if run_id in self.abandoned:  # its lease died with a lost connection: refused anyway
            return
        self._dirty = True
        token = self.fences.get(run_id)
        if token is None:
            self._batch.append((sql.replace("{fence}", "TRUE"), args, None))
            return
        self._written.add(run_id)
        at = sql[:sql.index("{fence}")].count("%s")  # the fence's two values go where it stands
        self._batch.append((sql.replace("{fence}", FENCE), (*args[:at], run_id, token, *args[at:]), run_id))

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, value: Any) -> str | None:
        text = super().encode(value)
        return text.replace("\x00", "\\u0000") if text and "\x00" in text else text  # text here holds no NUL

    def _keep_blob(self, digest: str, text: str, data: bytes) -> None:
        """In the ``blobs`` table, which every host reads. DO UPDATE, not DO NOTHING: the row stays
        locked by this transaction until the step that refers to it commits, so a prune deciding
        the blob is unused waits (retention)."""
        self._write("INSERT INTO blobs (digest, data) VALUES (%s, %s) ON CONFLICT (digest) "
                    "DO UPDATE SET digest = EXCLUDED.digest", (digest, text))

    def _blob_json(self, digest: str) -> bytes:
        data = self.blob_data(digest)
        if data is None:
            raise StoreError(f"{self.path}: blob {digest} is missing")
        return data

    def blob_file(self, digest: str) -> None:
        """No file: offloaded values live in the ``blobs`` table (``blob_data``)."""
        return None

    def blob_data(self, digest: str) -> bytes | None:
        """The JSON of an offloaded value, by its sha256 (anything else, or none: None)."""
        if not is_digest(digest):
            return None
        row = self.db.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()  # (any thread)
        return None if row is None else row[0].encode()

    # -- writes ------------------------------------------------------------------------------------
    # Why these are not Store's: a write for a run carries ``{fence}`` (``_fenced``: nothing is
    # written once our lease was taken over) and waits in the batch for the group commit; a run
    # queued or parked tells the workers (NOTIFY); a duplicate run must not abort the transaction.
    def create_run(self, run: dict, *, commit: bool = True) -> None:
        """Insert a run (Queued: workers are told at commit). A ``dedupe_key`` already taken
        raises IntegrityError without spoiling the open transaction (ON CONFLICT DO NOTHING)."""
        row = self._run_row(run)
        cols = ", ".join(row)
        count = self._write(f"INSERT INTO runs ({cols}) VALUES ({', '.join(['%s'] * len(row))}) "
                            f"ON CONFLICT DO NOTHING", tuple(row.values()))
        if count == 0:
            raise psycopg.errors.UniqueViolation(f"run {row.get('id')} or its dedupe key exists already")
        if row.get("status") == "Queued":
            self._notify = True
        if commit:
            self.flush()

    def run_finished(self, run_id: str, **fields: Any) -> None:
        """Record a run's outcome; a lease this process holds on it goes in the same statement
        (one round trip), and so in the same commit."""
        token = self.fences.get(run_id)
        if token is None:
            return super().run_finished(run_id, **fields)
        pending = self._pending_starts.pop((run_id, None), None)
        if pending is not None:
            fields.setdefault("started", pending[5])
            fields.setdefault("attempts", pending[4])
        for key in RUN_JSON:
            if key in fields:
                fields[key] = self.encode(fields[key])
        sets = ", ".join(f"{k} = %s" for k in fields)
        self._dirty = True  # steps still Running end Cancelled (Store.run_finished), fenced (no count: often none)
        self._batch.append(("UPDATE steps SET status = 'Cancelled', ended = %s, error = %s WHERE run_id = %s "
                            f"AND status = 'Running' AND {FENCE}", (fields.get("ended") or time.time(),
                                                                    self.encode(ENDED_IN_FLIGHT), run_id, run_id, token),
                            None))
        self._fenced(run_id, f"WITH u AS (UPDATE runs SET {sets} WHERE id = %s AND {{fence}} RETURNING id) "
                     f"DELETE FROM run_leases WHERE run_id = %s AND token = %s AND EXISTS (SELECT 1 FROM u)",
                     (*fields.values(), run_id, run_id, token))
        self.fences.pop(run_id, None)
        self.on_fenced.pop(run_id, None)

    def update_run(self, run_id: str, *, commit: bool = True, **fields: Any) -> None:
        if fields.get("response") is not None:
            self.replies.add(run_id)  # a server may wait for it (engine.replies)
        if "status" in fields:
            self._pending_starts.pop((run_id, None), None)
            if fields["status"] == "Queued":
                self._notify = True
        for key in RUN_JSON:
            if key in fields:
                fields[key] = self.encode(fields[key])
        sets = ", ".join(f"{k} = %s" for k in fields)
        self._fenced(run_id, f"UPDATE runs SET {sets} WHERE id = %s AND {{fence}}", (*fields.values(), run_id))
        if commit:
            self.flush()

    def _write_pending_starts(self, only: tuple[str, str] | None = None) -> None:
        for run_id, path, action, type_, attempts, started in self._due_starts(only):
            if path is None:
                self._fenced(run_id, "UPDATE runs SET status = 'Running', started = %s, attempts = %s "
                             "WHERE id = %s AND {fence}", (started, attempts, run_id))
                continue
            self._seq += 1
            self._fenced(run_id,
                         "INSERT INTO steps (run_id, path, action, type, status, attempts, started, seq) "
                         "SELECT %s, %s, %s, %s, 'Running', %s, %s, %s WHERE {fence} "
                         "ON CONFLICT (run_id, path) DO UPDATE SET status = 'Running', attempts = EXCLUDED.attempts, "
                         "started = EXCLUDED.started, ended = NULL, error = NULL, outputs = NULL",
                         (run_id, path, action, type_, attempts, started, self._seq))

    def step_finished(self, run_id: str, path: str, action: str, type_: str, status: str, *,
                      attempts: int, inputs: Any, outputs: Any, error: Any, started: float | None,
                      ended: float, commit: bool = True, interrupted: bool = False) -> None:
        enc_outputs = self.encode(outputs)
        self._pending_starts.pop((run_id, path), None)
        self._seq += 1
        self._fenced(run_id,
                     "INSERT INTO steps (run_id, path, action, type, status, attempts, inputs, outputs, error, "
                     "started, ended, seq, interrupted, handle, wake) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                     "%s, %s, %s, %s, NULL, NULL WHERE {fence} ON CONFLICT (run_id, path) DO UPDATE SET "
                     "action = EXCLUDED.action, type = EXCLUDED.type, status = EXCLUDED.status, "
                     "attempts = EXCLUDED.attempts, inputs = EXCLUDED.inputs, outputs = EXCLUDED.outputs, "
                     "error = EXCLUDED.error, started = EXCLUDED.started, ended = EXCLUDED.ended, seq = EXCLUDED.seq, "
                     "interrupted = EXCLUDED.interrupted, handle = NULL, wake = NULL",
                     (run_id, path, action, type_, str(status), attempts, self.encode(inputs), enc_outputs,
                      self.encode(error), started, ended, self._seq, 1 if interrupted else None))
        if commit:
            self.flush_soon()

    def step_mark(self, run_id: str, path: str, action: str, type_: str, *, attempts: int,
                  started: float | None, handle: Any, wake: float | None, commit: bool = True) -> None:
        self._pending_starts.pop((run_id, path), None)
        self._seq += 1
        self._fenced(run_id,
                     "INSERT INTO steps (run_id, path, action, type, status, attempts, started, seq, handle, wake) "
                     "SELECT %s, %s, %s, %s, 'Running', %s, %s, %s, %s, %s WHERE {fence} "
                     "ON CONFLICT (run_id, path) DO UPDATE SET status = 'Running', attempts = EXCLUDED.attempts, "
                     "started = EXCLUDED.started, ended = NULL, error = NULL, outputs = NULL, "
                     "handle = EXCLUDED.handle, wake = EXCLUDED.wake",
                     (run_id, path, action, type_, attempts, started, self._seq, self.encode(handle), wake))
        if commit:
            self.flush()

    def step_tracked(self, run_id: str, path: str, tracked: dict) -> None:
        self._fenced(run_id, "UPDATE steps SET tracked = %s WHERE run_id = %s AND path = %s AND {fence}",
                     (self.encode(tracked), run_id, path))

    def park_run(self, run_id: str, wake: float, status: str, *, children: list[str] = ()) -> None:
        """Park a run until ``wake``, or until one of ``children`` has ended (the worker's claim)."""
        self._fenced(run_id, "INSERT INTO parked_runs (run_id, wake, parked, children) "
                     "SELECT %s, %s, %s, %s::text[] WHERE {fence} ON CONFLICT (run_id) DO UPDATE SET "
                     "wake = EXCLUDED.wake, parked = EXCLUDED.parked, children = EXCLUDED.children",
                     (run_id, wake, time.time(), list(children) or None))
        self._notify = True
        self.update_run(run_id, status=status)

    # -- reads: Store's, through the Adapter; only what differs here ---------------------------------------
    def _can_match(self, *texts: str) -> bool:
        """PostgreSQL stores no NUL and refuses one as a parameter: a text holding one matches nothing."""
        return super()._can_match(*texts) and not any("\x00" in text for text in texts if isinstance(text, str))

    def ensure_table(self, name: str, ddl: str) -> None:
        if name in self._ensured:
            return
        try:
            self.flush()
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))  # concurrent CREATEs race
                self.conn.execute(translate(ddl).replace("%%", "%"))
            self.conn.commit()
        except psycopg.Error as exc:
            raise StoreError(f"{self.path}: cannot create table {name}: {exc}") from None
        self._ensured.add(name)

    # -- files and a small cache (what nodes keep beside runs; branch h14's Store API) ----------------
    FILES_DDL = "CREATE TABLE IF NOT EXISTS files (digest TEXT PRIMARY KEY, data BYTEA NOT NULL)"

    RUN_FILES_DDL = ("CREATE TABLE IF NOT EXISTS run_files (digest TEXT NOT NULL, run_id TEXT NOT NULL, "
                     "PRIMARY KEY (digest, run_id))")

    def put_file(self, data: bytes, run_id: str | None = None) -> str:
        """Keep ``data`` once, content-addressed, in the ``files`` table (every host reads it);
        returns its sha256. Over ``blob_cap`` the action fails. ``run_id``: the run that kept it
        (only its family may read it, ``get_file``)."""
        if len(data) > self.blob_cap:
            raise OutputTooLarge(len(data), self.blob_cap)
        digest = hashlib.sha256(data).hexdigest()
        self.ensure_table("files", self.FILES_DDL)
        self._write("INSERT INTO files (digest, data) VALUES (%s, %s) ON CONFLICT DO NOTHING", (digest, data))
        if run_id is not None:
            self.ensure_table("run_files", self.RUN_FILES_DDL)
            self._write("INSERT INTO run_files (digest, run_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (digest, run_id))
        return digest

    def get_file(self, digest: Any, run_id: str | None = None) -> bytes:
        """As ``Store.get_file`` (with ``run_id``, only a file a run of its family kept); the
        ``run_files`` table is made on first use here, not by a migration."""
        if run_id is not None:
            self.ensure_table("run_files", self.RUN_FILES_DDL)
        return super().get_file(digest, run_id)

    def _file_data(self, digest: str) -> bytes:
        """From the ``files`` table, not the blob folder: every host reads it."""
        from .errors import ActionError

        self.ensure_table("files", self.FILES_DDL)
        row = self.db.execute("SELECT data FROM files WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise ActionError(f"file {digest[:12]}… is not in {self.path} (pruned, or another state database)",
                              code="FileNotFound")
        return bytes(row[0])

    def cache_put(self, namespace: str, key: str, value: Any, ttl: float, now: float) -> None:
        """Keep ``value`` (JSON, redacted) for ``ttl`` seconds, with the next commit; expired rows go."""
        self.ensure_table("node_cache", CACHE_DDL)  # (ensure_table translates it: REAL is DOUBLE PRECISION)
        text = utf8_json(self.redact(json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))))
        self._batch.append(("DELETE FROM node_cache WHERE namespace = %s AND expires <= %s", (namespace, now), None))
        self._batch.append(("INSERT INTO node_cache (namespace, key, value, expires) VALUES (%s, %s, %s, %s) "
                            "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
                            "expires = EXCLUDED.expires", (namespace, key, text, now + ttl), None))
        self._dirty = True
        self.flush_soon()

    # -- attempts of retried actions (Store.attempt_finished & co.) -----------------------------------
    ATTEMPTS_DDL = ("CREATE TABLE IF NOT EXISTS step_attempts (run_id TEXT NOT NULL, path TEXT NOT NULL, "
                    "attempt INTEGER NOT NULL, started DOUBLE PRECISION, ended DOUBLE PRECISION, "
                    "status TEXT NOT NULL, error TEXT, PRIMARY KEY (run_id, path, attempt))")

    def attempt_finished(self, run_id: str, path: str, attempt: int, *, status: str, started: float | None,
                         ended: float | None, error: Any = None) -> None:
        self.ensure_table("step_attempts", self.ATTEMPTS_DDL)
        self._fenced(run_id, "INSERT INTO step_attempts (run_id, path, attempt, started, ended, status, error) "
                             "SELECT %s, %s, %s, %s, %s, %s, %s WHERE {fence} ON CONFLICT (run_id, path, attempt) "
                             "DO UPDATE SET started = EXCLUDED.started, ended = EXCLUDED.ended, "
                             "status = EXCLUDED.status, error = EXCLUDED.error",
                     (run_id, path, attempt, started, ended, str(status), self.encode(error)))
        self.flush_soon()

    def copy_attempts(self, from_run: str, to_run: str, path: str) -> None:
        self.ensure_table("step_attempts", self.ATTEMPTS_DDL)
        self._fenced(to_run, "INSERT INTO step_attempts (run_id, path, attempt, started, ended, status, error) "
                             "SELECT %s, path, attempt, started, ended, status, error FROM step_attempts "
                             "WHERE run_id = %s AND path = %s AND {fence} ON CONFLICT DO NOTHING",
                     (to_run, from_run, path))

    def last_attempt(self, run_id: str, path: str) -> int:
        self.ensure_table("step_attempts", self.ATTEMPTS_DDL)  # made on first use here, not by a migration
        return super().last_attempt(run_id, path)

    def attempts(self, run_id: str, path: str) -> list:
        self.ensure_table("step_attempts", self.ATTEMPTS_DDL)
        return super().attempts(run_id, path)

    # -- leases (engine.pglease) -----------------------------------------------------------------------
    def claim(self, run_id: str, *, ttl: float, token: str | None = None) -> Any:
        from .pglease import PgRunClaim

        return PgRunClaim(self, run_id, ttl=ttl, token=token)

    def leases(self, run_ids: list[str]) -> dict[str, tuple[int, str, float | None]]:
        from .pglease import leases

        return leases(self, run_ids)
