"""Runs the listener has accepted, executing in the server's event loop.

``launch`` starts ``engine.execute`` (or ``engine.resume``) as a plain asyncio task (an
anyio task-group spawn cost a measurable share of each trigger) and returns a handle: the
request handler waits on ``responded`` for a Response action's reply; redeliveries find a
run in flight by its id. A server that leaves runs to ``flowrun worker``s (``executes=False``,
PostgreSQL) commits them Queued and launches nothing: the handler waits for the reply the
worker records (``wait_response``). The number of runs in flight is what ``--max-in-flight`` bounds
(the handler answers 429 past it); in a server that leaves runs to workers it bounds the callers
waiting for a reply instead (``reserve``, taken before the run is committed); ``drain`` and
``cancel`` serve graceful shutdown.

At start-up, ``resume_unfinished`` continues the runs this listener had accepted (the
``request`` column says ``via: http``, ``schedule`` or ``trigger``) that did not finish: killed with
kill -9 after the acknowledgement, or cancelled by a shutdown that outlasted its grace
period. Child runs are left to their parent's Workflow action, which resumes them itself;
runs started by ``flowrun run`` or ``replay`` are left to ``flowrun resume``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from engine.errors import FlowrunError, LeaseLost, RunBusy, StoreUnavailable
from engine.state import FAILED, is_terminal

log = logging.getLogger("flowrun.listener")
SERVED = ("http", "schedule", "trigger")  # the request's ``via`` of runs a listener accepted


class RunHandle:
    __slots__ = ("run_id", "flow", "flow_name", "trigger", "response", "responded", "done", "status", "_starts",
                 "reuse")

    def __init__(self, run_id: str, flow: Any, trigger: str, flow_name: str | None = None, reuse: Any = None):
        self.run_id = run_id
        self.reuse = reuse  # a rerun: the old run's steps it takes over (engine.start_rerun)
        self.flow = flow  # None when resuming: the engine loads the recorded definition
        self.flow_name = flow.name if flow is not None else flow_name
        self.trigger = trigger
        self.response: dict | None = None
        self.responded = asyncio.Event()  # set on the Response action's reply, or when the run ends
        self.done = asyncio.Event()
        self.status: str | None = None
        self._starts: dict[str, float] = {}


class Runs:
    def __init__(self, engine: Any, metrics: Any, max_in_flight: int, *, executes: bool = True):
        self.engine = engine
        self.executes = executes  # False: runs are committed Queued for `flowrun worker`s (PostgreSQL)
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.in_flight: dict[str, RunHandle] = {}
        self.awaiting = 0  # requests that (may) wait for a reply a worker records (executes False): ``reserve``
        self.tasks: set[asyncio.Task] = set()
        self._room: asyncio.Event | None = None  # set when a run ends (pull triggers wait on it)
        self.draining = False  # shutting down: runs waiting for room are left Queued (resumed at start)
        self.gates: dict[tuple, asyncio.Semaphore] = {}  # (flow, trigger) -> its run concurrency
        self.limits: dict[tuple, int] = {}

    def full(self) -> bool:
        return len(self.in_flight) >= self.max_in_flight

    def reserve(self) -> bool:
        """Room for one more caller to wait for a worker's reply (a server that leaves runs to
        workers executes nothing: this is what bounds its open requests). Taken before the
        run is committed, so a burst cannot pass the check all at once; ``unreserve`` after."""
        if self.awaiting >= self.max_in_flight:
            return False
        self.awaiting += 1
        return True

    def unreserve(self) -> None:
        self.awaiting -= 1

    def room(self) -> int:
        """How many more runs may start before ``full()``."""
        return max(0, self.max_in_flight - len(self.in_flight))

    async def wait_for_room(self) -> None:
        """Return once fewer than ``max_in_flight`` runs execute (back pressure for pull triggers)."""
        while self.full():
            if self._room is None or self._room.is_set():
                self._room = asyncio.Event()
            await self._room.wait()

    def launch(self, run_id: str, flow: Any, trigger: str, *, resume: bool = False,
               flow_name: str | None = None, reuse: Any = None, concurrency: int | None = None) -> RunHandle:
        """Start executing a committed run. ``concurrency``: at most that many runs of this
        flow's trigger execute at once (a trigger's SingleInstance: 1); the others wait Queued,
        in the order they were launched."""
        handle = RunHandle(run_id, flow, trigger, flow_name, reuse)
        if not self.executes:  # a worker executes it: wait_response reads its reply from the store
            return handle
        self.in_flight[run_id] = handle
        self.metrics.in_flight.set(len(self.in_flight))
        gate = self._gate((handle.flow_name, trigger), concurrency) if concurrency else None
        task = asyncio.get_running_loop().create_task(self._gated(handle, resume, gate))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return handle

    def handle_of(self, run_id: str, flow: Any, trigger: str) -> RunHandle | None:
        """The handle of a run executing here; for a server that leaves runs to workers, one
        whose ``wait_response`` reads the run's reply from the store; else None."""
        handle = self.in_flight.get(run_id)
        if handle is None and not self.executes:
            handle = RunHandle(run_id, flow, trigger)
        return handle

    def launch_later(self, run_ids: list[str], flow: Any, trigger: str, concurrency: int | None = None) -> None:
        """Launch committed runs one by one as room frees (a split bigger than --max-in-flight)."""
        async def feed() -> None:
            for run_id in run_ids:
                if self.draining or self.engine.stopping:
                    return  # the rest stay Queued: the next start resumes them
                await self.wait_for_room()
                self.launch(run_id, flow, trigger, concurrency=concurrency)

        task = asyncio.get_running_loop().create_task(feed())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _gate(self, key: tuple, limit: int) -> asyncio.Semaphore:
        gate = self.gates.get(key)
        if gate is None or self.limits.get(key) != limit:  # a reload may change the limit
            gate = self.gates[key] = asyncio.Semaphore(limit)
            self.limits[key] = limit
        return gate

    async def _gated(self, handle: RunHandle, resume: bool, gate: asyncio.Semaphore | None) -> None:
        if gate is None:
            return await self._run(handle, resume)
        async with gate:
            await self._run(handle, resume)

    async def finished(self, run_id: str) -> str:
        """The final status of a run: waits while this server executes it; otherwise read from
        the store (a run that is neither in flight nor finished has been handed elsewhere)."""
        handle = self.in_flight.get(run_id)
        if handle is not None:
            await handle.done.wait()
            if handle.status is not None:
                return str(handle.status)
        return str(self.engine.get_run(run_id).status)

    async def wait_response(self, handle: RunHandle, timeout: float) -> dict | None:
        """The run's reply within ``timeout`` seconds, or None (then ``handle.done`` says whether
        the run ended without one). A run a worker executes is read from the store, woken by the
        worker's NOTIFY (``Engine.wait_for_reply``)."""
        if not self.executes and not handle.responded.is_set():
            try:
                run = await self.engine.wait_for_reply(handle.run_id, timeout)
            except FlowrunError as exc:  # the database went away meanwhile: the run is committed, poll it
                log.warning("could not read the run's reply: %s", exc,
                            extra={"event": "reply_unread", "run_id": handle.run_id, "flow": handle.flow_name})
                return None
            if run.response is not None:
                handle.response = run.response
                handle.responded.set()
            if is_terminal(run.status):
                handle.status = run.status
                handle.responded.set()
                handle.done.set()
            return handle.response
        if not handle.responded.is_set():
            try:
                await asyncio.wait_for(handle.responded.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return handle.response

    async def _run(self, handle: RunHandle, resume: bool) -> None:
        flow_name = handle.flow_name

        def on_response(reply: dict) -> None:
            handle.response = reply
            handle.responded.set()

        def on_event(path: str, status: str, _message: str) -> None:
            if status == "Running":
                handle._starts[path] = time.perf_counter()
                return
            started = handle._starts.pop(path, None)
            if started is not None:
                action = path.rsplit("/", 1)[-1]
                self.metrics.child(self.metrics.actions, flow_name, action, status).observe(time.perf_counter() - started)

        try:
            if resume:
                result = await self.engine.resume(handle.run_id, on_response=on_response, on_event=on_event)
            elif handle.reuse is not None:  # a rerun started from the web UI
                result = await self.engine.execute(handle.run_id, handle.flow, reuse=handle.reuse, copy_reused=True,
                                                   on_response=on_response, on_event=on_event)
            else:
                result = await self.engine.execute(handle.run_id, handle.flow, on_response=on_response,
                                                   on_event=on_event)
            handle.status = result.status
            if handle.response is None and result.response:
                handle.response = result.response  # replied before a crash; resumed since
            log.info("run finished", extra={"event": "run_finished", "run_id": handle.run_id, "flow": flow_name,
                                            "trigger": handle.trigger, "status": result.status})
        except (LeaseLost, StoreUnavailable) as exc:  # the database went away (said once by the store):
            # the run stays as committed, for whoever claims it next (engine.worker), never Failed by this
            log.info("run stopped: %s", exc, extra={"event": "run_dropped", "run_id": handle.run_id,
                                                     "flow": flow_name})
        except RunBusy as exc:  # another process executes it (a hand resume): theirs to finish
            log.warning("run is executed elsewhere: %s", exc, extra={"event": "run_busy", "run_id": handle.run_id,
                                                                     "flow": flow_name})
        except Exception as exc:  # the engine could not run it at all: record why
            handle.status = FAILED
            log.exception("run could not execute", extra={"event": "run_error", "run_id": handle.run_id,
                                                          "flow": flow_name, "trigger": handle.trigger})
            try:
                self.engine.fail_run(handle.run_id, {"code": "ListenerError",
                                                     "message": f"{type(exc).__name__}: {exc}"})
            except Exception:
                log.exception("could not record the run's failure", extra={"run_id": handle.run_id})
        finally:
            self.in_flight.pop(handle.run_id, None)
            self.metrics.in_flight.set(len(self.in_flight))
            if handle.status is not None:
                self.metrics.child(self.metrics.runs, flow_name, handle.status).inc()
            handle.responded.set()
            handle.done.set()
            if self._room is not None:
                self._room.set()

    def resume_unfinished(self, concurrency: Any = None) -> int:
        """Launch every unfinished run this listener accepted; returns how many. ``concurrency``
        (flow name, trigger) -> its run limit (SingleInstance), or None."""
        count = 0
        for run_id in self.engine.unfinished_runs():
            run = self.engine.get_run(run_id)
            request = run.request or {}
            if not isinstance(request, dict) or request.get("via") not in SERVED:
                continue
            if run.parent_id:
                try:
                    parent = self.engine.get_run(run.parent_id)
                    if not is_terminal(parent.status):
                        continue  # the parent's Workflow action resumes it
                except Exception:
                    pass
            log.info("resuming run", extra={"event": "run_resumed", "run_id": run_id, "flow": run.flow,
                                            "trigger": run.trigger, "status": run.status})
            limit = concurrency(run.flow, run.trigger) if concurrency is not None else None
            self.launch(run_id, None, run.trigger, resume=True, flow_name=run.flow, concurrency=limit)
            count += 1
        return count

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the runs in flight to finish; True if they all did."""
        self.draining = True
        if self._room is not None:
            self._room.set()  # a split's feeder waiting for room looks again, and stops
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
        return not self.tasks

    async def cancel(self) -> None:
        """Stop the runs still in flight; what they finished is committed, they resume later
        (remote jobs they started keep running: the resumed run polls them again)."""
        self.engine.stopping = True
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
