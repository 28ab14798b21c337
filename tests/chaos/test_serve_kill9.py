"""Chaos: ``flowrun serve`` killed with SIGKILL at random points while it accepts webhook
requests (a Request trigger) and executes their runs (actions that call a counting server on
loopback), then started again, over and over.

Asserts, over all the kills:
- no acknowledged request lost: every request answered 202 has a run that ends Succeeded;
- no run left unfinished once the last server has settled (an unacknowledged request whose
  run was committed before the kill finishes too);
- no Succeeded step executed twice: once a step is seen Succeeded, the server gets nothing
  more with its idempotency key;
- every run's outputs equal an uninterrupted run's with the same payload.

Kills come on observed progress, never on timers. Three kinds take turns: the moment a new
run is committed (before or after its 202 went out), after 1-2 more answers of the counting
server, and the moment a new Succeeded step is visible in the state file.
``FLOWRUN_CHAOS_SERVE_KILLS`` sets how many (20).
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

import engine
from tests.chaos.counting import CountingServer
from tests.chaos.test_kill9 import ROOT, counting  # noqa: F401  (a shared fixture)
from tests.support.waiting import wait_until

KILLS = int(os.environ.get("FLOWRUN_CHAOS_SERVE_KILLS", "20"))
MODES = ("accept", "answers", "commit")

FLOW = """
name: hook
triggers:
  go: {{type: Request, auth: {{type: none}}}}
actions:
  total: {{type: InitializeVariable, inputs: {{variables: [{{name: total, type: integer, value: 0}}]}}}}
  first: {{type: Http, inputs: {{method: POST, uri: "{url}/item/{{{{ triggerBody().n }}}}", idempotencyKey: true}},
           runAfter: {{total: [Succeeded]}}}}
  loop:
    type: Foreach
    foreach: "{{{{ [1, 2] }}}}"
    concurrency: 2
    runAfter: {{first: [Succeeded]}}
    actions:
      send: {{type: Http, inputs: {{method: POST, uri: "{url}/item/{{{{ body('first').n * 10 + item() }}}}",
              idempotencyKey: true}}}}
      add: {{type: IncrementVariable, inputs: {{name: total, value: "{{{{ body('send').n }}}}"}},
             runAfter: {{send: [Succeeded]}}}}
