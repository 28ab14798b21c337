"""engine/listener/runs.py with executes=False: `flowrun serve` without --worker on PostgreSQL
commits each webhook's run Queued for a `flowrun worker`, and a flow with a Response action
still answers its caller with the flow's reply, recorded by whichever worker runs it (woken
by NOTIFY flowrun_reply: engine.replies). Two processes: the server here (the ASGI app in
this process), a real `flowrun worker` beside it on one schema."""
import os
import signal
import time

import pytest

from engine.api import Engine
from tests.engine.test_worker import start_worker
from tests.support import postgres

from .inprocess import serving

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

FLOWS = {
    "order.yaml": """\
name: order
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  reply:
    type: Response
    inputs:
      statusCode: 201
      headers: {X-Order: "{{ triggerBody().id }}", Content-Type: application/vnd.order+json}
      body: {id: "{{ triggerBody().id }}", accepted: true}
""",
    "broken.yaml": """\
name: broken
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  stop:
    type: Terminate
    inputs: {runStatus: Failed, runError: {code: Nope, message: failed before replying}}
  reply:
    type: Response
    runAfter: {stop: [Succeeded]}
    inputs: {body: never}
""",
    "silent.yaml": """\
name: silent
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody() }}"}
""",
}


@pytest.fixture
def worker(pg_state):
    """A `flowrun worker` process on the test's schema (killed after)."""
    proc = start_worker(pg_state, capacity=4)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_the_caller_gets_the_flows_response_from_the_worker_that_ran_it_woken_by_notify(
        tmp_path, pg_state, worker, monkeypatch):
    monkeypatch.setattr(Engine, "REPLY_POLL", 120.0)  # only the NOTIFY can bring the reply within the test
    with serving(tmp_path / "flows", FLOWS, state=pg_state, monkeypatch=monkeypatch, sync_timeout=60) as app:
        assert app.listener.runs.executes is False  # this server only commits runs
        started = time.monotonic()
        r = app.client.post("/flows/order/triggers/hook", json={"id": "O-1"})
        elapsed = time.monotonic() - started
    assert r.status_code == 201, r.text
    assert r.headers["x-order"] == "O-1"
    assert r.headers["content-type"] == "application/vnd.order+json"
    assert r.json() == {"id": "O-1", "accepted": True}
    assert elapsed < 30, elapsed  # not the poll (120 s), nor the sync timeout (60 s)
    [run] = app.runs("order")
    assert r.headers["x-flowrun-run-id"] == run["id"]


@pytest.mark.parametrize("where", ["serve --worker", "a separate worker"])
def test_a_run_that_fails_before_its_response_answers_502_with_or_without_worker_in_serve(
        tmp_path, pg_state, where, monkeypatch, request):
    if where == "a separate worker":
        request.getfixturevalue("worker")
    with serving(tmp_path / "flows", FLOWS, state=pg_state, monkeypatch=monkeypatch, sync_timeout=60,
                 worker=where == "serve --worker") as app:
        started = time.monotonic()
        r = app.client.post("/flows/broken/triggers/hook", json={})
        elapsed = time.monotonic() - started
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["status"] == "Failed"
    assert body["error"] == "the run ended without sending its Response"
    assert body["runId"] == r.headers["x-flowrun-run-id"] and r.headers["location"] == body["location"]
    assert elapsed < 30, elapsed


def test_with_no_worker_running_the_caller_gets_202_and_location_after_the_sync_timeout(
        tmp_path, pg_state, monkeypatch):
    with serving(tmp_path / "flows", FLOWS, state=pg_state, monkeypatch=monkeypatch, sync_timeout=0.5) as app:
        started = time.monotonic()
        r = app.client.post("/flows/order/triggers/hook", json={"id": "O-2"})
        waited = time.monotonic() - started
        [run] = app.runs("order")
    assert r.status_code == 202
    assert r.json()["status"] == "Accepted" and "token=" in r.headers["location"]
    assert 0.5 <= waited < 10
    assert run["status"] == "Queued"  # still there for a worker


