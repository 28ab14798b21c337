"""engine/storage.py: one contract, two backends. Every test here runs on SQLite and on
PostgreSQL (a schema of its own); what a backend does differently is not part of it."""
import multiprocessing
import time

import anyio
import pytest

import engine
from engine.errors import OutputTooLarge
from engine.storage import open_store, status, upgrade


def finish(store, run_id, path, *, outputs=None, status="Succeeded", started=1.0, ended=2.0, **kw):
    store.step_finished(run_id, path, path, "Compose", status, attempts=1, inputs=kw.get("inputs"),
                        outputs=outputs, error=kw.get("error"), started=started, ended=ended)
    store.flush()


def dump(store) -> str:
    """Every text the database holds (tables and blobs), for secret checks."""
    if store.backend == "sqlite":
        import sqlite3

        text = "\n".join(sqlite3.connect(store.path).iterdump())
        return text + "".join(p.read_text() for p in store.blobs.glob("*.json")) if store.blobs.exists() else text
    tables = [r[0] for r in store.conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    return "\n".join(str(row) for t in tables for row in store.conn.execute(f"SELECT * FROM {t}"))


@pytest.mark.parametrize("value", [None, 0, "text", "", [1, "two", None], {"nested": {"ü": "ñ"}}, 1.5, True,
                                   "nul \x00 inside", "quote ' and \\ backslash ? %s %",
                                   # a lone surrogate: valid JSON ("\\ud800") from a webhook or a vendor, but no UTF-8
                                   "\ud800", {"k\udfff": ["\ud83d", "é\udc00ü"]}])
def test_values_come_back_as_they_were_stored(store, value):
    store.create_run({"id": "r", "flow": "f", "status": "Queued", "payload": value})
    finish(store, "r", "a", outputs=value, inputs=value)
    assert store.get_run("r").payload == value
    assert store.get_step("r", "a").outputs == value


def test_large_values_are_stored_once_by_content_and_read_back_whole(state):
    store = open_store(state, blob_threshold=100)
    try:
        big = {"rows": ["x" * 50] * 40}
        first, second = store.encode(big), store.encode(big)
        assert first == second and len(first) < 100
        finish(store, "r", "a", outputs=big)
        assert store.get_step("r", "a").outputs == big
    finally:
        store.close()


def test_a_large_value_holding_a_lone_surrogate_is_stored_whole_too(state):
    store = open_store(state, blob_threshold=100)
    try:
        big = {"rows": ["x\ud800" * 50] * 4}
        finish(store, "r", "a", outputs=big)
        assert store.get_step("r", "a").outputs == big
    finally:
        store.close()


def test_values_over_the_hard_cap_are_refused_not_truncated(state):
    store = open_store(state, blob_threshold=10, blob_cap=100)
    try:
        with pytest.raises(OutputTooLarge):
            store.encode("x" * 1000)
    finally:
        store.close()


def test_everything_written_passes_through_the_redactor(state):
    secret = "s3cr'et\\va\"lue"
    store = open_store(state, redact=lambda s: s.replace(secret.replace("\\", "\\\\").replace('"', '\\"'), "***"),
                       blob_threshold=200)
    try:
        store.create_run({"id": "r", "flow": "f", "status": "Queued", "payload": {"token": secret}})
        finish(store, "r", "a", inputs={"auth": f"Bearer {secret}"}, outputs=secret,
               error={"message": f"bad {secret}", "pad": "y" * 300})
        text = dump(store)
        assert "s3cr" not in text and "***" in text
    finally:
        store.close()


def test_steps_come_back_in_the_order_they_finished(store):
    for path in ["b", "a", "loop[1]/x", "loop[0]/x"]:
        finish(store, "r", path, outputs=path)
    assert [s.path for s in store.steps("r")] == ["b", "a", "loop[1]/x", "loop[0]/x"]
    assert [s.path for s in store.iter_steps("r", page=2)] == ["b", "a", "loop[1]/x", "loop[0]/x"]


@pytest.mark.parametrize("prefix, expected", [
    ("loop", ["loop[0]", "loop[0]/x", "loop[1]/x", "loop/inner"]),
    ("loop[0]", ["loop[0]/x"]),
    ("lo", []),
])
def test_steps_inside_a_prefix_are_exactly_those_below_it(store, prefix, expected):
    for path in ["loop[0]", "loop[0]/x", "loop", "loopy", "loop[1]/x", "loop/inner", "loop0", "loop-z", "lo"]:
        finish(store, "r", path)
    assert [s.path for s in store.iter_steps("r", prefix=prefix)] == expected


def test_steps_numbered_by_a_second_process_follow_the_first_ones(state):
    first = open_store(state)
    for i in range(40):
        finish(first, "r", f"s{i}", outputs=i)
    first.close()
    second = open_store(state)
    try:
        second.continue_numbering("r")
        finish(second, "r", "late", outputs=0, started=3.0, ended=4.0)
        assert [s.path for s in second.steps("r")][-1] == "late"
    finally:
        second.close()


def test_an_action_shows_as_running_only_once_it_has_run_for_a_while(store):
    now = time.time()
    store.step_started("r", "old", "old", "Wait", started=now - 10 * store.RUNNING_AFTER)
    store.step_started("r", "young", "young", "Wait", started=now + 3600)
    store.flush()
    assert {s.path: s.status for s in store.steps("r")} == {"old": "Running"}


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed", "Cancelled"])
def test_a_runs_outcome_ends_the_steps_an_earlier_execution_left_running(store, outcome):
    """A step in flight when an execution died stays Running for the resume to continue; a
    resumed run that then ended without reaching it (a Terminate, its container skipped) left
    it Running in a finished run (seen in chaos runs). The outcome ends them Cancelled."""
    store.create_run({"id": "r", "flow": "f", "status": "Running"})
    store.step_started("r", "sc/nap", "nap", "Wait", started=time.time() - 60)
    finish(store, "r", "done", outputs=1)
    store.flush()
    store.run_finished("r", status=outcome, ended=time.time())
    store.flush()
    steps = {s.path: (s.status, (s.error or {}).get("code")) for s in store.steps("r")}
    assert steps == {"sc/nap": ("Cancelled", "Cancelled"), "done": ("Succeeded", None)}


def test_when_an_execution_ends_its_held_back_running_marks_are_written_then_and_never_later(store):
    """A run that parks (or stops) leaves its in-flight steps Running. Their held-back marks
    go into the batch that commits with the execution's end, under its lease: written later
    by the timer, they would land over the rows of the process that took the run on next."""
    now = time.time()
    for path in ("each[1]", "each[1]/child"):
        store.step_started("r", path, path, "Workflow", started=now + 3600)  # young: not yet due
    store.step_started("other", "a", "a", "Wait", started=now + 3600)  # another run's: stays held back
    store.execution_ended("r")
    store.flush()
    assert {s.path: s.status for s in store.steps("r")} == {"each[1]": "Running", "each[1]/child": "Running"}
    finish(store, "r", "each[1]/child", outputs={"n": 1})  # the next owner finishes the step
    store.RUNNING_AFTER = -1e9  # every mark held back is due now: none of run r is left to write
    store.flush()
    assert store.get_step("r", "each[1]/child").status == "Succeeded"
    assert store.steps("other")[0].status == "Running"


def test_a_finished_step_replaces_its_running_row_and_its_marks(store):
    store.step_mark("r", "a", "a", "Job", attempts=1, started=1.0, handle={"job": 7}, wake=99.0)
    assert store.step_marks("r", "a") == ({"job": 7}, 99.0)
    finish(store, "r", "a", outputs=5)
    (step,) = store.steps("r")
    assert (step.status, step.outputs) == ("Succeeded", 5)
    assert store.step_marks("r", "a") == (None, None)


def test_a_final_status_is_not_overwritten_by_a_pending_running_mark(store):
    store.create_run({"id": "r", "flow": "f", "status": "Queued"})
    store.run_started("r", 1.0, 1)
    store.update_run("r", status="Failed")
    store.flush()
    assert store.get_run("r").status == "Failed"


@pytest.mark.parametrize("flow, status_, expected", [
    (None, None, ["r3", "r2", "r1"]),
    ("orders", None, ["r3", "r1"]),
    (None, "Failed", ["r2"]),
    ("orders", "Succeeded", ["r1"]),
])
def test_runs_are_listed_newest_first_and_filtered(store, flow, status_, expected):
    for i, (f, s) in enumerate([("orders", "Succeeded"), ("billing", "Failed"), ("orders", "Running")], 1):
        store.create_run({"id": f"r{i}", "flow": f, "status": s, "created": float(i)})
    assert [r.id for r in store.list_runs(flow=flow, status=status_)] == expected


def test_a_run_is_found_by_a_unique_prefix_of_its_id_and_never_by_a_pattern(store):
    for run_id in ["abc123", "abd456", "x%y"]:
        store.create_run({"id": run_id, "flow": "f", "status": "Queued"})
    assert store.get_run("abc").id == "abc123"
    with pytest.raises(engine.FlowrunError, match="matches"):
        store.get_run("ab")
    with pytest.raises(engine.FlowrunError, match="no run"):
        store.get_run("%")
    with pytest.raises(engine.FlowrunError, match="no run"):
        store.get_run("_bc")


def test_unfinished_runs_are_the_queued_and_running_ones(store):
    for run_id, s in [("a", "Queued"), ("b", "Running"), ("c", "Succeeded"), ("d", "Failed")]:
        store.create_run({"id": run_id, "flow": "f", "status": s})
    assert sorted(store.unfinished_runs()) == ["a", "b"]


def test_a_taken_dedupe_key_is_an_integrity_error_that_spoils_nothing_else_pending(store):
    store.create_run({"id": "first", "flow": "f", "status": "Queued", "dedupe_key": "evt_1"})
    store.create_run({"id": "other", "flow": "f", "status": "Queued"}, commit=False)
    with pytest.raises(store.IntegrityError):
        store.create_run({"id": "second", "flow": "f", "status": "Queued", "dedupe_key": "evt_1"}, commit=False)
    store.flush()
    assert store.find_run("f", "evt_1").id == "first"
    assert store.get_run("other").status == "Queued"


def test_parked_runs_come_due_in_order_and_are_claimed_once(store):
    for run_id, wake in [("late", 50.0), ("early", 10.0), ("later", 500.0)]:
        store.create_run({"id": run_id, "flow": "f", "status": "Running"})
        store.park_run(run_id, wake, "Waiting")
    assert store.next_wake("Waiting") == 10.0
    assert store.due_runs(100.0, "Waiting") == ["early", "late"]
    assert store.claim_parked("early", "Waiting") is True
    assert store.claim_parked("early", "Waiting") is False
    assert store.due_runs(100.0, "Waiting") == ["late"]


def test_writes_of_one_loop_turn_share_one_commit_and_are_durable_after_it(state):
    anyio.run(_one_turn, state)


async def _one_turn(state):
    store = open_store(state)
    try:
        store.create_run({"id": "r", "flow": "f", "status": "Queued"})
        for i in range(20):
            store.step_finished("r", f"a{i}", f"a{i}", "Compose", "Succeeded", attempts=1, inputs=None,
                                outputs=i, error=None, started=1.0, ended=2.0)
        await store.durable()
        other = open_store(state)  # another process sees all of them
        try:
            assert len(other.steps("r")) == 20
        finally:
            other.close()
    finally:
        store.close()


def test_a_table_a_component_owns_is_created_once_and_usable_with_question_marks(store):
    store.ensure_table("trigger_checkpoints", engine.checkpoints.DDL if hasattr(engine, "checkpoints") else
                       __import__("engine.checkpoints").checkpoints.DDL)
    from engine.checkpoints import Checkpoints

    cp = Checkpoints(store)
    cp.put("f", "t", "p0", {"offset": 5})
    cp.put("f", "t", "p0", {"offset": 6})
    store.flush()
    assert cp.get("f", "t", "p0") == {"offset": 6} and cp.all("f", "t") == {"p0": {"offset": 6}}


def test_a_server_key_is_made_once_and_shared(state):
    from engine.keys import server_key

    a, b = open_store(state), open_store(state)
    try:
        assert server_key(a, "tokens") == server_key(b, "tokens") and len(server_key(a, "tokens")) == 32
    finally:
        a.close()
        b.close()


def test_the_schema_is_versioned_and_a_newer_one_is_refused(state):
    before = status(state)
    assert before["version"] == 0 and before["pending"] == before["code"] > 0
    after = upgrade(state)
    assert after["version"] == after["code"] and after["pending"] == 0
    store = open_store(state)
    try:
        if store.backend == "sqlite":
            store.db.execute("PRAGMA user_version = 99")
        else:
            store.db.execute("INSERT INTO flowrun_schema (version, applied) VALUES (99, 0)")
        store.flush()
    finally:
        store.close()
    assert status(state)["newer"] is True
    with pytest.raises(engine.FlowrunError, match="newer than this flowrun"):
        open_store(state)


def _open(state, go, out):
    from engine.storage import open_store

    go.wait(30)
    try:
        open_store(state).close()
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_database_at_once_all_succeed_and_migrate_it_once(state):
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(state, go, out)) for _ in range(6)]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 6
    assert status(state)["pending"] == 0


