"""engine/worker.py with Workflow actions: a parent whose only work left is waiting for its
child runs parks (Waiting, no worker slot, no lease) and is resumed, by any worker, as soon
as one of those children ends.

Without parking, a worker with capacity C deadlocks on C parents whose children are queued.
The flows here are three levels deep (parent -> 5 children -> 1 grand-child each), so a
single worker with one slot must park twice over to finish them.
"""
import json
import os
import signal
import threading
import time

import anyio
import pytest

import engine
from engine.worker import Worker
from tests.engine.test_worker import assert_no_step_of_a_succeeded_run_left_running, start_worker, wait_for
from tests.support import postgres

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

PARENT = """\
name: parent
parameters:
  api: {type: string, default: ""}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  each:
    type: Foreach
    foreach: "{{ triggerBody()['items'] }}"
    actions:
      child:
        type: Workflow
        inputs: {flow: child.yaml, body: {n: "{{ item() }}"}, parameters: {api: "{{ parameters('api') }}"}}
outputs:
  results: {value: "{{ result('each') }}"}
"""
CHILD = """\
name: child
parameters:
  api: {type: string, default: ""}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  inner:
    type: Workflow
    inputs: {flow: grandchild.yaml, body: "{{ triggerBody() }}", parameters: {api: "{{ parameters('api') }}"}}
outputs:
  n: {value: "{{ triggerBody().n }}"}
  square: {value: "{{ body('inner').square }}"}
"""
GRANDCHILD = """\
name: grandchild
parameters:
  api: {type: string, default: ""}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  square: {type: Compose, inputs: "{{ mul(triggerBody().n, triggerBody().n) }}"}
outputs:
  square: {value: "{{ outputs('square') }}"}
"""
# the same grand-child, asking a vendor first (so a worker can be killed while it asks)
GRANDCHILD_HTTP = GRANDCHILD.replace(
    "actions:\n",
    "actions:\n  ask:\n    type: Http\n    inputs: {method: POST, uri: \"{{ parameters('api') }}/ask\", "
    "body: \"{{ triggerBody() }}\", idempotencyKey: true}\n").replace(
    "square: {type: Compose, inputs:", "square: {type: Compose, runAfter: {ask: [Succeeded]}, inputs:")


def write_flows(flow_file, grandchild=GRANDCHILD):
    flow_file(CHILD, "child.yaml")
    flow_file(grandchild, "grandchild.yaml")
    return flow_file(PARENT, "parent.yaml")


def status_of(e, run_id):
    status = e.store.conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()[0]
    e.store.flush()
    return status


def family(e, parent):
    """(children, grand-children) rows: (id, status, outputs)."""
    kids = e.store.conn.execute("SELECT id, status, outputs FROM runs WHERE parent_id = %s", (parent,)).fetchall()
    grand = e.store.conn.execute("SELECT id, status, outputs FROM runs WHERE parent_id = ANY(%s)",
                                 ([k[0] for k in kids],)).fetchall()
    e.store.flush()
    return kids, grand


def assert_family_succeeded(e, parent, items):
    run = e.result(parent)
    assert run.status == "Succeeded", run.error
    kids, grand = family(e, parent)
    assert len(kids) == len(items) and {k[1] for k in kids} == {"Succeeded"}
    assert len(grand) == len(items) and {g[1] for g in grand} == {"Succeeded"}
    children = sorted((json.loads(k[2]) for k in kids), key=lambda o: o["n"])
    assert children == [{"n": n, "square": n * n} for n in items]
    # the parent's outputs are its children's results, as each child recorded them
    (each,) = run.outputs["results"]  # result('each'): the Workflow action, one row per iteration
    taken = sorted((r["outputs"]["outputs"] for r in each["outputs"]), key=lambda o: o["n"])
    assert taken == children
    assert {r["outputs"]["runId"] for r in each["outputs"]} == {k[0] for k in kids}


