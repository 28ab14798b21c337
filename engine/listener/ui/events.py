"""Server-sent events for live pages: an event each time the runs (or one run) change.

    GET /ui/events            event "runs": {"counts": {status: n}, "runs": [{id, flow, status}]}
    GET /ui/events?run=ID     event "run":  {"run": id, "status": ..., "steps": n}

The store is looked at every POLL seconds; an event is sent only when something changed
(the first look always sends one). A stream ends after LIFETIME seconds or when the server
is told to stop (browsers reconnect by themselves, after ``retry``); ``?events=N`` ends it after N
events (scripts, tests). The data holds ids, names and statuses only, and passes through
the redactor like every other answer.
"""
from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from engine import history

from . import HEADERS
from .pages import number, short_text

POLL = 1.0
LIFETIME = 300.0


class Events:
    def __init__(self, ui: Any):
        self.ui = ui
        self.store = ui.engine.store

    async def stream(self, request: Request) -> Response:
        run_id = short_text(request.query_params.get("run"), 100)
        if run_id is not None and self.ui.engine.run_record(run_id) is None:
            return Response("no such run", status_code=404, headers=HEADERS)
        most = number(request.query_params.get("events"), 10**9, 1, 10**9)
        headers = {**HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(self._events(run_id, most), media_type="text/event-stream", headers=headers)

    def snapshot(self, run_id: str | None) -> tuple[str, dict]:
        if run_id is not None:
            return "run", {"run": run_id, **history.progress(self.store, run_id)}
        counts = history.counts(self.store, history.RunFilter())
        recent = history.search(self.store, history.RunFilter(), limit=20)
        return "runs", {"counts": counts, "runs": [{"id": r.id, "flow": r.flow, "status": str(r.status)}
                                                   for r in recent]}

    async def _events(self, run_id: str | None, most: int) -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last: Any = None
        sent = 0
        ends = time.monotonic() + LIFETIME
        while sent < most and time.monotonic() < ends and not (self.ui.listener.draining or self.ui.listener.closing):
            mark = history.fingerprint(self.store, run_id)
            if mark != last:
                last = mark
                name, data = self.snapshot(run_id)
                text = self.ui.redact(json.dumps(data, ensure_ascii=False, default=str))
                yield f"event: {name}\ndata: {text}\n\n"
                sent += 1
                if sent >= most:
                    return
            await anyio.sleep(POLL)
