"""Built-in triggers: Request (HTTP, push), Recurrence (a schedule, pull) and Manual.

They use the same contract as a third-party trigger (``engine.plugin.Trigger``); the
listener knows none of them by name.
"""
from __future__ import annotations

import re
from typing import Any

from engine.plugin import Compiled, PullTrigger, PushTrigger, Trigger, TriggerConfigError, schema_problem

from .schedule import Recurrence as Schedule, iso

HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_PARAM = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Request(PushTrigger):
    type = "Request"
    title = "An HTTP request starts the run"
    description = ("`flowrun serve` accepts requests at `/flows/{flow}/triggers/{name}[/{relativePath}]`. "
                   "`auth` is required (`{type: none}` opens it); the body reaches the flow as "
                   "`triggerBody()`, headers and query as `triggerOutputs()`. A `Response` action replies; "
                   "without one the caller gets 202 + Location.")
    config = {"inputs": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "method": {"enum": HTTP_METHODS, "default": "POST"},
            "relativePath": {"type": "string", "description": "e.g. orders/{orderId}; parameters reach "
                                                              "triggerOutputs().relativePathParameters"},
            "schema": {"type": "object", "description": "JSON Schema the request body must match"},
        },
    }}
    example = {"type": "Request", "auth": {"type": "key", "connection": "inbound", "header": "X-API-Key"},
               "dedupe": "{{ triggerOutputs().headers.get('idempotency-key') }}",
               "inputs": {"method": "POST", "relativePath": "orders/{orderId}",
                          "schema": {"type": "object", "required": ["qty"],
                                     "properties": {"qty": {"type": "integer", "minimum": 1}}}}}

    def __init__(self, definition: dict, host: Any = None):
        super().__init__(definition, host)
        inputs = definition.get("inputs") or {}
        problems: list[tuple[str, str]] = []
        self.method = str(inputs.get("method", "POST")).upper()
        self.relative_path = inputs.get("relativePath") or None
        self._pattern: re.Pattern | None = None
        if self.relative_path:
            names = _PARAM.findall(self.relative_path)
            bad = sorted({n for n in names if not _NAME.match(n)} | {n for n in names if names.count(n) > 1})
            if bad:
                problems.append(("inputs.relativePath", f"path parameters must be distinct names: {', '.join(bad)}"))
            else:
                regex = "".join(f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part)
                                for i, part in enumerate(_PARAM.split(self.relative_path.strip("/"))))
                self._pattern = re.compile(f"^{regex}$")
        self.schema = inputs.get("schema")
        self._validator = None
        if self.schema is not None:  # jsonschema is imported only to explain a bad schema or body
            bad = schema_problem(self.schema)
            if bad is not None:
                sub = ".".join(str(p) for p in bad.absolute_path)
                problems.append(("inputs.schema" + (f".{sub}" if sub else ""), f"not a valid JSON Schema: {bad.message}"))
            else:
                self._validator = Compiled(self.schema)
        if problems:
            raise TriggerConfigError(problems)

    def match(self, rest: str) -> dict[str, str] | None:
        rest = rest.strip("/")
        if self._pattern is None:
            return {} if not rest else None
        m = self._pattern.match(rest)
        return m.groupdict() if m else None

    def body_problems(self, body: Any) -> list[dict]:
        if self._validator is None:
            return []
        errors = sorted(self._validator.errors(body), key=lambda e: list(map(str, e.absolute_path)))
        return [{"path": "/" + "/".join(str(p) for p in e.absolute_path), "message": e.message} for e in errors]


