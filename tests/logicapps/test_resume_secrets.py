"""A SAS flow that checks an API-key header itself, resumed after kill -9, sees the same real
value as the first attempt: the value is stored sealed (AES-GCM) under a key that lives only
in the environment ($FLOWRUN_SECRETS_KEY), never in clear and never with its key. Without that
key, or with another one, the resumed run's read of the headers fails with a clear error
instead of comparing the mask (engine.encrypted)."""
from __future__ import annotations

import base64
import json
import os
import time
from urllib.parse import quote, urlsplit

import pytest

from tests.listener.conftest import Server, write_flows

API_KEY = 'Key-"quoted"\\back\\slash-0xC0FFEE'
FLOW = """\
name: keyed
triggers:
  manual: {type: Request, auth: {type: sas}}
actions:
  pause: {type: Wait, inputs: {interval: {count: 1, unit: Second}}}
  check:
    type: If
    runAfter: {pause: [Succeeded]}
    expression: "@equals(triggerOutputs()['headers']['x-api-key'], appsetting('PARTNER_API_KEY'))"
    actions: {ok: {type: Compose, inputs: good}}
    else: {actions: {bad: {type: Compose, inputs: bad}}}
"""


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []
    folder = write_flows(tmp_path / "flows", {"keyed.yaml": FLOW}, connections="connections: {}\n")

    def start(env: dict) -> Server:
        clean = {k: v for k, v in os.environ.items() if k not in ("FLOWRUN_SECRETS_KEY", "FLOWRUN_SAS_KEY")}
        server = Server(folder, tmp_path / "state.db", env={"PARTNER_API_KEY": API_KEY, **env})
        server.env = {**clean, **{k: v for k, v in server.env.items() if k not in os.environ or k in env},
                      "PARTNER_API_KEY": API_KEY}
        server.env = {k: v for k, v in server.env.items()
                      if k not in ("FLOWRUN_SECRETS_KEY", "FLOWRUN_SAS_KEY") or k in env}
        started.append(server)
        return server.start()

    yield start
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def poll(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def call(server: Server) -> str:
    import httpx

    url = poll(lambda: next((r["url"] for r in server.logs() if r.get("event") == "callback_url"), None), "the URL")
    parts = urlsplit(url)
    got = httpx.post(f"{server.url}{parts.path}?{parts.query}", json={}, headers={"x-api-key": API_KEY})
    assert got.status_code == 202, got.text
    return got.json()["runId"]


def killed_while_waiting(start, env: dict) -> tuple[str, Server]:
    first = start(env)
    run_id = call(first)
    poll(lambda: any(s["action"] == "pause" for s in first.steps(run_id)), "the Wait to start")
    first.kill9()
    return run_id, first


def finished(server: Server, run_id: str) -> dict:
    return poll(lambda: (r := server.run(run_id))["status"] in ("Succeeded", "Failed") and r, "the run to end")


def no_clear_key(state_dir) -> None:
    raw = b"".join(p.read_bytes() for p in state_dir.glob("state.db*"))
    text = raw.decode("utf-8", "replace")
    for form in (API_KEY, json.dumps(API_KEY)[1:-1], json.dumps(json.dumps(API_KEY)[1:-1])[1:-1],
                 quote(API_KEY, safe=""), base64.b64encode(API_KEY.encode()).decode()):
        assert form not in text


def test_with_the_environments_key_a_resumed_run_reads_the_real_header(servers, tmp_path):
    env = {"FLOWRUN_SECRETS_KEY": "env-only-Key-\"9\\f"}
    run_id, _ = killed_while_waiting(servers, env)
    again = servers(env)
    run = finished(again, run_id)
    steps = {s["action"]: s for s in again.steps(run_id)}
    assert run["status"] == "Succeeded"
    assert (steps["ok"]["status"], steps["bad"]["status"]) == ("Succeeded", "Skipped")  # the key matched
    stored = json.loads(run["request"])
    assert set(stored["sealed"]["headers"]) == {"x-api-key"} and stored["headers"]["x-api-key"] == "***"
    no_clear_key(tmp_path)
    assert "env-only-Key" not in (tmp_path / "state.db").read_bytes().decode("utf-8", "replace")


def test_without_a_key_the_resumed_read_fails_clearly(servers, tmp_path):
    run_id, _ = killed_while_waiting(servers, {})
    again = servers({})
    run = finished(again, run_id)
    steps = {s["action"]: s for s in again.steps(run_id)}
    assert run["status"] == "Failed" and steps["check"]["status"] == "Failed"
    assert all(steps[n]["status"] == "Skipped" for n in ("ok", "bad") if n in steps)
    error = json.loads(steps["check"]["error"])
    assert error["code"] == "SecretNotKept"
    assert "x-api-key" in error["message"] and "FLOWRUN_SECRETS_KEY" in error["message"]
    no_clear_key(tmp_path)


def test_with_another_key_the_resumed_read_fails_clearly(servers, tmp_path):
    run_id, _ = killed_while_waiting(servers, {"FLOWRUN_SECRETS_KEY": "first-key-1234"})
    again = servers({"FLOWRUN_SECRETS_KEY": "second-key-5678"})
    run = finished(again, run_id)
    steps = {s["action"]: s for s in again.steps(run_id)}
    assert run["status"] == "Failed" and json.loads(steps["check"]["error"])["code"] == "SecretNotOpened"


def test_a_run_parked_and_woken_in_the_same_process_keeps_the_header_without_a_key(servers, tmp_path):
    server = servers({})
    run_id = call(server)
    run = finished(server, run_id)
    assert run["status"] == "Succeeded"
    assert {s["action"]: s["status"] for s in server.steps(run_id)}["ok"] == "Succeeded"
    no_clear_key(tmp_path)