def test_a_flow_without_a_response_gets_202_at_once_without_waiting_for_any_worker(
        tmp_path, pg_state, monkeypatch):
    with serving(tmp_path / "flows", FLOWS, state=pg_state, monkeypatch=monkeypatch, sync_timeout=60) as app:
        started = time.monotonic()
        r = app.client.post("/flows/silent/triggers/hook", json={"n": 1})
        waited = time.monotonic() - started
    assert r.status_code == 202 and r.json()["status"] == "Accepted"
    assert waited < 10  # not the sync timeout: nothing to wait for


def test_a_redelivery_while_a_worker_runs_the_first_run_gets_the_first_runs_response(
        tmp_path, pg_state, monkeypatch):
    flows = {**FLOWS, "order.yaml": FLOWS["order.yaml"].replace(
        "hook: {type: Request, auth: {type: none}}",
        "hook: {type: Request, auth: {type: none}, dedupe: \"{{ triggerBody().id }}\"}")}
    with serving(tmp_path / "flows", flows, state=pg_state, monkeypatch=monkeypatch, sync_timeout=0.3) as app:
        first = app.client.post("/flows/order/triggers/hook", json={"id": "O-3"})  # no worker yet: 202
        proc = start_worker(pg_state, capacity=4)
        try:
            app.listener.options.sync_timeout = 60
            again = app.client.post("/flows/order/triggers/hook", json={"id": "O-3"})
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        runs = app.runs("order")
    assert first.status_code == 202
    assert again.status_code == 201, again.text
    assert again.json() == {"id": "O-3", "accepted": True}
    assert again.headers["x-flowrun-duplicate"] == "true"
    assert len(runs) == 1 and runs[0]["id"] == first.headers["x-flowrun-run-id"]


@pytest.mark.parametrize("limit", [1, 3])
def test_callers_waiting_for_a_workers_reply_are_bounded_by_max_in_flight_and_the_next_gets_429_uncommitted(
        tmp_path, pg_state, monkeypatch, limit):
    """No worker runs: each caller of a replying flow holds its request open up to --sync-timeout.
    Beyond --max-in-flight of them the next is refused before anything is committed (429 +
    Retry-After), even in a burst that arrives all at once (the place is taken before the
    commit); a flow without a Response costs no waiting and is still accepted; a redelivery
    of a waiting run answers 202 at once instead of waiting too."""
    from concurrent.futures import ThreadPoolExecutor

    from .inprocess import wait_for

    flows = {**FLOWS, "order.yaml": FLOWS["order.yaml"].replace(
        "hook: {type: Request, auth: {type: none}}",
        "hook: {type: Request, auth: {type: none}, dedupe: \"{{ triggerBody().id }}\"}")}
    with serving(tmp_path / "flows", flows, state=pg_state, monkeypatch=monkeypatch, sync_timeout=30,
                 max_in_flight=limit) as app:
        runs = app.listener.runs
        with ThreadPoolExecutor(limit * 4) as pool:
            burst = {i: pool.submit(app.client.post, "/flows/order/triggers/hook", json={"id": f"W-{i}"})
                     for i in range(limit * 4)}
            wait_for(lambda: sum(f.done() for f in burst.values()) == limit * 3, "the refusals")
            refused = [f.result() for f in burst.values() if f.done()]
            waiting = {i: f for i, f in burst.items() if not f.done()}
            assert runs.awaiting == limit
            silent = app.client.post("/flows/silent/triggers/hook", json={"n": 1})
            again = app.client.post("/flows/order/triggers/hook", json={"id": f"W-{min(waiting)}"})
            assert runs.awaiting == limit
            ids = [run["id"] for run in app.runs("order")]
            other = Engine(pg_state)  # cancelled by another process: each waiting caller is told (502)
            for run_id in ids:
                assert other.cancel(run_id) == "cancelled"
            answers = [f.result(timeout=20) for f in waiting.values()]
        assert runs.awaiting == 0
    for r in refused:
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"]
        assert "callers wait for a worker's reply" in r.json()["error"]
    assert len(ids) == limit  # the refused requests committed no run
    assert silent.status_code == 202
    assert again.status_code == 202 and again.headers["x-flowrun-duplicate"] == "true"
    assert sorted(a.headers["x-flowrun-run-id"] for a in answers) == sorted(ids)
    assert all(a.status_code == 502 and a.json()["status"] == "Cancelled" for a in answers)


