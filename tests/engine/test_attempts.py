"""Each attempt of a retried action is recorded with its times: number, start, end, status and
a one-line error summary (redacted). `flowrun show` lists them under the action, `--json`
gives them as `attempt_log`; an action that needed no retry writes nothing more than its step.
A state file written before attempts were recorded gets the table when it is opened."""
from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest
from click.testing import CliRunner

import engine
from engine.cli import main
from engine.store import Store
from tests.support.recorder import Recorder

SECRET = 'tok"q\\uo/te+%20</script>-s3cr3t'  # ASCII: an HTTP header carries it

FLOW = """
    name: flaky
    triggers:
      manual: {type: Manual}
    actions:
      call:
        type: Http
        connection: api
        inputs: {method: GET, uri: /flaky}
        retryPolicy: {type: fixed, count: 3, interval: PT0.01S}
      after:
        type: Compose
        runAfter: {call: [Succeeded, Failed]}
        inputs: done
"""


def echo_auth(status):
    """A 503 whose body echoes the credential it was sent (a hostile or careless vendor)."""
    def answer(req):
        return status, {"Content-Type": "application/json"}, json.dumps({"error": req.header("authorization")}).encode()
    return answer


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAKY_TOKEN", SECRET)
    with Recorder() as rec:
        (tmp_path / "connections.yaml").write_text(json.dumps({"connections": {"api": {
            "kind": "http", "settings": {"base_url": rec.url, "auth": "bearer"},
            "secrets": {"token": "FLAKY_TOKEN"}}}}))
        (tmp_path / "flow.yaml").write_text(textwrap.dedent(FLOW))
        yield rec


def run(tmp_path):
    return engine.run_file(tmp_path / "flow.yaml", state=tmp_path / "state.db",
                           connections=tmp_path / "connections.yaml")


def attempts(tmp_path, run_id, path="call"):
    store = Store(tmp_path / "state.db")
    try:
        return store.attempts(run_id, path)
    finally:
        store.close()


def test_an_action_that_succeeds_on_its_third_attempt_records_all_three_with_their_times(tmp_path, api):
    api.route("GET", "/flaky", handler=echo_auth(503), times=2)
    api.route("GET", "/flaky", json={"ok": True})
    result = run(tmp_path)
    step = result.steps["call"]
    assert step.status == "Succeeded" and step.attempts == 3
    tries = attempts(tmp_path, result.id)
    assert [(a.number, a.status) for a in tries] == [(1, "Failed"), (2, "Failed"), (3, "Succeeded")]
    assert step.started <= tries[0].started < tries[0].ended <= tries[1].started < tries[1].ended \
        <= tries[2].started <= tries[2].ended <= step.ended
    assert tries[0].error["code"] and "503" in tries[0].error["message"] and tries[2].error is None
    assert attempts(tmp_path, result.id, "after") == []  # a first attempt that needed no retry writes nothing


def test_an_action_that_fails_every_attempt_ends_with_its_last_attempt_failed(tmp_path, api):
    api.route("GET", "/flaky", status=500, json={"error": "down"})
    result = run(tmp_path)
    assert result.steps["call"].status == "Failed" and result.steps["call"].attempts == 4
    assert [(a.number, a.status) for a in attempts(tmp_path, result.id)] == [(n, "Failed") for n in (1, 2, 3, 4)]


def test_a_secret_the_vendor_echoes_reaches_no_attempt_and_no_show_output(tmp_path, api):
    api.route("GET", "/flaky", handler=echo_auth(503), times=2)
    api.route("GET", "/flaky", json={"ok": True})
    result = run(tmp_path)
    tries = attempts(tmp_path, result.id)
    assert len(tries) == 3 and all(SECRET not in json.dumps(a.to_json(), ensure_ascii=False) for a in tries)
    runner = CliRunner()
    shown = runner.invoke(main, ["--state", str(tmp_path / "state.db"), "show", result.id])
    as_json = runner.invoke(main, ["--state", str(tmp_path / "state.db"), "show", result.id, "--json"])
    assert shown.exit_code == 0 and as_json.exit_code == 0
    for text in (shown.output, as_json.output):
        for form in (SECRET, json.dumps(SECRET)[1:-1], SECRET[:10], SECRET[-10:]):
            assert form not in text
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert SECRET.encode() not in raw and json.dumps(SECRET)[1:-1].encode() not in raw


def test_show_lists_a_retried_actions_attempts_and_json_gives_the_attempt_log(tmp_path, api):
    api.route("GET", "/flaky", status=503, json={"error": "busy"}, times=1)
    api.route("GET", "/flaky", json={"ok": True})
    result = run(tmp_path)
    runner = CliRunner()
    text = runner.invoke(main, ["--state", str(tmp_path / "state.db"), "show", result.id]).output
    lines = [line.strip() for line in text.splitlines()]
    first = next(i for i, line in enumerate(lines) if line.startswith("call "))
    assert "(2 attempts)" in lines[first]
    assert lines[first + 1].startswith("attempt 1") and "Failed" in lines[first + 1] and "503" in lines[first + 1]
    assert lines[first + 2].startswith("attempt 2") and "Succeeded" in lines[first + 2]
    assert not any(line.startswith("attempt") for line in lines[first + 3:])  # `after` was not retried
    doc = json.loads(runner.invoke(main, ["--state", str(tmp_path / "state.db"), "show", result.id, "--json"]).output)
    steps = {s["path"]: s for s in doc["steps"]}
    log = steps["call"]["attempt_log"]
    assert [(a["attempt"], a["status"]) for a in log] == [(1, "Failed"), (2, "Succeeded")]
    assert log[0]["started"].endswith("Z") and log[0]["duration_ms"] >= 0
    assert "attempt_log" not in steps["after"]