def test_one_worker_with_one_slot_finishes_a_parent_of_five_children_each_with_a_grandchild(pg_state, flow_file):
    e = engine.Engine(pg_state)
    flow = e.load(write_flows(flow_file))
    items = [1, 2, 3, 4, 5]
    parent = e.start(flow, input={"items": items})
    worker = Worker(e, capacity=1, poll=5.0)
    parked = []  # the statuses the parent was seen in while the others ran

    async def main():
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: worker.run(stop=stop, task_status=task_status))
            with anyio.fail_after(60):  # without parking: a deadlock, the parent holds the one slot
                while (status := status_of(e, parent)) in ("Queued", "Running", "Waiting"):
                    parked.append(status)
                    await anyio.sleep(0.02)
            stop.set()
            worker._wake()
    try:
        anyio.run(main)
        assert "Waiting" in parked
        assert_family_succeeded(e, parent, items)
    finally:
        e.close()


def test_a_parked_parent_becomes_due_when_a_child_ends_between_its_decision_to_park_and_the_park(
        pg_state, flow_file):
    """The lost wake-up: a child ending just before its parent's park commits still wakes it,
    because a worker's claim reads the children's status, not a flag the child had to set."""
    e = engine.Engine(pg_state)
    flow = e.load(write_flows(flow_file))
    parent = e.start(flow, input={"items": [3]})
    e.store.flush()
    # the parent has queued its child and parks; the child ended meanwhile (committed first)
    child = e.store.conn.execute("INSERT INTO runs (id, flow, status, created, parent_id, outputs) "
                                 "VALUES ('c1', 'child', 'Succeeded', 0, %s, '{}') RETURNING id",
                                 (parent,)).fetchone()[0]
    e.store.flush()
    e.park(parent, e.clock.now() + 3600, children=[child])
    e.store.flush()
    worker = Worker(e, capacity=4)
    got = worker.claim(4)
    assert [(r[0], r[2]) for r in got] == [(parent, "Waiting")]  # due at once, not in an hour
    e.close()


def test_kill_9_of_the_worker_while_the_parent_is_parked_lets_another_finish_all_with_no_child_twice(
        pg_state, flow_file, recorder):
    gate = threading.Event()  # the vendor answers once the first worker is dead
    asked = []

    def ask(req):
        asked.append(req.header("idempotency-key"))
        gate.wait(60)
        return 200, {"Content-Type": "application/json"}, b"{}"
    recorder.route("POST", "/ask", handler=ask)
    e = engine.Engine(pg_state)
    flow = e.load(write_flows(flow_file, GRANDCHILD_HTTP))
    items = [1, 2, 3, 4, 5]
    parent = e.start(flow, input={"items": items}, params={"api": recorder.url})
    first = start_worker(pg_state, capacity=2)
    second = None
    try:
        # the parent parked; grand-children are asking the vendor in the first worker's slots
        wait_for(lambda: status_of(e, parent) == "Waiting" and len(asked) >= 1, timeout=120, interval=0.02)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        gate.set()
        second = start_worker(pg_state, capacity=2)
        wait_for(lambda: status_of(e, parent) not in ("Queued", "Running", "Waiting"), timeout=120, interval=0.02)
    finally:
        gate.set()
        for w in (first, second):
            if w is not None and w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            if w is not None:
                w.wait()
    assert_family_succeeded(e, parent, items)
    assert_no_step_of_a_succeeded_run_left_running(e)
    # every grand-child asked the vendor under its own key; one in flight at the kill asked again
    kids, grand = family(e, parent)
    keys = {f"{g[0]}:ask" for g in grand}
    assert set(asked) == keys
    e.close()


def test_a_parent_waiting_on_a_child_beside_a_short_wait_parks_once_the_wait_is_over(pg_state, flow_file):
    """Parking is for a run whose every action in flight waits long: a Wait shorter than
    park_after beside a child keeps the run in its one slot until the Wait ends; then the
    child wait looks again and parks it (else: a deadlock, the child never gets the slot)."""
    flow_file(CHILD, "child.yaml")
    flow_file(GRANDCHILD, "grandchild.yaml")
    path = flow_file(PARENT.replace("outputs:\n", "  pause:\n    type: Wait\n"
                                    "    inputs: {interval: {count: 1, unit: Second}}\noutputs:\n"), "parent.yaml")
    e = engine.Engine(pg_state, park_after=5.0)
    flow = e.load(path)
    parent = e.start(flow, input={"items": [2]})
    worker = Worker(e, capacity=1)

    async def main():
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: worker.run(stop=stop, task_status=task_status))
            with anyio.fail_after(60):
                while status_of(e, parent) in ("Queued", "Running", "Waiting"):
                    await anyio.sleep(0.02)
            stop.set()
            worker._wake()
    try:
        started = time.monotonic()
        anyio.run(main)
        assert time.monotonic() - started >= 1.0  # the Wait ran to its end
        run = e.result(parent)
        assert run.status == "Succeeded", run.error
        steps = {s.path: s for s in e.steps(parent)}
        assert steps["pause"].status == "Succeeded"
    finally:
        e.close()


