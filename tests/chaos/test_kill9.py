"""Chaos: ``flowrun run`` and ``flowrun resume`` killed with SIGKILL at random points, again and
again, against a counting server on loopback (a real HTTP server that counts the requests per
idempotency key). After every kill the run is resumed, until it finishes.

Asserts, over all the kills:
- no run left unfinished: the run ends Succeeded;
- no Succeeded step executed twice: a step recorded Succeeded before a kill sends nothing more;
- nothing lost: every step's request reached the server, and every request the server
  acknowledged belongs to a step of the run;
- the final outputs equal an uninterrupted run's.

Kills come on observed progress (a new committed step), never on timers, so the test's length
depends on how fast the machine is, not on sleeps. ``FLOWRUN_CHAOS_KILLS`` sets how many (50).
"""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import engine
from tests.support.waiting import wait_until

FLOWRUN = [sys.executable, "-m", "engine.cli"]
ROOT = Path(__file__).parents[2]
KILLS = int(os.environ.get("FLOWRUN_CHAOS_KILLS", "50"))
ITEMS = 80

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


class Gate:
    """Lets the counting server answer only as many requests as the test allows, so a kill
    lands at a chosen point of progress (after the n-th answer) rather than after a time.
    ``killed()`` lets go of the requests the dead process left waiting (they count nothing)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.tokens = 0
        self.answered = 0
        self.generation = 0
        self.open = False

    def allow(self, n: int) -> None:
        with self.cond:
            self.tokens += n
            self.cond.notify_all()

    def pass_all(self) -> None:
        with self.cond:
            self.open = True
            self.cond.notify_all()

    def killed(self) -> None:
        with self.cond:
            self.generation += 1
            self.tokens = 0
            self.cond.notify_all()

    def wait(self) -> None:
        with self.cond:
            mine = self.generation
            self.cond.wait_for(lambda: self.open or self.tokens or self.generation != mine, timeout=60)
            if self.generation != mine:
                return
            if not self.open:
                self.tokens -= 1
            self.answered += 1


def _counting_server(recorder, gate: Gate):
    def answer(req):
        gate.wait()
        n = int(req.path.rsplit("/", 1)[-1]) if req.path.startswith("/item/") else 0
        return 200, {"Content-Type": "application/json"}, json.dumps({"n": n}).encode()
    recorder.route("POST", "/.*", handler=answer)


def _per_key(recorder) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in list(recorder.requests):
        key = r.header("Idempotency-Key")
        out[key] = out.get(key, 0) + 1
    return out


def test_runs_killed_50_times_at_random_points_finish_with_nothing_lost_and_nothing_done_twice(tmp_path, recorder):
    gate = Gate()
    _counting_server(recorder, gate)
    flow = tmp_path / "chaos.yaml"
    flow.write_text(FLOW.format(url=recorder.url, items=ITEMS))
    gate.pass_all()
    whole = engine.run_file(flow, state=tmp_path / "whole.db")
    gate.open = False
    gate.killed()
    assert whole.status == "Succeeded"
    assert whole.outputs == {"total": ITEMS * (ITEMS + 1) // 2, "done": 0}
    recorder.requests.clear()

    rng = random.Random(int(os.environ.get("FLOWRUN_CHAOS_SEED", "8")))
    state = tmp_path / "state.db"
    run_id = None
    kills = 0
    frozen: dict[str, int] = {}  # key -> requests it had when its step was seen Succeeded
    finished = False
    while not finished:
        args = ["resume", run_id] if run_id else ["run", str(flow)]
        before = len(_succeeded(state))
        proc = subprocess.Popen([*FLOWRUN, "--state", str(state), *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < KILLS:
            answered = gate.answered
            gate.allow(rng.randint(1, 2))  # kill after 1-2 more answers: before, during or after commits
            wait_until(lambda: proc.poll() is not None or gate.answered > answered, "the run made no progress")
            proc.send_signal(signal.SIGKILL)
            kills += proc.wait() == -signal.SIGKILL
            gate.killed()
        else:
            gate.pass_all()
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        if run_id is None:
            with sqlite3.connect(state) as db:
                row = db.execute("SELECT id FROM runs").fetchone()
            run_id = row[0] if row else None
            if run_id is None:  # killed before the run was committed: start again
                continue
        counts = _per_key(recorder)
        for path, _ in _succeeded(state).items():
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
    gate.pass_all()

    print(f"chaos: {kills} kills of run and resume")
    assert kills == KILLS, kills
    eng = engine.Engine(state)
    try:
        run = eng.result(run_id)
        assert run.status == "Succeeded", run.error
        assert run.outputs == whole.outputs
        steps = run.steps
    finally:
        eng.close()
    counts = _per_key(recorder)
    http = {p: s for p, s in steps.items() if s.type == "Http"}
    assert len(http) == ITEMS + 1
    for path, step in http.items():
        assert counts.get(f"{run_id}:{path}", 0) >= 1, path  # duplicates only of steps in flight at a kill
    assert set(counts) == {f"{run_id}:{p}" for p in http}
