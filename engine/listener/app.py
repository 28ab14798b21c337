"""The Starlette app of ``flowrun serve``: trigger endpoints, run status, operations.

    POST /flows/{flow}/triggers/{trigger}[/{relativePath}]   start a run (method configurable)
    OPTIONS  (same path)                                      protocol pre-flight (handshake)
    GET  /runs/{id}                                           status and outputs
    GET  /healthz  /readyz  /metrics  /openapi.json
    /ui/...                                                   the web UI (engine/listener/ui)

A trigger request goes: route -> method (405) -> draining (503) -> size (413) -> handshake
-> authentication (401/403) -> body parsing (400) -> schema (400, every problem listed) ->
de-duplication (the first run's answer) -> in-flight limit (429 + Retry-After) -> the run
is committed as Queued -> acknowledgement. Nothing before the commit starts a run; nothing
is acknowledged before it. The run then executes in this event loop (or, on PostgreSQL without
--worker, in a `flowrun worker`); with a Response action the request waits for its reply up to
--sync-timeout, else gets 202 + Location (502 when the run ended without replying).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from urllib.parse import quote
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.errors import ActionError, FlowrunError
from engine.plugin import AuthError, InboundRequest
from engine.state import is_terminal
from engine import encrypted, firing, telemetry, wakeups
from engine.safejson import utf8_json

from . import inbound as _in
from .auth import AdminToken
from .capabilities import PARAM as CAPABILITY, Capabilities
from .limits import MAX_HEADER_BYTES, MAX_HEADERS, HeaderLimits
from .metrics import Metrics
from .runs import RunHandle, Runs
from .consumers import Consumers
from .triggers import PushEntry, Table, load_folder
from .ui.session import Throttle

log = logging.getLogger("flowrun.listener")
BODILESS = ("GET", "HEAD")  # a trigger taking one of these refuses a body
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
REVEALED = 1024  # distinct credential header values a SAS-protected flow may see in one process


@dataclass
class Options:
    flows: str
    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str | None = None
    max_body: int = 1_048_576
    max_headers: int = MAX_HEADERS  # more headers, or more bytes of them, get 431
    max_header_bytes: int = MAX_HEADER_BYTES
    max_in_flight: int = 256
    sync_timeout: float = 30.0
    shutdown_timeout: float = 30.0
    reload: bool = False
    reload_interval: float = 1.0
    retry_after: int = 1
    admin_token: str | None = None
    ui_token_file: str | None = None  # where serve keeps the admin token it made (none was set)
    retention: float | None = None  # seconds: finished runs older than this are pruned
    retention_interval: float = 3600.0  # seconds between prunes (the first at start)
    clock: Any = None  # what pull triggers (schedules) read the time from; tests inject one
    worker: bool = False  # PostgreSQL: execute runs here too (accepted ones, and any queued: engine.worker)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


class Listener:
    """Everything one server holds: the engine, the trigger table, runs, pull triggers, metrics."""

    def __init__(self, engine: Any, options: Options):
        self.engine = engine
        self.options = options
        self.metrics = Metrics()
        self.shared = getattr(engine.store, "backend", "sqlite") == "postgresql"  # many servers, one database
        self.runs = Runs(engine, self.metrics, options.max_in_flight,
                         executes=not self.shared or options.worker)
        self.consumers = Consumers(engine, self.runs, self.metrics, options.clock)
        self.admin = AdminToken(options.admin_token)
        self.guesses = Throttle()  # wrong admin tokens per address: the UI's login form and bearer headers, /runs
        self.redact = engine.redactor  # every body this server sends passes through it (as its logs do)
        self.json = _redacting(self.redact)
        self.capabilities = Capabilities(engine)
        if options.admin_token:
            engine.redactor.add(options.admin_token)
        self.table = Table()
        self.ready = False
        self.draining = False
        self.closing = False  # a signal asked the server to stop (before draining starts)
        self._openapi: tuple[int, dict] | None = None
        self._stamps: dict[str, tuple[int, int]] = {}
        self._revealed: set[str] = set()  # credential header values a SAS flow sees (_reveal)

    # -- flows ------------------------------------------------------------------------------
    def load(self) -> Table:
        """(Re)load the flows folder; report every problem; keep serving what still loads."""
        previous = self.table if self.table.files else None
        table = load_folder(self.engine, self.options.flows, previous)
        for file, problems in table.problems.items():
            kept = " (still serving the previous version)" if previous and file in table.files else ""
            for p in problems:
                log.error("flow not served: %s%s", p, kept,
                          extra={"event": "flow_invalid", "file": file, "problem": str(p)})
        base = self.options.base_url or f"http://{self.options.host}:{self.options.port}"
        for entry in table.push.values():
            url = entry.callback_url(base)
            if url is not None and entry.flow.callback_url is None:
                entry.flow.callback_url = url  # listCallbackUrl()
        for name, flow in table.flows.items():
            if previous is None or previous.flows.get(name) is not flow:
                triggers = table.trigger_names(name)
                log.info("serving flow %s (%s)", name, ", ".join(triggers) or "no triggers",
                         extra={"event": "flow_served", "flow": name, "file": flow.file})
                for t in triggers:
                    entry = table.request(name, t)
                    url = entry.callback_url(base) if entry is not None else None
                    if url is not None:
                        log.info("callback URL of %s/%s: %s", name, t, url,
                                 extra={"event": "callback_url", "flow": name, "trigger": t, "url": url})
        self.table = table
        self._openapi = None
        self._stamps = self._scan()
        self.metrics.flows.set(len(table.files))
        self.metrics.invalid.set(len([f for f in table.problems if f not in table.files]))
        return table

    def _concurrency(self, flow: str, trigger: str) -> int | None:
        entry = self.table.request(flow, trigger)
        return entry.concurrency if entry is not None else None

    def _scan(self) -> dict[str, tuple[int, int] | None]:
        """What --reload compares: each flow file's stamp and, beside each Standard workflow,
        its app folder's parameters.json, connections.json and local.settings.json (absent: None)."""
        from .triggers import watched_files

        out: dict[str, tuple[int, int] | None] = {}
        for f in watched_files(self.options.flows):
            try:
                st = f.stat()
                out[str(f)] = (st.st_mtime_ns, st.st_size)
            except OSError:
                out[str(f)] = None
        return out

    async def watch(self) -> None:
        """--reload: poll the flows folder; reload when a flow file (or a Standard app's
        parameters.json, connections.json, local.settings.json) changes, appears or goes."""
        while True:
            await anyio.sleep(self.options.reload_interval)
            try:
                if self._scan() != self._stamps:
                    self.load()
                    await self.consumers.sync(self.table)
                    log.info("flows reloaded", extra={"event": "flows_reloaded", "count": len(self.table.files)})
            except Exception:
                log.exception("reload failed; still serving the previous flows", extra={"event": "reload_error"})

    def location(self, run_id: str, capability: bool = True) -> str:
        """Where to poll the run; with ``capability`` the URL holds the run's own token."""
        base = (self.options.base_url or "").rstrip("/")
        where = f"{base}/runs/{run_id}"
        return f"{where}?{CAPABILITY}={self.capabilities.token(run_id)}" if capability else where

    def public_url(self, request: Request) -> str:
        """The URL the sender called (and signed): --base-url + path + query behind a proxy."""
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if raw else request.url.path
        query = request.scope.get("query_string", b"").decode("latin-1")
        if self.options.base_url:
            base = self.options.base_url.rstrip("/")
        else:
            base = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
        return base + path + (f"?{query}" if query else "")

    # -- trigger requests: a pipeline of small steps -------------------------------------------
    # route -> gate (method 405, draining 503) -> read (413) -> authenticate (handshake, 401/403)
    # -> body (400: parse, schema) -> fire (conditions: 202 Skipped; splitOn: one run per item)
    # -> dedupe (the first run's answer) -> limit (429) -> commit -> reply. Each step returns a Response to stop the request, or None to go on.
    async def trigger(self, request: Request) -> Response:
        t0 = time.perf_counter()
        call = self._route(request)
        if isinstance(call, Response):
            return call
        try:
            for step in (self._gate, self._read, self._authenticate, self._body, self._fire, self._dedupe,
                         self._limit, self._commit):
                stop = await step(call)
                if stop is not None:
                    return stop
            response = await self._answer(call)
        except Exception as exc:
            if not self.engine.store.unavailable(exc):
                raise
            return self._unavailable(call.entry)
        finally:
            if call.reserved:
                self.runs.unreserve()
        self.metrics.child(self.metrics.ack, *call.labels).observe(time.perf_counter() - t0)
        return response

    def _route(self, request: Request) -> "_Call | Response":
        flow_name, name = request.path_params["flow"], request.path_params["trigger"]
        entry = self.table.request(flow_name, name)
        params = entry.match(request.path_params.get("rest", "")) if entry is not None else None
        if entry is not None and params is not None:
            return _Call(request, entry, params)
        self.metrics.rejected.labels("", "", "not_found").inc()
        flow = self.table.flows.get(flow_name)
        known = sorted(t for (f, t) in self.table.push if f == flow_name) if flow else []
        hint = f"; its HTTP triggers: {', '.join(known)}" if known else ""
        what = f"no HTTP trigger '{name}' in flow '{flow_name}'{hint}" if flow else f"no flow '{flow_name}' is served"
        if entry is not None:
            what = f"{request.url.path} does not match the trigger's path {entry.path}"
        return self._error(404, what)

    async def _gate(self, call: "_Call") -> Response | None:
        entry, method = call.entry, call.request.method
        if method not in (entry.method, "OPTIONS"):
            return self._reject(entry, 405, "method", f"this trigger takes {entry.method}, not {method}",
                                {"Allow": f"{entry.method}, OPTIONS"})
        self.metrics.child(self.metrics.received, *call.labels).inc()
        if self.draining:
            return self._reject(entry, 503, "draining", "the server is shutting down; retry shortly",
                                {"Retry-After": str(self.options.retry_after)})
        return None

    async def _read(self, call: "_Call") -> Response | None:
        body = await _read_limited(call.request, self.options.max_body)
        if body is None:
            return self._reject(call.entry, 413, "too_large",
                                f"the body exceeds the limit of {self.options.max_body} bytes")
        request, headers = call.request, dict(call.request.headers)
        if body and request.method in BODILESS:  # nothing signs it, so nothing may carry it in
            return self._reject(call.entry, 400, "invalid_body", f"a {request.method} request carries no body")
        form = _in.parse_form(body) if _in.is_form(headers) else None
        deep = _in.too_deep(body, form)  # before any verifier or parser recurses into it
        if deep is not None:
            return self._reject(call.entry, 400, "invalid_body", deep)
        call.inbound = InboundRequest(method=request.method, url=self.public_url(request), headers=headers,
                                      body=body, query=dict(request.query_params), form=form)
        return None

    async def _authenticate(self, call: "_Call") -> Response | None:
        """A protocol handshake is answered here; otherwise the request must verify."""
        entry, labels = call.entry, call.labels
        try:
            answer = entry.auth.handshake(call.inbound, entry.connection, entry.options)
            if answer is not None:
                status, extra, content = answer
                self.metrics.handshakes.labels(*labels).inc()
                log.info("handshake answered", extra={"event": "handshake", "flow": labels[0], "trigger": labels[1],
                                                      "http_status": status})
                return Response(self._scrub(content), status_code=status, headers=extra)
            if call.request.method == "OPTIONS":
                return Response(status_code=405, headers={"Allow": entry.method})
            call.auth_key = entry.auth.verify(call.inbound, entry.connection, entry.options)
        except AuthError as exc:
            if 200 <= exc.status < 300:
                self.metrics.ignored.labels(*labels).inc()
                log.info("request acknowledged, no run: %s", exc.message,
                         extra={"event": "ignored", "flow": labels[0], "trigger": labels[1]})
                return self.json({"status": "ignored", "message": exc.message}, status_code=exc.status)
            reason = {401: "unauthenticated", 403: "forbidden"}.get(exc.status, "refused")
            extra_headers = {"WWW-Authenticate": entry.kind} if exc.status == 401 else None
            return self._reject(entry, exc.status, reason, exc.message, extra_headers, client=call.request.client)
        return None

    async def _body(self, call: "_Call") -> Response | None:
        entry, inbound = call.entry, call.inbound
        try:
            parsed = _in.parse_body(inbound.body, inbound.headers)
        except _in.BodyError as exc:
            return self._reject(entry, 400, "invalid_body", str(exc))
        problems = entry.trigger.body_problems(parsed)
        if problems:
            return self._reject(entry, 400, "schema", "the body does not match the trigger's schema",
                                problems=problems)
        call.revealed = self._reveal(entry, inbound)
        call.outputs = _in.trigger_outputs(inbound, parsed, call.params, entry.secret_headers, entry.secret_queries,
                                           reveal=call.revealed)
        return None

    def _reveal(self, entry: PushEntry, inbound: InboundRequest) -> frozenset[str]:
        """A Logic Apps definition checks an API key itself (an If on
        ``triggerOutputs()['headers']['x-api-key']``): behind its verified SAS signature, the
        credential headers reach the flow as sent, each value made a secret of the redactor
        first, so the stored request, the payload, every step and every answer hold it masked.
        At most ``REVEALED`` distinct values per process; past that the flow sees them masked."""
        if entry.kind != "sas":
            return frozenset()
        shown = set()
        for name, value in _in.credential_headers(inbound.headers).items():
            if name in entry.secret_headers or len(value) < 4:
                continue  # the auth's own credential, or too short to redact safely: masked
            if value not in self._revealed:
                if len(self._revealed) >= REVEALED:
                    continue
                self._revealed.add(value)
                self.redact.add(value)
            shown.add(name)
        return frozenset(shown)

    async def _fire(self, call: "_Call") -> Response | None:
        """The trigger's conditions and splitOn (``engine.firing``): what runs this request starts."""
        entry = call.entry
        raw = entry.flow.triggers[entry.name].raw
        if "splitOn" not in raw and "conditions" not in raw:
            return None
        try:
            call.firings = await self.engine.evaluator.offload(firing.fire, self.engine.evaluator, entry.name, raw,
                                                               call.outputs)
        except firing.FiringError as exc:
            return self._reject(entry, 400, "firing", str(exc))
        call.split = "splitOn" in raw
        if not call.firings:
            self.metrics.ignored.labels(*call.labels).inc()
            what = "the split gave no items" if call.split and not raw.get("conditions") else \
                "the trigger's conditions were not met"
            log.info("trigger skipped: %s", what, extra={"event": "skipped", "flow": entry.flow.name,
                                                        "trigger": entry.name})
            return self.json({"status": "Skipped", "message": f"{what}; no run started"}, status_code=202)
        if not call.split:
            call.outputs = call.firings[0]
        return None

    async def _dedupe(self, call: "_Call") -> Response | None:
        entry = call.entry
        if call.split:
            return None  # each item's run is de-duplicated on its own (_commit_split)
        try:
            call.dedupe = entry.dedupe_key(call.outputs, self.engine.evaluator, call.auth_key)
        except ActionError as exc:
            return self._reject(entry, 400, "dedupe", f"the trigger's dedupe expression failed: {exc.message}")
        if call.dedupe is not None:
            first = self.engine.find_run(entry.flow.name, call.dedupe)
            if first is not None:
                return await self._duplicate(entry, first, call)
        return None

    async def _limit(self, call: "_Call") -> Response | None:
        """429 + Retry-After before anything is committed: --max-in-flight runs execute here, or
        (without --worker) as many callers wait for a worker's reply."""
        what = None
        if self.runs.full():
            what = "runs are in flight"
        elif call.entry.has_response and not call.split and not self.runs.executes:
            call.reserved = self.runs.reserve()
            if not call.reserved:
                what = "callers wait for a worker's reply"
        if what is not None:
            return self._reject(call.entry, 429, "busy", f"{self.options.max_in_flight} {what}; retry later",
                                {"Retry-After": str(self.options.retry_after)})
        return None

    async def _commit(self, call: "_Call") -> Response | None:
        """The run is committed (as Queued, with the stored request) before anything answers."""
        entry, labels = call.entry, call.labels
        stored = _in.stored_request(call.inbound, call.request.url.path, call.params, entry.secret_headers,
                                    entry.secret_queries)
        held = {n: call.inbound.headers[n] for n in call.revealed if n in call.inbound.headers}
        if held:  # what the flow was shown, for a resume: sealed with the environment's key (engine.encrypted)
            stored["sealed"] = encrypted.seal(held, entry.flow.name)
        if call.split:
            return await self._commit_split(call, stored)
        try:
            got = await self.engine.submit_once(entry.flow, trigger=entry.name, trigger_outputs=call.outputs,
                                                request=stored, dedupe_key=call.dedupe, hold=self.runs.executes,
                                                trace=telemetry.carrier(call.inbound.headers))  # W3C traceparent
        except FlowrunError as exc:
            from engine.concurrency import ConcurrencyLimit

            if self.engine.store.unavailable(exc):
                return self._unavailable(entry)
            if isinstance(exc, ConcurrencyLimit):  # maxQueued runs of this key wait already: come back later
                return self._reject(entry, 429, "busy", str(exc), {"Retry-After": str(self.options.retry_after)})
            log.error("could not start a run: %s", exc, extra={"event": "start_error", "flow": labels[0],
                                                               "trigger": labels[1]})
            self.metrics.rejected.labels(*labels, "error").inc()
            return self._error(503, f"the run could not be started: {exc}", {"Retry-After": str(self.options.retry_after)})
        if got.duplicate:  # the same key committed by another process meanwhile
            first = self.engine.run_record(got.run_id)
            return await self._duplicate(entry, first, call)
        call.run_id = got.run_id
        if held:
            self.engine.held_headers[got.run_id] = held
        call.handle = self.runs.launch(got.run_id, entry.flow, entry.name, concurrency=entry.concurrency)
        self.metrics.child(self.metrics.accepted, *labels).inc()
        log.info("trigger accepted", extra={"event": "accepted", "run_id": got.run_id, "flow": labels[0],
                                            "trigger": labels[1], "dedupe_key": call.dedupe})
        return None

    async def _commit_split(self, call: "_Call", stored: dict) -> Response:
        """splitOn: one run per item, each committed with its own id (and, with a dedupe key, its
        own key ``KEY#i``), all before the answer: 202 with the run ids (a Response action of
        a split run cannot answer the caller, as in Logic Apps)."""
        entry, labels = call.entry, call.labels
        key = None
        try:
            key = entry.dedupe_key(call.outputs, self.engine.evaluator, call.auth_key)
        except ActionError as exc:
            return self._reject(entry, 400, "dedupe", f"the trigger's dedupe expression failed: {exc.message}")
        run_ids, started, waiting = [], 0, []
        for i, outputs in enumerate(call.firings):
            try:
                got = await self.engine.submit_once(entry.flow, trigger=entry.name, trigger_outputs=outputs,
                                                    request={**stored, "splitIndex": i},
                                                    dedupe_key=f"{key}#{i}" if key else None,
                                                    trace=telemetry.carrier(call.inbound.headers))
            except FlowrunError as exc:
                log.error("could not start a run: %s", exc, extra={"event": "start_error", "flow": labels[0],
                                                                   "trigger": labels[1]})
                self.metrics.rejected.labels(*labels, "error").inc()
                return self._error(503, f"{len(run_ids)} of the {len(call.firings)} split runs started "
                                        f"({', '.join(run_ids[:20])}); the others could not: {exc}",
                                   {"Retry-After": str(self.options.retry_after)})
            run_ids.append(got.run_id)
            held = stored.get("sealed") and {n: call.inbound.headers[n] for n in call.revealed}
            if held:
                self.engine.held_headers[got.run_id] = held
            if not got.duplicate:
                waiting.append(got.run_id)
                self.metrics.child(self.metrics.accepted, *labels).inc()
                started += 1
        # committed, all of them: as many start now as --max-in-flight leaves room for, the
        # others as runs end (Queued meanwhile; a restart resumes them like any accepted run)
        now = waiting[:self.runs.room()]
        for run_id in now:
            self.runs.launch(run_id, entry.flow, entry.name, concurrency=entry.concurrency)
        if len(waiting) > len(now):
            self.runs.launch_later(waiting[len(now):], entry.flow, entry.name, entry.concurrency)
        log.info("trigger accepted: split into %d runs", len(run_ids),
                 extra={"event": "accepted", "flow": labels[0], "trigger": labels[1], "count": len(run_ids)})
        body = {"status": "Accepted", "runIds": run_ids, "started": started}
        extra = {"X-Flowrun-Duplicate": "true"} if run_ids and not started else {}
        return self.json(body, status_code=202, headers=extra)

    async def _answer(self, call: "_Call") -> Response:
        """The flow's reply (a Response-declaring action) within --sync-timeout, else 202 + Location."""
        run_id, handle = call.run_id, call.handle
        if not call.entry.has_response:
            return self._accepted(run_id)
        reply = await self.runs.wait_response(handle, self.options.sync_timeout)
        if reply is not None:
            return self._reply(run_id, reply)
        return self._no_reply(run_id, handle) if handle.done.is_set() else self._accepted(run_id)

    async def _duplicate(self, entry: PushEntry, first: Any, call: "_Call") -> Response:
        self.metrics.child(self.metrics.duplicates, entry.flow.name, entry.name).inc()
        run_id = first.id
        log.info("redelivery answered from the first run", extra={"event": "duplicate", "run_id": run_id,
                                                                  "flow": entry.flow.name, "trigger": entry.name})
        reply, status = first.response, first.status
        handle = self.runs.handle_of(run_id, entry.flow, entry.name)
        if not call.reserved and not self.runs.executes and reply is None and entry.has_response:
            call.reserved = self.runs.reserve()  # (a redelivery past the bound: 202 + Location at once)
        if reply is None and entry.has_response and handle is not None and (call.reserved or self.runs.executes):
            reply = await self.runs.wait_response(handle, self.options.sync_timeout)
            status = handle.status or status
        extra = {"X-Flowrun-Duplicate": "true"}
        if reply is not None:
            return self._reply(run_id, reply, extra)
        # a redelivery proves nothing about who sends it: no polling token (the admin token reads it)
        if entry.has_response and is_terminal(status) and (handle is None or handle.done.is_set()):
            return self._no_reply(run_id, handle, status, extra, capability=False)
        return self._accepted(run_id, extra, capability=False)

    def _accepted(self, run_id: str, extra: dict | None = None, capability: bool = True) -> Response:
        where = self.location(run_id, capability)
        return self.json({"runId": run_id, "status": "Accepted", "location": where}, status_code=202,
                            headers={"Location": where, "X-Flowrun-Run-Id": run_id, **(extra or {})})

    def _reply(self, run_id: str, reply: dict, extra: dict | None = None) -> Response:
        headers = {_header(str(k)): _header(self.redact(str(v))) for k, v in (reply.get("headers") or {}).items()}
        lower = {k.lower() for k in headers}
        body = reply.get("body")
        if body is None:
            content = b""
        elif isinstance(body, (bytes, bytearray)):
            content = bytes(body)
        elif isinstance(body, str):
            content = body.encode()
            if "content-type" not in lower:
                headers["Content-Type"] = "text/plain; charset=utf-8"
        else:
            content = utf8_json(json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)).encode()
            if "content-type" not in lower:
                headers["Content-Type"] = "application/json"
        headers.setdefault("X-Flowrun-Run-Id", run_id)
        headers.update(extra or {})
        return Response(self._scrub(content), status_code=int(reply.get("statusCode") or 200), headers=headers)

    def _scrub(self, content: bytes) -> bytes:
        """A body with every known secret masked (binary content is sent as it is)."""
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return content
        clean = self.redact(text)
        return content if clean == text else clean.encode("utf-8")

    def _error(self, status: int, message: str, headers: dict | None = None,
               problems: list | None = None) -> Response:
        body: dict[str, Any] = {"error": message}
        if problems:
            body["problems"] = problems
        return self.json(body, status_code=status, headers=headers)

    def _no_reply(self, run_id: str, handle: RunHandle | None, status: str | None = None,
                  extra: dict | None = None, capability: bool = True) -> Response:
        status = status or (handle.status if handle else None)
        where = self.location(run_id, capability)
        return self.json({"runId": run_id, "status": status, "location": where,
                             "error": "the run ended without sending its Response"}, status_code=502,
                            headers={"Location": where, "X-Flowrun-Run-Id": run_id, **(extra or {})})

    def _unavailable(self, entry: PushEntry) -> Response:
        """503 + Retry-After while PostgreSQL cannot be reached (the store reconnects by itself and
        said so once in the log): the sender's retry starts the run (one, with a dedupe key, even
        if the connection died after a commit went through)."""
        self.metrics.child(self.metrics.rejected, entry.flow.name, entry.name, "unavailable").inc()
        log.info("trigger rejected: the state database cannot be reached now",
                 extra={"event": "rejected", "flow": entry.flow.name, "trigger": entry.name, "reason": "unavailable",
                        "http_status": 503})
        return self._error(503, "the state database cannot be reached now; retry shortly",
                           {"Retry-After": str(self.options.retry_after)})

    def _reject(self, entry: PushEntry, status: int, reason: str, message: str,
                headers: dict | None = None, problems: list | None = None, client: Any = None) -> Response:
        self.metrics.child(self.metrics.rejected, entry.flow.name, entry.name, reason).inc()
        log.warning("trigger rejected: %s", message,
                    extra={"event": "rejected", "flow": entry.flow.name, "trigger": entry.name, "reason": reason,
                           "http_status": status, "client": client.host if client else None})
        return self._error(status, message, headers, problems)

    # -- runs -------------------------------------------------------------------------------
    async def run_status(self, request: Request) -> Response:
        """A run's status and outputs, for the admin token or the token of the run's Location."""
        run_id = request.path_params["run_id"]
        token = request.query_params.get(CAPABILITY)
        headers = dict(request.headers)
        admin = self.admin.allows(headers)
        if headers.get("authorization", "").partition(" ")[0].lower() == "bearer":  # counted like the UI's
            client = request.client.host if request.client else "?"
            wait = self.guesses.wait(client)
            if wait:
                return self._error(429, f"too many wrong tokens from {client}; try again in {int(wait) + 1} s",
                                   {"Retry-After": str(int(wait) + 1)})
            if admin:
                self.guesses.succeeded(client)
            else:
                self.guesses.failed(client)
        if not admin:  # checked before the store is read: no probing which runs exist
            if not token:
                return self._error(401, f"polling a run needs the {CAPABILITY} of the Location URL its trigger "
                                   f"answered with, or the admin token (Authorization: Bearer ...)",
                              {"WWW-Authenticate": "Bearer"})
            if not self.capabilities.allows(run_id, token):
                return self._error(403, f"this {CAPABILITY} does not belong to run '{run_id[:64]}'")
        run = self.engine.run_record(run_id)  # whole ids only: no prefix probing over HTTP
        if run is None:
            return self._error(404, f"no run '{run_id}'")
        done = is_terminal(run.status)
        out = {"runId": run.id, "flow": run.flow, "trigger": run.trigger, "status": run.status,
               "created": _iso(run.created), "started": _iso(run.started), "ended": _iso(run.ended),
               "outputs": run.outputs, "error": run.error, "response": run.response}
        headers = {} if done else {"Location": self.location(run.id, capability=not admin),
                                   "Retry-After": str(self.options.retry_after)}
        return self.json(out, status_code=200 if done else 202, headers=headers)

    # -- operations -------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return self.json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        body = {"status": "ready" if self.ready and not self.draining else ("draining" if self.draining else "starting"),
                "flows": len(self.table.files), "invalid": sorted(f for f in self.table.problems),
                "inFlight": len(self.runs.in_flight)}
        problem = self.engine.store_problem()
        if problem is not None:
            body.update(status="store unavailable", error=problem)
            return self.json(body, status_code=503)
        return self.json(body, status_code=200 if body["status"] == "ready" else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        content, media = self.metrics.render()
        return Response(content, media_type=media)

    async def openapi(self, request: Request) -> Response:
        from .openapi import document

        if self._openapi is None or self._openapi[0] != id(self.table):
            self._openapi = (id(self.table), document(self.table, self.options.base_url))
        return self.json(self._openapi[1])

    async def prune_periodically(self) -> None:
        """Retention (``--retention``): prune at start, then every ``retention_interval`` seconds."""
        from engine.retention import prune_async

        while True:
            try:
                done = await prune_async(self.engine.store, self.options.retention)
                log.info("pruned %d run(s), %d step(s), %d blob(s)", done.runs, done.steps, done.blobs,
                         extra={"event": "pruned", "count": done.runs})
            except Exception as exc:  # a busy or broken state file: try again next time
                log.warning("prune failed: %s", exc, extra={"event": "prune_failed"})
            await anyio.sleep(self.options.retention_interval)

    # -- life cycle -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> Any:
        async with anyio.create_task_group() as tg:
            self.capabilities.prepare()
            if self.shared:  # PostgreSQL: workers (and this server with --worker) claim what is due or orphaned
                resumed = 0
                if self.options.worker:
                    from engine.worker import Worker

                    tg.start_soon(lambda: Worker(self.engine, capacity=self.options.max_in_flight).run())
            else:
                resumed = self.runs.resume_unfinished(self._concurrency)
            await tg.start(self.consumers.run, self.table)
            if not self.shared:
                await tg.start(wakeups.run, self.engine, wakeups.launcher(self.runs))  # parked runs wake when due
            if self.options.reload:
                tg.start_soon(self.watch)
            if self.options.retention:
                tg.start_soon(self.prune_periodically)
            self.ready = True
            log.info("listening on http://%s:%s", self.options.host, self.options.port,
                     extra={"event": "listening", "url": f"http://{self.options.host}:{self.options.port}",
                            "count": resumed})
            where = f" (sign in with the admin token in {self.options.ui_token_file})" if self.options.ui_token_file else ""
            log.info("web UI at http://%s:%s/ui%s", self.options.host, self.options.port, where,
                     extra={"event": "ui", "url": f"http://{self.options.host}:{self.options.port}/ui"})
            try:
                yield
            finally:
                self.ready, self.draining = False, True
                with anyio.CancelScope(shield=True):
                    await self.consumers.stop()
                    n = len(self.runs.in_flight)
                    if n:
                        log.info("waiting for %d run(s) in flight", n, extra={"event": "draining", "count": n})
                    if not await self.runs.drain(self.options.shutdown_timeout):
                        log.warning("stopping %d run(s) still in flight; they resume at the next start",
                                    len(self.runs.in_flight), extra={"event": "drain_timeout",
                                                                    "count": len(self.runs.in_flight)})
                        await self.runs.cancel()
                tg.cancel_scope.cancel()
        self.engine.flush()
        log.info("stopped", extra={"event": "stopped"})


@dataclass
class _Call:
    """One trigger request as it goes through the pipeline; each step fills in its part."""

    request: Request
    entry: PushEntry
    params: dict[str, str]
    inbound: InboundRequest | None = None
    auth_key: str | None = None
    outputs: dict = field(default_factory=dict)
    dedupe: str | None = None
    run_id: str = ""
    handle: RunHandle | None = None
    firings: list = field(default_factory=list)  # engine.firing: each run's trigger outputs
    revealed: frozenset = frozenset()  # credential headers the flow sees as sent (Listener._reveal)
    split: bool = False
    reserved: bool = False  # holds one of the --max-in-flight places of callers waiting for a worker's reply

    @property
    def labels(self) -> tuple[str, str]:
        return (self.entry.flow.name, self.entry.name)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _header(text: str) -> str:
    """A header name or value HTTP can carry: printable ASCII (no CR or LF: no header injection);
    anything else is percent-encoded rather than failing the reply."""
    if text.isprintable() and text.isascii():
        return text
    return "".join(c if (c.isascii() and c.isprintable()) else quote(c, safe="") for c in text)


def _redacting(redact: Any) -> type[JSONResponse]:
    """A JSONResponse whose text passes through ``redact`` (as the JSON log lines do)."""

    class Redacted(JSONResponse):
        def render(self, content: Any) -> bytes:
            try:
                text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
            except ValueError:  # NaN or Infinity in a run's outputs: sent as JavaScript writes them
                text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), default=str)
            return utf8_json(redact(text)).encode("utf-8")

    return Redacted


def build_app(listener: Listener) -> Starlette:
    routes = [  # trigger routes first: Starlette tries routes in order
        Route("/flows/{flow}/triggers/{trigger}", listener.trigger, methods=ALL_METHODS),
        Route("/flows/{flow}/triggers/{trigger}/{rest:path}", listener.trigger, methods=ALL_METHODS),
        Route("/healthz", listener.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", listener.readyz, methods=["GET", "HEAD"]),
        Route("/metrics", listener.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", listener.openapi, methods=["GET"]),
        Route("/runs/{run_id}", listener.run_status, methods=["GET"]),
    ]
    from .ui import UI

    routes += UI(listener).routes()  # the web UI at /ui
    limits = Middleware(HeaderLimits, max_headers=listener.options.max_headers,
                        max_bytes=listener.options.max_header_bytes, metrics=listener.metrics)
    return Starlette(routes=routes, lifespan=listener.lifespan, middleware=[limits])
