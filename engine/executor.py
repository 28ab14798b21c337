"""Runs one flow run: every action whose runAfter is settled starts at once.

For each block instance the runtime starts the actions without runAfter, and each finished
action releases its dependents. An action whose runAfter statuses are not met is Skipped.
An action's result is committed to the store before any dependent starts, so a crash
never loses a finished action; resume and rerun hand the runtime the finished steps to
*reuse* (keyed by path), which are then not run again.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import anyio
from jsonschema import Draft202012Validator

from .errors import ActionError, ExpressionError, InputError
from .frames import ActionResult, Frame
from .model import Action, Block, Flow
from .plugin import Context
from .state import CANCELLED, FAILED, RUNNING, SKIPPED, SUCCEEDED, TIMEDOUT, block_status, fold, is_terminal
from .store import OutputTooLarge

log = logging.getLogger("flowrun.run")

_validators: dict[type, Draft202012Validator | None] = {}


class _NoTimer:
    cancelled_caught = False

    def __enter__(self) -> "_NoTimer":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


_NO_TIMER = _NoTimer()
_instances: dict[type, Any] = {}


def _validator(node: type) -> Draft202012Validator | None:
    if node not in _validators:
        schema = node.input_schema
        trivial = not schema or schema == {"type": "object"} or node.fields
        _validators[node] = None if trivial else Draft202012Validator(schema)
    return _validators[node]


def _instance(node: type) -> Any:
    inst = _instances.get(node)
    if inst is None:
        inst = _instances[node] = node()
    return inst


class Runtime:
    """The state of one run while it executes."""

    def __init__(self, *, engine: Any, flow: Flow, run_id: str, trigger: dict, params: dict,
                 connections: dict, reuse: dict[str, dict] | None = None,
                 copy_reused: bool = False, on_response: Callable[[dict], None] | None = None,
                 on_event: Callable[[str, str, str], None] | None = None):
        self.engine = engine
        self.store = engine.store
        self.evaluator = engine.evaluator
        self.flow = flow
        self.run_id = run_id
        self.trigger = trigger
        self.params = params
        self.connections = connections
        self.reuse = reuse or {}
        self.copy_reused = copy_reused  # rerun: write reused steps into this (new) run
        self.on_response = on_response
        self.on_event = on_event
        self.variables: dict[str, Any] = {}
        self.variable_types: dict[str, str] = {}
        self.latest: dict[str, ActionResult] = {}
        self.failures: list[tuple[str, dict, bool]] = []
        self.response: dict | None = None
        self.terminated: tuple[str, dict | None] | None = None
        self._root_scope: anyio.CancelScope | None = None
        self.fold = fold
        self.log = logging.LoggerAdapter(log, {"run_id": run_id, "flow": flow.name})

    # -- the run ----------------------------------------------------------------------------
    async def execute(self) -> tuple[str, Any, Any]:
        """Run the root block; return (status, outputs, error)."""
        root = Frame(self, None, "")
        with anyio.CancelScope() as scope:
            self._root_scope = scope
            status = await self._run_block(self.flow.root, root)
        if self.terminated is not None:
            self._skip_unstarted(self.flow.root, root)
            self.store.flush()
            status, error = self.terminated
            return status, await self.evaluator.offload(self._outputs, root), error
        outputs, error = await self.evaluator.offload(self._outputs, root), None
        if isinstance(outputs, ActionError):
            status, error, outputs = FAILED, outputs.to_dict(), None
        elif status != SUCCEEDED and self.failures:
            # the root cause: the first failure of an action that is not a container
            path, err = next(((p, e) for p, e, container in self.failures if not container), self.failures[0][:2])
            error = {"code": err.get("code", "ActionFailed"),
                     "message": f"action '{path}' failed: {err.get('message', '')}", "action": path}
        return status, outputs, error

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

    async def run_child(self, ctx: Context, flow_ref: str, body: Any, params: dict | None) -> Any:
        """Run (or, after a crash, resume or reuse) a child flow linked to this run."""
        import uuid
        from pathlib import Path

        from .errors import FlowError, StoreError

        child_id = uuid.uuid5(uuid.NAMESPACE_URL, f"flowrun:{ctx.idempotency_key}").hex
        try:
            existing = self.store.get_run(child_id)
        except StoreError:
            existing = None
        if existing is not None and is_terminal(existing["status"]):
            return self.engine.result(child_id)
        if existing is not None:
            return await self.engine.resume(child_id)
        path = Path(self.flow.file).parent / flow_ref
        try:
            child = self.engine.load(path)
            self.engine.start(child, input=body, params=params or {}, run_id=child_id, parent_id=self.run_id)
        except FlowError as exc:
            raise ActionError(f"child flow {flow_ref}: {exc}", code="InvalidChildFlow") from None
        except Exception as exc:
            raise ActionError(f"child flow {flow_ref}: {exc}", code="ChildRunNotStarted") from None
        return await self.engine.execute(child_id, child)

    def request_terminate(self, status: str, error: dict | None) -> None:
        self.terminated = (status, error)

    def respond(self, reply: dict) -> None:
        if self.response is not None:
            raise ActionError("the run has already sent its response", code="ResponseAlreadySent")
        self.response = reply
        self.store.update_run(self.run_id, response=reply)
        if self.on_response:
            self.on_response(reply)

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
        path = frame.prefix
        step = self.reuse.get(path)
        if step is not None and is_terminal(step["status"]) and step["status"] != CANCELLED:
            self._restore_inside(path, ctx._frame, owner, iteration_frame=frame)
            self._note_reused(path, action.name, "Iteration", step)
            return step["status"]
        started = time.time()
        self.store.step_started(self.run_id, path, action.name, "Iteration", started)
        status = await self._run_block(block, frame)
        self.store.step_finished(self.run_id, path, action.name, "Iteration", status, attempts=1,
                                 inputs={"item": item, "index": index} if index is not None else None,
                                 outputs=None, error=None, started=started, ended=time.time())
        return status

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
        frame.results[action.name] = self.latest[action.name] = ActionResult(action.name, action.type, SKIPPED)
        self.store.step_finished(self.run_id, path, action.name, action.type, SKIPPED, attempts=0,
                                 inputs=None, outputs=None, error=None, started=None, ended=now, commit=False)
        self._event(path, SKIPPED)

    # -- one action -------------------------------------------------------------------------
    async def _run_action(self, action: Action, frame: Frame) -> None:
        path = frame.path(action.name)
        if self.terminated is not None:  # Terminate ran: nothing new starts
            self._record_skip(action, frame, time.time())
            return
        for pred, allowed in action.run_after.items():
            if frame.results[pred].status not in allowed:
                self._record_skip(action, frame, time.time())
                return
        step = self.reuse.get(path)
        if step is not None and is_terminal(step["status"]) and step["status"] != CANCELLED:
            self._reuse(action, frame, path, step)
            return
        prior_attempts = step["attempts"] if step else 0
        result = ActionResult(action.name, action.type, RUNNING, start=time.time())
        frame.results[action.name] = self.latest[action.name] = result
        self.store.step_started(self.run_id, path, action.name, action.type, result.start, prior_attempts + 1)
        self._event(path, RUNNING)
        try:
            await self._attempts(action, frame, path, result, prior_attempts)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                result.status, result.end = CANCELLED, time.time()
                result.error = {"code": "Cancelled", "message": "cancelled: the run was terminated or stopped"}
                self._finish(action, path, result)
            raise
        self._finish(action, path, result)
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
        with (anyio.move_on_after(action.timeout) if action.timeout else _NO_TIMER) as timer:
            while True:
                attempt += 1
                ctx = Context(run_id=self.run_id, path=path, action=action, connection=conn,
                              log=self.engine.node_logger(self.run_id, path), attempt=attempt,
                              runtime=self, frame=frame)
                ctx._result = result
                try:
                    if node_cls.container:
                        outputs = await node.run(inputs, ctx)
                    else:
                        async with self.engine.limiter:
                            outputs = await node.run(inputs, ctx)
                    result.status, result.outputs = SUCCEEDED, outputs
                    break
                except ActionError as exc:
                    retries_used = attempt - prior
                    if exc.retryable and policy.type != "none" and retries_used <= policy.count:
                        delay = policy.delay(retries_used, exc.retry_after)
                        self.log.info("%s: attempt %d failed (%s); retrying in %.2fs", path, attempt,
                                      exc.message, delay)
                        await anyio.sleep(delay)
                        continue
                    result.status, result.error = FAILED, exc.to_dict()
                    break
                except Exception as exc:  # a node bug or an unmapped SDK error
                    self.log.debug("%s: node raised", path, exc_info=True)
                    result.status = FAILED
                    result.error = {"code": "NodeError", "message": f"{type(exc).__name__}: {exc}"}
                    break
        if timer.cancelled_caught:
            result.status = TIMEDOUT
            result.error = {"code": "ActionTimedOut",
                            "message": f"did not finish within {action.raw.get('timeout') or action.raw['limit']['timeout']}"}
        result.attempts, result.end = attempt, time.time()

    def _inputs(self, action: Action, frame: Frame) -> Any:
        node = action.node
        lazy = node.lazy
        if node.fields:
            raw = action.raw
            return {k: self.evaluator.evaluate(raw[k], frame) for k in node.fields
                    if k in raw and k not in lazy}
        value = action.inputs
        if lazy and isinstance(value, dict):
            kept = {k: v for k, v in value.items() if k in lazy}
            value = self.evaluator.evaluate({k: v for k, v in value.items() if k not in lazy}, frame)
            value.update(kept)
        else:
            value = self.evaluator.evaluate(value, frame)
        validator = _validator(node)
        if validator is not None and value is not None:
            errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            if errors:
                msgs = [f"{'.'.join(str(p) for p in e.absolute_path) or 'inputs'}: {e.message}" for e in errors[:5]]
                raise InputError("inputs do not match the schema of " + node.type + ": " + "; ".join(msgs))
        return value

    def _finish(self, action: Action, path: str, result: ActionResult) -> None:
        if result.error:
            result.error = {k: (self.engine.redactor(v) if isinstance(v, str) else v)
                            for k, v in result.error.items()}
        try:
            self.store.step_finished(self.run_id, path, action.name, action.type, result.status,
                                     attempts=result.attempts, inputs=result.inputs, outputs=result.outputs,
                                     error=result.error, started=result.start, ended=result.end)
        except (OutputTooLarge, ValueError, OverflowError, RecursionError) as exc:  # too big, or not storable
            error = exc.to_dict() if isinstance(exc, ActionError) else {
                "code": "UnstorableValue", "message": f"the action's inputs or outputs cannot be stored: {exc}"}
            result.status, result.inputs, result.outputs, result.error = FAILED, None, None, error
            self.store.step_finished(self.run_id, path, action.name, action.type, FAILED,
                                     attempts=result.attempts, inputs=None, outputs=None,
                                     error=result.error, started=result.start, ended=result.end)
        if result.status in (FAILED, TIMEDOUT) and result.error:
            self.failures.append((path, result.error, action.node.container))
        self._event(path, result.status, result.error)

    def _event(self, path: str, status: str, error: Any = None) -> None:
        if self.on_event:
            self.on_event(path, status, (error or {}).get("message", "") if isinstance(error, dict) else "")

    # -- reuse (resume / rerun) -------------------------------------------------------------
    def _reuse(self, action: Action, frame: Frame, path: str, step: dict) -> None:
        result = self._result_of(step)
        frame.results[action.name] = self.latest[action.name] = result
        if step["status"] == SUCCEEDED:
            _instance(action.node).replay(step["outputs"], self._replay_context(action, path, frame, step))
        self._restore_inside(path, frame, result)
        self._note_reused(path, action.name, action.type, step)
        self._event(path, step["status"])
        if self.terminated is not None and self._root_scope is not None:  # a reused Terminate
            self._root_scope.cancel()

    def _restore_inside(self, prefix: str, parent: Frame, container: ActionResult,
                        iteration_frame: Frame | None = None) -> None:
        """Bring back what ran inside a reused container (or loop iteration): each inner
        step's result becomes visible to later templates (body(), result()) and its effects
        on run state (variables) are re-applied, in the order they first happened."""
        inner = sorted((s for p, s in self.reuse.items() if p.startswith(prefix + "/") or p.startswith(prefix + "[")),
                       key=lambda s: s["seq"] or 0)
        frames: dict[str, Frame] = {}
        if iteration_frame is not None:
            frames[iteration_frame.prefix] = iteration_frame
        for s in inner:
            if self.copy_reused:
                self._note_reused(s["path"], s["action"], s["type"], s)
            action = self.flow.actions.get(s["action"])
            if action is None or s["type"] == "Iteration":
                continue
            result = self._result_of(s)
            self.latest[s["action"]] = result
            holder_path = s["path"].rpartition("/")[0]
            direct = holder_path == prefix or (holder_path.startswith(prefix + "[") and "/" not in holder_path[len(prefix):])
            if direct:
                holder = frames.get(holder_path)
                if holder is None:
                    holder = frames[holder_path] = Frame(self, parent, holder_path)
                    if iteration_frame is None:
                        container.frames.append(holder)
                holder.results[s["action"]] = result
            if s["status"] == SUCCEEDED:
                _instance(action.node).replay(s["outputs"], self._replay_context(action, s["path"], parent, s))

    @staticmethod
    def _result_of(step: dict) -> ActionResult:
        return ActionResult(step["action"], step["type"], step["status"], step["inputs"], step["outputs"],
                            step["error"], step["started"], step["ended"], step["attempts"])

    def _replay_context(self, action: Action, path: str, frame: Frame, step: dict) -> Context:
        return Context(run_id=self.run_id, path=path, action=action, connection=None,
                       log=self.engine.node_logger(self.run_id, path), attempt=step["attempts"],
                       runtime=self, frame=frame)

    def _note_reused(self, path: str, name: str, type_: str, step: dict) -> None:
        if self.copy_reused:
            self.store.step_finished(self.run_id, path, name, type_, step["status"], attempts=step["attempts"],
                                     inputs=step["inputs"], outputs=step["outputs"], error=step["error"],
                                     started=step["started"], ended=step["ended"], commit=False)
