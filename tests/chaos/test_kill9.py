"""Chaos: ``flowrun run`` and ``flowrun resume`` killed with SIGKILL at random points, again and
again, against a counting server on loopback (a real HTTP server that counts the requests per
idempotency key). After every kill the run is resumed, until it finishes.

Asserts, over all the kills:
- no run left unfinished: the run ends Succeeded;
- no Succeeded step executed twice: a step recorded Succeeded before a kill sends nothing more;
- nothing lost: every step's request reached the server, and every request the server
  acknowledged belongs to a step of the run;
- the final outputs equal an uninterrupted run's.

Kills come on observed progress, never on timers, so the test's length depends on how fast
the machine is, not on sleeps. Two kinds alternate: after 1-2 more answers of the counting
server, and the moment a new Succeeded step is visible in the state file (the variant that
once stalled: see tests/chaos/counting.py). ``FLOWRUN_CHAOS_RUN_KILLS`` sets how many (30; with
the 20 of test_serve_kill9.py, the issue's 50).
"""
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from tests.chaos.counting import CountingServer
from tests.support.waiting import wait_until

FLOWRUN = [sys.executable, "-m", "engine.cli"]
ROOT = Path(__file__).parents[2]
KILLS = int(os.environ.get("FLOWRUN_CHAOS_RUN_KILLS", "30"))  # + 20 of serve: the 50
ITEMS = 60

FLOW = """
name: chaos
actions:
  total: {{type: InitializeVariable, inputs: {{variables: [{{name: total, type: integer, value: 0}}]}}}}
  loop:
    type: Foreach
    foreach: "{{{{ range(1, {items} + 1) | list }}}}"
    concurrency: 3
    runAfter: {{total: [Succeeded]}}
    actions:
      send: {{type: Http, inputs: {{method: POST, uri: "{url}/item/{{{{ item() }}}}", idempotencyKey: true}}}}
      add: {{type: IncrementVariable, inputs: {{name: total, value: "{{{{ body('send').n }}}}"}}, runAfter: {{send: [Succeeded]}}}}
  done: {{type: Http, inputs: {{method: POST, uri: "{url}/done", idempotencyKey: true}}, runAfter: {{loop: [Succeeded]}}}}
outputs:
  total: {{value: "{{{{ variables('total') }}}}"}}
  done: {{value: "{{{{ body('done').n }}}}"}}
"""


def _succeeded(state: Path) -> dict[str, int]:
    """{step path: attempts} of the Succeeded steps committed so far."""
    if not state.exists():
        return {}
    try:
        with sqlite3.connect(state, timeout=5) as db:
            return dict(db.execute("SELECT path, attempts FROM steps WHERE status = 'Succeeded'").fetchall())
    except sqlite3.OperationalError:
        return {}


def kill_on_progress(proc: subprocess.Popen, server: CountingServer, state: Path, mode: str, rng: random.Random) -> bool:
    """Let the process make a little progress, then SIGKILL it; True if the kill landed.

    ``answers``: after 1-2 more answers of the counting server (before, during or after the
    commits they lead to). ``commit``: the moment a new Succeeded step is visible in the state
    file, before the process does anything after it (the variant that once stalled)."""
    gate = server.gate
    answered, committed = gate.answered, len(_succeeded(state))
    gate.allow(rng.randint(1, 2))
    if mode == "answers":
        progress = lambda: proc.poll() is not None or gate.answered > answered  # noqa: E731
    else:
        progress = lambda: proc.poll() is not None or len(_succeeded(state)) > committed  # noqa: E731
    wait_until(progress, f"the process made no progress ({mode})", interval=0.002)
    proc.send_signal(signal.SIGKILL)
    killed = proc.wait() == -signal.SIGKILL
    gate.killed()
    return killed


@pytest.fixture(scope="session")
def counting():
    with CountingServer() as server:
        yield server


def uninterrupted(counting: CountingServer, flow: Path, state: Path, **kw) -> engine.Run:
    counting.gate.pass_all()
    try:
        return engine.run_file(flow, state=state, **kw)
    finally:
        counting.gate.close()


def test_runs_killed_30_times_at_random_points_finish_with_nothing_lost_and_nothing_done_twice(tmp_path, counting):
    flow = tmp_path / "chaos.yaml"
    flow.write_text(FLOW.format(url=counting.url, items=ITEMS))
    whole = uninterrupted(counting, flow, tmp_path / "whole.db")
    assert whole.status == "Succeeded"
    assert whole.outputs == {"total": ITEMS * (ITEMS + 1) // 2, "done": 0}
    counting.clear()

    rng = random.Random(int(os.environ.get("FLOWRUN_CHAOS_SEED", "8")))
    state = tmp_path / "state.db"
    run_id = None
    kills = 0
    modes: dict[str, int] = {}
    frozen: dict[str, int] = {}  # key -> requests it had when its step was seen Succeeded
    finished = False
    while not finished:
        args = ["resume", run_id] if run_id else ["run", str(flow)]
        proc = subprocess.Popen([*FLOWRUN, "--state", str(state), *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < KILLS:
            mode = "commit" if kills % 2 else "answers"
            landed = kill_on_progress(proc, counting, state, mode, rng)
            kills += landed
            modes[mode] = modes.get(mode, 0) + landed
            proc.stderr.close()
        else:
            counting.gate.pass_all()
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        if run_id is None:
            with sqlite3.connect(state) as db:
                row = db.execute("SELECT id FROM runs").fetchone()
            run_id = row[0] if row else None
            if run_id is None:  # killed before the run was committed: start again
                continue
        counts = counting.counts()
        for path in _succeeded(state):
            key = f"{run_id}:{path}"
            if key in frozen:
                assert counts.get(key, 0) == frozen[key], f"{path} ran again after it had Succeeded"
            else:
                frozen[key] = counts.get(key, 0)
        eng = engine.Engine(state)
        try:
            finished = eng.result(run_id).status.is_terminal
        finally:
            eng.close()
    counting.gate.close()

    print(f"chaos: {kills} kills of run and resume ({modes})")
    assert kills == KILLS, kills
    assert modes.get("commit", 0) >= KILLS // 3  # the variant that once stalled keeps being tried
    eng = engine.Engine(state)
    try:
        run = eng.result(run_id)
        assert run.status == "Succeeded", run.error
        assert run.outputs == whole.outputs
        steps = run.steps
    finally:
        eng.close()
    counts = counting.counts()
    http = {p: s for p, s in steps.items() if s.type == "Http"}
    assert len(http) == ITEMS + 1
    for path, step in http.items():
        assert counts.get(f"{run_id}:{path}", 0) >= 1, path  # duplicates only of steps in flight at a kill
    assert set(counts) == {f"{run_id}:{p}" for p in http}
