"""The engine's public API: what the CLI, the listener and tests call.

    engine = Engine(state=".flowrun/state.db")
    flow = engine.load("flows/hello.yaml")
    result = await engine.run(flow, input={"name": "Ada"})       # start + execute
    result = await engine.resume(run_id)                          # after a crash
    result = await engine.rerun(run_id, from_action="notify")     # new run, linked

``run_file(path, ...)`` is the same for synchronous callers.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import anyio

from . import connections as _connections
from . import encrypted
from . import standins as _standins
from . import telemetry
from .errors import LeaseLost, ParameterError, RunBusy, StoreError, StoreUnavailable
from .executor import Runtime
from .expressions import Evaluator
from .loader import load_file, load_text, tools
from .lru import LRU
from .model import Flow
from .parameters import coerce_params
from .planner import plan_rerun
from .provenance import recorded_commit
from .registry import Registry, default_registry
from .runlock import LEASE_TTL
from .runs import Run, Step
from .state import QUEUED, Status, is_terminal
from .storage import claim as claim_run, open_store, orphans
from .store import RecordedSteps
from .triggers import Accepted

__all__ = ["Engine", "Run", "Step", "run_file", "ParameterError", "DEFAULT_STATE"]
from .wakeups import WAITING, Clock

DEFAULT_STATE = ".flowrun/state.db"
CANCEL_TABLE = "cancel_requests"  # `flowrun cancel` of a run another process executes
CANCEL_DDL = f"CREATE TABLE IF NOT EXISTS {CANCEL_TABLE} (run_id TEXT PRIMARY KEY, requested REAL NOT NULL)"
log = logging.getLogger("flowrun.run")


class Engine:
    def __init__(self, state: str | Path = DEFAULT_STATE, *, connections: str | Path | None = None,
                 registry: Registry | None = None, concurrency: int = 64,
                 blob_threshold: int = 1_000_000, blob_cap: int = 100_000_000,
                 clock: Clock | None = None, park_after: float = 5.0, lease_ttl: float = LEASE_TTL):
        self.clock = clock or Clock()  # wake-up times of Wait and job polls
        self.parking = False  # True under flowrun serve (wakeups.run): waiting runs hold no task
        self.park_after = park_after  # park only waits at least this long (seconds)
        self.lease_ttl = lease_ttl  # a run's lease lasts this long without renewal (engine.runlock)
        self.stopping = False  # the process is shutting down: runs stop, remote jobs keep running
        self.boundary = _standins.DEFAULT  # what answers at the node boundary (engine.standins)
        self.registry = registry or default_registry()
        self.evaluator: Evaluator = tools(self.registry)[1]
        self.redactor = _connections.PROCESS_REDACTOR
        _connections.redact_all_logs()
        self.store = open_store(state, redact=self.redactor, blob_threshold=blob_threshold, blob_cap=blob_cap)
        self.connections_file = connections
        self._connections: dict[str, _connections.Connections] = {}
        self._found: dict[str, Path | None] = {}  # flow file -> the connections.yaml it uses
        self._queued: LRU[str, Run] = LRU(10_000)  # runs started here, not yet executed (another
        # process may execute some: the oldest are dropped and read back from the store if needed)
        self._claimed: LRU[str, Run] = LRU(1_000)  # runs a worker claimed and read in one go (engine.worker)
        self.limiter = anyio.CapacityLimiter(concurrency)
        self._node_log = logging.getLogger("flowrun.node")
        self._flow_cache: Any = None  # engine.flowcache.FlowCache, on first load
        self.delegate_children = False  # engine.worker: a Workflow action queues its child for any worker
        # engine.worker: every slot here holds a run that only waits (then a parent waiting for
        # children parks at once: its children may need the slot)
        self.starved: Callable[[], bool] = lambda: False
        self._live: dict[str, Runtime] = {}  # run id -> its Runtime, while it executes here
        self._children: dict[str, Any] = {}  # parent run id -> anyio.Event set when one of its children ends
        self._reply_watch: Any = None  # engine.replies.ReplyWatch, on first wait_for_reply (PostgreSQL)
        self._slot_waiters: dict[str, list] = {}  # slot key -> events of the runs here waiting for it, oldest first
        self._held: dict[str, str] = {}  # run id -> lease token taken by start(hold=True), for execute
        self._recorded: LRU[tuple, Flow] = LRU(256)  # recorded definitions, validated (workers run many)
        # run id -> credential headers a SAS flow was shown, held in memory only (engine.encrypted)
        self.held_headers: LRU[str, dict] = LRU(10_000)

    def close(self) -> None:
        """Close the connections' clients (flush what they hold), then the store."""
        for conns in self._connections.values():
            conns.close()
        if self._reply_watch is not None:
            self._reply_watch.close()
        self.store.close()

    # -- flows and connections --------------------------------------------------------------
    def connections_for(self, flow_file: str) -> _connections.Connections:
        path = self.connections_file
        if path is None:
            if flow_file not in self._found:
                self._found[flow_file] = _connections.find_file(flow_file)
            path = self._found[flow_file]
        key = str(path)
        if key not in self._connections:
            self._connections[key] = (_connections.Connections.load(path, self.registry) if path
                                      else _connections.Connections.empty(self.registry))
        return self._connections[key]

    def load(self, path: str | Path) -> Flow:
        """The validated flow of ``path``; a text validated before (by any process on this state
        file) is rebuilt from the state database's cache without being checked again."""
        if self._flow_cache is None:
            from .flowcache import FlowCache

            self._flow_cache = FlowCache(self.store)
        return load_file(path, registry=self.registry, connections=self.connections_for(str(path)),
                         cache=self._flow_cache)

    def load_recorded(self, run: Run) -> Flow:
        """The flow a run recorded (validated once per definition and file in this process)."""
        key = (run.flow_hash, run.file)
        flow = self._recorded.get(key) if run.flow_hash else None
        if flow is None:
            flow = self._load_recorded(run)
            if run.flow_hash:
                self._recorded[key] = flow
        return flow

    def _load_recorded(self, run: Run) -> Flow:
        return load_text(run.definition, run.file or "<recorded>", registry=self.registry,
                         connections=self.connections_for(run.file or "."))

    def node_logger(self, run_id: str, path: str) -> logging.LoggerAdapter:
        return _connections.RedactingAdapter(self._node_log, {"run_id": run_id, "action": path}, self.redactor)

    # -- runs ---------------------------------------------------------------------------------
    def start(self, flow: Flow, *, input: Any = None, params: dict | None = None,
              trigger: str | None = None, trigger_outputs: dict | None = None, run_id: str | None = None,
              parent_id: str | None = None, rerun_of: str | None = None, request: Any = None,
              dedupe_key: str | None = None, commit: bool = True, trace: dict | None = None,
              hold: bool = False) -> str:
        """Validate what the run needs (parameters, connections, secrets) and persist it as Queued.

        ``trace`` the W3C trace context the run came with (``engine.telemetry.carrier``): its spans'
        parent. With ``commit=False`` the row is written but not yet committed: ``submit`` awaits it.
        With ``hold`` this process takes the run's lease in the same commit (PostgreSQL), so no
        worker claims it before ``execute`` here does."""
        values = coerce_params(flow, params or {})
        self.connections_for(flow.file).resolve(flow.connections_used(), self.redactor)
        run_id = run_id or uuid.uuid4().hex
        outputs = trigger_outputs or {"body": input, "headers": {}, "queries": {}, "relativePathParameters": {}}
        row = {"id": run_id, "flow": flow.name, "file": flow.file, "flow_hash": flow.hash,
               "git_commit": recorded_commit(flow),
               "definition": flow.source, "trigger": trigger or next(iter(flow.triggers), "manual"),
               "payload": outputs, "params": values, "status": QUEUED, "created": time.time(),
               "parent_id": parent_id, "rerun_of": rerun_of, "request": request, "dedupe_key": dedupe_key,
               "trace": telemetry.carrier(trace, redact=self.redactor) if trace else None}
        conc = flow.concurrency
        if conc is not None:
            from . import concurrency

            try:
                key = self.redactor(concurrency.slot_key(flow, self.evaluator, row["trigger"], outputs, values))
            except Exception as exc:  # noqa: BLE001  the key's template failed on this trigger
                raise ParameterError(f"concurrency.key: {getattr(exc, 'message', exc)}") from None
            concurrency.check_room(self.store, key, conc)
        self.store.create_run(row, commit=commit and conc is None)
        if conc is not None:
            concurrency.enter(self.store, run_id, key, conc)
            if commit:
                self.store.flush()
        if hold and not commit and self.store.backend == "postgresql":
            import secrets

            from .pglease import HOST, take

            token = secrets.token_hex(16)
            take(self.store, run_id, token, f"{HOST}:{os.getpid()}", self.lease_ttl)
            self._held[run_id] = token
        self._queued[run_id] = Run(**row, _load_steps=self.store.steps)
        return run_id

    async def submit(self, flow: Flow, **kw: Any) -> str:
        """``start`` for servers: returns once the run is durably committed, sharing the commit
        with every other run submitted in the same event-loop turn."""
        run_id = self.start(flow, commit=False, **kw)
        await self.store.durable()
        return run_id

    async def execute(self, run_id: str, flow: Flow | None = None, *, lease_token: str | None = None,
                      **kw: Any) -> Run:
        """Execute a run as its one live owner (engine.runlock: a lease, renewed while it runs):
        a run another live process or engine holds raises RunBusy, and a resume that finds the
        run finished meanwhile, StoreError. Another host's lease that this host's clock cannot
        judge (clock skew, a malformed row) is watched for a ttl first (``RunClaim.settle``).
        "database is locked" never escapes: StoreError. A run dropped because the database
        connection that held its lease was lost raises LeaseLost (it stays Running, for whoever
        claims it next), never records a failure."""
        claim = None
        try:
            claim = claim_run(self.store, run_id, ttl=self.lease_ttl,
                              token=lease_token or self._held.pop(run_id, None))
            await claim.settle()  # another host's lease this clock cannot judge: watch its renewals
            with claim:
                if kw.get("reuse") is not None and not kw.get("copy_reused"):  # a resume: still unfinished?
                    self.store.flush()
                    status = self.store.get_run(run_id).status
                    if is_terminal(status):
                        raise StoreError(f"run {run_id} already finished ({status}); use rerun to run it again")
                if flow is None:  # read once here (or with its claim), for the limit and for _execute
                    run = self._recorded_run(run_id, self._claimed.pop(run_id, None))
                    flow = self.load_recorded(run)
                    self._queued[run_id] = run
                if flow.concurrency is not None:
                    limited = await self._slot(run_id, flow, claim)
                    if limited is not None:
                        return limited
                with anyio.CancelScope() as scope:
                    claim.keep(scope.cancel)
                    try:
                        run = await self._execute(run_id, flow, claim=claim, **kw)
                    finally:
                        claim.stop()
                    if not getattr(claim, "dropped", False):
                        return run
                if getattr(claim, "dropped", False):
                    raise self._lease_lost(run_id)
                raise RunBusy(f"run {run_id}: another process took its lease over while this one "
                              "was stalled; this one stopped executing it")
        except LeaseLost:
            raise
        except (StoreError, self.store.Error) as exc:
            if getattr(claim, "dropped", False):
                raise self._lease_lost(run_id) from None
            if isinstance(exc, StoreError):
                raise
            kind = StoreUnavailable if self.store.unavailable(exc) else StoreError
            raise kind(f"{self.store.path}: {exc}") from None

    @staticmethod
    def _lease_lost(run_id: str) -> LeaseLost:
        return LeaseLost(f"run {run_id}: the database connection holding its lease was lost, or a transaction "
                         "holding its writes was rolled back; this process stopped executing it, and it resumes "
                         "from its recorded steps where it is claimed next")

    CHILD_POLL = 5.0  # seconds between looks at a child another worker runs, when no NOTIFY came

    async def wait_for_child(self, parent_id: str, child_id: str) -> Run:
        """The child run once it finished, wherever it ran (engine.worker: woken by its NOTIFY)."""
        while True:
            event = self._children.setdefault(parent_id, anyio.Event())  # before the read: no lost wake-up
            run = self.store.get_run(child_id)
            self.store.flush()
            if is_terminal(run.status):
                return self._mark_orphans([run])[0]
            with anyio.move_on_after(self.CHILD_POLL):
                await event.wait()

    REPLY_POLL = 5.0  # seconds between looks at a run another process executes, when no NOTIFY came

    async def wait_for_reply(self, run_id: str, timeout: float) -> Run:
        """The run once its Response is recorded or it ended, by whichever process executes it
        (woken by ``NOTIFY flowrun_reply``: engine.replies), or as it stands after ``timeout``
        seconds. For a server that leaves runs to workers (PostgreSQL)."""
        watch = self._reply_watch
        if watch is None and self.store.backend == "postgresql":
            from .replies import ReplyWatch

            watch = self._reply_watch = ReplyWatch(self.store.url, self.store.reply_channel)
        try:
            with anyio.move_on_after(timeout):
                while True:
                    event = await watch.expect(run_id) if watch is not None else None  # before the read
                    try:
                        run = self.store.get_run(run_id)
                        self.store.flush()
                        if run.response is not None or is_terminal(run.status):
                            return run
                        with anyio.move_on_after(self.REPLY_POLL):
                            await (event.wait() if event is not None else anyio.sleep_forever())
                    finally:
                        if event is not None:
                            watch.forget(run_id, event)
            return self.store.get_run(run_id)
        except self.store.Error as exc:
            raise StoreError(f"{self.store.path}: {exc}") from None

    def child_finished(self, parent_id: str) -> bool:
        """A child of ``parent_id`` finished (here, or in another worker: its NOTIFY). False
        when the parent waits in no task here (it is parked, or in another process)."""
        event = self._children.pop(parent_id, None)
        if event is not None:
            event.set()
        return event is not None

    SLOT_POLL = 5.0  # seconds between looks for a slot freed by another process (queue, no workers)

    async def _slot(self, run_id: str, flow: Flow | None, claim: Any) -> Run | None:
        """Take the run's concurrency slot (engine.concurrency). None: it has one (or needs
        none), execute it. Else the run as it stays (Queued, for a worker to take again when a
        slot frees) or ends (onLimit cancelNew: Cancelled; fail: Failed)."""
        from . import concurrency

        got = concurrency.acquire(self.store, run_id)
        if got is None or got:
            return None
        run = self.store.get_run(run_id)
        conc = (flow or self.load_recorded(run)).concurrency
        policy = conc.on_limit if conc is not None else "queue"
        if policy == "queue" and self.store.backend == "postgresql":
            return run  # stays Queued; the worker loop takes it again when a slot frees
        if policy == "queue":  # one machine, no workers: wait here, holding the run's lease
            key = concurrency.key_of(self.store, run_id)
            with anyio.CancelScope() as scope:
                claim.keep(scope.cancel)
                try:
                    while not concurrency.acquire(self.store, run_id):
                        # first come, first served: a slot freed here wakes the oldest waiter of its key;
                        # one freed by another process is seen by the slow poll
                        freed = anyio.Event()
                        self._slot_waiters.setdefault(key, []).append(freed)
                        try:
                            with anyio.move_on_after(self.SLOT_POLL):
                                await freed.wait()
                        finally:
                            waiters = self._slot_waiters.get(key, [])
                            if freed in waiters:
                                waiters.remove(freed)
                            if not waiters:
                                self._slot_waiters.pop(key, None)
                finally:
                    claim.stop()
            if scope.cancelled_caught:
                raise RunBusy(f"run {run_id}: another process took its lease over while it waited for a slot")
            return None
        status = Status.CANCELLED if policy == "cancelNew" else Status.FAILED
        error = {"code": "ConcurrencyLimit", "message": f"the flow's concurrency limit ({conc.limit}) was reached"}
        concurrency.release(self.store, run_id)
        self.store.run_finished(run_id, status=status, error=error, ended=time.time())
        self._announce_end(run_id, run.parent_id)
        await self.store.durable()
        return self.store.get_run(run_id)

    def _slot_released(self, run_id: str) -> None:
        from . import concurrency

        key = concurrency.release(self.store, run_id)
        waiters = self._slot_waiters.get(key) if key is not None else None
        if waiters:
            waiters.pop(0).set()

    def _recorded_run(self, run_id: str, run: Run | None = None) -> Run:
        """A run as recorded (``run``: as read with its claim, under the lease), for executing it
        here: the credential headers a SAS flow was shown are opened (or marked lost:
        engine.encrypted), never read back as their mask."""
        if run is None:
            run = self.store.get_run(run_id)
        run.payload = encrypted.open_outputs(run.payload, run.request, run.flow, self.redactor,
                                             self.held_headers.get(run_id))
        return run

    async def _execute(self, run_id: str, flow: Flow | None = None, *, reuse: dict | None = None,
                       claim: Any = None, copy_reused: bool = False, on_response: Callable[[dict], None] | None = None,
                       on_event: Callable[[str, str, str], None] | None = None) -> Run:
        run = self._queued.pop(run_id, None) if flow is not None else None
        if run is None:  # started elsewhere, or resumed: read what the run recorded
            run = self._recorded_run(run_id)
            flow = flow or self.load_recorded(run)
        conns = self.connections_for(flow.file).resolve(flow.connections_used(), self.redactor)
        if reuse:
            self.store.continue_numbering(run_id)
        run.started, run.attempts = run.started or time.time(), (run.attempts or 0) + 1
        self.store.run_started(run_id, run.started, run.attempts)
        runtime = Runtime(engine=self, flow=flow, run_id=run_id, trigger={"name": run.trigger,
                          "outputs": run.payload or {}}, params=run.params or {}, connections=conns,
                          reuse=reuse, copy_reused=copy_reused, on_response=on_response, on_event=on_event,
                          claim=claim)
        if runtime.tracing is None:
            return await self._outcome(run, runtime)
        with runtime.tracing.run(flow=flow.name, run_id=run_id, trigger=run.trigger, execution=run.attempts,
                                 parent=telemetry.carrier(run.trace) if run.trace else None,
                                 redact=self.redactor) as (span, own):
            if own is not None:  # a resume of this run (another process, later) joins this trace
                run.trace = own
                self.store.update_run(run_id, trace=own, commit=False)
            run = await self._outcome(run, runtime)
            runtime.tracing.run_ended(span, run.status, run.error, self.redactor)
            return run

    def only_waits(self, run_id: str) -> bool:
        """The run executes here and every action it has in flight waits (for child runs, or
        a Wait): it holds its slot doing nothing (engine.worker: ``starved``)."""
        runtime = self._live.get(run_id)
        return runtime is not None and runtime.only_waits()

    async def _outcome(self, run: Run, runtime: Runtime) -> Run:
        run_id = run.id
        self._live[run_id] = runtime
        try:
            status, outputs, error = await self._cancellable(runtime)
        except BaseException:
            with anyio.CancelScope(shield=True):
                self.store.execution_ended(run_id)
                self.store.forget_run_start(run_id)
                try:
                    self.store.flush()  # a stopped process keeps what finished; resume continues it
                except StoreUnavailable:  # the connection is gone (the store said so once): the run's
                    pass  # lease went with it, and whoever claims it next resumes what was committed
            raise
        finally:
            self._live.pop(run_id, None)
        self._children.pop(run_id, None)  # no task of this run waits for a child here any more
        self.store.execution_ended(run_id)  # before the lease goes (parked, or with the outcome)
        if runtime.parked is not None:  # every action in flight was waiting: the run holds no task
            self.park(run_id, runtime.parked, children=runtime.parked_children)
            run.status, run.response = WAITING, runtime.response
            return run
        run.status, run.outputs, run.error, run.ended = Status.of(status), outputs, error, time.time()
        run.response = runtime.response
        if runtime.flow.concurrency is not None:
            self._slot_released(run_id)  # in the outcome's commit, before it ends the lease that fences it
        self.store.run_finished(run_id, status=status, outputs=outputs, error=error, ended=run.ended)
        self._announce_end(run_id, run.parent_id, replies=runtime.flow.replies)
        await self.store.durable()  # the outcome is committed before anyone is told
        if run.parent_id:
            self.child_finished(run.parent_id)
        return run

    def _announce_end(self, run_id: str, parent_id: str | None, *, replies: bool = True) -> None:
        """With the next commit (PostgreSQL): a parent waiting for this run in another worker,
        or parked on it, is told (``flowrun_done``); so is a server waiting for the run's
        reply (``flowrun_reply``: engine.replies), when its flow has one to send."""
        if self.store.backend != "postgresql":
            return
        if parent_id:
            self.store.notices.add(parent_id)
        if replies:
            self.store.replies.add(run_id)

    CANCEL_POLL = 1.0  # seconds between checks for a `flowrun cancel` from another process

    async def _cancellable(self, runtime: Runtime) -> tuple[str, Any, Any]:
        """``runtime.execute()``, stopped as by a Terminate when ``cancel`` is asked for the run
        (checked every CANCEL_POLL seconds by a timer on the loop: no task, no extra loop turn)."""
        import asyncio

        self.store.ensure_table(CANCEL_TABLE, CANCEL_DDL)
        loop = asyncio.get_running_loop()
        timer: list[asyncio.TimerHandle] = []

        def check() -> None:
            try:
                asked = self.store.db.execute(f"SELECT 1 FROM {CANCEL_TABLE} WHERE run_id = ?",
                                              (runtime.run_id,)).fetchone()
            except (self.store.Error, StoreError):  # StoreUnavailable: the connection is being replaced
                asked = None
            if asked and runtime.terminated is None and runtime._root_scope is not None:
                runtime.request_terminate(Status.CANCELLED, {"code": "Cancelled",
                                                             "message": "cancelled by flowrun cancel"})
                runtime._root_scope.cancel()
                self.store.db.execute(f"DELETE FROM {CANCEL_TABLE} WHERE run_id = ?", (runtime.run_id,))
                return
            timer[:] = [loop.call_later(self.CANCEL_POLL, check)]

        timer.append(loop.call_later(self.CANCEL_POLL, check))
        try:
            return await runtime.execute()
        finally:
            timer[0].cancel()

    def cancel(self, run_id: str) -> str:
        """Cancel a run: at once when no process executes it ('cancelled'), else ask the process
        that does, which stops it within CANCEL_POLL seconds ('requested')."""
        from .errors import RunBusy

        run = self.store.get_run(run_id)
        if is_terminal(run.status):
            raise StoreError(f"run {run.id} already finished ({run.status})")
        try:
            with claim_run(self.store, run.id, ttl=self.lease_ttl):
                now = time.time()
                db = self.store.db
                self.store.flush()
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE steps SET status = 'Cancelled', ended = ?, error = ? WHERE run_id = ? "
                           "AND status = 'Running'", (now, self.store.encode(
                               {"code": "Cancelled", "message": "cancelled by flowrun cancel"}), run.id))
                db.execute("DELETE FROM parked_runs WHERE run_id = ?", (run.id,))
                db.execute("UPDATE runs SET status = 'Cancelled', ended = ?, error = ? WHERE id = ?",
                           (now, self.store.encode({"code": "Cancelled", "message": "cancelled by flowrun cancel"}),
                            run.id))
                self._slot_released(run.id)
                self._announce_end(run.id, run.parent_id)
                db.execute("COMMIT")
                return "cancelled"
        except RunBusy:
            self.store.ensure_table(CANCEL_TABLE, CANCEL_DDL)
            self.store.db.execute(f"INSERT OR REPLACE INTO {CANCEL_TABLE} (run_id, requested) VALUES (?, ?)",
                                  (run.id, time.time()))
            self.store.flush()
            return "requested"

    async def run(self, flow: Flow | str | Path, **kw: Any) -> Run:
        if not isinstance(flow, Flow):
            flow = self.load(flow)
        on_event = kw.pop("on_event", None)
        on_response = kw.pop("on_response", None)
        run_id = self.start(flow, commit=False, hold=True, **kw)  # committed with its lease: no worker takes it meanwhile
        return await self.execute(run_id, flow, on_event=on_event, on_response=on_response)

    async def resume(self, run_id: str, **kw: Any) -> Run:
        """Continue a run whose process died: finished actions are reused, in-flight ones rerun."""
        run = self.store.get_run(run_id)
        if is_terminal(run.status):
            raise StoreError(f"run {run.id} already finished ({run.status}); use rerun to run it again")
        return await self.execute(run.id, reuse=RecordedSteps(self.store, run.id), **kw)

    # -- parked runs (flowrun serve) -----------------------------------------------------------
    def park(self, run_id: str, wake: float, *, children: list[str] = ()) -> None:
        """Record a run as Waiting until ``wake``; ``due_runs`` hands it back then. A run that
        waits for ``children`` (under workers) is due as soon as one of them has ended: a
        worker's claim reads their status (engine.worker), so a child that ends while its
        parent parks still wakes it."""
        self.store.forget_run_start(run_id)
        self.store.park_run(run_id, wake, WAITING, children=list(children))
        log.info("run parked until %.3f", wake, extra={"event": "run_parked", "run_id": run_id,
                                                        "count": len(children)})

    def due_runs(self, now: float | None = None) -> list[str]:
        """Parked runs whose wake-up time has come (resume each with ``resume``)."""
        return self.store.due_runs(self.clock.now() if now is None else now, WAITING)

    def rerun_plan(self, run_id: str, from_action: str,
                   definition: str = "recorded") -> tuple[Flow, Run, RecordedSteps, list[str]]:
        """(flow, old run, the steps it may reuse, names of the actions that will run again)."""
        run = self.store.get_run(run_id)
        flow = self.load_recorded(run) if definition == "recorded" else self.load(run.file)
        one = re.fullmatch(r"(.+)\[(\d+)\]", from_action.strip())
        if one is None:
            again = plan_rerun(flow, from_action)
            return flow, run, RecordedSteps(self.store, run.id, skip=frozenset(again), finished_only=True), again
        loop, index = one.group(1), int(one.group(2))
        again = plan_rerun(flow, loop)
        if not flow.actions[loop].node.loops:
            raise StoreError(f"'{loop}' is a {flow.actions[loop].type}, not a loop: "
                             f"--from '{loop}[N]' re-runs one iteration of a Foreach or Until")
        db = self.store.db
        ran = "FROM steps WHERE run_id = ? AND action = ? AND type = 'Iteration'"
        if db.execute(f"SELECT 1 {ran} AND path LIKE ? LIMIT 1", (run.id, loop, f"%[{index}]")).fetchone() is None:
            count = db.execute(f"SELECT COUNT(*) {ran}", (run.id, loop)).fetchone()[0]
            raise StoreError(f"'{loop}' has no iteration {index} in run {run.id}: it recorded {count} "
                             f"iteration{'' if count == 1 else 's'} (numbered from 0)")  # else: nothing re-run
        return flow, run, _OneIteration(self.store, run.id, skip=frozenset(again), finished_only=True,
                                        loop=loop, index=index), again

    def start_rerun(self, run_id: str, from_action: str, *, definition: str = "recorded",
                    hold: bool = False) -> tuple[Flow, str, RecordedSteps]:
        """(flow, new run id, what it reuses): the rerun is committed as Queued; execute it with
        ``execute(new_id, flow, reuse=reuse, copy_reused=True)``."""
        flow, run, reuse, _ = self.rerun_plan(run_id, from_action, definition)
        new_id = self.start(flow, params=run.params, trigger=run.trigger, trigger_outputs=run.payload,
                            rerun_of=run.id, request=run.request, trace=run.trace,  # in the first run's trace
                            commit=not hold, hold=hold)
        return flow, new_id, reuse

    async def rerun(self, run_id: str, from_action: str, *, definition: str = "recorded", **kw: Any) -> Run:
        flow, new_id, reuse = self.start_rerun(run_id, from_action, definition=definition, hold=True)
        return await self.execute(new_id, flow, reuse=reuse, copy_reused=True, **kw)

    # -- reading runs ------------------------------------------------------------------------
    def result(self, run_id: str) -> Run:
        """A run as recorded (a unique prefix of its id is enough)."""
        return self._mark_orphans([self.store.get_run(run_id)])[0]

    get_run = result

    def find_run(self, flow: str, dedupe_key: str) -> Run | None:
        """The run of ``flow`` started with ``dedupe_key``, if any."""
        return self.store.find_run(flow, dedupe_key)

    def list_runs(self, *, flow: str | None = None, status: str | None = None, limit: int = 50) -> list[Run]:
        """Recent runs, newest first; ``status`` in any letter case."""
        return self._mark_orphans(self.store.list_runs(flow=flow, status=Status.of(status) if status else None,
                                                       limit=limit))

    def _mark_orphans(self, runs: list[Run]) -> list[Run]:
        """Flag the Running runs that no live process holds (``Run.orphaned``): their process died."""
        running = [r.id for r in runs if r.status == Status.RUNNING]
        dead = orphans(self.store, running)
        queued = [r.id for r in runs if r.status == Status.QUEUED]
        if queued:
            from .concurrency import reasons

            why = reasons(self.store, queued)
        for r in runs:
            r.orphaned = r.id in dead
            if r.status == Status.QUEUED:
                r.waiting = why.get(r.id) or ("waiting for a worker" if self.store.backend == "postgresql" else None)
        return runs

    def steps(self, run_id: str) -> list[Step]:
        return self.store.steps(run_id)

    def search_runs(self, filter: Any, *, offset: int = 0, limit: int = 50) -> list[Run]:
        """One page of the runs an ``engine.history.RunFilter`` selects, newest first."""
        from . import history

        return self._mark_orphans(history.search(self.store, filter, offset=offset, limit=limit))

    def fail_run(self, run_id: str, error: dict) -> None:
        """Record that a run could not execute at all (its error says why), as its lease holder:
        the caller let go of it already (execute raised), so another process may have claimed
        it meanwhile (RunBusy: theirs to finish), or finished it (its outcome stays). Its steps
        still Running end Failed with it: a Failed run has none in flight."""
        from .errors import RunBusy

        try:
            with claim_run(self.store, run_id, ttl=self.lease_ttl):
                self.store.flush()
                run = self.store.get_run(run_id)
                if is_terminal(run.status):
                    return
                self._slot_released(run_id)
                now = time.time()  # (its steps in flight end with it, as a cancel's do)
                self.store.db.execute("UPDATE steps SET status = ?, ended = ?, error = ? WHERE run_id = ? "
                                      "AND status = 'Running'", (Status.FAILED, now, self.store.encode(error), run_id))
                self.store.run_finished(run_id, status=Status.FAILED, ended=now, error=error)
                self._announce_end(run_id, run.parent_id)
                self.store.flush()
        except RunBusy as exc:
            log.warning("run %s not recorded Failed: %s", run_id, exc)

    def unfinished_runs(self) -> list[str]:
        """Ids of the runs that are Queued or Running (oldest first)."""
        return self.store.unfinished_runs()


    # -- for servers: triggers, checkpoints, run records (the listener uses only these) --------
    async def submit_once(self, flow: Flow, *, dedupe_key: str | None, **kw: Any) -> Accepted:
        """``submit``, unless a run with ``dedupe_key`` exists (also one committed meanwhile by
        another process): then that run, ``duplicate=True``, and nothing new is started."""
        got = self._start_once(flow, dedupe_key, kw)
        if not got.duplicate:
            await self.store.durable()
        return got

    async def accept(self, flow: Flow, trigger: str, payload: dict, dedupe_key: str | None = None, *,
                     checkpoint: dict[str, Any] | None = None, request: dict | None = None,
                     trace: dict | None = None, hold: bool = False) -> Accepted:
        """A pull trigger's message becomes a run: committed (with the trigger's ``checkpoint``
        values, in the same transaction) before this returns. A ``dedupe_key`` seen before
        gives the first run back and starts nothing; the checkpoint still advances. When the
        run cannot be started, nothing is written, the checkpoint included."""
        stored = {"via": "trigger", "trigger": trigger, **(request or {})}
        encoded = [self.checkpoints.encode(k, v) for k, v in (checkpoint or {}).items()]  # before any write
        db = self.store.db
        if not db.in_transaction:
            db.execute("BEGIN")  # so RELEASE below does not commit: durable() does, for the group
        db.execute("SAVEPOINT flowrun_accept")  # the run and its checkpoint: both, or neither
        try:
            got = self._start_once(flow, dedupe_key, {"trigger": trigger, "trigger_outputs": payload,
                                                      "request": stored, "trace": trace, "hold": hold})
            for key, text in encoded:
                self.checkpoints.put_encoded(flow.name, trigger, key, text)
        except BaseException as exc:
            db.execute("ROLLBACK TO flowrun_accept")
            db.execute("RELEASE flowrun_accept")
            self.store.rolled_back()
            if isinstance(exc, self.store.Error):
                raise StoreError(f"{self.store.path}: the checkpoint could not be recorded: {exc}") from None
            raise
        db.execute("RELEASE flowrun_accept")
        if checkpoint or not got.duplicate:
            await self.store.durable()
        return got

    def _start_once(self, flow: Flow, dedupe_key: str | None, kw: dict) -> Accepted:
        if dedupe_key is not None:
            first = self.store.find_run(flow.name, dedupe_key)
            if first is not None:
                return Accepted(first.id, duplicate=True)
        try:
            return Accepted(self.start(flow, commit=False, dedupe_key=dedupe_key, **kw))
        except self.store.IntegrityError:  # the same key committed by another process meanwhile
            first = self.store.find_run(flow.name, dedupe_key) if dedupe_key else None
            if first is None:
                raise StoreError(f"{self.store.path}: the run could not be recorded") from None
            return Accepted(first.id, duplicate=True)
        except self.store.Error as exc:
            raise StoreError(f"{self.store.path}: the run could not be recorded: {exc}") from None

    @property
    def checkpoints(self) -> Any:
        if getattr(self, "_checkpoints", None) is None:
            from .checkpoints import Checkpoints

            self._checkpoints = Checkpoints(self.store)
        return self._checkpoints

    def checkpoint(self, flow: str, trigger: str, key: str = "") -> Any:
        """A trigger's saved checkpoint for ``key``, or None."""
        return self.checkpoints.get(flow, trigger, key)

    async def save_checkpoint(self, flow: str, trigger: str, key: str, value: Any) -> None:
        """Save a checkpoint on its own; returns once it is committed."""
        self.checkpoints.put(flow, trigger, key, value)
        await self.store.durable()

    def run_record(self, run_id: str) -> Run | None:
        """The run with exactly this id (no prefix), or None."""
        try:
            run = self.store.get_run(run_id)
        except StoreError:
            return None
        return run if run.id == run_id else None

    def server_key(self, name: str) -> bytes:
        """A random key kept in the state database under ``name`` (made on first use)."""
        from .keys import server_key

        return server_key(self.store, name)

    def store_problem(self) -> str | None:
        """Why the state database cannot be used now, or None when it can (readiness)."""
        try:
            self.store.db.execute("SELECT 1").fetchone()
        except (self.store.Error, StoreError) as exc:  # StoreUnavailable: PostgreSQL cannot be reached now
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None

    def flush(self) -> None:
        """Commit everything written so far."""
        self.store.flush()


