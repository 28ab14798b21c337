"""Nothing lost, nothing doubled: kill -9 after the acknowledgement, graceful shutdown, the
in-flight limit, replay of a stored request, and reloading flows while serving."""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT, SECRETS
from .inprocess import serving, wait_for

STEPS = """\
name: steps
triggers:
  go:
    type: Request
    auth: {type: key, connection: inbound}
actions:
  first:
    type: Compose
    inputs: "{{ triggerBody() }}"
  pause:
    type: Wait
    runAfter: {first: [Succeeded]}
    inputs: {interval: {count: 1.2, unit: Second}}
  last:
    type: Compose
    runAfter: {pause: [Succeeded]}
    inputs: "done {{ outputs('first').n }}"
outputs:
  result: {value: "{{ outputs('last') }}"}
"""
KEY = {"X-API-Key": SECRETS["TEST_INBOUND_KEY"]}


def first_done(server, run_id: str) -> bool:
    return any(s["action"] == "first" and s["status"] == "Succeeded" for s in server.steps(run_id))


def test_kill_9_after_the_acknowledgement_loses_nothing(make_server, tmp_path):
    server = make_server({"steps.yaml": STEPS})
    with server.client() as c:
        ids = [c.post("/flows/steps/triggers/go", json={"n": i}, headers=KEY).json()["runId"] for i in range(3)]
    for i in ids:  # every run is in its Wait: 'first' finished and committed
        wait_for(lambda: first_done(server, i), "'first' to be committed")
    server.kill9()
    assert {server.run(i)["status"] for i in ids} <= {"Queued", "Running"}

    again = make_server({"steps.yaml": STEPS})
    resumed = {rec["run_id"] for rec in again.logs() if rec.get("event") == "run_resumed"}
    assert resumed == set(ids)
    for n, run_id in enumerate(ids):
        run = again.wait_run(run_id)
        assert run["status"] == "Succeeded"
        assert json.loads(run["outputs"]) == {"result": f"done {n}"}
        steps = {s["action"]: s for s in again.steps(run_id)}
        assert set(steps) == {"first", "pause", "last"}
        assert all(s["status"] == "Succeeded" for s in steps.values())
        assert steps["first"]["attempts"] == 1  # finished before the kill: not run again


def test_sigterm_lets_runs_in_flight_finish(make_server):
    server = make_server({"steps.yaml": STEPS}, "--shutdown-timeout", "10")
    with server.client() as c:
        run_id = c.post("/flows/steps/triggers/go", json={"n": 1}, headers=KEY).json()["runId"]
    wait_for(lambda: first_done(server, run_id), "'first' to be committed")
    server.stop()
    assert server.run(run_id)["status"] == "Succeeded"
    events = [rec.get("event") for rec in server.logs()]
    assert "draining" in events and "stopped" in events


def test_shutdown_past_its_grace_period_leaves_runs_to_resume(make_server):
    server = make_server({"steps.yaml": STEPS}, "--shutdown-timeout", "0.2")
    with server.client() as c:
        run_id = c.post("/flows/steps/triggers/go", json={"n": 4}, headers=KEY).json()["runId"]
    wait_for(lambda: first_done(server, run_id), "'first' to be committed")
    server.stop()
    assert server.run(run_id)["status"] == "Running"
    assert any(rec.get("event") == "drain_timeout" for rec in server.logs())
    again = make_server({"steps.yaml": STEPS})
    run = again.wait_run(run_id)
    assert run["status"] == "Succeeded" and json.loads(run["outputs"]) == {"result": "done 4"}
    assert {s["action"]: s["attempts"] for s in again.steps(run_id)}["first"] == 1


def test_too_many_runs_in_flight_is_429_with_retry_after(make_server):
    server = make_server({"steps.yaml": STEPS}, "--max-in-flight", "2")
    with server.client() as c:
        accepted = [c.post("/flows/steps/triggers/go", json={"n": i}, headers=KEY) for i in range(2)]
        busy = c.post("/flows/steps/triggers/go", json={"n": 9}, headers=KEY)
        for r in accepted:
            server.wait_run(r.json()["runId"])
        later = c.post("/flows/steps/triggers/go", json={"n": 3}, headers=KEY)
    assert [r.status_code for r in accepted] == [202, 202]
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert later.status_code == 202
    assert len(server.runs("steps")) == 3


def test_replay_starts_a_new_run_from_the_stored_request(make_server):
    server = make_server({"steps.yaml": STEPS})
    with server.client() as c:
        first = c.post("/flows/steps/triggers/go?src=test", json={"n": 5}, headers=dict(KEY, **{"X-Trace": "t-1"}))
    run_id = first.json()["runId"]
    server.wait_run(run_id)
    stored = json.loads(server.run(run_id)["request"])
    assert stored["headers"]["x-api-key"] == "***" and stored["headers"]["x-trace"] == "t-1"
    assert stored["body"] == '{"n":5}' and stored["query"] == {"src": "test"} and stored["via"] == "http"

    out = subprocess.run([sys.executable, "-m", "engine.cli", "--state", str(server.state), "replay", run_id, "--json"],
                         capture_output=True, text=True, cwd=server.flows.parent, env=server.env, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "Succeeded" and result["outputs"] == {"result": "done 5"}
    new = server.run(result["run_id"])
    assert new["rerun_of"] == run_id and new["dedupe_key"] is None
    assert json.loads(new["payload"])["body"] == {"n": 5}
    assert json.loads(new["payload"])["queries"] == {"src": "test"}
    assert json.loads(new["request"])["via"] == "replay"


def test_replay_refuses_runs_that_did_not_come_through_a_trigger(tmp_path):
    flow = tmp_path / "f.yaml"
    flow.write_text("actions:\n  a: {type: Compose, inputs: 1}\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    ran = subprocess.run([sys.executable, "-m", "engine.cli", "--state", str(tmp_path / "s.db"), "run", str(flow),
                          "--json"], capture_output=True, text=True, env=env, timeout=60)
    run_id = json.loads(ran.stdout)["run_id"]
    out = subprocess.run([sys.executable, "-m", "engine.cli", "--state", str(tmp_path / "s.db"), "replay", run_id],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "no request was stored" in out.stderr


V = """\
name: versioned
triggers:
  hook:
    type: Request
    auth: {type: none}
actions:
  reply:
    type: Response
    inputs: {body: "%s"}
"""


def test_reload_serves_changed_flows_and_keeps_the_last_good_version(tmp_path, monkeypatch):
    folder = tmp_path / "flows"
    with serving(folder, {"v.yaml": V % "v1"}, state=tmp_path / "state.db", monkeypatch=monkeypatch,
                 reload=True, reload_interval=0.01) as app:
        c = app.client
        assert c.post("/flows/versioned/triggers/hook").text == "v1"
        (folder / "v.yaml").write_text(V % "v2")
        wait_for(lambda: c.post("/flows/versioned/triggers/hook").text == "v2", "v2")
        (folder / "new.yaml").write_text((V % "new").replace("versioned", "added"))
        wait_for(lambda: c.post("/flows/added/triggers/hook").status_code == 200, "the new flow")
        (folder / "v.yaml").write_text((V % "v3").replace("auth: {type: none}", "auth: {type: nonce}"))
        wait_for(lambda: app.records.events("flow_invalid"), "the broken flow to be reported")
        assert c.post("/flows/versioned/triggers/hook").text == "v2"  # the last good version
        (folder / "new.yaml").unlink()
        wait_for(lambda: c.post("/flows/added/triggers/hook").status_code == 404, "the removed flow")