FLOW = """\
name: contract
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  items: {type: Compose, inputs: [1, 2, 3]}
  each:
    type: Foreach
    foreach: "{{ outputs('items') }}"
    runAfter: {items: [Succeeded]}
    actions:
      double: {type: Compose, inputs: "{{ item() * 2 }}"}
  total: {type: Compose, inputs: "{{ outputs('items') | sum }}", runAfter: {each: [Succeeded]}}
outputs:
  total: {value: "{{ outputs('total') }}"}
"""


def test_a_flow_runs_and_reads_back_the_same_on_either_backend(state, flow_file):
    run = engine.run_file(flow_file(FLOW), state=state)
    assert run.status == "Succeeded", run.error
    e = engine.Engine(state)
    try:
        again = e.result(run.id)
        assert again.status == "Succeeded" and again.outputs == run.outputs
        assert [s.path for s in e.steps(run.id)][:1] == ["items"]
        assert any(s.path == "each[2]/double" and s.outputs == 6 for s in e.steps(run.id))
        assert e.list_runs(status="succeeded")[0].id == run.id
        assert again.orphaned is False
    finally:
        e.close()


def test_a_run_whose_process_stopped_resumes_reusing_what_finished(state, flow_file):
    e = engine.Engine(state)
    try:
        flow = e.load(flow_file(FLOW))
        run_id = e.start(flow)
        e.store.step_finished(run_id, "items", "items", "Compose", "Succeeded", attempts=1, inputs=None,
                              outputs=[10, 20], error=None, started=1.0, ended=2.0)
        e.store.update_run(run_id, status="Running")
        result = anyio.run(lambda: e.resume(run_id))
        assert result.status == "Succeeded" and result.outputs == {"total": 30}
    finally:
        e.close()


