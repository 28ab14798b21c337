"""Many processes on one state file: ``flowrun run`` x N at once beside a ``flowrun serve``
taking webhooks, and a hand ``flowrun resume`` of a run the server is executing. Nothing is
lost, nothing runs twice, and no process says "database is locked" or prints a traceback."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.chaos.test_kill9 import ROOT, counting  # noqa: F401  (a shared fixture)
from tests.chaos.test_serve_kill9 import FLOW as HOOK, Serve, _free_port
from tests.support.waiting import wait_until

FLOWRUN = [sys.executable, "-m", "engine.cli"]

LOOP = """
name: loop
actions:
  total: {type: InitializeVariable, inputs: {variables: [{name: total, type: integer, value: 0}]}}
  each:
    type: Foreach
    foreach: "{{ range(40) | list }}"
    concurrency: 4
    runAfter: {total: [Succeeded]}
    actions:
      double: {type: Compose, inputs: "{{ item() * 2 }}"}
      add: {type: IncrementVariable, inputs: {name: total, value: "{{ outputs('double') }}"},
            runAfter: {double: [Succeeded]}}
outputs:
  total: {value: "{{ variables('total') }}"}
"""
BAD = ("Traceback", "database is locked")


def _statuses(state) -> dict[str, str]:
    with sqlite3.connect(state, timeout=10) as db:
        return dict(db.execute("SELECT id, status FROM runs").fetchall())


def test_run_processes_and_serve_on_one_state_file_lose_nothing_and_never_report_a_locked_database(
        tmp_path, counting):
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hook.yaml").write_text(HOOK.format(url=counting.url))
    (tmp_path / "loop.yaml").write_text(LOOP)
    state = tmp_path / "state.db"
    counting.gate.pass_all()
    server = Serve(flows, state, _free_port())
    url = server.url
    try:
        runs = [subprocess.Popen([*FLOWRUN, "--state", str(state), "run", str(tmp_path / "loop.yaml"), "--json"],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]

        def post(n: int) -> httpx.Response:
            return httpx.post(f"{url}/flows/hook/triggers/go", json={"n": n}, timeout=60)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(1, 17)))
        outs = [(p.wait(120), *p.communicate()) for p in runs]
        acked = [a.json()["runId"] for a in answers if a.status_code == 202]
        wait_until(lambda: all(_statuses(state)[i] not in ("Queued", "Running") for i in acked),
                   "webhook runs to finish", timeout=60)
    finally:
        counting.gate.close()
        server.kill()
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers if a.status_code != 202]
    for code, out, err in outs:
        assert code == 0 and not any(b in err for b in BAD), err
        assert json.loads(out)["outputs"] == {"total": sum(i * 2 for i in range(40))}
    assert not server.problems(), server.problems()[:3]
    statuses = _statuses(state)
    assert len(statuses) == 4 + 16 and set(statuses.values()) == {"Succeeded"}


def test_a_hand_resume_of_a_run_serve_is_executing_is_refused_and_the_run_executes_once(tmp_path, counting):
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hook.yaml").write_text(HOOK.format(url=counting.url))
    state = tmp_path / "state.db"
    counting.clear()
    server = Serve(flows, state, _free_port())
    url = server.url
    try:
        run_id = httpx.post(f"{url}/flows/hook/triggers/go", json={"n": 7}, timeout=60).json()["runId"]
        wait_until(lambda: _statuses(state).get(run_id) == "Running", "the run to be in flight")
        hand = subprocess.run([*FLOWRUN, "--state", str(state), "resume", run_id], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert hand.returncode == 2 and "being executed by" in hand.stderr, hand.stderr
        assert not any(b in hand.stderr for b in BAD)
        counting.gate.pass_all()
        wait_until(lambda: _statuses(state)[run_id] == "Succeeded", "the run to finish")
    finally:
        counting.gate.close()
        server.kill()
    assert counting.counts() == {f"{run_id}:first": 1, f"{run_id}:loop[0]/send": 1, f"{run_id}:loop[1]/send": 1}
    assert not server.problems()
