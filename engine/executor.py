"""Runs one flow run: every action whose runAfter is settled starts at once.

For each block instance the runtime starts the actions without runAfter, and each finished
action releases its dependents. An action whose runAfter statuses are not met is Skipped.
An action's result is committed to the store before any dependent starts, so a crash
never loses a finished action; resume and rerun hand the runtime the finished steps to
*reuse* (keyed by path), which are then not run again.
"""
from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Callable

import anyio

from .errors import ActionError, ExpressionError, InputError, OutputTooLarge
from .frames import ActionResult, ActionScope, Frame
from .model import Action, Block, Flow
from .plugin import Context, Job, Node, Pending, Variables
from .runs import Step
from .runtimeconfig import SECURED, secured
from .standins import DEFAULT as _DEFAULT_BOUNDARY, StoodIn
from .compiled import Compiled
from . import sandbox, telemetry
from .sandbox import Budget
from .state import CANCELLED, FAILED, RUNNING, SKIPPED, SUCCEEDED, TIMEDOUT, block_status, fold, is_terminal
from .store import RecordedSteps
from .wakeups import WAITING

log = logging.getLogger("flowrun.run")

_validators: dict[type, Any] = {}  # node -> Compiled schema of its inputs, or None


class _NoTimer:
    cancelled_caught = False

    def __enter__(self) -> "_NoTimer":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


_NO_TIMER = _NoTimer()
TRACKED_MAX_CHARS = 16_000  # Logic Apps' limit on an action's trackedProperties
_instances: dict[type, Any] = {}


def _validator(node: type) -> Any:
    if node not in _validators:
        schema = node.input_schema
        trivial = not schema or schema == {"type": "object"} or node.fields
        _validators[node] = None if trivial else Compiled(schema)
    return _validators[node]


def _poll_delay(after: Any, delay: float, most: float) -> float:
    """Seconds to the next poll of a job: the node's ``Pending.after`` (a vendor's Retry-After)
    when it is a usable number, never past ``most`` (``Job.max_after``); else the backoff ``delay``."""
    try:
        after = float(after) if after is not None and not isinstance(after, bool) else None
    except (TypeError, ValueError, OverflowError):
        after = None
    if after is None or math.isnan(after):
        return delay
    return min(max(after, 0.0), most)


def _instance(node: type) -> Any:
    inst = _instances.get(node)
    if inst is None:
        inst = _instances[node] = node()
    return inst


