"""engine/worker.py: workers on one PostgreSQL database, killed with kill -9 while they run.

The workers are real ``flowrun worker`` processes; the vendor they call is a local HTTP
server that keeps, like Stripe, the first outcome of each Idempotency-Key and answers every
repeat with it. Waits are on conditions (polled), never on the wall clock.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

import engine
from tests.support import postgres

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

FLOW = """\
name: chaos
parameters:
  api: {type: string}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  each:
    type: Foreach
    foreach: "{{ triggerBody()['items'] }}"
    actions:
      charge:
        type: Http
        inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: {n: "{{ item() }}"}, idempotencyKey: true}
  pause:
    type: Wait
    inputs: {interval: {count: 1, unit: Second}}
    runAfter: {each: [Succeeded]}
  receipt:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: {n: receipt}, idempotencyKey: true}
    runAfter: {pause: [Succeeded]}
"""


class IdempotentVendor:
    """Answers POST /charge with a new outcome per Idempotency-Key, and the same one for a
    repeat of the key; records (key, outcome, when) of every answer."""

    def __init__(self, recorder):
        self.first: dict[str, str] = {}
        self.answers: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()
        recorder.route("POST", "/charge", handler=self.answer)

    def answer(self, req):
        key = req.header("idempotency-key")
        time.sleep(0.005)  # a vendor takes a moment: kills land while requests are in flight
        with self.lock:
            outcome = self.first.setdefault(key, uuid.uuid4().hex)
            self.answers.append((key, outcome, time.time()))
        return 200, {"Content-Type": "application/json"}, json.dumps({"charge": outcome}).encode()


def start_worker(url, capacity=64):
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", url, "worker", "--poll", "0.3",
                             "--park-after", "0.5", "--lease-ttl", "10", "--capacity", str(capacity)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(condition, timeout=240.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def assert_no_step_of_a_succeeded_run_left_running(e):
    """The steps a run recorded agree with its outcome: a Succeeded run has no step still
    Running (a write that landed after its lease went, over the next owner's rows, shows so)."""
    left = e.store.conn.execute("SELECT s.run_id, s.path, s.status, s.attempts FROM steps s JOIN runs r "
                                "ON r.id = s.run_id WHERE r.status = 'Succeeded' AND s.status IN "
                                "('Running', 'Waiting', 'Queued') ORDER BY s.run_id, s.path").fetchall()
    e.store.flush()
    assert left == [], f"steps of Succeeded runs left unfinished: {left[:10]}"


def test_300_runs_finish_across_three_workers_killed_at_random_with_no_action_repeated_once_succeeded(
        pg_state, recorder, flow_file, tmp_path):
    vendor = IdempotentVendor(recorder)
    e = engine.Engine(pg_state)
    flow = e.load(flow_file(FLOW))
    ids = [e.start(flow, input={"items": [1, 2, 3]}, params={"api": recorder.url}, commit=False)
           for _ in range(300)]
    e.store.flush()
    workers = [start_worker(pg_state) for _ in range(3)]
    kills, rng = 0, random.Random(12)

    def finished() -> int:
        return e.store.conn.execute("SELECT count(*) FROM runs WHERE status NOT IN "
                                    "('Queued', 'Running', 'Waiting')").fetchone()[0]
    try:
        done = 0
        while done < 300:
            # the next kill comes once some more runs finished (or, near the end, right away)
            target = min(done + 40, 300)
            done = wait_for(lambda: (n := finished()) >= target and n) if target < 300 else \
                wait_for(lambda: (n := finished()) >= 300 and n)
            e.store.flush()
            if done < 300 and kills < 6:
                victim = rng.randrange(len(workers))
                os.killpg(workers[victim].pid, signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = start_worker(pg_state)
                kills += 1
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            w.wait()
    print("kills", kills, "answers", len(vendor.answers), "keys", len(vendor.first))
    assert kills >= 5
    statuses = {r[0]: r[1] for r in e.store.conn.execute("SELECT id, status FROM runs")}
    assert set(statuses) == set(ids) and set(statuses.values()) == {"Succeeded"}
    assert_no_step_of_a_succeeded_run_left_running(e)
    # every Succeeded Http step holds the outcome the vendor keeps for its key, and the vendor
    # answered no request for that key after the step was recorded Succeeded
    steps = e.store.conn.execute("SELECT run_id, path, outputs, ended FROM steps WHERE type = 'Http' "
                                 "AND status = 'Succeeded'").fetchall()
    assert len(steps) == 300 * 4
    last_answer: dict[str, float] = {}
    for key, outcome, when in vendor.answers:
        assert vendor.first[key] == outcome
        last_answer[key] = max(when, last_answer.get(key, 0.0))
    for run_id, path, outputs, ended in steps:
        key = f"{run_id}:{path}"
        assert json.loads(outputs)["body"] == {"charge": vendor.first[key]}
        assert last_answer[key] <= ended, f"{key} ran again after it succeeded"
    e.close()


KEYED = """\
name: keyed
parameters:
  api: {type: string}
concurrency: {limit: 1, key: "{{ triggerBody().customer }}"}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  work:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/work", idempotencyKey: true}
"""


def test_50_runs_of_one_key_with_limit_1_never_overlap_across_two_workers_and_a_kill_9(pg_state, recorder, flow_file):
    def work(req):
        time.sleep(0.01)  # the vendor takes a moment: a kill lands while a run holds the slot
        return 200, {"Content-Type": "application/json"}, b"{}"
    recorder.route("POST", "/work", handler=work)
    e = engine.Engine(pg_state)
    flow = e.load(flow_file(KEYED))
    for _ in range(50):
        e.start(flow, input={"customer": "acme"}, params={"api": recorder.url}, commit=False)
    e.store.flush()
    workers = [start_worker(pg_state) for _ in range(2)]

    def succeeded() -> int:
        n = e.store.conn.execute("SELECT count(*) FROM runs WHERE status = 'Succeeded'").fetchone()[0]
        e.store.flush()
        return n
    try:
        wait_for(lambda: succeeded() >= 15, timeout=120)
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        workers[0] = start_worker(pg_state)
        wait_for(lambda: succeeded() >= 50, timeout=180)
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            w.wait()
    spans = sorted(e.store.conn.execute("SELECT started, ended FROM steps WHERE path = 'work' "
                                        "AND status = 'Succeeded'").fetchall())
    assert len(spans) == 50
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two runs of one key executed at once"
    e.close()


PARENT = """\
name: parent
parameters:
  api: {type: string}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  each:
    type: Foreach
    foreach: "{{ triggerBody()['items'] }}"
    concurrency: 20
    actions:
      child:
        type: Workflow
        inputs: {flow: child.yaml, body: "{{ item() }}", parameters: {api: "{{ parameters('api') }}"}}
"""
CHILD = """\
name: child
parameters:
  api: {type: string}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  work:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/work", body: "{{ triggerBody() }}", idempotencyKey: true}
outputs:
  done: {value: "{{ body('work').n }}"}
"""


def test_a_foreach_over_workflow_spreads_its_child_runs_across_workers(pg_state, recorder, flow_file):
    def work(req):
        time.sleep(0.05)  # long enough that children overlap
        return 200, {"Content-Type": "application/json"}, json.dumps({"n": req.json()}).encode()
    recorder.route("POST", "/work", handler=work)
    flow_file(CHILD, "child.yaml")
    e = engine.Engine(pg_state)
    flow = e.load(flow_file(PARENT, "parent.yaml"))
    parent = e.start(flow, input={"items": list(range(40))}, params={"api": recorder.url})
    workers = [start_worker(pg_state, capacity=8) for _ in range(2)]  # 20 children at once: more than one holds
    owners: set[str] = set()

    def parent_done():
        for (owner,) in e.store.conn.execute("SELECT l.owner FROM run_leases l JOIN runs r ON r.id = l.run_id "
                                             "WHERE r.parent_id = %s", (parent,)):
            owners.add(owner)
        status = e.store.conn.execute("SELECT status FROM runs WHERE id = %s", (parent,)).fetchone()[0]
        e.store.flush()
        return status not in ("Queued", "Running", "Waiting") and status
    try:
        assert wait_for(parent_done, timeout=180, interval=0.01) == "Succeeded"
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()
    children = e.store.conn.execute("SELECT status FROM runs WHERE parent_id = %s", (parent,)).fetchall()
    assert len(children) == 40 and {c[0] for c in children} == {"Succeeded"}
    assert len(owners) == 2, owners  # both workers executed children
    done = sorted(r[0] for r in e.store.conn.execute("SELECT outputs FROM runs WHERE parent_id = %s", (parent,)))
    assert sorted(json.loads(d)["done"] for d in done) == list(range(40))
    e.close()


def test_a_claim_takes_no_run_another_live_worker_holds_and_takes_over_those_whose_holder_disconnected(pg_state):
    from engine.api import Engine
    from engine.worker import Worker

    queuer = Engine(pg_state)
    for i in range(10):
        queuer.store.create_run({"id": f"r{i}", "flow": "f", "status": "Queued", "created": float(i)})
    queuer.close()
    first, second = Worker(Engine(pg_state), capacity=10), Worker(Engine(pg_state), capacity=10)
    try:
        held = {row[0] for row in first.claim(4)}
        assert held == {"r0", "r1", "r2", "r3"}  # oldest first
        assert {row[0] for row in second.claim(10)} == {f"r{i}" for i in range(4, 10)}
        assert second.claim(10) == []  # every run is held by a live worker
        first.engine.close()  # its connection ends: PostgreSQL ends its backend, its leases die with it
        taken: set = set()  # (the backend leaves pg_stat_activity a moment after the connection closes)
        wait_for(lambda: taken.update(row[0] for row in second.claim(10)) or taken == held, timeout=30, interval=0.02)
        assert taken == held
    finally:
        second.engine.close()


def test_a_claim_skips_a_run_whose_expired_holder_still_has_fenced_writes_uncommitted_and_never_waits_on_it(
        pg_state):
    """The holder's fenced writes hold its lease row until they commit (engine.pgstore): the
    claim takes every other run at once, and that one once they are committed."""
    from engine.api import Engine
    from engine.storage import claim
    from engine.worker import Worker
    from tests.engine.storage.test_pgstore import _stall_inside_a_transaction

    stalled = Engine(pg_state)
    for i in range(3):
        stalled.store.create_run({"id": f"r{i}", "flow": "f", "status": "Running", "created": float(i)})
    worker = Worker(Engine(pg_state), capacity=10)
    try:
        worker.engine.store.conn.execute("SET lock_timeout = '3s'")  # a claim that waits fails here
        with claim(stalled.store, "r1", ttl=1):
            _stall_inside_a_transaction(stalled.store, "r1")
            assert {row[0] for row in worker.claim(10)} == {"r0", "r2"}
            stalled.store.flush()
            assert {row[0] for row in worker.claim(10)} == {"r1"}
            stalled.store.update_run("r1", status="Failed")  # fenced off: nothing
        assert stalled.store.get_run("r1").status == "Running"
    finally:
        stalled.close()
        worker.engine.close()


def test_a_run_that_could_not_execute_is_recorded_failed_only_by_its_lease_holder(pg_state):
    """``fail_run`` comes after the worker let go of the run (its execute raised): another
    worker may hold it by then, or have finished it. Written unfenced, the failure landed over
    the new owner's run (a Failed run with Succeeded steps, its slot freed under it)."""
    from engine.api import Engine
    from engine.storage import claim

    owner, failing = Engine(pg_state), Engine(pg_state)
    try:
        for run_id, status in (("held", "Running"), ("done", "Succeeded"), ("free", "Running")):
            owner.store.create_run({"id": run_id, "flow": "f", "status": status})
            owner.store.step_started(run_id, "a", "a", "Http", 1.0, now=True)
        owner.store.flush()
        with claim(owner.store, "held", ttl=30):
            for run_id in ("held", "done", "free"):
                failing.fail_run(run_id, {"code": "FlowNotFound", "message": "gone"})
        assert {r: owner.store.get_run(r).status for r in ("held", "done", "free")} == \
            {"held": "Running", "done": "Succeeded", "free": "Failed"}
        assert owner.store.get_run("free").error["code"] == "FlowNotFound"
        assert [(s.status, s.error["code"]) for s in owner.store.steps("free")] == [("Failed", "FlowNotFound")]
        assert [s.status for s in owner.store.steps("held")] == ["Running"]
    finally:
        owner.close()
        failing.close()


def test_a_claim_reads_its_fresh_runs_in_one_go_and_each_executes_from_that_read(pg_state, flow_file):
    import anyio

    from engine.api import Engine
    from engine.worker import Worker

    path = flow_file("""\
        name: tiny
        triggers:
          manual: {type: Request, auth: {type: none}}
        actions:
          echo: {type: Compose, inputs: "{{ triggerBody()['n'] }}"}
        """)
    queuer = Engine(pg_state)
    flow = queuer.load(path)
    ids = [queuer.start(flow, input={"n": i}) for i in range(3)]
    queuer.close()
    worker = Worker(Engine(pg_state), capacity=10)
    try:
        got = worker.claim(10)
        assert {row[0] for row in got} == set(ids)
        claimed = worker.engine._claimed
        assert {i: claimed.get(i).payload["body"] for i in ids} == {i: {"n": n} for n, i in enumerate(ids)}

        async def execute_all() -> None:
            for run_id, token, _status, steps in got:
                await worker._execute(run_id, token, steps)
        anyio.run(execute_all)
        assert len(claimed) == 0  # each used once, by its run
        assert [worker.engine.store.get_run(i).status for i in ids] == ["Succeeded"] * 3
        assert [[s.outputs for s in worker.engine.store.steps(i)] for i in ids] == [[0], [1], [2]]
    finally:
        worker.engine.close()


CHAIN = """\
name: chain
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  a: {type: Compose, inputs: "{{ triggerBody().n }}"}
  b: {type: Compose, inputs: "{{ add(outputs('a'), 1) }}", runAfter: {a: [Succeeded]}}
  c: {type: Compose, inputs: "{{ add(outputs('b'), 1) }}", runAfter: {b: [Succeeded]}}
outputs:
  c: {value: "{{ outputs('c') }}"}
"""


def test_a_commit_the_database_refuses_stops_the_runs_whose_writes_it_held_and_they_resume_from_what_was_kept(
        pg_state, flow_file):
    """A group commit carries the writes of every run in flight. When PostgreSQL refuses one
    (a full disk, a deadlock, a lock timeout: here a deferred trigger fails the first commit
    writing a step 'b'), each run whose writes it held stops and is claimed again: none goes
    on to record Succeeded over steps that were never stored."""
    import anyio

    from engine.worker import Worker

    e = engine.Engine(pg_state)
    conn = e.store.conn
    conn.execute("CREATE SEQUENCE refusals")
    conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "IF NEW.path = 'b' AND nextval('refusals') = 1 THEN RAISE EXCEPTION 'refused for the test'; "
                 "END IF; RETURN NULL; END $$")
    conn.execute("CREATE CONSTRAINT TRIGGER refuse AFTER INSERT OR UPDATE ON steps DEFERRABLE INITIALLY DEFERRED "
                 "FOR EACH ROW EXECUTE FUNCTION refuse()")
    e.store.flush()
    flow = e.load(flow_file(CHAIN))
    ids = [e.start(flow, input={"n": n}, commit=False) for n in range(20)]
    e.store.flush()
    worker = Worker(e, capacity=20, poll=0.2)
    watch = engine.Engine(pg_state)  # reads on a connection of its own (the worker's commits are its own)

    def unfinished() -> int:
        n = watch.store.conn.execute("SELECT count(*) FROM runs WHERE status IN ('Queued', 'Running', 'Waiting')"
                                 ).fetchone()[0]
        watch.store.flush()
        return n

    async def main():
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: worker.run(stop=stop, task_status=task_status))
            with anyio.fail_after(60):
                while unfinished():
                    await anyio.sleep(0.02)
            stop.set()
            worker._wake()
    try:
        anyio.run(main)
        assert watch.store.conn.execute("SELECT last_value FROM refusals").fetchone()[0] >= 1  # it refused one
        for n, run_id in enumerate(ids):
            run = watch.result(run_id)
            assert run.status == "Succeeded" and run.outputs == {"c": n + 2}, (run.status, run.error)
            assert {s.path: s.status for s in watch.steps(run_id)} == dict.fromkeys("abc", "Succeeded")
        assert_no_step_of_a_succeeded_run_left_running(watch)
    finally:
        e.close()
        watch.close()
