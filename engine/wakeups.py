"""Wake-up times: the engine's clock, and the loop that resumes parked runs when they are due.

A step that waits (``Wait``, or a ``Job`` between polls) records when it wakes in its step row,
so a resumed run sleeps only what is left. Under ``flowrun run`` the process simply sleeps.
Under ``flowrun serve`` a run whose every action in flight is waiting is *parked*: its task
ends, the run is ``Waiting`` in the state database with its earliest wake-up time, and
``run`` below resumes it when that time comes, also after a restart::

    # in the listener's start-up (one line):
    tg.start_soon(wakeups.run, engine, wakeups.launcher(runs))

``launch(run_id, run)`` is how the caller resumes a run (the listener's ``Runs.launch``).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import anyio

from .clock import Clock  # noqa: F401  (the engine's clock; re-exported)
from .state import WAITING  # a parked run's status

log = logging.getLogger("flowrun.wakeups")


async def run(engine: Any, launch: Callable[[str, dict], Any], *, idle: float = 1.0,
              task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Park waiting runs from now on, and resume each parked run when it is due, forever.

    Sleeps until the earliest wake-up time, at most ``idle`` seconds (a run parked meanwhile
    may be due sooner), on the engine's clock."""
    engine.parking = True
    task_status.started()
    while True:
        for run_id in engine.due_runs():
            if engine.store.claim_parked(run_id, WAITING):
                run = engine.store.get_run(run_id)
                log.info("waking run", extra={"event": "run_woken", "run_id": run_id, "flow": run.flow})
                try:
                    launch(run_id, run)
                except Exception:  # one run that cannot launch must not stop the others waking
                    log.exception("could not resume a parked run", extra={"run_id": run_id})
        clock = engine.clock
        nxt = engine.store.next_wake(WAITING)
        delay = idle if nxt is None else min(idle, max(0.0, nxt - clock.now()))
        await clock.sleep(delay)


def launcher(runs: Any) -> Callable[[str, dict], Any]:
    """``launch`` for the listener: resume the run as the listener resumes any run."""
    def launch(run_id: str, run: dict) -> Any:
        if run_id in runs.in_flight:
            return None
        return runs.launch(run_id, None, run.trigger, resume=True, flow_name=run.flow)
    return launch
