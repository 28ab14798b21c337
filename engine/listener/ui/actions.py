"""The UI's operator actions (POST, signed in, CSRF-checked): rerun, resume, cancel, replay.

Each starts through the engine's API and hands the run to the listener's runs (so it counts
toward --max-in-flight, drains on shutdown and resumes after a crash like any served run),
then sends the browser to the run's page.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.state import is_terminal

from . import Refused
from .pages import Pages, redirect_to_run, short_text


class Actions:
    def __init__(self, ui: Any):
        self.ui = ui
        self.engine = ui.engine
        self.runs = ui.listener.runs
        self._pages = Pages(ui)

    def _room(self) -> None:
        if self.runs.full():
            raise Refused(429, f"{self.runs.max_in_flight} runs are in flight; try again in a moment.")

    async def rerun(self, request: Request) -> Response:
        run = self._pages.run_of(request)
        form = request.state.form
        start = short_text(form.get("from"), 300)
        if start is None:
            raise Refused(400, "Say which action to rerun from.")
        definition = "current" if form.get("definition") == "current" else "recorded"
        self._room()
        flow, new_id, reuse = self.engine.start_rerun(run.id, start, definition=definition)
        self.runs.launch(new_id, flow, run.trigger or "", reuse=reuse)
        self._log("rerun", new_id, run, start)
        return redirect_to_run(new_id)

    async def resume(self, request: Request) -> Response:
        run = self._pages.run_of(request)
        if is_terminal(run.status):
            raise Refused(409, f"Run {run.id} already finished ({run.status}); rerun it instead.")
        if run.id in self.runs.in_flight:
            raise Refused(409, f"Run {run.id} is executing in this server.")
        if not run.orphaned:
            raise Refused(409, f"Run {run.id} is held by a live process; it is not waiting for a resume.")
        self._room()
        self.runs.launch(run.id, None, run.trigger or "", resume=True, flow_name=run.flow)
        self._log("resume", run.id, run)
        return redirect_to_run(run.id)

    async def cancel(self, request: Request) -> Response:
        run = self._pages.run_of(request)
        if is_terminal(run.status):
            raise Refused(409, f"Run {run.id} already finished ({run.status}).")
        self.engine.cancel(run.id)
        self._log("cancel", run.id, run)
        return redirect_to_run(run.id)

    async def replay(self, request: Request) -> Response:
        from ..replay import start_replay

        run = self._pages.run_of(request)
        definition = "recorded" if request.state.form.get("definition") == "recorded" else "current"
        self._room()
        flow, new_id = start_replay(self.engine, run.id, definition)
        self.runs.launch(new_id, flow, run.trigger or "")
        self._log("replay", new_id, run)
        return redirect_to_run(new_id)

    def _log(self, what: str, run_id: str, old: Any, start: str | None = None) -> None:
        from . import log

        log.info("web UI: %s", what, extra={"event": f"ui_{what}", "run_id": run_id, "flow": old.flow,
                                             "source_run": old.id, "from_action": start})
