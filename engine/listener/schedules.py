"""Recurrence triggers: when they fire, and firing them exactly once inside ``flowrun serve``.

A recurrence is one of

- ``frequency`` (Second, Minute, Hour, Day, Week, Month) and ``interval``: fire times are
  ``startTime + k * interval``. Day, Week and Month follow the wall clock of ``timeZone``
  (9:00 stays 9:00 across daylight-saving changes). Without ``startTime`` the times are
  aligned to midnight, 1 January 1970, in ``timeZone``: every 15 minutes is :00, :15, ...;
- ``frequency`` Day, Week or Month with ``interval: 1`` and a ``schedule`` of ``hours``,
  ``minutes``, ``weekDays`` or ``monthDays`` (as in Logic Apps);
- ``cron``: a five-field cron expression (croniter), in ``timeZone``.

``timeZone`` is an IANA name (default UTC). Each firing is a run whose de-duplication key
is ``<trigger>@<scheduled time>`` (the unique index makes a second run for the same time
impossible, even across a crash) and a row in ``schedule_firings``. At start-up, times
missed while the server was down are counted and, per ``missed``, skipped (the default)
or the latest one fired once (``catchUp``). The first start of a schedule fires nothing
for the past. Schedules fire even when the in-flight limit is reached.
"""
from __future__ import annotations

import calendar
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import anyio

log = logging.getLogger("flowrun.listener")