HELD = """\
name: held
parameters:
  api: {type: string}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  charge:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/slow", idempotencyKey: true}
"""


def test_resume_refuses_a_run_a_live_process_holds_and_takes_it_over_once_that_process_is_killed(
        state, flow_file, recorder):
    import os
    import signal
    import subprocess
    import sys
    import threading

    from engine.errors import RunBusy

    gate = threading.Event()

    def slow(req):
        gate.wait(60)
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
    recorder.route("POST", "/slow", handler=slow)
    path = flow_file(HELD)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", state, "run", str(path),
                             "--param", f"api={recorder.url}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    e = None
    try:
        deadline = time.monotonic() + 60
        while not recorder.requests and time.monotonic() < deadline:  # the action is in flight
            time.sleep(0.02)
        assert recorder.requests
        e = engine.Engine(state)
        (run,) = e.list_runs()
        with pytest.raises(RunBusy, match="being executed by"):
            anyio.run(lambda: e.resume(run.id))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        gate.set()
        result = None
        while result is None and time.monotonic() < deadline:  # the server notices the dead client
            try:
                result = anyio.run(lambda: e.resume(run.id))
            except RunBusy:
                time.sleep(0.02)
        assert result is not None and result.status == "Succeeded"
        keys = {r.header("idempotency-key") for r in recorder.requests}
        assert len(recorder.requests) == 2 and keys == {f"{run.id}:charge"}
    finally:
        gate.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if e is not None:
            e.close()