def test_a_rerun_that_reuses_a_retried_step_keeps_its_attempts(tmp_path, api):
    api.route("GET", "/flaky", status=503, json={"error": "busy"}, times=1)
    api.route("GET", "/flaky", json={"ok": True})
    first = run(tmp_path)
    eng = engine.Engine(tmp_path / "state.db", connections=tmp_path / "connections.yaml")
    try:
        import anyio

        again = anyio.run(lambda: eng.rerun(first.id, "after"))
    finally:
        eng.close()
    assert [(a.number, a.status) for a in attempts(tmp_path, again.id)] == [(1, "Failed"), (2, "Succeeded")]


def test_prune_deletes_the_attempts_with_their_run(tmp_path, api):
    from engine.retention import prune

    api.route("GET", "/flaky", status=503, json={"error": "busy"}, times=1)
    api.route("GET", "/flaky", json={"ok": True})
    result = run(tmp_path)
    store = Store(tmp_path / "state.db")
    try:
        assert store.attempts(result.id, "call")
        prune(store, older_than=0, now=result.ended + 1)
        assert store.db.execute("SELECT COUNT(*) FROM step_attempts").fetchone()[0] == 0
    finally:
        store.close()


def test_a_state_file_from_before_attempts_gets_the_table_on_open_and_keeps_its_runs(tmp_path, api):
    api.route("GET", "/flaky", status=503, json={"error": "busy"}, times=1)
    api.route("GET", "/flaky", json={"ok": True})
    old = run(tmp_path)
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("DROP TABLE step_attempts")  # as a state file written before it existed
    store = Store(tmp_path / "state.db")
    try:
        assert store.get_run(old.id).status == "Succeeded" and store.attempts(old.id, "call") == []
    finally:
        store.close()
    assert not CliRunner().invoke(main, ["--state", str(tmp_path / "state.db"), "show", old.id]).exception
    api._routes.clear()
    api.route("GET", "/flaky", status=503, json={"error": "busy"}, times=1)
    api.route("GET", "/flaky", json={"ok": True})
    again = run(tmp_path)
    assert len(attempts(tmp_path, again.id)) == 2


def test_kill_9_during_a_third_attempt_then_resume_goes_on_from_attempt_four(tmp_path, api):
    """The dead process recorded attempts 1 and 2; attempt 3 was in flight. The resumed step
    numbers its next attempt 4: no recorded attempt is overwritten, none is numbered twice."""
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from tests.support.waiting import wait_until

    release = threading.Event()
    seen = []

    def answer(req):
        seen.append(req)
        if len(seen) <= 2:
            return 503, {"Content-Type": "application/json"}, b'{"error": "busy"}'
        if len(seen) == 3:
            release.wait(60)  # in flight until the process is killed
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

    api.route("GET", "/flaky", handler=answer)
    state = tmp_path / "state.db"

    def recorded() -> int:
        try:
            with sqlite3.connect(state) as db:
                return db.execute("SELECT COUNT(*) FROM step_attempts").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "run",
                             str(tmp_path / "flow.yaml")], cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(seen) == 3 and recorded() == 2, "attempt 3 in flight with 2 attempts recorded")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        release.set()
    with sqlite3.connect(state) as db:
        (run_id,), = db.execute("SELECT id FROM runs").fetchall()
    out = CliRunner().invoke(main, ["--state", str(state), "resume", run_id, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["status"] == "Succeeded"
    tries = attempts(tmp_path, run_id)
    assert [(a.number, a.status) for a in tries] == [(1, "Failed"), (2, "Failed"), (4, "Succeeded")]
    store = Store(state)
    try:
        assert store.get_step(run_id, "call").attempts == 4
    finally:
        store.close()


def test_an_attempts_error_summary_is_one_bounded_line_whatever_the_vendor_answers(tmp_path, api):
    body = ("line\r\n\x00\x1b[31m" + "x" * 2_000_000).encode()
    api.route("GET", "/flaky", status=503, body=body, headers={"Content-Type": "text/plain"}, times=1)
    api.route("GET", "/flaky", json={"ok": True})
    result = run(tmp_path)
    [first, second] = attempts(tmp_path, result.id)
    assert first.status == "Failed" and second.status == "Succeeded"
    message = first.error["message"]
    assert len(message) <= 503 and "\n" not in message and "\r" not in message
    shown = CliRunner().invoke(main, ["--state", str(tmp_path / "state.db"), "show", result.id]).output
    assert all(len(line) < 400 for line in shown.splitlines() if line.strip().startswith("attempt"))
    assert "\x1b" not in shown and "\x00" not in shown and "\\x1b[31m" in shown  # no escape reaches the terminal