_FIXED = {"Second": 1, "Minute": 60, "Hour": 3600, "Day": 86400, "Week": 604800, "Month": 2629746}
_DOW = {"Sunday": 0, "Monday": 1, "Tuesday": 2, "Wednesday": 3, "Thursday": 4, "Friday": 5, "Saturday": 6}
_EPOCH = dt.datetime(1970, 1, 1)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _add_months(d: dt.datetime, months: int) -> dt.datetime:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return d.replace(year=year, month=month, day=min(d.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Recurrence:
    raw: tuple  # the definition, for change detection on reload
    tz: Any
    missed: str
    cron: str | None
    frequency: str | None
    interval: int
    start: dt.datetime | None  # aware

    @classmethod
    def parse(cls, raw: dict) -> "Recurrence":
        """A validated recurrence; ValueError(message, sub-path) otherwise."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        tzname = raw.get("timeZone") or "UTC"
        try:
            tz = ZoneInfo(tzname)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tzname!r}; use an IANA name such as Europe/Paris",
                             "timeZone") from None
        start = None
        if raw.get("startTime"):
            try:
                start = dt.datetime.fromisoformat(str(raw["startTime"]).replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"startTime {raw['startTime']!r} is not an ISO 8601 time", "startTime") from None
            if start.tzinfo is None:
                start = start.replace(tzinfo=tz)
        cron, freq, interval, schedule = raw.get("cron"), raw.get("frequency"), raw.get("interval"), raw.get("schedule")
        if cron and (freq or interval or schedule):
            raise ValueError("give either cron, or frequency and interval, not both", "cron")
        if not cron and (not freq or not interval):
            raise ValueError("a recurrence needs frequency and interval, or cron", "")
        if schedule:
            if freq not in ("Day", "Week", "Month") or interval != 1:
                raise ValueError("a schedule needs frequency Day, Week or Month and interval 1 "
                                 "(use cron for anything else)", "schedule")
            cron = _schedule_cron(freq, schedule, start)
        if cron:
            from croniter import croniter

            if not croniter.is_valid(cron):
                raise ValueError(f"invalid cron expression {cron!r}", "cron")
        key = tuple(sorted((k, repr(v)) for k, v in raw.items()))
        return cls(key, tz, raw.get("missed", "skip"), cron, None if cron else freq,
                   int(interval or 1), start)

    # -- fire times --------------------------------------------------------------------------
    def _at(self, k: int) -> float:
        anchor = self.start or _EPOCH.replace(tzinfo=self.tz)
        if self.frequency in ("Second", "Minute", "Hour"):
            return anchor.timestamp() + k * self.interval * _FIXED[self.frequency]
        local = anchor.replace(tzinfo=None)
        if self.frequency == "Month":
            local = _add_months(local, k * self.interval)
        else:
            local = local + dt.timedelta(days=k * self.interval * (7 if self.frequency == "Week" else 1))
        return local.replace(tzinfo=self.tz).timestamp()

    def _index(self, t: float) -> int:
        """The largest k with _at(k) <= t (may be -1 when t is before the start)."""
        base = self._at(0)
        k = math.floor((t - base) / (self.interval * _FIXED[self.frequency]))
        while k > -1 and self._at(k) > t:
            k -= 1
        while self._at(k + 1) <= t:
            k += 1
        return max(k, -1)

    def next_after(self, t: float) -> float:
        """The first fire time strictly after ``t``."""
        if self.cron:
            from croniter import croniter

            base = dt.datetime.fromtimestamp(t, self.tz)
            if self.start and self.start > base:
                base = self.start - dt.timedelta(microseconds=1)
            return croniter(self.cron, base).get_next(dt.datetime).timestamp()
        return self._at(self._index(t) + 1)

    def latest_at_or_before(self, t: float) -> float | None:
        if self.cron:
            from croniter import croniter

            prev = croniter(self.cron, dt.datetime.fromtimestamp(t + 1e-3, self.tz)).get_prev(dt.datetime)
            return None if self.start and prev < self.start else prev.timestamp()
        k = self._index(t)
        return None if k < 0 else self._at(k)

    def count_between(self, after: float, until: float, limit: int = 10_000) -> int:
        """How many fire times lie in (after, until], up to ``limit``."""
        n, t = 0, after
        while n < limit:
            t = self.next_after(t)
            if t > until:
                break
            n += 1
        return n


def _schedule_cron(freq: str, schedule: dict, start: dt.datetime | None) -> str:
    minutes = ",".join(str(m) for m in sorted(schedule.get("minutes") or [start.minute if start else 0]))
    hours = ",".join(str(h) for h in sorted(schedule.get("hours") or ([start.hour] if start else [0])))
    if not schedule.get("hours") and schedule.get("minutes") and freq == "Day":
        hours = "*"
    dow = ",".join(str(_DOW[d]) for d in schedule.get("weekDays") or []) or "*"
    dom = ",".join(str(d) for d in sorted(schedule.get("monthDays") or [])) or "*"
    if freq == "Week" and dow == "*":
        dow = str((start.isoweekday() % 7) if start else 1)
    if freq == "Month" and dom == "*":
        dom = str(start.day if start else 1)
    return f"{minutes} {hours} {dom} * {dow}"


class Scheduler:
    """One task per Recurrence trigger, kept in step with the trigger table on reload."""

    def __init__(self, engine: Any, launch: Callable[[str, Any, str], Any], metrics: Any):
        self.engine = engine
        self.launch = launch
        self.metrics = metrics
        self.current: dict[tuple[str, str], Any] = {}
        self._scopes: dict[tuple[str, str], tuple[anyio.CancelScope, tuple]] = {}
        self._tg: Any = None

    async def run(self, table: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self.sync(table)
            task_status.started()
            await anyio.sleep_forever()

    def stop(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def sync(self, table: Any) -> None:
        """Start, restart (definition changed) or stop schedule tasks to match ``table``."""
        wanted = dict(table.recurrences)
        for key, (scope, raw) in list(self._scopes.items()):
            if key not in wanted or wanted[key].recurrence.raw != raw:
                scope.cancel()
                del self._scopes[key]
        self.current = wanted
        for key, trig in wanted.items():
            if key not in self._scopes:
                self._scopes[key] = (await self._tg.start(self._task, key), trig.recurrence.raw)

    async def _task(self, key: tuple[str, str], *, task_status: Any) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await self._loop(key)
            except Exception:  # never let one schedule take the server down
                log.exception("schedule stopped by an error", extra={"flow": key[0], "trigger": key[1],
                                                                     "event": "schedule_error"})

    async def _loop(self, key: tuple[str, str]) -> None:
        rec = self.current[key].recurrence
        store = self.engine.store
        now = time.time()
        last = store.last_firing(*key)
        if last is not None:
            latest = rec.latest_at_or_before(now)
            if latest is not None and latest > last:
                missed = rec.count_between(last, now)
                log.warning("schedule missed %d firing(s) while the server was down; policy %s", missed,
                            rec.missed, extra={"flow": key[0], "trigger": key[1], "event": "schedule_missed",
                                               "count": missed, "scheduled": iso(latest)})
                self.metrics.firings.labels(key[0], key[1], "missed").inc(missed)
                if rec.missed == "catchUp":
                    self._fire(key, latest, "caught_up")
        nxt = rec.next_after(max(now, last or 0.0))
        log.info("schedule started; next firing %s", iso(nxt),
                 extra={"flow": key[0], "trigger": key[1], "event": "schedule_started", "scheduled": iso(nxt)})
        while True:
            delay = nxt - time.time()
            if delay > 0:
                await anyio.sleep(delay)
            if key not in self.current:
                return
            self._fire(key, nxt, "fired")
            after, now = rec.next_after(nxt), time.time()
            if after <= now:  # fell a whole period or more behind (a long pause)
                missed = rec.count_between(nxt, now)
                self.metrics.firings.labels(key[0], key[1], "missed").inc(missed)
                latest = rec.latest_at_or_before(now)
                after = latest if rec.missed == "catchUp" and latest is not None else rec.next_after(now)
            nxt = after

    def _fire(self, key: tuple[str, str], scheduled: float, outcome: str) -> None:
        trig = self.current[key]
        flow, store = trig.flow, self.engine.store
        when = iso(scheduled)
        dedupe = f"{trig.name}@{when}"
        try:
            existing = self.engine.find_run(flow.name, dedupe)
            if existing is not None:  # fired before a crash, recorded after it
                store.record_firing(flow.name, trig.name, scheduled, existing.id, time.time())
                self.metrics.firings.labels(flow.name, trig.name, "already_fired").inc()
                return
            fired = time.time()
            outputs = {"body": {"scheduledTime": when, "firedTime": iso(fired)}, "headers": {}, "queries": {},
                       "relativePathParameters": {}, "scheduledTime": when}
            run_id = self.engine.start(flow, trigger=trig.name, trigger_outputs=outputs, dedupe_key=dedupe,
                                       request={"via": "schedule", "trigger": trig.name, "scheduledTime": when,
                                                "firedTime": iso(fired)})
            store.record_firing(flow.name, trig.name, scheduled, run_id, fired)
        except Exception:
            self.metrics.firings.labels(flow.name, trig.name, "error").inc()
            log.exception("schedule could not start a run", extra={"flow": flow.name, "trigger": trig.name,
                                                                    "event": "schedule_error", "scheduled": when})
            return
        self.metrics.firings.labels(flow.name, trig.name, outcome).inc()
        log.info("schedule fired", extra={"flow": flow.name, "trigger": trig.name, "run_id": run_id,
                                          "event": "schedule_fired", "scheduled": when})
        self.launch(run_id, flow, trig.name)
