"""Long-running jobs (engine.plugin.Job, the executor's job path): the handle is committed before
polling, resume polls it and never starts the job again, and a timeout, Terminate or a stopped
run tells the remote side to cancel. The node is the test plugin's ``testjob.Run`` talking to a
real loopback job server."""
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import engine
from tests.support import jobplugin
from tests.support.jobserver import JobServer

FLOWRUN = [sys.executable, "-m", "engine.cli"]
ROOT = Path(__file__).parents[2]


@pytest.fixture
def jobs(recorder):
    return JobServer(recorder)


@pytest.fixture
def run_jobs(tmp_path, flow_file):
    """Run a flow text in-process with the test plugin registered; returns the RunResult."""
    def run(text: str, **engine_kw):
        eng = engine.Engine(tmp_path / "state.db", registry=jobplugin.registry(), **engine_kw)
        try:
            result = anyio.run(lambda: eng.run(flow_file(text)))
            result.steps
            return result
        finally:
            eng.close()
    return run


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_job_is_started_once_polled_until_done_and_its_result_is_the_outputs(run_jobs, jobs):
    result = run_jobs(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", polls: 3, input: {{table: orders}}}}}}
          after: {{type: Compose, inputs: "{{{{ body('job').result.rows }}}}", runAfter: {{job: [Succeeded]}}}}
    """)
    assert result.status == "Succeeded", result.error
    assert result.steps["job"].outputs == {"jobId": "job-1", "result": {"echo": {"table": "orders"}, "rows": 42}}
    assert result.steps["after"].outputs == 42
    assert (jobs.count("start"), jobs.count("poll"), jobs.count("cancel")) == (1, 3, 0)


def test_a_job_that_fails_remotely_fails_the_action_and_is_not_cancelled(run_jobs, jobs):
    result = run_jobs(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", fail: true}}}}
    """)
    assert result.steps["job"].status == "Failed"
    assert result.steps["job"].error["code"] == "JobFailed"
    assert (jobs.count("start"), jobs.count("cancel")) == (1, 0)


def test_the_handle_is_committed_to_the_step_row_before_the_first_poll(tmp_path, jobs, run_jobs):
    seen = []

    def on_poll(req):  # runs in the server thread while the engine waits for the poll's answer
        with sqlite3.connect(tmp_path / "state.db") as db:
            seen.append(db.execute("SELECT status, handle FROM steps WHERE path = 'job'").fetchone())
        return 200, {"Content-Type": "application/json"}, json.dumps({"id": "job-1", "state": "SUCCESS",
                                                                       "polls": 1, "result": {}}).encode()
    jobs.override("GET", r"/jobs/job-1", handler=on_poll)
    result = run_jobs(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", polls: 1}}}}
    """)
    assert result.status == "Succeeded"
    status, handle = seen[0]
    assert status == "Running"
    assert json.loads(handle) == {"server": jobs.url, "jobId": "job-1", "pollEvery": None}
    with sqlite3.connect(tmp_path / "state.db") as db:  # a finished step holds no handle
        assert db.execute("SELECT handle, wake FROM steps WHERE path = 'job'").fetchone() == (None, None)


def test_a_timeout_cancels_the_remote_job(run_jobs, jobs):
    result = run_jobs(f"""
        actions:
          job: {{type: testjob.Run, timeout: PT0.3S, inputs: {{server: "{jobs.url}", polls: null}}}}
    """)
    assert result.steps["job"].status == "TimedOut"
    assert jobs.count("start") == 1
    assert jobs.count("cancel", "job-1") == 1
    assert jobs.jobs["job-1"]["state"] == "CANCELLED"


def test_terminate_cancels_the_remote_job(run_jobs, jobs):
    result = run_jobs(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", polls: null}}}}
          pause: {{type: Wait, inputs: {{interval: {{count: 0.2, unit: Second}}}}}}
          stop: {{type: Terminate, runAfter: {{pause: [Succeeded]}}, inputs: {{runStatus: Cancelled}}}}
    """)
    assert result.status == "Cancelled"
    assert result.steps["job"].status == "Cancelled"
    assert jobs.count("cancel", "job-1") == 1


def test_stopping_the_run_cancels_the_remote_job(tmp_path, flow_file, jobs):
    eng = engine.Engine(tmp_path / "state.db", registry=jobplugin.registry())
    flow = eng.load(flow_file(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", polls: null}}}}
    """))

    async def scenario():
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: eng.run(flow))
            while jobs.count("poll") < 2:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # as a server shutdown stops a run
    anyio.run(scenario)
    eng.close()
    assert jobs.count("cancel", "job-1") == 1


def test_a_poll_that_cannot_reach_the_server_is_retried_without_starting_again(run_jobs, jobs):
    jobs.override("GET", r"/jobs/job-1", status=503, times=2)
    result = run_jobs(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", polls: 1}}}}
    """)
    assert result.status == "Succeeded", result.error
    assert jobs.count("start") == 1
    assert jobs.count("poll") == 3


def test_resume_after_kill_9_polls_the_recorded_job_and_never_starts_it_again(tmp_path, flow_file, jobs):
    flow = flow_file(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}", polls: 8}}}}
          after: {{type: Compose, inputs: "{{{{ body('job').jobId }}}}", runAfter: {{job: [Succeeded]}}}}
    """)
    state = tmp_path / "state.db"
    proc = subprocess.Popen([*FLOWRUN, "--state", str(state), "run", str(flow)], cwd=ROOT, env=jobplugin.subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: jobs.count("poll") >= 2 or proc.poll() is not None, "the job to be polled")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    polled_before = jobs.count("poll")
    assert polled_before < 8
    eng = engine.Engine(state, registry=jobplugin.registry())
    run_id = eng.list_runs()[0].id
    result = anyio.run(eng.resume, run_id)
    steps = result.steps
    eng.close()
    assert result.status == "Succeeded", result.error
    assert jobs.count("start") == 1
    assert jobs.count("poll", "job-1") == 8
    assert steps["after"].outputs == "job-1"


def test_a_handle_that_is_not_json_fails_the_action(run_jobs, jobs, monkeypatch):
    plugin = jobplugin.plugin_module()

    async def start(self, inputs, context):
        return {"when": object()}
    monkeypatch.setattr(plugin.RunJob, "start", start)
    result = run_jobs(f"""
        actions:
          job: {{type: testjob.Run, inputs: {{server: "{jobs.url}"}}}}
    """)
    assert result.steps["job"].status == "Failed"
    assert "not JSON" in result.steps["job"].error["message"]
