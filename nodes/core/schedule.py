"""When a Recurrence fires: fire times from a frequency, a Logic Apps schedule, or cron.

A recurrence is one of

- ``frequency`` (Second, Minute, Hour, Day, Week, Month) and ``interval``: fire times are
  ``startTime + k * interval``. Day, Week and Month follow the wall clock of ``timeZone``
  (9:00 stays 9:00 across daylight-saving changes). Without ``startTime`` the times are
  aligned to midnight, 1 January 1970, in ``timeZone``: every 15 minutes is :00, :15, ...;
- ``frequency`` Day, Week or Month with ``interval: 1`` and a ``schedule`` of ``hours``,
  ``minutes``, ``weekDays`` or ``monthDays`` (as in Logic Apps);
- ``cron``: a five-field cron expression (croniter, imported when first needed), in ``timeZone``.

``timeZone`` is a Windows id as Logic Apps writes them (``Pacific Standard Time``) or an IANA
name (default UTC). Firing them is the Recurrence trigger's job
(``nodes/core/triggers.py``).
"""
from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

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
            tz = ZoneInfo(_iana(tzname))
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {tzname!r}; use a Windows id such as 'W. Europe Standard Time' "
                             f"or an IANA name such as Europe/Paris", "timeZone") from None
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


def _iana(name: str) -> str:
    """A Windows time zone id (as Logic Apps writes them: ``W. Europe Standard Time``) as the IANA
    name of the same zone, from the expression library's table; an IANA name as it is."""
    if "/" in name or name.upper() in ("UTC", "GMT"):
        return name
    try:
        from engine.wdl.dates import windows_zones
    except ImportError:  # the @ expression library is not there: IANA names only
        return name
    return windows_zones().get(name.lower(), name)


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
