"""The engine's public API: what the CLI, the listener and tests call.

    engine = Engine(state=".flowrun/state.db")
    flow = engine.load("flows/hello.yaml")
    result = await engine.run(flow, input={"name": "Ada"})       # start + execute
    result = await engine.resume(run_id)                          # after a crash
    result = await engine.rerun(run_id, from_action="notify")     # new run, linked

``run_file(path, ...)`` is the same for synchronous callers.
"""
from __future__ import annotations

import logging
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import anyio
import networkx as nx

from . import connections as _connections
from .errors import FlowrunError, StoreError
from .executor import Runtime
from .expressions import Evaluator
from .loader import load_file, load_text, tools
from .model import Action, Flow
from .registry import Registry, default_registry
from .state import CANCELLED, QUEUED, is_terminal
from .store import Store
from .wakeups import WAITING, Clock

DEFAULT_STATE = ".flowrun/state.db"
log = logging.getLogger("flowrun.run")


@dataclass
class Step:
    path: str
    action: str
    type: str
    status: str
    attempts: int
    inputs: Any
    outputs: Any
    error: Any
    started: float | None
    ended: float | None

    @property
    def duration(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started


class RunResult:
    """A run's outcome. ``steps`` and ``record`` (the stored run row) are read from the store
    on first use, so callers that only need the status pay nothing for them."""

    def __init__(self, run_id: str, flow: str, status: str, outputs: Any = None, error: Any = None,
                 response: Any = None, *, store: Any = None, record: dict | None = None):
        self.run_id, self.flow, self.status = run_id, flow, status
        self.outputs, self.error, self.response = outputs, error, response
        self._store, self._record, self._steps = store, record, None

    @property
    def steps(self) -> dict[str, Step]:
        if self._steps is None:
            self._steps = {s["path"]: Step(s["path"], s["action"], s["type"], s["status"], s["attempts"],
                                           s["inputs"], s["outputs"], s["error"], s["started"], s["ended"])
                           for s in self._store.steps(self.run_id)}
        return self._steps

    @property
    def record(self) -> dict:
        if self._record is None:
            self._record = self._store.get_run(self.run_id)
        return self._record

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    def __repr__(self) -> str:  # short: asyncio reprs a finished main task (and its result) on exit
        return f"RunResult({self.run_id!r}, flow={self.flow!r}, status={self.status!r})"


class ParameterError(FlowrunError):
    pass


def coerce_params(flow: Flow, given: dict[str, Any]) -> dict[str, Any]:
    """Declared parameters with defaults applied and ``--param k=v`` strings converted."""
    out, problems = {}, []
    for name in given:
        if name not in flow.parameters:
            problems.append(f"unknown parameter '{name}'" + (f"; declared: {', '.join(flow.parameters)}"
                                                             if flow.parameters else ""))
    for name, p in flow.parameters.items():
        if name in given:
            value = given[name]
            try:
                value = _convert(value, p.type)
            except (ValueError, TypeError) as exc:
                problems.append(f"parameter '{name}': {exc}")
                continue
            if p.allowed and value not in p.allowed:
                problems.append(f"parameter '{name}': {value!r} is not one of {p.allowed}")
            out[name] = value
        elif p.has_default:
            out[name] = p.default
        else:
            problems.append(f"parameter '{name}' is required (no defaultValue)")
    if problems:
        raise ParameterError("; ".join(problems))
    return out


def _convert(value: Any, type_: str) -> Any:
    import json

    t = type_.lower()
    if not isinstance(value, str):
        return value
    if t in ("int", "integer"):
        return int(value)
    if t in ("float", "number"):
        return float(value)
    if t in ("bool", "boolean"):
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if t in ("array", "object", "secureobject"):
        parsed = json.loads(value)
        if not isinstance(parsed, list if t == "array" else dict):
            raise ValueError(f"expected a JSON {t}")
        return parsed
    return value


_git_by_flow: dict[tuple[str, str], str | None] = {}


def recorded_commit(flow: Flow) -> str | None:
    """The git commit of a flow file, looked up once per file content (runs start often)."""
    key = (flow.file, flow.hash)
    if key not in _git_by_flow:
        _git_by_flow[key] = git_commit(flow.file) if Path(flow.file).exists() else None
    return _git_by_flow[key]


def git_commit(file: str) -> str | None:
    folder = str(Path(file).resolve().parent)
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class Engine:
    def __init__(self, state: str | Path = DEFAULT_STATE, *, connections: str | Path | None = None,
                 registry: Registry | None = None, concurrency: int = 64,
                 blob_threshold: int = 1_000_000, blob_cap: int = 100_000_000,
                 clock: Clock | None = None, park_after: float = 5.0):
        self.clock = clock or Clock()  # wake-up times of Wait and job polls
        self.parking = False  # True under flowrun serve (wakeups.run): waiting runs hold no task
        self.park_after = park_after  # park only waits at least this long (seconds)
        self.registry = registry or default_registry()
        self.evaluator: Evaluator = tools(self.registry)[1]
        self.redactor = _connections.PROCESS_REDACTOR
        _connections.redact_all_logs()
        self.store = Store(state, redact=self.redactor, blob_threshold=blob_threshold, blob_cap=blob_cap)
        self.connections_file = connections
        self._connections: dict[str, _connections.Connections] = {}
        self._found: dict[str, Path | None] = {}  # flow file -> the connections.yaml it uses
        self._queued: dict[str, dict] = {}  # runs started by this engine, not yet executed
        self.limiter = anyio.CapacityLimiter(concurrency)
        self._node_log = logging.getLogger("flowrun.node")

    def close(self) -> None:
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
        return load_file(path, registry=self.registry, connections=self.connections_for(str(path)))

    def load_recorded(self, run: dict) -> Flow:
        return load_text(run["definition"], run["file"] or "<recorded>", registry=self.registry,
                         connections=self.connections_for(run["file"] or "."))

    def node_logger(self, run_id: str, path: str) -> logging.LoggerAdapter:
        return _RedactingAdapter(self._node_log, {"run_id": run_id, "action": path}, self.redactor)

    # -- runs ---------------------------------------------------------------------------------
    def start(self, flow: Flow, *, input: Any = None, params: dict | None = None,
              trigger: str | None = None, trigger_outputs: dict | None = None, run_id: str | None = None,
              parent_id: str | None = None, rerun_of: str | None = None, request: Any = None,
              dedupe_key: str | None = None, commit: bool = True) -> str:
        """Validate what the run needs (parameters, connections, secrets) and persist it as Queued.

        With ``commit=False`` the row is written but not yet committed: ``submit`` awaits it."""
        values = coerce_params(flow, params or {})
        self.connections_for(flow.file).resolve(flow.connections_used(), self.redactor)
        run_id = run_id or uuid.uuid4().hex
        outputs = trigger_outputs or {"body": input, "headers": {}, "queries": {}, "relativePathParameters": {}}
        self._queued[run_id] = {"trigger_name": trigger or next(iter(flow.triggers), "manual"),
                                "payload": outputs, "params": values}
        if len(self._queued) > 10_000:  # started but never executed here (another process will)
            self._queued.pop(next(iter(self._queued)))
        self.store.create_run({
            "id": run_id, "flow": flow.name, "file": flow.file, "flow_hash": flow.hash,
            "git_commit": recorded_commit(flow),
            "definition": flow.source, "trigger": trigger or next(iter(flow.triggers), "manual"),
            "payload": outputs, "params": values, "status": QUEUED, "created": time.time(),
            "parent_id": parent_id, "rerun_of": rerun_of, "request": request, "dedupe_key": dedupe_key,
        }, commit=commit)
        return run_id

    async def submit(self, flow: Flow, **kw: Any) -> str:
        """``start`` for servers: returns once the run is durably committed, sharing the commit
        with every other run submitted in the same event-loop turn."""
        run_id = self.start(flow, commit=False, **kw)
        await self.store.durable()
        return run_id

    async def execute(self, run_id: str, flow: Flow | None = None, *, reuse: dict | None = None,
                      copy_reused: bool = False, on_response: Callable[[dict], None] | None = None,
                      on_event: Callable[[str, str, str], None] | None = None) -> RunResult:
        queued = self._queued.pop(run_id, None) if flow is not None else None
        if queued is None:  # started elsewhere, or resumed: read what the run recorded
            run = self.store.get_run(run_id)
            flow = flow or self.load_recorded(run)
            queued = {"trigger_name": run["trigger"], "payload": run["payload"], "params": run["params"],
                      "started": run["started"], "attempts": run["attempts"]}
        conns = self.connections_for(flow.file).resolve(flow.connections_used(), self.redactor)
        if reuse:
            self.store.continue_numbering(run_id)
        self.store.run_started(run_id, queued.get("started") or time.time(), (queued.get("attempts") or 0) + 1)
        runtime = Runtime(engine=self, flow=flow, run_id=run_id, trigger={"name": queued["trigger_name"],
                          "outputs": queued["payload"] or {}}, params=queued["params"] or {}, connections=conns,
                          reuse=reuse, copy_reused=copy_reused, on_response=on_response, on_event=on_event)
        try:
            status, outputs, error = await runtime.execute()
        except BaseException:
            with anyio.CancelScope(shield=True):
                self.store.forget_run_start(run_id)
                self.store.flush()  # a stopped process keeps what finished; resume continues it
            raise
        if runtime.parked is not None:  # every action in flight was waiting: the run holds no task
            self.park(run_id, runtime.parked)
            return RunResult(run_id, flow.name, WAITING, None, None, runtime.response, store=self.store)
        self.store.run_finished(run_id, status=status, outputs=outputs, error=error, ended=time.time())
        await self.store.durable()  # the outcome is committed before anyone is told
        return RunResult(run_id, flow.name, status, outputs, error, runtime.response, store=self.store)

    async def run(self, flow: Flow | str | Path, **kw: Any) -> RunResult:
        if not isinstance(flow, Flow):
            flow = self.load(flow)
        on_event = kw.pop("on_event", None)
        on_response = kw.pop("on_response", None)
        run_id = self.start(flow, **kw)
        return await self.execute(run_id, flow, on_event=on_event, on_response=on_response)

    async def resume(self, run_id: str, **kw: Any) -> RunResult:
        """Continue a run whose process died: finished actions are reused, in-flight ones rerun."""
        run = self.store.get_run(run_id)
        if is_terminal(run["status"]):
            raise StoreError(f"run {run['id']} already finished ({run['status']}); use rerun to run it again")
        reuse = {s["path"]: s for s in self.store.steps(run["id"])}
        return await self.execute(run["id"], reuse=reuse, **kw)

    # -- parked runs (flowrun serve) -----------------------------------------------------------
    def park(self, run_id: str, wake: float) -> None:
        """Record a run as Waiting until ``wake``; ``due_runs`` hands it back then."""
        self.store.forget_run_start(run_id)
        self.store.park_run(run_id, wake, WAITING)
        log.info("run parked until %.3f", wake, extra={"event": "run_parked", "run_id": run_id})

    def due_runs(self, now: float | None = None) -> list[str]:
        """Parked runs whose wake-up time has come (resume each with ``resume``)."""
        return self.store.due_runs(self.clock.now() if now is None else now, WAITING)

    def rerun_plan(self, run_id: str, from_action: str, definition: str = "recorded") -> tuple[Flow, dict, dict, list[str]]:
        """(flow, old run, steps to reuse by path, names of the actions that will run again)."""
        run = self.store.get_run(run_id)
        flow = self.load_recorded(run) if definition == "recorded" else self.load(run["file"])
        target = flow.actions.get(from_action)
        if target is None:
            from .planner import suggest
            raise StoreError(f"no action '{from_action}' in flow '{flow.name}'{suggest(from_action, flow.actions)}")
        again = rerun_set(target)
        reuse = {s["path"]: s for s in self.store.steps(run["id"])
                 if s["action"] not in again and is_terminal(s["status"]) and s["status"] != CANCELLED}
        return flow, run, reuse, sorted(again)

    async def rerun(self, run_id: str, from_action: str, *, definition: str = "recorded", **kw: Any) -> RunResult:
        flow, run, reuse, _ = self.rerun_plan(run_id, from_action, definition)
        new_id = self.start(flow, params=run["params"], trigger=run["trigger"], trigger_outputs=run["payload"],
                            rerun_of=run["id"], request=run["request"])
        return await self.execute(new_id, flow, reuse=reuse, copy_reused=True, **kw)

    def result(self, run_id: str) -> RunResult:
        run = self.store.get_run(run_id)
        return RunResult(run["id"], run["flow"], run["status"], run["outputs"], run["error"],
                         run["response"], store=self.store, record=run)


def rerun_set(target: Action) -> set[str]:
    """Names of the actions a rerun from ``target`` runs again.

    The target, everything downstream of it in its block, everything nested in those, and
    for every container around it, the container itself and what is downstream of it."""
    again: set[str] = set()

    def with_nested(action: Action) -> None:
        again.add(action.name)
        for block in action.blocks.values():
            for inner in block.actions.values():
                with_nested(inner)

    def with_downstream(action: Action) -> None:
        for name in nx.descendants(action.block.graph, action.name):
            with_nested(action.block.actions[name])

    with_nested(target)
    with_downstream(target)
    container = target.parent
    while container is not None:
        again.add(container.name)  # runs again, reusing what inside it is not downstream
        with_downstream(container)
        container = container.parent
    return again


class _RedactingAdapter(logging.LoggerAdapter):
    def __init__(self, logger: logging.Logger, extra: dict, redactor: Any):
        super().__init__(logger, extra)
        self.redactor = redactor

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            super().log(level, self.redactor(text), **kwargs)


def run_file(path: str | Path, *, input: Any = None, params: dict | None = None,
             state: str | Path = DEFAULT_STATE, connections: str | Path | None = None,
             **engine_kw: Any) -> RunResult:
    """Load, run and return the result of a flow file (synchronous convenience)."""
    engine = Engine(state, connections=connections, **engine_kw)
    try:
        result = anyio.run(lambda: engine.run(path, input=input, params=params or {}))
        result.steps, result.record  # read before the store closes
        return result
    finally:
        engine.close()