def test_cancelling_a_child_wakes_its_parked_parent_at_once_which_fails_with_the_child(pg_state, flow_file):
    flow_file(CHILD.replace("actions:\n", "actions:\n  nap:\n    type: Wait\n"
                            "    inputs: {interval: {count: 1, unit: Hour}}\n").replace(
        "inner:\n    type: Workflow", "inner:\n    type: Workflow\n    runAfter: {nap: [Succeeded]}"), "child.yaml")
    flow_file(GRANDCHILD, "grandchild.yaml")
    e = engine.Engine(pg_state)
    flow = e.load(flow_file(PARENT, "parent.yaml"))
    parent = e.start(flow, input={"items": [7]})
    worker = Worker(e, capacity=2, poll=120.0)  # only a NOTIFY wakes it within the test

    async def main():
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: worker.run(stop=stop, task_status=task_status))
            with anyio.fail_after(60):
                while True:  # both parked: the parent on its child, the child on its Wait
                    kids = e.store.conn.execute("SELECT id, status FROM runs WHERE parent_id = %s",
                                                (parent,)).fetchall()
                    e.store.flush()
                    if status_of(e, parent) == "Waiting" and kids and kids[0][1] == "Waiting":
                        break
                    await anyio.sleep(0.02)
                assert e.cancel(kids[0][0]) == "cancelled"
                while status_of(e, parent) == "Waiting" or status_of(e, parent) == "Running":
                    await anyio.sleep(0.02)
            stop.set()
            worker._wake()
    try:
        anyio.run(main)
        run = e.result(parent)
        assert run.status == "Failed"
        step = next(s for s in e.steps(parent) if s.action == "child" and s.type == "Workflow")
        assert step.error["code"] == "ChildRunFailed" and "Cancelled" in step.error["message"]
    finally:
        e.close()