FAMILY = {
    "front.yaml": """\
name: front
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  each:
    type: Foreach
    foreach: "{{ triggerBody().items }}"
    actions:
      kid:
        type: Workflow
        inputs: {flow: kid.yaml, body: {n: "{{ add(mul(triggerBody().id, 10), item()) }}"}}
  reply:
    type: Response
    runAfter: {each: [Succeeded]}
    inputs:
      statusCode: 201
      body: {id: "{{ triggerBody().id }}", kids: "{{ result('each') }}"}
""",
    "kid.yaml": """\
name: kid
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  nap: {type: Wait, inputs: {interval: {count: 1, unit: Second}}}
  sq: {type: Compose, runAfter: {nap: [Succeeded]}, inputs: "{{ mul(triggerBody().n, triggerBody().n) }}"}
outputs:
  sq: {value: "{{ outputs('sq') }}"}
""",
}


def test_callers_waiting_while_workers_are_killed_at_random_each_get_their_own_runs_reply(
        tmp_path, pg_state, monkeypatch):
    """Twelve callers wait for replies of parents whose children (each with a Wait, so parents
    park and children park) run on two workers; a worker is killed -9 three times at random
    and replaced. Each caller gets 201 with its own run's reply built from its own children,
    every run ends Succeeded, and no child runs twice."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    rng = random.Random(12)
    workers = [start_worker(pg_state, capacity=2) for _ in range(2)]
    try:
        with serving(tmp_path / "flows", FAMILY, state=pg_state, monkeypatch=monkeypatch, sync_timeout=120) as app:
            with ThreadPoolExecutor(12) as pool:
                calls = [pool.submit(app.client.post, "/flows/front/triggers/hook", json={"id": i, "items": [0, 1, 2]})
                         for i in range(12)]
                for _ in range(3):
                    time.sleep(rng.uniform(0.2, 0.8))  # not a synchronisation: the kill lands at a random point
                    victim = rng.randrange(len(workers))
                    os.killpg(workers[victim].pid, signal.SIGKILL)
                    workers[victim].wait()
                    workers[victim] = start_worker(pg_state, capacity=2)
                answers = [c.result(timeout=180) for c in calls]
        # a run replies before it ends: the workers finish the runs that replied before they stop
        with psycopg.connect(pg_state, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM runs WHERE status NOT IN ('Succeeded', 'Failed', "
                               "'Cancelled', 'TimedOut')").fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            w.wait()
    for i, r in enumerate(answers):
        if r.status_code != 201:
            with psycopg.connect(pg_state) as conn:
                why = conn.execute("SELECT r.error, s.path, s.error FROM runs r LEFT JOIN steps s ON s.run_id = r.id "
                                   "AND s.error IS NOT NULL WHERE r.id = %s", (r.json()["runId"],)).fetchall()
            raise AssertionError(f"{r.text}: {why}")
        body = r.json()
        assert body["id"] == i
        (kid,) = body["kids"]  # result('each'): the Workflow action, one row per iteration
        assert sorted(row["outputs"]["outputs"]["sq"] for row in kid["outputs"]) == [(10 * i + j) ** 2
                                                                                    for j in range(3)]
    with psycopg.connect(pg_state) as conn:
        rows = conn.execute("SELECT flow, status, count(*) FROM runs GROUP BY flow, status").fetchall()
        assert sorted(rows) == [("front", "Succeeded", 12), ("kid", "Succeeded", 36)]
        twice = conn.execute("SELECT parent_id, count(*) FROM runs WHERE flow = 'kid' GROUP BY parent_id "
                             "HAVING count(*) <> 3").fetchall()
        assert twice == []