def test_prune_deletes_finished_runs_with_their_steps_and_blobs_and_keeps_unfinished_ones(state):
    from engine.retention import prune

    store = open_store(state, blob_threshold=100)
    try:
        big = {"rows": ["z" * 50] * 10}
        store.create_run({"id": "old", "flow": "f", "status": "Succeeded", "created": 1.0, "ended": 2.0})
        finish(store, "old", "a", outputs=big)
        store.create_run({"id": "waiting", "flow": "f", "status": "Running", "created": 1.0})
        finish(store, "waiting", "a", outputs=1)
        store.create_run({"id": "new", "flow": "f", "status": "Succeeded", "created": time.time(),
                          "ended": time.time()})
        assert prune(store, 3600, dry_run=True).runs == 1
        done = prune(store, 3600)
        assert (done.runs, done.steps, done.blobs) == (1, 1, 1)
        assert sorted(r.id for r in store.list_runs()) == ["new", "waiting"]
        assert [s.path for s in store.steps("waiting")] == ["a"]
    finally:
        store.close()


@pytest.mark.parametrize("parent_status, kept", [("Waiting", True), ("Running", True), ("Queued", True),
                                                   ("Succeeded", False), ("Failed", False)])
def test_prune_keeps_a_finished_child_run_while_its_parent_has_not_finished(state, parent_status, kept):
    """A parent parked on its child reads the child's outputs when it resumes: a child pruned
    before that would make it wait for nothing, then start the child over. Kept until the
    parent has finished (then both go). Only the direct parent counts: a finished child holds
    its outputs itself, so a grand-child is not read again."""
    from engine.retention import prune

    store = open_store(state)
    try:
        ended = 2.0 if parent_status in ("Succeeded", "Failed") else None
        store.create_run({"id": "parent", "flow": "p", "status": parent_status, "created": 1.0, "ended": ended})
        store.create_run({"id": "child", "flow": "c", "status": "Succeeded", "created": 1.0, "ended": 2.0,
                          "parent_id": "parent"})
        store.create_run({"id": "grandchild", "flow": "g", "status": "Succeeded", "created": 1.0, "ended": 2.0,
                          "parent_id": "child"})
        # the grand-child's own parent (the child) has finished: nothing reads it any more
        assert prune(store, 3600, dry_run=True).runs == (1 if kept else 3)
        prune(store, 3600)
        left = sorted(r.id for r in store.list_runs())
        assert left == (["child", "parent"] if kept else [])
    finally:
        store.close()