def test_ten_families_finish_on_two_small_workers_killed_at_random_with_no_child_started_twice(
        pg_state, flow_file, recorder):
    import random

    from tests.engine.test_worker import IdempotentVendor

    recorder.route("POST", "/ask", handler=IdempotentVendor(recorder).answer)  # (its /charge is unused)
    e = engine.Engine(pg_state)
    flow = e.load(write_flows(flow_file, GRANDCHILD_HTTP))
    items = [1, 2, 3]
    parents = [e.start(flow, input={"items": items}, params={"api": recorder.url}, commit=False) for _ in range(10)]
    e.store.flush()
    workers = [start_worker(pg_state, capacity=2) for _ in range(2)]  # 4 slots for 10 parents: they must park
    rng, kills = random.Random(7), 0

    def ended() -> int:
        n = e.store.conn.execute("SELECT count(*) FROM runs WHERE status NOT IN ('Queued', 'Running', 'Waiting')"
                                 ).fetchone()[0]
        e.store.flush()
        return n
    try:
        total = 10 * (1 + 2 * len(items))
        while (done := ended()) < total:
            if kills < 3:
                wait_for(lambda: ended() >= done + 8, timeout=120, interval=0.02)
                victim = rng.randrange(len(workers))
                os.killpg(workers[victim].pid, signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = start_worker(pg_state, capacity=2)
                kills += 1
            else:
                wait_for(lambda: ended() >= total, timeout=180, interval=0.02)
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            w.wait()
    assert kills == 3
    assert_no_step_of_a_succeeded_run_left_running(e)
    for parent in parents:
        assert_family_succeeded(e, parent, items)
    assert e.store.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == total
    e.close()


ONE_CHILD = """\
name: parent
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  child:
    type: Workflow
    inputs: {flow: grandchild.yaml, body: {n: 7}}
outputs:
  square: {value: "{{ body('child').square }}"}
"""


def _step_by_hand(worker, run_id):
    """Claim ``run_id`` (and only it) and execute it in this task, as the worker's loop would."""
    got = worker.claim(1)
    assert [r[0] for r in got] == [run_id]
    (_, token, status, has_steps), = got
    worker.in_flight.add(run_id)
    anyio.run(lambda: worker._execute(run_id, token, has_steps or status != "Queued"))


WAIT_IN_A_LOOP = """\
name: naps
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  each:
    type: Foreach
    foreach: [1, 2]
    actions:
      nap: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}}
"""


def test_a_run_parked_by_one_worker_and_finished_by_another_keeps_the_rows_the_second_wrote(pg_state, flow_file):
    """The iterations in flight when a run parks are Running; their held-back Running marks
    are written with the park, under the lease. Written later (the store's timer), they landed
    unfenced over what the next owner recorded: a Succeeded loop with Running iterations, and a
    parent's result() with outputs None (seen once in ~30 runs of the ten-families test)."""
    from engine.clock import VirtualClock

    path = flow_file(WAIT_IN_A_LOOP, "naps.yaml")
    first = engine.Engine(pg_state)
    second = engine.Engine(pg_state, clock=VirtualClock(time.time() + 7200))  # the naps are over
    try:
        for e in (first, second):
            e.parking, e.delegate_children, e.starved = True, True, lambda: False  # (worker.run's set-up)
        first.store.RUNNING_AFTER = 3600.0  # its timer would write no Running mark within the test
        run_id = first.start(first.load(path))
        first.store.flush()
        _step_by_hand(Worker(first, capacity=1), run_id)
        assert status_of(first, run_id) == "Waiting"
        assert {s.path: s.status for s in first.steps(run_id)}["each[0]"] == "Running"  # with the park
        _step_by_hand(Worker(second, capacity=1), run_id)
        finished = {s.path: s.status for s in second.steps(run_id)}
        assert status_of(second, run_id) == "Succeeded" and set(finished.values()) == {"Succeeded"}
        first.store.RUNNING_AFTER = -1e9  # whatever the first still held back is due now
        first.store.flush()
        assert {s.path: s.status for s in first.steps(run_id)} == finished
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("deleted_by", ["prune", "an older prune, by hand"])
def test_a_child_deleted_while_its_parent_is_parked_is_never_started_over(pg_state, flow_file, deleted_by):
    """`flowrun runs prune` keeps a finished child whose parent is parked (the parent resumes
    with its outputs); a child gone anyway (an older flowrun's prune, a hand edit) fails the
    parent's action clearly (ChildRunMissing) instead of running the child again."""
    from engine.retention import prune

    flow_file(GRANDCHILD, "grandchild.yaml")
    e = engine.Engine(pg_state)
    worker = Worker(e, capacity=1)
    e.parking, e.delegate_children, e.starved = True, True, lambda: True  # (worker.run's set-up)
    try:
        parent = e.start(e.load(flow_file(ONE_CHILD, "parent.yaml")))
        e.store.flush()
        _step_by_hand(worker, parent)  # queues its child and parks at once (starved)
        assert status_of(e, parent) == "Waiting"
        (child, _, _), = family(e, parent)[0]
        _step_by_hand(worker, child)
        assert status_of(e, child) == "Succeeded"
        if deleted_by == "prune":
            assert prune(e.store, 0).runs == 0  # the parent has not finished: its child stays
        else:
            e.store.conn.execute("DELETE FROM steps WHERE run_id = %s", (child,))
            e.store.conn.execute("DELETE FROM runs WHERE id = %s", (child,))
            e.store.flush()  # (no wake-up moved: a child gone makes the parent due at once, as one ended)
        _step_by_hand(worker, parent)
        run = e.result(parent)
        kids = family(e, parent)[0]
        if deleted_by == "prune":
            assert run.status == "Succeeded", run.error
            assert run.outputs == {"square": 49}
            assert [k[0] for k in kids] == [child]
        else:
            assert run.status == "Failed"
            [step] = [s for s in e.steps(parent) if s.path == "child"]
            assert step.error["code"] == "ChildRunMissing"
            assert kids == []  # not started again
        assert prune(e.store, 0).runs == (2 if deleted_by == "prune" else 1)  # now both may go
    finally:
        e.close()