class _OneIteration(RecordedSteps):
    """A rerun of one iteration (``--from 'loop[6]'``): the other iterations of the loop, and
    everything inside them, are reused; the loop itself, that iteration and what is
    downstream of the loop run again."""

    def __init__(self, *args: Any, loop: str, index: int, **kw: Any):
        super().__init__(*args, **kw)
        self._iteration = re.compile(rf"(?:^|/){re.escape(loop)}\[(\d+)\](?:/|$)")
        self.index = index

    def _keep(self, step: Step | None) -> bool:
        if step is not None and step.action in self.skip:
            m = self._iteration.search(step.path)
            if m is None or int(m.group(1)) == self.index:
                return False
            return step.status.is_terminal and step.status != "Cancelled"
        return super()._keep(step)


def run_file(path: str | Path, *, input: Any = None, params: dict | None = None,
             state: str | Path = DEFAULT_STATE, connections: str | Path | None = None,
             **engine_kw: Any) -> Run:
    """Load, run and return the result of a flow file (synchronous convenience)."""
    engine = Engine(state, connections=connections, **engine_kw)
    try:
        result = anyio.run(lambda: engine.run(path, input=input, params=params or {}))
        result._load_steps = functools.partial(_read_steps, state)  # on first use, from the file
        return result
    finally:
        engine.close()


def _read_steps(state: str | Path, run_id: str) -> list[Step]:
    store = open_store(state)
    try:
        return store.steps(run_id)
    finally:
        store.close()
