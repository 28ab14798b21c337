"""Durability: kill -9 and resume, rerun from an action, and what the store keeps."""
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import engine
from tests.support.waiting import wait_until

FLOWRUN = [sys.executable, "-m", "engine.cli"]


def step_statuses(state: Path) -> dict[str, str]:
    """{step path: status} as committed so far (empty while the database is not there yet)."""
    if not state.exists():
        return {}
    try:
        with sqlite3.connect(state) as db:
            return dict(db.execute("SELECT path, status FROM steps").fetchall())
    except sqlite3.OperationalError:  # the schema is being created
        return {}


def counts(recorder):
    out = {}
    for r in recorder.requests:
        out[r.path] = out.get(r.path, 0) + 1
    return out


def test_killed_run_resumes_to_completion_without_repeating_finished_actions(tmp_path, recorder, flow_file):
    recorder.route("POST", "/step/.*", json={"ok": True})
    flow = flow_file(f"""
        name: durable
        actions:
          s1: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/step/1", idempotencyKey: true}}}}
          w1: {{type: Wait, inputs: {{interval: {{count: 0.3, unit: Second}}}}, runAfter: {{s1: [Succeeded]}}}}
          s2: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/step/2", idempotencyKey: true}}, runAfter: {{w1: [Succeeded]}}}}
          w2: {{type: Wait, inputs: {{interval: {{count: 1, unit: Second}}}}, runAfter: {{s2: [Succeeded]}}}}
          s3: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/step/3", idempotencyKey: true}}, runAfter: {{w2: [Succeeded]}}}}
    """)
    state = tmp_path / "state.db"
    proc = subprocess.Popen([*FLOWRUN, "--state", str(state), "run", str(flow)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # s2 finished and committed; w2 (1 s) is in flight
    wait_until(lambda: proc.poll() is None and step_statuses(state).get("w2") == "Running",
               "the run never reached w2")
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    with sqlite3.connect(state) as db:
        (run_id, status), = db.execute("SELECT id, status FROM runs").fetchall()
        done = dict(db.execute("SELECT path, status FROM steps WHERE run_id = ?", (run_id,)).fetchall())
    assert status == "Running"
    assert done["s2"] == "Succeeded" and done["w2"] == "Running" and "s3" not in done

    resumed = subprocess.run([*FLOWRUN, "--state", str(state), "resume", run_id, "--json"],
                             cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "Succeeded"
    assert counts(recorder) == {"/step/1": 1, "/step/2": 1, "/step/3": 1}
    # the idempotency key is the same one a retry after the crash would have sent
    keys = {r.path: r.header("Idempotency-Key") for r in recorder.requests}
    assert keys["/step/3"] == f"{run_id}:s3"
    w2 = next(s for s in result["steps"] if s["path"] == "w2")
    assert w2["attempts"] == 2  # the one in flight ran again


def test_resume_keeps_variables_and_loop_iterations(tmp_path, recorder, flow_file):
    """A resumed run rebuilds variables from the finished steps it reuses."""
    recorder.route("POST", "/item/.*", json={"ok": True})
    flow = flow_file(f"""
        actions:
          total: {{type: InitializeVariable, inputs: {{variables: [{{name: total, type: integer, value: 0}}]}}}}
          loop:
            type: Foreach
            foreach: [1, 2, 3, 4]
            concurrency: 1
            runAfter: {{total: [Succeeded]}}
            actions:
              call: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/item/{{{{ item() }}}}"}}}}
              add: {{type: IncrementVariable, inputs: {{name: total, value: "{{{{ item() }}}}"}}, runAfter: {{call: [Succeeded]}}}}
              pause: {{type: Wait, inputs: {{interval: {{count: "{{{{ 1 if item() == 2 else 0 }}}}", unit: Second}}}}, runAfter: {{add: [Succeeded]}}}}
        outputs:
          total: {{value: "{{{{ variables('total') }}}}"}}
    """)
    state = tmp_path / "state.db"
    proc = subprocess.Popen([*FLOWRUN, "--state", str(state), "run", str(flow)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the second iteration's 1 s pause is in flight, everything before it committed
    wait_until(lambda: proc.poll() is None and step_statuses(state).get("loop[1]/pause") == "Running",
               "the run never reached the second pause")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    eng = engine.Engine(state)
    run_id = eng.list_runs()[0].id
    result = anyio.run(eng.resume, run_id)
    assert result.status == "Succeeded"
    assert result.outputs == {"total": 10}
    assert counts(recorder) == {f"/item/{i}": 1 for i in range(1, 5)}


def test_resume_refuses_a_finished_run(run_flow, tmp_path):
    result = run_flow("actions: {a: {type: Compose, inputs: 1}}")
    eng = engine.Engine(tmp_path / "state.db")
    with pytest.raises(engine.FlowrunError, match="already finished"):
        anyio.run(eng.resume, result.run_id)


# -- rerun ------------------------------------------------------------------------------------
def _rerun(tmp_path, run_id, action, **kw):
    eng = engine.Engine(tmp_path / "state.db")
    return anyio.run(lambda: eng.rerun(run_id, action, **kw))


def test_rerun_from_an_action_reuses_upstream_and_reruns_downstream(run_flow, recorder, tmp_path):
    recorder.route("POST", "/.*", json={"ok": True})
    result = run_flow(f"""
        actions:
          fetch: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/fetch"}}}}
          charge: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/charge", body: "{{{{ body('fetch') }}}}"}}, runAfter: {{fetch: [Succeeded]}}}}
          notify: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/notify"}}, runAfter: {{charge: [Succeeded]}}}}
          side: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/side"}}}}
    """)
    again = _rerun(tmp_path, result.run_id, "charge")
    assert again.status == "Succeeded"
    assert again.rerun_of == result.run_id
    assert counts(recorder) == {"/fetch": 1, "/side": 1, "/charge": 2, "/notify": 2}
    assert set(again.steps) == {"fetch", "charge", "notify", "side"}
    assert again.steps["fetch"].outputs == result.steps["fetch"].outputs


def test_rerun_inside_foreach_and_scope(run_flow, recorder, tmp_path):
    recorder.route("POST", "/.*", json={"ok": True})
    result = run_flow(f"""
        actions:
          loop:
            type: Foreach
            foreach: [a, b]
            actions:
              prepare: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/prepare/{{{{ item() }}}}"}}}}
              send: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/send/{{{{ item() }}}}"}}, runAfter: {{prepare: [Succeeded]}}}}
          try:
            type: Scope
            runAfter: {{loop: [Succeeded]}}
            actions:
              p: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/p"}}}}
              q: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/q"}}, runAfter: {{p: [Succeeded]}}}}
          after: {{type: Http, inputs: {{method: POST, uri: "{recorder.url}/after"}}, runAfter: {{try: [Succeeded]}}}}
    """)
    assert result.status == "Succeeded"
    recorder.requests.clear()
    again = _rerun(tmp_path, result.run_id, "send")
    assert again.status == "Succeeded"
    assert counts(recorder) == {"/send/a": 1, "/send/b": 1, "/p": 1, "/q": 1, "/after": 1}
    recorder.requests.clear()
    again = _rerun(tmp_path, result.run_id, "q")
    assert counts(recorder) == {"/q": 1, "/after": 1}
    assert again.steps["try/p"].outputs == result.steps["try/p"].outputs


def test_rerun_plan_prints_what_runs_again_and_runs_nothing(run_flow, tmp_path):
    result = run_flow("""
        actions:
          a: {type: Compose, inputs: 1}
          b: {type: Compose, inputs: 2, runAfter: {a: [Succeeded]}}
          c: {type: Compose, inputs: 3, runAfter: {b: [Succeeded]}}
    """)
    out = subprocess.run([*FLOWRUN, "--state", str(tmp_path / "state.db"), "rerun", result.run_id, "--from", "b",
                          "--plan", "--json"], cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"run": result.run_id, "rerun": ["b", "c"], "reuse": ["a"]}
    assert len(engine.Engine(tmp_path / "state.db").list_runs()) == 1


def test_rerun_uses_the_recorded_definition_unless_current_is_asked(run_flow, tmp_path):
    result = run_flow("""
        actions:
          a: {type: Compose, inputs: old}
          b: {type: Compose, inputs: "{{ body('a') }}-b1", runAfter: {a: [Succeeded]}}
    """)
    flow = tmp_path / "flow.yaml"
    flow.write_text(flow.read_text().replace("-b1", "-b2"))
    assert _rerun(tmp_path, result.run_id, "b").steps["b"].outputs == "old-b1"
    assert _rerun(tmp_path, result.run_id, "b", definition="current").steps["b"].outputs == "old-b2"


# -- the store --------------------------------------------------------------------------------
def test_every_step_and_run_is_persisted(run_flow, tmp_path):
    result = run_flow("""
        name: persisted
        parameters: {p: {type: string, defaultValue: x}}
        actions:
          a: {type: Compose, inputs: "{{ triggerBody().n }}"}
    """, input={"n": 5})
    with sqlite3.connect(tmp_path / "state.db") as db:
        run = db.execute("SELECT flow, status, payload, params, flow_hash, source FROM runs "
                         "JOIN definitions ON definitions.hash = runs.flow_hash").fetchone()
        step = db.execute("SELECT path, status, attempts, inputs, outputs, started, ended FROM steps").fetchone()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert run[:2] == ("persisted", "Succeeded")
    assert json.loads(run[2])["body"] == {"n": 5}
    assert json.loads(run[3]) == {"p": "x"}
    assert len(run[4]) == 64 and "persisted" in run[5]  # the definition, stored once per hash
    assert step[:5] == ("a", "Succeeded", 1, "5", "5")
    assert result.steps["a"].outputs == 5
    assert step[5] <= step[6]


def test_large_outputs_go_to_a_blob_and_come_back_whole(run_flow, tmp_path):
    result = run_flow("""
        actions:
          big: {type: Compose, inputs: "{{ 'x' * 300000 }}"}
          size: {type: Compose, inputs: "{{ body('big') | length }}", runAfter: {big: [Succeeded]}}
    """, blob_threshold=100_000)
    assert result.steps["big"].outputs == "x" * 300000
    assert result.steps["size"].outputs == 300000
    with sqlite3.connect(tmp_path / "state.db") as db:
        stored = db.execute("SELECT outputs FROM steps WHERE path = 'big'").fetchone()[0]
    assert json.loads(stored)["size"] == 300002
    assert list((tmp_path / "state.db.blobs").glob("*.json"))


def test_outputs_over_the_hard_cap_fail_the_action(run_flow):
    result = run_flow("""
        actions:
          big: {type: Compose, inputs: "{{ 'x' * 300000 }}"}
    """, blob_threshold=1000, blob_cap=100_000)
    step = result.steps["big"]
    assert step.status == "Failed"
    assert step.error["code"] == "OutputTooLarge"
    assert result.status == "Failed"


def test_a_run_records_the_git_commit_of_its_flow_file(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "flow.yaml").write_text("actions: {a: {type: Compose, inputs: 1}}\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "flow.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "flow"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    result = engine.run_file(repo / "flow.yaml", state=tmp_path / "state.db")
    assert result.git_commit == head
    assert result.flow_hash == __import__("hashlib").sha256(b"actions: {a: {type: Compose, inputs: 1}}\n").hexdigest()


# -- reuse: what resume and rerun bring back ----------------------------------------------------
def test_rerun_sees_the_results_inside_a_reused_scope(run_flow, tmp_path):
    result = run_flow("""
        actions:
          try:
            type: Scope
            actions:
              charge: {type: Compose, inputs: {id: ch_1}}
          notify:
            type: Compose
            runAfter: {try: [Succeeded]}
            inputs: {charge: "{{ outputs('charge').id }}", inside: "{{ result('try') | length }}"}
    """)
    again = _rerun(tmp_path, result.run_id, "notify")
    assert again.status == "Succeeded", again.error
    assert again.steps["notify"].outputs == {"charge": "ch_1", "inside": 1}


def test_rerun_reusing_a_failed_variable_step_does_not_crash(run_flow, tmp_path):
    result = run_flow("""
        actions:
          s: {type: InitializeVariable, inputs: {variables: [{name: s, type: string, value: x}]}}
          bad: {type: AppendToArrayVariable, inputs: {name: s, value: 1}, runAfter: {s: [Succeeded]}}
          notify: {type: Compose, inputs: "{{ variables('s') }}", runAfter: {bad: [Failed]}}
    """)
    assert result.steps["bad"].status == "Failed"
    again = _rerun(tmp_path, result.run_id, "notify")
    assert again.steps["notify"].outputs == "x"


def test_a_resumed_run_whose_terminate_had_finished_ends_terminated(run_flow, tmp_path):
    result = run_flow("""
        actions:
          stop: {type: Terminate, inputs: {runStatus: Failed, runError: {code: Stop, message: stopped}}}
          slow: {type: Wait, inputs: {interval: {count: 1, unit: Second}}}
          charge: {type: Compose, inputs: charged, runAfter: {slow: [Succeeded]}}
    """)
    assert (result.status, result.steps["slow"].status) == ("Failed", "Cancelled")
    with sqlite3.connect(tmp_path / "state.db") as db:  # as a crash after Terminate's commit leaves it
        db.execute("UPDATE runs SET status = 'Running', ended = NULL")
        db.execute("DELETE FROM steps WHERE path = 'charge'")
    eng = engine.Engine(tmp_path / "state.db")
    resumed = anyio.run(eng.resume, result.run_id)
    assert resumed.status == "Failed"
    assert resumed.error == {"code": "Stop", "message": "stopped"}
    assert resumed.steps["charge"].status == "Skipped"


def test_terminate_records_unstarted_actions_inside_containers_as_skipped(run_flow):
    result = run_flow("""
        actions:
          stop: {type: Terminate, inputs: {runStatus: Cancelled}}
          box:
            type: Scope
            actions:
              wait: {type: Wait, inputs: {interval: {count: 5, unit: Second}}}
              after_wait: {type: Compose, inputs: x, runAfter: {wait: [Succeeded]}}
    """)
    assert result.status == "Cancelled"
    assert result.steps["box/wait"].status == "Cancelled"
    assert result.steps["box/after_wait"].status == "Skipped"


# -- variables after resume: the order updates happened in, at any kill point -------------------
COUNTING_LOOP = """
    name: counting
    actions:
      count: {type: InitializeVariable, inputs: {variables: [{name: count, type: integer, value: 0}]}}
      total: {type: InitializeVariable, inputs: {variables: [{name: total, type: integer, value: 0}]}, runAfter: {count: [Succeeded]}}
      seen: {type: InitializeVariable, inputs: {variables: [{name: seen, type: array, value: []}]}, runAfter: {total: [Succeeded]}}
      loop:
        type: Foreach
        foreach: [1, 2, 3, 4, 5, 6]
        concurrency: 3
        runAfter: {seen: [Succeeded]}
        actions:
          nap: {type: Wait, inputs: {interval: {count: "{{ [0.3, 0.05, 0.15, 0.02, 0.25, 0.1][item() - 1] }}", unit: Second}}}
          inc: {type: IncrementVariable, inputs: {name: count}, runAfter: {nap: [Succeeded]}}
          add: {type: IncrementVariable, inputs: {name: total, value: "{{ item() }}"}, runAfter: {inc: [Succeeded]}}
          note: {type: AppendToArrayVariable, inputs: {name: seen, value: "{{ item() }}"}, runAfter: {add: [Succeeded]}}
    outputs:
      count: {value: "{{ variables('count') }}"}
      total: {value: "{{ variables('total') }}"}
      seen: {value: "{{ variables('seen') | sort }}"}
"""


def succeeded_steps(state: Path) -> int:
    return sum(1 for s in step_statuses(state).values() if s == "Succeeded")


def _kill_after(state: Path, flow: Path, done_steps: int, resume_id: str | None = None) -> None:
    """Start ``run`` (or ``resume``), kill -9 it once ``done_steps`` steps have succeeded."""
    args = ["resume", resume_id] if resume_id else ["run", str(flow)]
    proc = subprocess.Popen([*FLOWRUN, "--state", str(state), *args], cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is not None or succeeded_steps(state) >= done_steps,
                   f"the run never reached {done_steps} succeeded steps")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("seed", range(4))
def test_a_run_killed_at_random_points_and_resumed_ends_with_the_variables_of_an_uninterrupted_run(
        tmp_path, flow_file, seed):
    """Property: whatever the kill points (one or two kills, seeded), the resumed run's outputs
    equal the uninterrupted run's: variable updates are replayed in the order they happened."""
    import random

    flow = flow_file(COUNTING_LOOP)
    whole = engine.run_file(flow, state=tmp_path / "whole.db")
    assert whole.status == "Succeeded"
    assert whole.outputs == {"count": 6, "total": 21, "seen": [1, 2, 3, 4, 5, 6]}
    total_steps = len(whole.steps)
    rng = random.Random(seed)
    state = tmp_path / "state.db"
    first = rng.randrange(4, total_steps - 4)
    _kill_after(state, flow, first)
    run_id = engine.Engine(state).list_runs()[0].id
    if rng.random() < 0.5:  # a second crash, during the resume
        _kill_after(state, flow, min(first + rng.randrange(1, 8), total_steps - 2), resume_id=run_id)
    eng = engine.Engine(state)
    try:
        run = engine.Engine(state).result(run_id)
        if run.status.is_terminal:  # the kill came after the end: nothing to resume
            resumed = run
        else:
            resumed = anyio.run(eng.resume, run_id)
    finally:
        eng.close()
    assert resumed.status == "Succeeded", resumed.error
    assert resumed.outputs == whole.outputs


UNTIL_LOOP = """
    name: until
    actions:
      n: {type: InitializeVariable, inputs: {variables: [{name: n, type: integer, value: 0}]}}
      trail: {type: InitializeVariable, inputs: {variables: [{name: trail, type: array, value: []}]}, runAfter: {n: [Succeeded]}}
      loop:
        type: Until
        expression: "{{ greaterOrEquals(variables('n'), 4) }}"
        limit: {count: 10}
        runAfter: {trail: [Succeeded]}
        actions:
          inc: {type: IncrementVariable, inputs: {name: n}}
          nap: {type: Wait, inputs: {interval: {count: 0.1, unit: Second}}, runAfter: {inc: [Succeeded]}}
          note: {type: AppendToArrayVariable, inputs: {name: trail, value: "{{ variables('n') }}"}, runAfter: {nap: [Succeeded]}}
    outputs:
      n: {value: "{{ variables('n') }}"}
      trail: {value: "{{ variables('trail') }}"}
      iterations: {value: "{{ outputs('loop').iterations }}"}
"""


@pytest.mark.parametrize("killed_after", [7, 11, 15, 16])  # succeeded steps: 15 is the last iteration's inc
def test_an_until_loop_killed_mid_iteration_resumes_with_the_variables_each_iteration_had(
        tmp_path, flow_file, killed_after):
    """An Until's expression reads variables its iterations change: replayed all at once before
    anything ran, the resumed loop saw the last value after its first reused iteration and
    stopped, the iteration in flight never finished (Running rows in a Succeeded run, a count
    below its iteration rows) and its remaining actions never ran (seen in chaos runs)."""
    flow = flow_file(UNTIL_LOOP)
    whole = engine.run_file(flow, state=tmp_path / "whole.db")
    assert whole.outputs == {"n": 4, "trail": [1, 2, 3, 4], "iterations": 4}
    state = tmp_path / "state.db"
    _kill_after(state, flow, killed_after)
    eng = engine.Engine(state)
    try:
        run_id = eng.list_runs()[0].id
        resumed = eng.result(run_id)
        if not resumed.status.is_terminal:
            resumed = anyio.run(eng.resume, run_id)
        rows = step_statuses(state)
    finally:
        eng.close()
    assert resumed.status == "Succeeded", resumed.error
    assert resumed.outputs == whole.outputs
    assert "Running" not in rows.values(), rows
    assert sorted(p for p in rows if "/" not in p and "[" in p) == [f"loop[{i}]" for i in range(4)]


# -- delivery semantics: onInterrupted ----------------------------------------------------------
def _crash_during(tmp_path, flow_file, recorder, on_interrupted: str | None):
    """A run whose Http call is in flight (the server holds it) when the process is killed."""
    gate = __import__("threading").Event()
    def held(req):
        gate.wait(30)
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
    recorder.route("POST", "/send", handler=held)
    extra = f"onInterrupted: {on_interrupted}, " if on_interrupted else ""
    flow = flow_file(f"""
        actions:
          send: {{type: Http, {extra}inputs: {{method: POST, uri: "{recorder.url}/send"}}}}
          after: {{type: Compose, inputs: done, runAfter: {{send: [Succeeded, Failed]}}}}
    """)
    state = tmp_path / "state.db"
    proc = subprocess.Popen([*FLOWRUN, "--state", str(state), "run", str(flow)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: recorder.requests and step_statuses(state).get("send") == "Running",
                   "the request never arrived")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gate.set()
    eng = engine.Engine(state)
    try:
        resumed = anyio.run(eng.resume, eng.list_runs()[0].id)
        resumed.steps  # read them while the store is open
        return resumed
    finally:
        eng.close()


def test_an_action_in_flight_at_a_crash_runs_again_by_default_and_show_flags_it(tmp_path, flow_file, recorder):
    resumed = _crash_during(tmp_path, flow_file, recorder, None)
    assert resumed.status == "Succeeded"
    assert counts(recorder) == {"/send": 2}  # at least once
    send = resumed.steps["send"]
    assert (send.status, send.interrupted, send.attempts) == ("Succeeded", True, 2)
    assert resumed.steps["after"].interrupted is False
    shown = subprocess.run([*FLOWRUN, "--state", str(tmp_path / "state.db"), "show", resumed.id],
                           cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=60)
    assert "retried after a crash" in shown.stdout
    assert json.loads(subprocess.run([*FLOWRUN, "--state", str(tmp_path / "state.db"), "show", resumed.id, "--json"],
                                     cwd=Path(__file__).parents[2], capture_output=True, text=True,
                                     timeout=60).stdout)["steps"][0]["interrupted"] is True


def test_on_interrupted_fail_never_runs_an_action_in_flight_at_a_crash_again(tmp_path, flow_file, recorder):
    resumed = _crash_during(tmp_path, flow_file, recorder, "fail")
    assert counts(recorder) == {"/send": 1}  # at most once
    send = resumed.steps["send"]
    assert (send.status, send.error["code"], send.interrupted) == ("Failed", "Interrupted", True)
    assert resumed.steps["after"].status == "Succeeded"  # runAfter Failed still runs


@pytest.mark.parametrize("value, ok", [("retry", True), ("fail", True), ("Never", False), ("", False), (1, False)])
def test_on_interrupted_takes_retry_or_fail_only(tmp_path, value, ok):
    flow = {"actions": {"a": {"type": "Compose", "inputs": 1, "onInterrupted": value}}}
    path = tmp_path / "flow.yaml"
    path.write_text(json.dumps(flow))
    out = subprocess.run([*FLOWRUN, "validate", str(path)], cwd=Path(__file__).parents[2],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode == 0) == ok, out
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("node_type, idempotent", [
    ("twilio.SendSms", False), ("twilio.SendWhatsApp", False), ("twilio.StartCall", False),
    ("sendgrid.SendEmail", False), ("salesforce.Create", False), ("salesforce.BulkInsert", False),
    ("salesforce.Update", True), ("salesforce.Upsert", True), ("twilio.GetMessage", True),
    ("Compose", True), ("Http", True),
])
def test_nodes_whose_vendor_takes_no_idempotency_key_declare_it(node_type, idempotent):
    from engine.registry import default_registry

    assert default_registry().node(node_type).idempotent is idempotent