def test_cancel_ends_a_run_no_one_executes_and_asks_the_holder_of_one_that_is_held(state, flow_file):
    e = engine.Engine(state)
    try:
        flow = e.load(flow_file(FLOW))
        idle = e.start(flow)
        assert e.cancel(idle) == "cancelled"
        assert e.result(idle).status == "Cancelled"
        held = e.start(flow)
        other = engine.Engine(state)  # another process holds it
        try:
            from engine.storage import claim

            with claim(other.store, held, ttl=30):
                assert e.cancel(held) == "requested"
            assert e.store.db.execute("SELECT 1 FROM cancel_requests WHERE run_id = ?", (held,)).fetchone()
        finally:
            other.close()
    finally:
        e.close()


# -- attempts of a retried action ------------------------------------------------------------

def test_a_retried_actions_attempts_are_kept_in_order_redacted_and_copied_to_a_rerun(state):
    if True:
        store = open_store(state, redact=lambda text: text.replace("s3cret", "***"))
        try:
            run = {"id": "r-attempts", "flow": "f", "status": "Running", "created": 1.0}
            store.create_run(run)
            assert store.last_attempt("r-attempts", "call") == 0
            store.attempt_finished("r-attempts", "call", 2, status="Failed", started=3.0, ended=4.0,
                                   error={"code": "Http503", "message": "echo s3cret"})
            store.attempt_finished("r-attempts", "call", 1, status="Failed", started=1.0, ended=2.0, error=None)
            store.flush()
            got = store.attempts("r-attempts", "call")
            assert [(a.number, a.started, a.ended) for a in got] == [(1, 1.0, 2.0), (2, 3.0, 4.0)]
            assert got[1].error == {"code": "Http503", "message": "echo ***"}
            assert store.last_attempt("r-attempts", "call") == 2
            store.create_run({"id": "r-rerun", "flow": "f", "status": "Running", "created": 2.0})
            store.copy_attempts("r-attempts", "r-rerun", "call")
            store.flush()
            assert [a.number for a in store.attempts("r-rerun", "call")] == [1, 2]
        finally:
            store.close()


