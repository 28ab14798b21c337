"""Durable waits and parked runs (engine.wakeups, the executor's waits, Engine.park/due_runs):
a resumed Wait sleeps only what is left; under flowrun serve (``engine.parking``) a run whose
every action in flight is waiting ends its task as Waiting and is resumed when due, also by a
new process. Times come from an injected clock, so nothing here waits on the wall clock."""
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import engine
from engine import wakeups
from tests.support import jobplugin
from tests.support.clock import FakeClock
from tests.support.jobserver import JobServer

FLOWRUN = [sys.executable, "-m", "engine.cli"]
ROOT = Path(__file__).parents[2]


def make_engine(tmp_path, clock, *, parking=False):
    eng = engine.Engine(tmp_path / "state.db", registry=jobplugin.registry(), clock=clock)
    eng.parking = parking
    return eng


def test_wait_records_its_wake_up_time_and_sleeps_on_the_engine_clock(tmp_path, flow_file):
    clock = FakeClock(1_000_000.0)
    eng = make_engine(tmp_path, clock)
    result = anyio.run(lambda: eng.run(flow_file("""
        actions:
          w: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}}
          until: {type: Wait, runAfter: {w: [Succeeded]}, inputs: {until: {timestamp: "1970-01-12T14:46:40Z"}}}
    """)))
    assert result.status == "Succeeded"
    assert clock.slept == 3600  # the second Wait's time (epoch + 1,000,000 s) has passed: no wait
    eng.close()


def test_a_resumed_wait_sleeps_only_what_is_left_after_kill_9(tmp_path, flow_file):
    flow = flow_file("""
        actions:
          w: {type: Wait, inputs: {interval: {count: 2, unit: Second}}}
          after: {type: Compose, inputs: done, runAfter: {w: [Succeeded]}}
    """)
    state = tmp_path / "state.db"
    proc = subprocess.Popen([*FLOWRUN, "--state", str(state), "run", str(flow)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def recorded_wake():
        if not state.exists():
            return None
        with sqlite3.connect(state) as db:
            try:
                row = db.execute("SELECT started, wake FROM steps WHERE path = 'w'").fetchone()
            except sqlite3.OperationalError:
                return None
        return row if row and row[1] else None
    try:
        deadline = time.monotonic() + 20
        while (row := recorded_wake()) is None:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate() if proc.poll() is not None else ""
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    started, wake = row
    assert wake == pytest.approx(started + 2, abs=0.05)
    clock = FakeClock(started + 1.5)  # resumed 1.5 s into the 2 s wait
    eng = make_engine(tmp_path, clock)
    run_id = eng.list_runs()[0].id
    result = anyio.run(eng.resume, run_id)
    steps = result.steps
    eng.close()
    assert result.status == "Succeeded"
    assert clock.slept == pytest.approx(0.5, abs=0.05)  # the remainder, not the whole interval again
    assert steps["after"].outputs == "done"


def test_a_waiting_run_is_parked_and_resumed_when_due_by_a_new_process(tmp_path, flow_file, recorder):
    recorder.route("POST", "/.*", json={"ok": True})
    clock = FakeClock(2_000_000.0)
    eng = make_engine(tmp_path, clock, parking=True)
    flow = flow_file(f"""
        actions:
          before: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/before"}}}}
          w: {{type: Wait, runAfter: {{before: [Succeeded]}}, inputs: {{interval: {{count: 1, unit: Hour}}}}}}
          after: {{type: Http, runAfter: {{w: [Succeeded]}}, inputs: {{method: POST, uri: "{recorder.url}/after"}}}}
    """)
    parked = anyio.run(lambda: eng.run(flow))
    assert parked.status == "Waiting"
    assert clock.slept == 0
    assert eng.get_run(parked.run_id).status == "Waiting"
    assert eng.due_runs(2_000_000.0 + 3599) == []
    assert eng.due_runs(2_000_000.0 + 3600) == [parked.run_id]
    eng.close()

    later = FakeClock(2_000_000.0 + 3600)  # a restarted server, an hour later
    eng = make_engine(tmp_path, later)
    done = []

    async def serve():
        async with anyio.create_task_group() as tg:
            def launch(run_id, run):
                async def resume():
                    done.append(await eng.resume(run_id))
                    tg.cancel_scope.cancel()
                tg.start_soon(resume)
            await tg.start(wakeups.run, eng, launch)
    anyio.run(serve)
    assert [r.status for r in done] == ["Succeeded"]
    assert [r.path for r in recorder.requests] == ["/before", "/after"]
    assert eng.due_runs(later.now() + 10**6) == []
    eng.close()


def test_a_polling_job_parks_and_its_resume_polls_without_starting_again(tmp_path, flow_file, recorder):
    jobs = JobServer(recorder)
    clock = FakeClock(3_000_000.0)
    eng = make_engine(tmp_path, clock, parking=True)
    flow = flow_file(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", polls: 2, pollEvery: 600}}}}
    """)
    parked = anyio.run(lambda: eng.run(flow))
    assert parked.status == "Waiting"
    assert (jobs.count("start"), jobs.count("poll"), jobs.count("cancel")) == (1, 1, 0)
    assert eng.due_runs(clock.now() + 600) == [parked.run_id]
    clock.t += 600
    assert eng.store.claim_parked(parked.run_id, wakeups.WAITING)
    assert not eng.store.claim_parked(parked.run_id, wakeups.WAITING)  # claimed once only
    result = anyio.run(eng.resume, parked.run_id)
    assert result.status == "Succeeded"
    assert (jobs.count("start"), jobs.count("poll"), jobs.count("cancel")) == (1, 2, 0)
    eng.close()


def test_a_run_does_not_park_while_another_action_is_still_working(tmp_path, flow_file, recorder):
    def slow(req):
        time.sleep(0.2)  # the server takes a moment: the Wait begins while this call is in flight
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
    recorder.route("POST", "/busy", handler=slow)
    clock = FakeClock(4_000_000.0, auto=False)  # time stands still: the Wait cannot end by itself
    eng = make_engine(tmp_path, clock, parking=True)
    flow = flow_file(f"""
        actions:
          w: {{type: Wait, inputs: {{interval: {{count: 1, unit: Day}}}}}}
          busy: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/busy"}}}}
    """)
    result = anyio.run(lambda: eng.run(flow))
    assert result.status == "Waiting"
    steps = result.steps
    assert steps["busy"].status == "Succeeded"  # it finished first, then the run parked
    assert steps["w"].status == "Running"
    eng.close()


def test_runs_under_the_cli_do_not_park(tmp_path, flow_file):
    clock = FakeClock(5_000_000.0)
    eng = make_engine(tmp_path, clock)  # parking is off unless wakeups.run turned it on
    result = anyio.run(lambda: eng.run(flow_file("""
        actions:
          w: {type: Wait, inputs: {interval: {count: 1, unit: Day}}}
    """)))
    assert result.status == "Succeeded"
    assert clock.slept == 86400
    eng.close()


def test_the_wakeup_loop_turns_parking_on(tmp_path):
    eng = make_engine(tmp_path, FakeClock())
    assert eng.parking is False

    async def serve():
        async with anyio.create_task_group() as tg:
            await tg.start(wakeups.run, eng, lambda run_id, run: None)
            tg.cancel_scope.cancel()
    anyio.run(serve)
    assert eng.parking is True
    eng.close()