class Recurrence(PullTrigger):
    """Fires on a schedule inside ``flowrun serve``, exactly once per fire time.

    Each firing is a run de-duplicated on its scheduled time, committed together with the
    trigger's checkpoint (the latest scheduled time fired), so a restart never fires the
    same time twice, even after kill -9. At start-up, times missed while the server was
    down are counted and, per ``missed``, skipped (the default) or the latest one fired
    once (``catchUp``). The first start fires nothing for the past. Schedules are not held
    back by ``--max-in-flight``.
    """

    type = "Recurrence"
    title = "Runs on a schedule"
    description = ("`frequency` + `interval` (from `startTime`), a Logic Apps `schedule`, or `cron`, in "
                   "`timeZone`. `triggerBody()` is `{scheduledTime, firedTime}`. Missed firings while "
                   "the server was down: `missed: skip` (default) or `catchUp` (the latest fires once).")
    config = {"recurrence": {
        "type": "object", "additionalProperties": False,
        "description": "frequency + interval (from startTime), a schedule, or a cron expression",
        "properties": {
            "frequency": {"enum": ["Second", "Minute", "Hour", "Day", "Week", "Month"]},
            "interval": {"type": "integer", "minimum": 1},
            "startTime": {"type": "string", "description": "ISO 8601; fire times are startTime + k * interval"},
            "timeZone": {"type": "string", "description": "a Windows time zone id (W. Europe Standard Time) or an "
                                                         "IANA name (Europe/Paris); default UTC"},
            "schedule": {"type": "object", "additionalProperties": False, "properties": {
                "hours": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 23}},
                "minutes": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 59}},
                "weekDays": {"type": "array", "items": {"enum": WEEKDAYS}},
                "monthDays": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 31}}}},
            "cron": {"type": "string", "description": "five-field cron expression (croniter)"},
            "missed": {"enum": ["skip", "catchUp"], "default": "skip",
                       "description": "firings missed while the server was down: skip them, or fire "
                                      "the latest one at start-up"},
        },
    }}
    config["evaluatedRecurrence"] = {"type": "object", "description": "written by Logic Apps' designer; not used"}
    required = ("recurrence",)
    example = {"type": "Recurrence", "recurrence": {"frequency": "Day", "interval": 1, "timeZone": "Europe/Paris",
                                                    "schedule": {"hours": [9], "minutes": [0]}}}
    limited = False
    shared = "all"  # every instance fires; the scheduled time de-duplicates (one run per time)

    def __init__(self, definition: dict, host: Any = None):
        super().__init__(definition, host)
        try:
            self.schedule = Schedule.parse(definition.get("recurrence") or {})
        except ValueError as exc:
            sub = exc.args[1] if len(exc.args) > 1 else ""
            raise TriggerConfigError([("recurrence" + (f".{sub}" if sub else ""), str(exc.args[0]))]) from None

    async def run(self) -> None:
        rec, host = self.schedule, self.host
        now = host.clock.now()
        last = host.checkpoint()
        if last is not None:
            latest = rec.latest_at_or_before(now)
            if latest is not None and latest > last:
                missed = rec.count_between(last, now)
                host.log.warning("schedule missed %d firing(s) while the server was down; policy %s", missed,
                                 rec.missed, extra={"event": "schedule_missed", "count": missed,
                                                    "scheduled": iso(latest)})
                host.count("missed", missed)
                if rec.missed == "catchUp":
                    await self._fire(latest, "caught_up")
        nxt = rec.next_after(max(now, last or 0.0))
        host.log.info("schedule started; next firing %s", iso(nxt),
                      extra={"event": "schedule_started", "scheduled": iso(nxt)})
        while True:
            await host.clock.sleep_until(nxt)
            await self._fire(nxt, "fired")
            after, now = rec.next_after(nxt), host.clock.now()
            if after <= now:  # fell a whole period or more behind (a long pause)
                host.count("missed", rec.count_between(nxt, now))
                latest = rec.latest_at_or_before(now)
                after = latest if rec.missed == "catchUp" and latest is not None else rec.next_after(now)
            nxt = after

    async def _fire(self, scheduled: float, outcome: str) -> None:
        host, when = self.host, iso(scheduled)
        fired = iso(host.clock.now())
        payload = {"body": {"scheduledTime": when, "firedTime": fired}, "headers": {}, "queries": {},
                   "relativePathParameters": {}, "scheduledTime": when}
        try:
            got = await host.accept(payload, when, checkpoint={"": scheduled},
                                    request={"via": "schedule", "scheduledTime": when, "firedTime": fired})
        except Exception:  # one failed firing must not stop the schedule
            host.count("error")
            host.log.exception("schedule could not start a run", extra={"event": "schedule_error", "scheduled": when})
            return
        if got.duplicate:  # fired before a crash; the checkpoint now says so too
            host.count("already_fired")
            return
        host.count(outcome)
        host.log.info("schedule fired", extra={"event": "schedule_fired", "run_id": got.run_id, "scheduled": when})


class Manual(Trigger):
    type = "Manual"
    title = "Started by hand (`flowrun run`)"
    description = "Nothing is served: runs start from `flowrun run FLOW --input JSON` (or a parent's Workflow action)."
    example = {"type": "Manual"}


TRIGGERS = [Request, Recurrence, Manual]
