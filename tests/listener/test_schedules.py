"""Recurrence triggers: fire times (unit), firing inside the listener app on an injected
clock, and restarts that neither fire twice nor (per `missed`) lose the firing missed while down."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from nodes.core.schedule import Recurrence

from .inprocess import FakeClock, serving, wait_for


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
T0 = ts("2026-03-01T10:00:00.500+00:00")  # the fake clock's start: half a second past a fire time


def _fired(app) -> list[str]:
    return [json.loads(r["payload"])["body"]["scheduledTime"] for r in app.runs("tick")]


def _finished(app, n: int) -> bool:
    runs = app.runs("tick")
    return len(runs) >= n and all(r["status"] == "Succeeded" for r in runs)


def test_schedule_fires_on_its_clock_and_a_restart_does_not_fire_twice(tmp_path, monkeypatch):
    clock, folder, state = FakeClock(T0), tmp_path / "flows", tmp_path / "state.db"
    with serving(folder, {"tick.yaml": TICK % "skip"}, state=state, clock=clock, monkeypatch=monkeypatch) as app:
        assert app.runs("tick") == []  # the first start fires nothing for the past
        for n in (1, 2):
            clock.advance(1)
            wait_for(lambda: _finished(app, n), f"firing {n}")
    with serving(folder, state=state, clock=clock, monkeypatch=monkeypatch) as again:
        assert again.records.events("schedule_missed") == []
        for n in (3, 4):
            clock.advance(1)
            wait_for(lambda: _finished(again, n), f"firing {n}")
        checkpoint = again.listener.engine.checkpoint("tick", "every")
    fired = _fired(again)
    assert fired == ["2026-03-01T10:00:01.000Z", "2026-03-01T10:00:02.000Z", "2026-03-01T10:00:03.000Z",
                     "2026-03-01T10:00:04.000Z"]  # each time once, in order, none twice across the restart
    assert checkpoint == ts("2026-03-01T10:00:04+00:00")  # the schedule's own record of what it fired


@pytest.mark.parametrize("policy, caught_up", [("skip", []), ("catchUp", ["2026-03-01T10:00:04.000Z"])])
def test_firings_missed_while_down_are_skipped_or_caught_up_once(tmp_path, monkeypatch, policy, caught_up):
    clock, folder, state = FakeClock(T0), tmp_path / "flows", tmp_path / "state.db"
    with serving(folder, {"tick.yaml": TICK % policy}, state=state, clock=clock, monkeypatch=monkeypatch) as app:
        clock.advance(1)
        wait_for(lambda: _finished(app, 1), "the first firing")
    clock.advance(3)  # 10:00:02, :03 and :04 pass while the server is down
    with serving(folder, state=state, clock=clock, monkeypatch=monkeypatch) as again:
        [missed] = again.records.events("schedule_missed")
        assert missed["count"] == 3
        wait_for(lambda: _finished(again, 1 + len(caught_up)), "the catch-up")
        [started] = again.records.events("schedule_started")
        assert started["scheduled"] == "2026-03-01T10:00:05.000Z"
    assert _fired(again) == ["2026-03-01T10:00:01.000Z", *caught_up]


def test_a_reload_that_changes_a_schedule_restarts_it_and_one_that_removes_it_stops_it(tmp_path, monkeypatch):
    clock, folder, state = FakeClock(T0), tmp_path / "flows", tmp_path / "state.db"
    with serving(folder, {"tick.yaml": TICK % "skip"}, state=state, clock=clock, monkeypatch=monkeypatch) as app:
        (folder / "tick.yaml").write_text(TICK % "catchUp")
        app.client.portal.call(_reload, app.listener)
        wait_for(lambda: len(app.records.events("trigger_started")) == 2, "the restart")
        assert len(app.records.events("trigger_stopped")) == 1
        (folder / "tick.yaml").unlink()
        app.client.portal.call(_reload, app.listener)
        wait_for(lambda: len(app.records.events("trigger_stopped")) == 2, "the stop")
        clock.advance(5)
        assert app.runs("tick") == []


async def _reload(listener) -> None:
    listener.load()
    await listener.consumers.sync(listener.table)