outputs:
  total: {{value: "{{{{ variables('total') }}}}"}}
  first: {{value: "{{{{ body('first').n }}}}"}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """One ``flowrun serve`` life on a fixed port (clients keep one address across restarts)."""

    def __init__(self, flows: Path, state: Path, port: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--state", str(state), "serve", "--flows", str(flows),
             "--port", str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.url = ""
        threading.Thread(target=self._drain, daemon=True).start()
        wait_until(lambda: self.listening.is_set() or self.proc.poll() is not None, "serve did not start")
        assert self.listening.is_set(), "\n".join(self.lines[-20:])

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if '"event": "listening"' in line or '"event":"listening"' in line:
                self.url = json.loads(line)["url"]
                self.listening.set()

    def kill(self) -> bool:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait() == -signal.SIGKILL

    def problems(self) -> list[str]:
        return [line for line in self.lines if "Traceback" in line or "database is locked" in line]


class Client:
    """Posts webhooks one at a time from a thread; remembers the acknowledged ones."""

    def __init__(self, url: str):
        self.url = url
        self.acked: dict[str, int] = {}  # run id -> n of its payload
        self.sent = 0
        self._thread: threading.Thread | None = None

    def post(self, n: int) -> None:
        def go() -> None:
            try:  # a new connection each time: a pooled one may belong to a killed server
                r = httpx.post(f"{self.url}/flows/hook/triggers/go", json={"n": n}, timeout=30)
            except httpx.HTTPError:
                return  # the server died before answering: not acknowledged
            if r.status_code == 202:
                self.acked[r.json()["runId"]] = n
        self.sent += 1
        self._thread = threading.Thread(target=go, daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def settle(self) -> None:
        if self._thread is not None:
            self._thread.join(60)


def _succeeded(state: Path) -> int:
    """How many steps of all runs are committed Succeeded."""
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(state, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM steps WHERE status = 'Succeeded'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _runs(state: Path) -> dict[str, str]:
    if not state.exists():
        return {}
    try:
        with sqlite3.connect(state, timeout=5) as db:
            return dict(db.execute("SELECT id, status FROM runs").fetchall())
    except sqlite3.OperationalError:
        return {}


def _where(state: Path) -> str:
    queries = {"runs": "SELECT id, status FROM runs",
               "unfinished steps": "SELECT run_id, path, status, wake FROM steps WHERE status != 'Succeeded'",
               "leases": "SELECT run_id, pid, expires FROM run_leases", "parked": "SELECT * FROM parked_runs"}
    with sqlite3.connect(state, timeout=5) as db:
        return "; ".join(f"{name} {db.execute(sql).fetchall()}" for name, sql in queries.items())


def test_serve_killed_20_times_while_accepting_and_running_loses_no_acknowledged_request(tmp_path, counting):
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hook.yaml").write_text(FLOW.format(url=counting.url))
    state = tmp_path / "state.db"
    port = _free_port()
    rng = random.Random(int(os.environ.get("FLOWRUN_CHAOS_SEED", "8")))
    client = Client(f"http://127.0.0.1:{port}")
    gate = counting.gate
    counting.clear()
    kills, modes, problems = 0, {m: 0 for m in MODES}, []
    frozen: dict[str, int] = {}

    def check_nothing_twice() -> None:
        counts = counting.counts()
        with sqlite3.connect(state, timeout=5) as db:
            rows = db.execute("SELECT run_id, path FROM steps WHERE status = 'Succeeded'").fetchall()
        for run_id, path in rows:
            key = f"{run_id}:{path}"
            if key in frozen:
                assert counts.get(key, 0) == frozen[key], f"{key} ran again after it had Succeeded"
            else:
                frozen[key] = counts.get(key, 0)

    while kills < KILLS:
        server = Serve(flows, state, port)
        mode = MODES[kills % len(MODES)]
        runs_before, answered, committed = len(_runs(state)), gate.answered, _succeeded(state)
        client.post(client.sent + 1)
        if mode != "accept":
            client.settle()  # acknowledged (or refused) before the kill: the acknowledged must finish
        if mode == "accept":
            progress = lambda: len(_runs(state)) > runs_before or not client.busy()  # noqa: E731
        else:
            gate.allow(rng.randint(1, 2))
            if mode == "answers":
                progress = lambda: gate.answered > answered  # noqa: E731
            else:
                progress = lambda: _succeeded(state) > committed  # noqa: E731
        try:
            wait_until(lambda: progress() or server.proc.poll() is not None, "no progress", interval=0.002)
        except AssertionError:
            server.kill()
            raise AssertionError(f"serve made no progress ({mode}) after {kills} kills; {_where(state)}; "
                                 f"gate: {gate.tokens} tokens, {gate.answered} answered, counts {counting.counts()}; log:\n"
                                 + "".join(server.lines[-15:])) from None
        landed = server.kill()
        gate.killed()
        kills += landed
        modes[mode] += landed
        problems += server.problems()
        client.settle()
        check_nothing_twice()

    server = Serve(flows, state, port)  # the last one settles everything
    gate.pass_all()
    try:
        wait_until(lambda: all(s not in ("Queued", "Running") for s in _runs(state).values()),
                   "runs left unfinished after the last restart", timeout=60)
        check_nothing_twice()
    finally:
        gate.close()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        problems += server.problems()
    print(f"chaos: {kills} kills of serve ({modes}); {len(client.acked)} of {client.sent} requests acknowledged")

    assert kills == KILLS and all(modes.values()), modes
    assert not problems, problems[:5]
    eng = engine.Engine(state)
    try:
        runs = {r.id: eng.result(r.id) for r in eng.list_runs(limit=10_000)}
        steps = {i: r.steps for i, r in runs.items()}
    finally:
        eng.close()
    assert set(client.acked) <= set(runs), "an acknowledged request has no run"
    assert {r.status for r in runs.values()} == {"Succeeded"}, {i: r.error for i, r in runs.items()}
    payloads = {i: r.payload["body"]["n"] for i, r in runs.items()}
    assert all(payloads[i] == n for i, n in client.acked.items())

    gate.pass_all()
    try:  # an uninterrupted run per payload, on its own state file
        whole = {n: engine.run_file(flows / "hook.yaml", input={"n": n}, state=tmp_path / "whole.db").outputs
                 for n in sorted(set(payloads.values()))}
    finally:
        gate.close()
    for run_id, run in runs.items():
        assert run.outputs == whole[payloads[run_id]], run_id
        for path, step in steps[run_id].items():
            if step.type == "Http":
                assert frozen.get(f"{run_id}:{path}", 0) >= 1, f"{run_id}:{path} never reached the server"
