"""Recurrence triggers: fire times (unit), firing inside a real server, and restarts that
neither fire twice nor (per `missed`) lose the firing missed while down."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from nodes.core.schedule import Recurrence


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def iso_in(t: float, tz: str) -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat()


@pytest.mark.parametrize("rec, after, expected", [
    ({"frequency": "Minute", "interval": 15}, "2026-03-01T10:07:00+00:00", "2026-03-01T10:15:00+00:00"),
    ({"frequency": "Minute", "interval": 15}, "2026-03-01T10:15:00+00:00", "2026-03-01T10:30:00+00:00"),
    ({"frequency": "Second", "interval": 10, "startTime": "2026-03-01T10:00:03Z"}, "2026-03-01T10:00:04+00:00",
     "2026-03-01T10:00:13+00:00"),
    ({"frequency": "Hour", "interval": 2, "startTime": "2026-03-01T09:30:00Z"}, "2026-03-01T08:00:00+00:00",
     "2026-03-01T09:30:00+00:00"),
    # Day follows the local wall clock across the DST change (Paris: 29 March 2026)
    ({"frequency": "Day", "interval": 1, "startTime": "2026-03-27T09:00:00", "timeZone": "Europe/Paris"},
     "2026-03-28T09:00:00+01:00", "2026-03-29T09:00:00+02:00"),
    ({"frequency": "Week", "interval": 2, "startTime": "2026-01-05T08:00:00Z"}, "2026-01-06T00:00:00+00:00",
     "2026-01-19T08:00:00+00:00"),
    ({"frequency": "Month", "interval": 1, "startTime": "2026-01-31T12:00:00Z"}, "2026-02-01T00:00:00+00:00",
     "2026-02-28T12:00:00+00:00"),
    ({"frequency": "Week", "interval": 1, "schedule": {"weekDays": ["Monday", "Friday"], "hours": [9],
                                                        "minutes": [30]}, "timeZone": "America/New_York"},
     "2026-06-02T12:00:00-04:00", "2026-06-05T09:30:00-04:00"),
    ({"frequency": "Day", "interval": 1, "schedule": {"hours": [6, 18]}}, "2026-06-02T07:00:00+00:00",
     "2026-06-02T18:00:00+00:00"),
    ({"cron": "*/5 * * * *", "timeZone": "Asia/Tokyo"}, "2026-06-02T07:01:00+09:00", "2026-06-02T07:05:00+09:00"),
    ({"cron": "0 9 * * 1-5", "timeZone": "Europe/Paris"}, "2026-06-05T10:00:00+02:00", "2026-06-08T09:00:00+02:00"),
])
def test_next_fire_time(rec, after, expected):
    assert Recurrence.parse(rec).next_after(ts(after)) == ts(expected)


def test_latest_and_count_of_missed_fire_times():
    r = Recurrence.parse({"frequency": "Minute", "interval": 10})
    assert r.latest_at_or_before(ts("2026-03-01T10:37:00+00:00")) == ts("2026-03-01T10:30:00+00:00")
    assert r.count_between(ts("2026-03-01T10:00:00+00:00"), ts("2026-03-01T10:37:00+00:00")) == 3
    c = Recurrence.parse({"cron": "0 * * * *"})
    assert c.latest_at_or_before(ts("2026-03-01T10:37:00+00:00")) == ts("2026-03-01T10:00:00+00:00")


@pytest.mark.parametrize("rec, message", [
    ({"frequency": "Minute"}, "a recurrence needs frequency and interval, or cron"),
    ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
    ({"cron": "* * * * *", "frequency": "Minute", "interval": 1}, "give either cron, or frequency and interval"),
    ({"frequency": "Minute", "interval": 1, "timeZone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"frequency": "Hour", "interval": 1, "schedule": {"minutes": [0]}}, "a schedule needs frequency Day, Week or Month"),
    ({"frequency": "Day", "interval": 1, "startTime": "tomorrow"}, "startTime 'tomorrow' is not an ISO 8601 time"),
])
def test_bad_recurrences(rec, message):
    with pytest.raises(ValueError) as err:
        Recurrence.parse(rec)
    assert message in err.value.args[0]


TICK = """\
name: tick
triggers:
  every:
    type: Recurrence
    recurrence: {frequency: Second, interval: 1, missed: %s}
actions:
  note:
    type: Compose
    inputs: "{{ triggerBody().scheduledTime }}"
"""


def _fired(server) -> list[str]:
    return [json.loads(r["payload"])["body"]["scheduledTime"] for r in server.runs("tick")]


def _wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_schedule_fires_and_a_restart_does_not_fire_twice(make_server):
    server = make_server({"tick.yaml": TICK % "skip"})
    _wait_for(lambda: len(server.runs("tick")) >= 2)
    server.stop()
    before = _fired(server)
    again = make_server({"tick.yaml": TICK % "skip"})
    _wait_for(lambda: len(again.runs("tick")) >= len(before) + 2)
    again.stop()
    fired = _fired(again)
    assert len(fired) == len(set(fired))  # no scheduled time ran twice
    assert fired == sorted(fired)
    with again.db() as con:
        rows = con.execute("SELECT scheduled, run_id FROM schedule_firings WHERE flow = 'tick'").fetchall()
    assert len(rows) == len(fired) and all(r["run_id"] for r in rows)
    assert all(r["status"] == "Succeeded" for r in again.runs("tick"))


@pytest.mark.parametrize("policy, caught_up", [("skip", 0), ("catchUp", 1)])
def test_firings_missed_while_down_are_skipped_or_caught_up_once(make_server, policy, caught_up):
    server = make_server({"tick.yaml": TICK % policy})
    _wait_for(lambda: len(server.runs("tick")) >= 1)
    server.stop()
    last = max(_fired(server))
    time.sleep(2.5)  # two or three fire times pass while the server is down
    again = make_server({"tick.yaml": TICK % policy})
    _wait_for(lambda: any(rec.get("event") == "schedule_started" for rec in again.logs()))
    started_at = [rec for rec in again.logs() if rec.get("event") == "schedule_started"][0]["ts"]
    missed = [rec for rec in again.logs() if rec.get("event") == "schedule_missed"]
    assert missed and missed[0]["count"] >= 2
    again.stop()
    late = [t for t in _fired(again) if t > last and t < started_at]  # fired for a time in the gap
    assert len(late) == caught_up