def test_a_steps_tracked_properties_are_kept_redacted_beside_its_result(state):
    store = open_store(state, redact=lambda text: text.replace("s3cret", "***"))
    try:
        store.create_run({"id": "r-tracked", "flow": "f", "status": "Running", "created": 1.0})
        store.step_finished("r-tracked", "call", "call", "Http", "Succeeded", attempts=1, inputs=None,
                            outputs={"ok": True}, error=None, started=1.0, ended=2.0)
        assert store.has_tracked("r-tracked") is False
        store.step_tracked("r-tracked", "call", {"values": {"order": "A-1", "note": "key s3cret"}, "errors": {}})
        store.flush()
        assert store.tracked("r-tracked", "call") == {"values": {"order": "A-1", "note": "key ***"}, "errors": {}}
        assert store.has_tracked("r-tracked") is True and store.tracked("r-tracked", "nope") is None
    finally:
        store.close()


def test_a_kept_file_is_read_only_by_the_family_of_the_run_that_kept_it(store):
    """A file reference is a sha256 anyone who saw it can write in a payload: a run reads a file
    only when it, a rerun of it, its parent, child or a sibling child run kept it; another run
    naming the reference gets FileNotFound (and no bytes)."""
    for run_id, parent, rerun_of in [("a", None, None), ("child", "a", None), ("sibling", "a", None),
                                     ("again", None, "a"), ("stranger", None, None), ("loop", "loop", "loop")]:
        store.create_run({"id": run_id, "flow": "f", "status": "Running", "parent_id": parent, "rerun_of": rerun_of})
    digest = store.put_file(b"%PDF-1.7 secret report", run_id="a")
    from_child = store.put_file(b"%PDF-1.7 child's", run_id="child")
    store.flush()
    for reader in ("a", "child", "sibling", "again"):
        assert store.get_file(digest, run_id=reader) == b"%PDF-1.7 secret report"
    assert store.get_file(from_child, run_id="a") == store.get_file(from_child, run_id="sibling") == b"%PDF-1.7 child's"
    for reader in ("stranger", "loop", "no-such-run"):
        with pytest.raises(engine.FlowrunError, match="not kept by this run") as caught:
            store.get_file(digest, run_id=reader)
        assert caught.value.code == "FileNotFound"
    store.put_file(b"%PDF-1.7 secret report", run_id="stranger")  # the same bytes, kept by the stranger too
    assert store.get_file(digest, run_id="stranger") == b"%PDF-1.7 secret report"
