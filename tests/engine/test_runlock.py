"""A run has one executor at a time: two ``flowrun resume`` of one run, a hand resume of a run
``flowrun serve`` is waking, two engines on one state file: the second is refused (RunBusy) and
nothing runs twice; a process killed with SIGKILL leaves its runs claimable."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest

import engine
from engine.errors import RunBusy, StoreError
from engine.runlock import RunClaim
from engine.store import RecordedSteps, Store

FLOWRUN = [sys.executable, "-m", "engine.cli"]

WAITS = """
    name: waits
    triggers: {manual: {type: Manual}}
    actions:
      nap: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}}
      after: {type: Compose, inputs: done, runAfter: {nap: [Succeeded]}}
"""


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def busy(state, run_id: str) -> bool:
    store = Store(state)
    try:
        with RunClaim(store, run_id):
            return False
    except RunBusy:
        return True
    finally:
        store.close()


def test_a_run_executing_in_one_process_cannot_be_resumed_by_another_until_that_process_dies(tmp_path):
    flow = tmp_path / "waits.yaml"
    flow.write_text(textwrap.dedent(WAITS))
    state = tmp_path / "state.db"
    run_id = "0123456789abcdef0123456789abcdef"
    eng = engine.Engine(state)  # start it here (Queued), execute it in a subprocess
    eng.start(eng.load(flow), run_id=run_id)
    eng.close()
    holder = subprocess.Popen([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: busy(state, run_id), "the first resume to hold the run")
        second = subprocess.run([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second  # refused: nothing ran
        assert "being executed by another process" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not busy(state, run_id), "a killed process must not leave its run claimed"


def test_two_engines_in_one_process_never_execute_one_run_at_once(tmp_path, flow_file):
    path = flow_file(WAITS)
    first, second = engine.Engine(tmp_path / "state.db"), engine.Engine(tmp_path / "state.db")
    outcome = {}

    async def main():
        run_id = first.start(first.load(path))
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.execute, run_id)
            while not busy(tmp_path / "state.db", run_id):
                await anyio.sleep(0.01)
            try:
                await second.resume(run_id)
            except RunBusy as exc:
                outcome["refused"] = str(exc)
            tg.cancel_scope.cancel()
    try:
        anyio.run(main)
    finally:
        first.close()
        second.close()
    assert "already being executed" in outcome["refused"]


def test_a_resume_that_finds_the_run_finished_once_it_holds_it_runs_nothing(run_flow, tmp_path):
    done = run_flow("""
        actions:
          a: {type: Compose, inputs: 1}
    """)
    eng = engine.Engine(tmp_path / "state.db")
    try:
        with pytest.raises(StoreError, match="already finished"):
            anyio.run(lambda: eng.execute(done.id, reuse=RecordedSteps(eng.store, done.id)))
    finally:
        eng.close()