class Runtime:
    """The state of one run while it executes."""

    # waiting and parking (see run_job, durable_wait): set on first use
    parked: float | None = None  # the wake-up time, once every action in flight is waiting
    parked_children: list[str] = []  # the child runs it waits for, then (any one ending wakes it)
    _active = 0  # actions without nested blocks in flight
    _sleepers: dict[str, float] | None = None  # path -> wake-up time of the actions waiting
    _changed: Any = None  # set when an action ends, so the waiting ones look again
    _parkable: bool | None = None
    _marks_taken: set[str] | None = None

    def __init__(self, *, engine: Any, flow: Flow, run_id: str, trigger: dict, params: dict,
                 connections: dict, reuse: RecordedSteps | None = None,
                 copy_reused: bool = False, on_response: Callable[[dict], None] | None = None,
                 on_event: Callable[[str, str, str], None] | None = None, claim: Any = None):
        self.engine = engine
        self.claim = claim  # the run's lease (engine.runlock); lost: stop, write nothing more
        self.store = engine.store
        self.evaluator = engine.evaluator
        self.flow = flow
        self.run_id = run_id
        self.trigger = trigger
        self.params = params
        self.connections = connections
        self.reuse = reuse
        self.copy_reused = copy_reused  # rerun: write reused steps into this (new) run
        self.on_response = on_response
        self.on_event = on_event
        self.variables = Variables()
        self.latest: dict[str, ActionResult] = {}
        self.failures: list[tuple[str, dict, bool]] = []  # the first few: the run's error names one
        self.response: dict | None = None
        self.terminated: tuple[str, dict | None] | None = None
        self._root_scope: anyio.CancelScope | None = None
        self.fold = fold
        self.log = logging.LoggerAdapter(log, {"run_id": run_id, "flow": flow.name})
        self.tracing = telemetry.active()  # None unless OpenTelemetry is configured (engine.telemetry)
        self._awaited: dict[str, str] = {}  # path -> id of the child run that Workflow action waits for
        self._replays: set[str] = set()  # action types whose reused steps re-apply run state (_replay_effects)

    # -- the run ----------------------------------------------------------------------------
    async def execute(self) -> tuple[str, Any, Any]:
        """Run the root block; return (status, outputs, error)."""
        root = Frame(self, None, "")
        if self.reuse is not None:
            self._replay_effects(root)
        with anyio.CancelScope() as scope:
            self._root_scope = scope
            status = await self._run_block(self.flow.root, root)
        if self.parked is not None:  # the engine parks the run; in-flight steps stay Running
            self.store.flush()
            return WAITING, None, None
        if self.terminated is not None:
            self._skip_unstarted(self.flow.root, root)
            self.store.flush()
        outputs = await self.evaluator.offload(self._outputs, root)
        outputs_error = outputs if isinstance(outputs, ActionError) else None
        if outputs_error is not None:
            outputs = None
        error = None
        if self.terminated is not None:
            status, error = self.terminated
        elif status != SUCCEEDED and self.failures:
            # the root cause: the first failure of an action that is not a container (an
            # outputs template that fails because of it is a consequence, not the cause)
            path, err = next(((p, e) for p, e, container in self.failures if not container), self.failures[0][:2])
            error = {"code": err.get("code", "ActionFailed"),
                     "message": f"action '{path}' failed: {err.get('message', '')}", "action": path}
        if outputs_error is not None and error is None:
            status, error = FAILED, outputs_error.to_dict()
        return status, outputs, error

    @property
    def _abandoned(self) -> bool:
        return self.claim is not None and self.claim.lost

    def _outputs(self, root: Frame) -> Any:
        try:
            return {name: self.evaluator.evaluate(out.get("value"), root)
                    for name, out in self.flow.outputs.items()}
        except ExpressionError as exc:
            exc.message = f"flow outputs: {exc.message}"
            return exc

    def evaluate(self, value: Any, frame: Frame, item: Any = None, index: int | None = None) -> Any:
        """Evaluate now, in ``frame``; with ``item`` given, ``item()`` is bound to it."""
        if item is not None or index is not None:
            frame = Frame(self, frame, frame.prefix, loop="", item=item, index=index)
        return self.evaluator.evaluate(value, frame)

    async def evaluate_async(self, value: Any, frame: Frame, item: Any = None, index: int | None = None) -> Any:
        """``evaluate``, moved to a worker thread if it needs more than a few milliseconds."""
        return await self.evaluator.offload(self.evaluate, value, frame, item, index)

    async def run_child(self, ctx: Context, flow_ref: str, body: Any, params: dict | None, *,
                        headers: dict | None = None, trigger: str | None = None) -> Any:
        """Run (or, after a crash, resume or reuse) a child flow linked to this run; under
        workers (``engine.delegate_children``) queue it for any worker and wait for it."""
        import uuid

        from .errors import StoreError

        child_id = uuid.uuid5(uuid.NAMESPACE_URL, f"flowrun:{ctx.idempotency_key}").hex
        try:
            existing = self.store.get_run(child_id)
        except StoreError:
            existing = None
        if existing is not None and is_terminal(existing.status):
            return self.engine.result(child_id)
        if getattr(self.engine, "delegate_children", False):  # workers share the database: any one runs it
            if existing is None and self._child_was_started(ctx, child_id):
                raise ActionError(f"child run {child_id} no longer exists (deleted while this run waited for "
                                  f"it); it is not started again", code="ChildRunMissing")
            if existing is None:
                self._start_child(child_id, flow_ref, body, params, hold=False, headers=headers, trigger=trigger)
                # committed Queued (a worker takes it) with this step's mark naming it: a resumed
                # parent continues the wait (engine.executor._continues) rather than start over
                self._mark(ctx, {"childRun": child_id}, None, commit=False)
                await self.store.durable()
            return await self._await_child(ctx, child_id)
        if existing is not None:
            return await self.engine.resume(child_id)
        child = self._start_child(child_id, flow_ref, body, params, hold=True, headers=headers, trigger=trigger)
        return await self.engine.execute(child_id, child)

    def _child_was_started(self, ctx: Context, child_id: str) -> bool:
        """A resumed step whose mark names this child: it was queued before (a child gone since
        was deleted, and starting it over would give the parent other outputs)."""
        step = self.reuse.get(ctx.path) if self.reuse is not None else None
        if step is None or step.status != RUNNING:
            return False
        handle, _ = self.store.step_marks(self.run_id, ctx.path)
        return isinstance(handle, dict) and handle.get("childRun") == child_id

    def _start_child(self, child_id: str, flow_ref: str, body: Any, params: dict | None, *, hold: bool,
                     headers: dict | None = None, trigger: str | None = None) -> Any:
        from pathlib import Path

        from .errors import FlowError

        path = Path(self.flow.file).parent / flow_ref
        try:
            child = self.engine.load(path)
            outputs = {"body": body, "headers": {str(k).lower(): v if isinstance(v, str) else json.dumps(v)
                                                 for k, v in (headers or {}).items()},
                       "queries": {}, "relativePathParameters": {}}
            # hold: committed with its lease (engine.execute here), so no worker takes it meanwhile
            self.engine.start(child, trigger_outputs=outputs, params=params or {}, run_id=child_id,
                              parent_id=self.run_id, trigger=trigger if trigger in child.triggers else None,
                              commit=False, hold=hold)
        except FlowError as exc:
            raise ActionError(f"child flow {flow_ref}: {exc}", code="InvalidChildFlow") from None
        except Exception as exc:
            raise ActionError(f"child flow {flow_ref}: {exc}", code="ChildRunNotStarted") from None
        return child

    def request_terminate(self, status: str, error: dict | None) -> None:
        self.terminated = (status, error)

    def respond(self, reply: dict, replayed: bool = False) -> None:
        if replayed:
            self.response = self.response or reply
            return
        if self.response is not None:
            raise ActionError("the run has already sent its response", code="ResponseAlreadySent")
        self.response = reply
        self.store.update_run(self.run_id, response=reply)
        if self.on_response:  # the reply that leaves the process carries sealed values themselves
            from .sealed import unseal

            self.on_response(unseal(reply, now=self.engine.clock.now(), run_id=self.run_id))

    # -- blocks -----------------------------------------------------------------------------
    async def _run_block(self, block: Block, frame: Frame) -> str:
        if block.chain is not None:  # a straight line needs no task group: run it in order
            for name in block.chain:
                await self._run_action(block.actions[name], frame)
            return self._block_status(block, frame)
        pending = {name: len(a.run_after) for name, a in block.actions.items()}

        async with anyio.create_task_group() as tg:
            async def run_then_release(name: str) -> None:
                await self._run_action(block.actions[name], frame)
                for dep in block.dependents[name]:
                    pending[dep] -= 1
                    if pending[dep] == 0:
                        tg.start_soon(run_then_release, dep)

            for name in block.starts:
                tg.start_soon(run_then_release, name)
        return self._block_status(block, frame)

    def _block_status(self, block: Block, frame: Frame) -> str:
        return block_status(block.leaves, block.run_after, {n: r.status for n, r in frame.results.items()})

    async def run_block(self, ctx: Context, key: str, *, item: Any = None, index: int | None = None,
                        iteration: str | None = None) -> str:
        """Run a container's nested block (called by container nodes through their context)."""
        action: Action = ctx.action
        block = action.blocks[key]
        if iteration is None:
            frame = Frame(self, ctx._frame, ctx.path)
            frame.block = block
        else:
            frame = Frame(self, ctx._frame, f"{ctx.path}[{iteration}]", loop=action.name, item=item, index=index)
        frame.block = block
        owner = ctx._result
        owner.frames.append(frame)
        if iteration is None:
            return await self._run_block(block, frame)
        try:  # an iteration's frame lives while it runs; what it did is in the store
            return await self._run_iteration(action, block, frame, item, index)
        finally:
            owner.frames.remove(frame)

    async def _run_iteration(self, action: Action, block: Block, frame: Frame, item: Any,
                             index: int | None) -> str:
        path = frame.prefix
        step = self.reuse.get(path) if self.reuse is not None else None
        if step is not None and is_terminal(step.status) and step.status != CANCELLED:
            self._restore_inside(path, frame.parent, None, iteration_frame=frame)
            self._note_reused(path, action.name, "Iteration", step)
            return step.status
        started = time.time()
        inputs = {"item": item, "index": index} if index is not None else None
        self.store.step_started(self.run_id, path, action.name, "Iteration", started)
        try:
            status = await self._run_block(block, frame)
        except anyio.get_cancelled_exc_class():
            if not self._ends_cancelled():
                raise
            with anyio.CancelScope(shield=True):  # as its actions were: a terminated run has none in flight
                self.store.step_finished(self.run_id, path, action.name, "Iteration", CANCELLED, attempts=1,
                                         inputs=inputs, outputs=None, error=None, started=started, ended=time.time())
            raise
        self.store.step_finished(self.run_id, path, action.name, "Iteration", status, attempts=1,
                                 inputs=inputs, outputs=None, error=None, started=started, ended=time.time())
        return status

    def _ends_cancelled(self) -> bool:
        """A step cancelled now ends Cancelled: the run was terminated (Terminate, a timeout, a
        cancel), not parked, dropped or stopped with its process (then it stays Running, for the
        resume to continue it)."""
        return not (self.parked is not None or self._abandoned or (self.engine.stopping and self.terminated is None))

    def skip_block(self, ctx: Context, key: str) -> None:
        frame = Frame(self, ctx._frame, ctx.path)
        ctx._result.frames.append(frame)
        now = time.time()
        for action in ctx.action.blocks[key].actions.values():
            self._record_skip(action, frame, now)

    def _skip_unstarted(self, block: Block, frame: Frame) -> None:
        """After Terminate: record every action that never started as Skipped, inside the
        containers that had started too."""
        now = time.time()
        for action in block.actions.values():
            result = frame.results.get(action.name)
            if result is None:
                self._record_skip(action, frame, now)
            else:
                for inner in result.frames:
                    if inner.block is not None:
                        self._skip_unstarted(inner.block, inner)

    def _record_skip(self, action: Action, frame: Frame, now: float) -> None:
        path = frame.path(action.name)
        frame.results[action.name] = self.latest[action.name] = ActionResult(action.name, action.type, SKIPPED,
                                                                             path=path)
        self.store.step_finished(self.run_id, path, action.name, action.type, SKIPPED, attempts=0,
                                 inputs=None, outputs=None, error=None, started=None, ended=now, commit=False)
        self._event(path, SKIPPED)

    # -- one action -------------------------------------------------------------------------
    async def _run_action(self, action: Action, frame: Frame) -> None:
        path = frame.path(action.name)
        step = self.reuse.get(path) if self.reuse is not None else None
        if step is not None and is_terminal(step.status) and step.status != CANCELLED:
            self._reuse(action, frame, path, step)  # what happened stays as it happened
            return
        if self.terminated is not None:  # Terminate ran: nothing new starts
            self._record_skip(action, frame, time.time())
            return
        for pred, allowed in action.run_after.items():
            if frame.results[pred].status not in allowed:
                self._record_skip(action, frame, time.time())
                return
        prior_attempts = step.attempts if step else 0
        if step is not None and step.status == RUNNING:  # in flight when its process died, maybe
            last = self.store.last_attempt(self.run_id, path)  # after retries: the one after the last
            prior_attempts = max(prior_attempts, last + 1 if last else 0)  # recorded was in flight
        result = ActionResult(action.name, action.type, RUNNING, start=time.time(), path=path)
        frame.results[action.name] = self.latest[action.name] = result
        leaf = not action.blocks
        at_most_once = leaf and action.raw.get("onInterrupted") == "fail"
        if step is not None and step.status == RUNNING and leaf and not self._continues(path):
            result.interrupted = True  # in flight when its process died: it may have happened
            if at_most_once:
                result.status, result.end, result.attempts = FAILED, time.time(), prior_attempts
                result.error = {"code": "Interrupted", "message": "the process running this action died while "
                                "it was in flight, so it may or may not have happened; onInterrupted: fail "
                                "does not run it again"}
                self._finish(action, path, result)
                return
        # an action that must know after a crash that it was in flight (at most once, or not
        # idempotent): its Running row is committed before it does anything
        eager = leaf and (at_most_once or not action.node.idempotent)
        self.store.step_started(self.run_id, path, action.name, action.type, result.start, prior_attempts + 1,
                                now=eager)
        if eager:
            await self.store.durable()
        self._event(path, RUNNING)
        self._active += leaf
        try:
            await self._attempts(action, frame, path, result, prior_attempts)
        except anyio.get_cancelled_exc_class():
            if not self._ends_cancelled():
                raise  # parked, or the process is stopping: the step stays Running; resume continues it
            with anyio.CancelScope(shield=True):
                result.status, result.end = CANCELLED, time.time()
                result.error = {"code": "Cancelled", "message": "cancelled: the run was terminated or stopped"}
                self._finish(action, path, result)
            raise
        finally:
            self._active -= leaf
            if leaf and self._sleepers:
                self._poke()
        self._finish(action, path, result)  # the result first: tracking never delays or risks it
        if "trackedProperties" in action.raw:
            tracked = await self._tracked(action, frame, result)
            if tracked is not None:
                self.store.step_tracked(self.run_id, path, tracked)
                self.store.flush_soon()
        if self.terminated is not None and self._root_scope is not None:
            self._root_scope.cancel()

    async def _attempts(self, action: Action, frame: Frame, path: str, result: ActionResult,
                        prior: int) -> None:
        node_cls = action.node
        node = _instance(node_cls)
        try:
            inputs = await self.evaluator.offload(self._inputs, action, frame)
        except ActionError as exc:
            result.status, result.error, result.end, result.attempts = FAILED, exc.to_dict(), time.time(), prior + 1
            return
        result.inputs = inputs
        conn = self.connections.get(action.connection) if action.connection else None
        policy = action.retry
        attempt = prior
        tracing = self.tracing
        with (anyio.move_on_after(action.timeout) if action.timeout else _NO_TIMER) as timer:
            while True:
                attempt += 1
                result.open_attempt = (attempt, time.time())
                ctx = Context(run_id=self.run_id, path=path, action=action, connection=conn,
                              log=self.engine.node_logger(self.run_id, path), attempt=attempt,
                              runtime=self, frame=frame, result=result)
                retry: ActionError | None = None
                with (tracing.attempt(flow=self.flow.name, run_id=self.run_id, action=action.name, path=path,
                                      type_=action.type, attempt=attempt, redact=self.engine.redactor)
                      if tracing is not None else telemetry.NO_SPAN) as span:
                    try:
                        if not node_cls.takes_slot():
                            outputs = await self._dispatch(node, inputs, ctx)
                        else:
                            async with self.engine.limiter:
                                outputs = await self._dispatch(node, inputs, ctx)
                        result.status, result.outputs = SUCCEEDED, outputs
                        span.ended(SUCCEEDED)
                    except StoodIn as stood_in:  # a mock or static result that does not succeed
                        result.status, result.outputs, result.error = stood_in.status, stood_in.outputs, stood_in.error
                        span.ended(stood_in.status, stood_in.error)
                    except ActionError as exc:
                        retries_used = attempt - prior
                        if exc.retryable and policy.type != "none" and retries_used <= policy.count:
                            retry = exc
                            span.ended("Retrying", exc.to_dict())
                        else:
                            result.status, result.error = FAILED, exc.to_dict()
                            span.ended(FAILED, result.error)
                    except Exception as exc:  # a node bug or an unmapped SDK error
                        self.log.debug("%s: node raised", path, exc_info=True)
                        result.status = FAILED
                        result.error = {"code": "NodeError", "message": f"{type(exc).__name__}: {exc}"}
                        span.ended(FAILED, result.error)
                if retry is None:
                    break
                self._attempt_ended(path, result, FAILED, retry.to_dict(), time.time())
                delay = policy.delay(attempt - prior, retry.retry_after)
                self.log.info("%s: attempt %d failed (%s); retrying in %.2fs", path, attempt, retry.message, delay)
                await self.engine.clock.sleep(delay)  # the engine clock: a test's fake one does not wait
        if timer.cancelled_caught:
            result.status = TIMEDOUT
            result.error = {"code": "ActionTimedOut",
                            "message": f"did not finish within {action.raw.get('timeout') or action.raw['limit']['timeout']}"}
        result.attempts, result.end = attempt, time.time()

    async def _dispatch(self, node: Node, inputs: Any, ctx: Context) -> Any:
        """The node boundary: the one place an action's operation runs. The engine's ``boundary``
        (engine.standins) may answer instead: a Logic Apps static result, a test's mock, a plan's
        example; everything around it (inputs, runAfter, containers, the store) runs for real."""
        boundary = self.engine.boundary
        if boundary is _DEFAULT_BOUNDARY and "runtimeConfiguration" not in ctx.action.raw:
            return await node.run(inputs, ctx)
        return await boundary.dispatch(node, inputs, ctx)

    def _attempt_ended(self, path: str, result: ActionResult, status: str, error: Any, ended: float) -> None:
        """Record the open attempt of a retried action: its number, times, status and a one-line
        error summary, redacted. (A first attempt that needed no retry is not written: the step
        holds its times.)"""
        if result.open_attempt is None:
            return
        number, started = result.open_attempt
        result.open_attempt = None
        summary = None
        if isinstance(error, dict):
            message = " ".join(str(error.get("message", "")).split())  # one line (show escapes control bytes)
            summary = self.engine.redactor.scrub({"code": str(error.get("code", "Error"))[:200],
                                                  "message": message[:500] + ("..." if len(message) > 500 else "")})
        self.store.attempt_finished(self.run_id, path, number, status=status, started=started, ended=ended,
                                    error=summary)

    def _inputs(self, action: Action, frame: Frame) -> Any:
        node = action.node
        lazy = node.lazy
        if node.fields:
            raw = action.raw
            return {k: self.evaluator.evaluate(raw[k], frame) for k in node.fields
                    if k in raw and k not in lazy}
        value = action.inputs
        if lazy:
            # keys the node evaluates itself (Select's select, Query's where) are taken only as
            # written in the flow file: a value that arrives as data is never evaluated
            literal = value if isinstance(value, dict) else {}
            kept = {k: v for k, v in literal.items() if k in lazy}
            value = self.evaluator.evaluate({k: v for k, v in literal.items() if k not in lazy}
                                            if isinstance(value, dict) else value, frame)
            if isinstance(value, dict):
                from_data = sorted(k for k in lazy if k in value)
                if from_data:
                    raise InputError(f"'{from_data[0]}' of {node.type} must be written in the flow file; "
                                     f"it came from data, and data is never evaluated")
                value.update(kept)
        else:
            value = self.evaluator.evaluate(value, frame)
        validator = _validator(node)
        if validator is not None and value is not None:
            errors = sorted(validator.errors(value), key=lambda e: list(map(str, e.absolute_path)))
            if errors:
                msgs = [f"{'.'.join(str(p) for p in e.absolute_path) or 'inputs'}: {e.message}" for e in errors[:5]]
                raise InputError("inputs do not match the schema of " + node.type + ": " + "; ".join(msgs))
        return value

    async def _tracked(self, action: Action, frame: Frame, result: ActionResult) -> dict | None:
        """The action's trackedProperties, evaluated once its result is recorded (``action()``
        is that result, secrets already masked in it): ``{"values", "errors"}``, a property that fails
        recorded in ``errors`` without failing the action (as in Logic Apps). An action with
        secureData tracks nothing (Logic Apps refuses both together)."""
        spec = action.raw.get("trackedProperties")
        if not isinstance(spec, dict) or not spec or secured(action.raw):
            return None
        redactor = self.engine.redactor  # (the result was scrubbed by _finish)
        scope = ActionScope(frame, result)

        def evaluate() -> dict:
            values, errors = {}, {}
            state = sandbox._state  # one budget for them all (each property's evaluation shares it)
            state.budget = Budget(self.evaluator.limits, getattr(state, "inline_slice", None))
            try:
                for name, expr in spec.items():
                    try:
                        values[name] = redactor.scrub(self.evaluator.evaluate(expr, scope))
                    except ActionError as exc:
                        errors[name] = redactor(exc.message)
            finally:
                state.budget = None
            return {"values": values, "errors": errors}

        tracked = await self.evaluator.offload(evaluate)
        size = len(json.dumps(tracked, default=str))
        if size > TRACKED_MAX_CHARS:
            return {"values": {}, "errors": {"*": f"the tracked properties take {size} characters; "
                                                  f"at most {TRACKED_MAX_CHARS} are kept"}}
        return tracked

    def _finish(self, action: Action, path: str, result: ActionResult) -> None:
        # scrubbed at the source: before a dependent (or a template) can read the result
        result.outputs, result.error = self.engine.redactor.scrub(result.outputs), self.engine.redactor.scrub(result.error)
        if result.open_attempt is not None and result.open_attempt[0] > 1:  # the last of a retried action's
            self._attempt_ended(path, result, result.status, result.error, result.end or time.time())
        result.open_attempt = None
        hidden = secured(action.raw)  # secureData: kept in memory for dependents, never stored
        try:
            self.store.step_finished(self.run_id, path, action.name, action.type, result.status,
                                     attempts=result.attempts,
                                     inputs=SECURED if "inputs" in hidden else result.inputs,
                                     outputs=SECURED if "outputs" in hidden else result.outputs,
                                     error=result.error, started=result.start, ended=result.end,
                                     interrupted=result.interrupted)
        except (OutputTooLarge, ValueError, OverflowError, RecursionError) as exc:  # too big, or not storable
            error = exc.to_dict() if isinstance(exc, ActionError) else {
                "code": "UnstorableValue", "message": f"the action's inputs or outputs cannot be stored: {exc}"}
            result.status, result.inputs, result.outputs, result.error = FAILED, None, None, error
            self.store.step_finished(self.run_id, path, action.name, action.type, FAILED,
                                     attempts=result.attempts, inputs=None, outputs=None,
                                     error=result.error, started=result.start, ended=result.end,
                                     interrupted=result.interrupted)
        if result.status in (FAILED, TIMEDOUT) and result.error and len(self.failures) < 20:
            self.failures.append((path, result.error, action.node.is_container()))
        self._event(path, result.status, result.error)

    def _continues(self, path: str) -> bool:
        """A step in flight that resumes where it was rather than starting over: a job with a
        recorded handle (polled again, never restarted), a wait with a recorded wake-up time."""
        return self.store.step_marks(self.run_id, path) != (None, None)

    def _event(self, path: str, status: str, error: Any = None) -> None:
        if self.on_event:
            self.on_event(path, status, (error or {}).get("message", "") if isinstance(error, dict) else "")

    # -- reuse (resume / rerun) -------------------------------------------------------------
    def _replay_effects(self, root: Frame) -> None:
        """Re-apply what reused steps did to run state (variables, a Terminate, a reply), all
        of it before anything runs and in the order it first happened, so a resumed run
        ends with the same variables as an uninterrupted one. Save inside an Until's
        iterations: its expression reads, after each one, what that one left (applied all
        at once, the last value stopped the loop after its first reused iteration, and the
        one in flight never finished); those are applied as each iteration is reached
        (``_replay_step``, from ``_reuse`` and ``_restore_inside``)."""
        by_type = {a.type: a.node for a in self.flow.actions.values()}
        self._replays = {t for t, node in by_type.items() if type(_instance(node)).replay is not Node.replay}
        if not self._replays:
            return
        for step in self.reuse.in_order():
            if not self._in_until(step.path):
                self._replay_step(step, root, deferred=False)

    def _in_until(self, path: str) -> bool:
        """``path`` lies inside an iteration of a loop that reads the run's state after each
        pass (an Until: ``loops`` with ``after_block``), e.g. ``loop[2]/inc``."""
        for segment in path.split("/")[:-1]:
            name, bracket, _ = segment.partition("[")
            action = self.flow.actions.get(name) if bracket else None
            if action is not None and action.node.loops and action.node.after_block:
                return True
        return False

    def _replay_step(self, step: Step, frame: Frame, *, deferred: bool = True) -> None:
        """Re-apply what a reused step did to run state (see ``_replay_effects``); ``deferred``:
        only one inside an Until, reached now."""
        if step.type not in self._replays or step.status != SUCCEEDED:
            return
        if deferred and not self._in_until(step.path):
            return
        action = self.flow.actions.get(step.action)
        if action is not None and action.type == step.type:
            _instance(action.node).replay(step.outputs, self._replay_context(action, step.path, frame, step))

    def _reuse(self, action: Action, frame: Frame, path: str, step: Step) -> None:
        result = self._result_of(step)
        frame.results[action.name] = self.latest[action.name] = result
        self._replay_step(step, frame)
        if action.node.is_container():
            self._restore_inside(path, frame, None if action.node.loops else result)
        self._note_reused(path, action.name, action.type, step)
        self._event(path, step.status)

    def _restore_inside(self, prefix: str, parent: Frame, container: ActionResult | None,
                        iteration_frame: Frame | None = None) -> None:
        """Bring back what ran inside a reused container (or loop iteration): each inner
        step's result becomes visible to later templates (body(), outputs()). A loop's
        iterations are not brought into memory: ``result()`` reads them from the store."""
        frames: dict[str, Frame] = {}
        if iteration_frame is not None:
            frames[iteration_frame.prefix] = iteration_frame
        latest_seq: dict[str, int] = {}
        for s in self.reuse.inside(prefix):
            if self.copy_reused:
                self._note_reused(s.path, s.action, s.type, s)
            self._replay_step(s, iteration_frame or parent)
            if s.type == "Iteration" or s.action not in self.flow.actions:
                continue
            result = self._result_of(s)
            if (s.seq or 0) >= latest_seq.get(s.action, -1):
                latest_seq[s.action] = s.seq or 0
                self.latest[s.action] = result
            holder_path = s.path.rpartition("/")[0]
            if holder_path in frames:
                frames[holder_path].results[s.action] = result
            elif holder_path == prefix and container is not None:
                holder = frames[holder_path] = Frame(self, parent, holder_path)
                container.frames.append(holder)
                holder.results[s.action] = result

    @staticmethod
    def _result_of(step: Step) -> ActionResult:
        return ActionResult(step.action, step.type, step.status, step.inputs, step.outputs,
                            step.error, step.started, step.ended, step.attempts, path=step.path,
                            interrupted=step.interrupted)

    def _replay_context(self, action: Action, path: str, frame: Frame, step: Step) -> Context:
        return Context(run_id=self.run_id, path=path, action=action, connection=None,
                       log=self.engine.node_logger(self.run_id, path), attempt=step.attempts,
                       runtime=self, frame=frame)

    def _note_reused(self, path: str, name: str, type_: str, step: Step) -> None:
        if self.copy_reused:
            if step.attempts and step.attempts > 1:
                self.store.copy_attempts(self.reuse.run_id, self.run_id, path)
            self.store.step_finished(self.run_id, path, name, type_, step.status, attempts=step.attempts,
                                     inputs=step.inputs, outputs=step.outputs, error=step.error,
                                     started=step.started, ended=step.ended, commit=False,
                                     interrupted=step.interrupted)

    # -- long-running jobs and durable waits ------------------------------------------------
    async def run_job(self, node: Job, inputs: Any, ctx: Context) -> Any:
        """Start a remote job (or take the handle a previous process recorded), commit the
        handle, poll until it is done; on cancellation tell the remote side, shielded."""
        handle, wake = self._take_marks(ctx)
        if handle is None:
            handle = await node.start(inputs, ctx)
            try:
                json.dumps(handle)
            except (TypeError, ValueError):
                raise ActionError(f"{node.type}: start() returned a handle that is not JSON "
                                  f"({type(handle).__name__})", code="NodeError") from None
            self._mark(ctx, handle, None)  # committed before the first poll
            ctx.log.info("job started: %s", json.dumps(handle))
        else:
            ctx.log.info("resuming job: %s", json.dumps(handle))
        clock = self.engine.clock
        delay, errors = node.poll_interval, 0
        try:
            while True:
                if wake is not None:
                    await self._sleep_until(ctx, wake)
                try:
                    outcome = await node.poll(handle, ctx)
                    errors = 0
                except ActionError as exc:
                    if not exc.retryable:  # the job itself failed
                        raise
                    errors += 1
                    if errors >= node.max_poll_errors:
                        await self._cancel_job(node, handle, ctx)
                        raise ActionError(f"could not read the job's status {errors} times in a row: {exc.message}",
                                          code=exc.code, details={"handle": handle}) from None
                    ctx.log.info("polling failed (%s); polling again", exc.message)
                    outcome = Pending(after=exc.retry_after)
                if not isinstance(outcome, Pending):
                    return outcome
                if outcome.progress is not None:
                    ctx.log.debug("job pending: %s", outcome.progress)
                wake = clock.now() + _poll_delay(outcome.after, delay, node.max_after)
                delay = min(delay * node.backoff, node.max_poll_interval)
                self._mark(ctx, handle, wake)
        except anyio.get_cancelled_exc_class():
            if self.parked is None and not self.engine.stopping:  # a timeout, Terminate, a cancel;
                # not parking, and not a shutdown: the resumed run polls the same job again
                await self._cancel_job(node, handle, ctx)
            raise
        except ActionError:
            raise
        except Exception:  # a node bug while the job runs: do not leave it running
            await self._cancel_job(node, handle, ctx)
            raise

    async def _cancel_job(self, node: Job, handle: Any, ctx: Context) -> None:
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(node.cancel_timeout) as scope:
                try:
                    await node.cancel(handle, ctx)
                    ctx.log.info("job cancelled: %s", json.dumps(handle))
                except Exception as exc:
                    ctx.log.warning("could not cancel job %s: %s: %s", json.dumps(handle), type(exc).__name__, exc)
            if scope.cancelled_caught:
                ctx.log.warning("cancelling job %s took over %ss; gave up", json.dumps(handle), node.cancel_timeout)

    async def durable_wait(self, ctx: Context, *, seconds: float | None = None, until: float | None = None) -> None:
        """Sleep until a wake-up time recorded in the step, so a resumed run waits the remainder."""
        for value in (seconds, until):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ActionError(f"cannot wait {'until' if value is until else 'for'} {value!r}: "
                                  "not a finite number", code="InvalidWait")
        _, wake = self._take_marks(ctx)
        clock = self.engine.clock
        if wake is None:
            wake = until if until is not None else clock.now() + (seconds or 0.0)
            if wake <= clock.now():
                return
            self._mark(ctx, None, wake)
        await self._sleep_until(ctx, wake)

    def _mark(self, ctx: Context, handle: Any, wake: float | None, commit: bool = True) -> None:
        self.store.step_mark(self.run_id, ctx.path, ctx.action.name, ctx.action.type, attempts=ctx.attempt,
                             started=ctx._result.start, handle=handle, wake=wake, commit=commit)

    def _take_marks(self, ctx: Context) -> tuple[Any, float | None]:
        """The handle and wake-up time a previous process recorded for this step (once)."""
        step = self.reuse.get(ctx.path) if self.reuse is not None else None
        if step is None or step.status != RUNNING:
            return None, None
        if self._marks_taken is None:
            self._marks_taken = set()
        if ctx.path in self._marks_taken:
            return None, None
        self._marks_taken.add(ctx.path)
        return self.store.step_marks(self.run_id, ctx.path)

    async def _sleep_until(self, ctx: Context, wake: float) -> None:
        clock = self.engine.clock
        if not self._may_park() or self._times_out_first(ctx, wake - clock.now()):
            await clock.sleep(wake - clock.now())
            return
        if self._sleepers is None:
            self._sleepers = {}
        self._sleepers[ctx.path] = wake
        self._poke()  # the others waiting look again: this one may have been the last at work
        try:
            while (left := wake - clock.now()) > 0:
                if left >= self.engine.park_after and await self._only_waiting_left():
                    self._park_now()
                    await anyio.sleep_forever()
                if self._changed is None:
                    self._changed = anyio.Event()
                changed = self._changed

                async with anyio.create_task_group() as tg:  # the wake-up, or an action ending
                    async def ring(seconds: float = left) -> None:
                        await clock.sleep(seconds)
                        tg.cancel_scope.cancel()

                    async def look_again() -> None:
                        await changed.wait()
                        tg.cancel_scope.cancel()
                    tg.start_soon(ring)
                    tg.start_soon(look_again)
        finally:
            self._sleepers.pop(ctx.path, None)

    CHILD_RECHECK = 3600.0  # a parent parked on children only looks again after this long, if no
    # child ended (a worker's claim makes it due as soon as one does: engine.worker)

    async def _await_child(self, ctx: Context, child_id: str) -> Any:
        """The child run once it ended. Meanwhile this action counts as waiting: when every
        action in flight waits (on children, or Waits long enough), the run parks, its worker
        slot and lease freed, naming the children it waits for; a worker's claim makes it due
        as soon as one of them has ended, and the resumed action finds it ended. It parks at
        once when every slot of the worker holds a run that only waits (``Engine.starved``), else
        once the wait has lasted ``park_after``: children that end quickly cost no park and resume."""
        if not self._may_park() or self._times_out_first(ctx, math.inf):
            return await self.engine.wait_for_child(self.run_id, child_id)
        if self._sleepers is None:
            self._sleepers = {}
        self._sleepers[ctx.path] = self.engine.clock.now() + self.CHILD_RECHECK
        self._awaited[ctx.path] = child_id
        self._poke()  # the others waiting look again: this one may have been the last at work
        since = anyio.current_time()
        try:
            async with anyio.create_task_group() as tg:
                async def park_when_all_wait() -> None:  # looked at again whenever an action ends
                    while True:
                        if self._changed is None:
                            self._changed = anyio.Event()
                        changed = self._changed
                        # a worker whose every slot only waits needs one now (children may wait for
                        # it); else park only a wait that lasted park_after, as a Wait
                        patience = since + self.engine.park_after - anyio.current_time()
                        if ((patience <= 0 or self.engine.starved()) and self.only_waits()
                                and await self._only_waiting_left()):
                            self._park_now()  # cancels the run, this wait included
                            return
                        with anyio.move_on_after(patience if patience > 0 else math.inf):
                            await changed.wait()
                tg.start_soon(park_when_all_wait)
                ended = await self.engine.wait_for_child(self.run_id, child_id)
                tg.cancel_scope.cancel()
            return ended
        finally:
            self._sleepers.pop(ctx.path, None)
            self._awaited.pop(ctx.path, None)

    def only_waits(self) -> bool:
        """Every action in flight waits (for a child run, or a Wait): nothing is at work."""
        return bool(self._sleepers) and self._active == len(self._sleepers)

    def _park_now(self) -> None:
        """Every action in flight waits: stop the run; the engine parks it until the earliest
        wake-up, or until one of the child runs it waits for has ended."""
        self.parked = min(self._sleepers.values())
        self.parked_children = sorted(set(self._awaited.values()))
        self._root_scope.cancel()

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    @staticmethod
    def _times_out_first(ctx: Context, wait: float) -> bool:
        """The action's ``timeout`` ends this wait of ``wait`` seconds before it is over: it waits
        here, never parked. Parked, the run slept until the wait's end (an hour's Wait with a 2 s
        timeout: an hour), and the timeout, a timer of this execution, never fired."""
        timeout, result = ctx.action.timeout, ctx._result
        if not timeout or result is None:
            return False
        return timeout - (time.time() - (result.start or time.time())) < wait

    def _may_park(self) -> bool:
        """Parking is for flowrun serve and workers (the engine's ``parking``); a child run parks
        only under workers (``delegate_children``: its parent waits for its end in the store),
        not when its parent's Workflow action executes it in the same task."""
        if self._parkable is None:
            self._parkable = (bool(getattr(self.engine, "parking", False)) and self._root_scope is not None
                              and (bool(getattr(self.engine, "delegate_children", False))
                                   or not self.store.get_run(self.run_id).parent_id))
        return self._parkable

    async def _only_waiting_left(self) -> bool:
        # let actions released in the last few loop turns start (they count as active at once)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        return (self.parked is None and self.terminated is None and bool(self._sleepers)
                and self._active == len(self._sleepers)
                and min(self._sleepers.values()) - self.engine.clock.now() >= self.engine.park_after)
