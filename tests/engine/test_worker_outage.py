"""engine/worker.py when the database goes away: a ``flowrun worker`` process rides it out.

Its backends are ended with ``pg_terminate_backend`` (found by ``application_name``
flowrun-<role>-<pid>) at a known point: while the vendor handles a request of the run, so
the run is mid-flight when its lease dies. A database that refuses connections is a TCP
proxy in front of the real server, down, then up.
"""
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import psycopg
import pytest

import engine
from tests.engine.test_worker import IdempotentVendor, start_worker, wait_for
from tests.support import postgres
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

FLOW = """\
name: outage
parameters:
  api: {type: string}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  each:
    type: Foreach
    foreach: "{{ triggerBody()['items'] }}"
    concurrency: 1
    actions:
      charge:
        type: Http
        inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: {n: "{{ item() }}"}, idempotencyKey: true}
  receipt:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: {n: receipt}, idempotencyKey: true}
    runAfter: {each: [Succeeded]}
"""


def terminate_backends(pid: int) -> int:
    """End every backend of worker ``pid`` (its writer and its LISTEN connection) and wait until
    PostgreSQL has: the kill has landed when this returns."""
    names = [f"flowrun-writer-{pid}", f"flowrun-listen-{pid}"]
    with psycopg.connect(postgres.SERVER, autocommit=True) as admin:
        pids = [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)",
                                            (names,))]
        for backend in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone():
            admin.execute("SELECT pg_sleep(0.01)")
    return len(pids)


class KillingVendor(IdempotentVendor):
    """The idempotent vendor that, on the n-th new key in ``kill_on``, calls ``kill()`` before
    it answers: the kill lands while the run waits for this request."""

    def __init__(self, recorder, kill_on, kill):
        self.kill_on, self.kill, self.kills, self.seen = kill_on, kill, [], set()
        super().__init__(recorder)

    def answer(self, req):
        key = req.header("idempotency-key")
        if key not in self.seen:
            self.seen.add(key)
            if len(self.seen) in self.kill_on:
                self.kills.append(self.kill())
        return super().answer(req)


def stop(worker) -> str:
    """SIGTERM the worker; its stderr."""
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
    try:
        _, err = worker.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        _, err = worker.communicate()
    return err.decode()


def test_a_worker_whose_backends_are_killed_three_times_mid_run_reconnects_and_the_run_succeeds_once_each(
        pg_state, recorder, flow_file):
    worker_pid: list[int] = []
    # the 2nd, 4th and 7th new idempotency key (the last: the receipt, after the loop)
    vendor = KillingVendor(recorder, {2, 4, 7}, lambda: terminate_backends(worker_pid[0]))
    e = engine.Engine(pg_state)
    flow = e.load(flow_file(FLOW))
    run_id = e.start(flow, input={"items": [1, 2, 3, 4, 5, 6]}, params={"api": recorder.url})
    worker = start_worker(pg_state, capacity=4)
    worker_pid.append(worker.pid)
    try:
        status = wait_for(lambda: (s := e.store.conn.execute("SELECT status FROM runs WHERE id = %s",
                                                              (run_id,)).fetchone()[0]) not in
                          ("Queued", "Running", "Waiting") and s, timeout=120)
        e.store.flush()
        assert worker.poll() is None, "the worker exited"
    finally:
        err = stop(worker)
    assert status == "Succeeded", err
    assert vendor.kills == [2, 2, 2]  # each time both its connections were found, and ended
    steps = e.store.conn.execute("SELECT path, status, outputs, ended FROM steps WHERE run_id = %s AND type = 'Http'",
                                 (run_id,)).fetchall()
    assert len(steps) == 7 and {s[1] for s in steps} == {"Succeeded"}
    assert len(vendor.first) == 7  # one charge per Succeeded step, whatever was sent again
    for path, _, outputs, ended in steps:
        key = f"{run_id}:{path}"
        assert json.loads(outputs)["body"] == {"charge": vendor.first[key]}
        assert max(when for k, _, when in vendor.answers if k == key) <= ended, f"{key} ran again after it succeeded"
    assert e.store.conn.execute("SELECT count(*) FROM steps WHERE status = 'Failed'").fetchone()[0] == 0
    # the three calls in flight at the kills were sent again (same key: charged once), no other
    sent = Counter(k for k, _, _ in vendor.answers)
    assert sorted(sent.values()) == [1, 1, 1, 1, 2, 2, 2], sent
    # one warning per outage, no traceback, no password-bearing URL (there is none here), no failure
    assert err.count("the database connection was lost") == 3, err
    assert "Traceback" not in err and "failed" not in err.lower(), err
    e.close()


def line_of(worker, timeout: float = 60.0) -> str:
    """The worker's next stderr line (it is there when this returns; the timeout guards a hang)."""
    import select

    ready, _, _ = select.select([worker.stderr], [], [], timeout)
    assert ready, "the worker said nothing"
    return worker.stderr.readline().decode()


def test_a_network_cut_mid_run_is_ridden_out_and_the_run_succeeds_with_each_charge_made_once(
        pg_state, recorder, flow_file):
    proxy = TcpProxy(5432).up()
    vendor = KillingVendor(recorder, {3}, proxy.down)  # the cut lands while the 3rd charge is in flight
    e = engine.Engine(pg_state)
    flow = e.load(flow_file(FLOW))
    run_id = e.start(flow, input={"items": [1, 2, 3, 4]}, params={"api": recorder.url})
    worker = start_worker(proxy.url(pg_state))
    try:
        said = line_of(worker)  # the database is away: the worker says so once, and waits
        assert "the database connection was lost" in said and "1 run(s) executing here stop" in said, said
        assert worker.poll() is None
        proxy.up()
        status = wait_for(lambda: (s := e.store.conn.execute("SELECT status FROM runs WHERE id = %s",
                                                              (run_id,)).fetchone()[0]) not in
                          ("Queued", "Running", "Waiting") and s, timeout=120)
        e.store.flush()
    finally:
        err = said + stop(worker)
        proxy.down()
    assert status == "Succeeded", err
    assert len(vendor.first) == 5 and sorted(Counter(k for k, _, _ in vendor.answers).values()) == [1, 1, 1, 1, 2]
    assert err.count("the database connection was lost") == 1, err
    assert "Traceback" not in err, err
    e.close()


def test_a_worker_started_while_postgresql_refuses_says_so_once_and_starts_working_when_it_is_up(
        pg_state, recorder, flow_file):
    vendor = IdempotentVendor(recorder)
    e = engine.Engine(pg_state)
    flow = e.load(flow_file(FLOW))
    run_id = e.start(flow, input={"items": [1]}, params={"api": recorder.url})
    proxy = TcpProxy(5432)  # not up yet: the port refuses
    url = proxy.url(pg_state).replace("postgres@", "postgres:pa%27ss%5Cw%22rd@")  # trust auth ignores it
    worker = start_worker(url)
    try:
        first = line_of(worker)  # the worker says why it waits
        assert "cannot connect to PostgreSQL" in first and "retrying" in first, first
        assert "pa'ss" not in first and "pa%27ss" not in first and "***" in first
        assert worker.poll() is None
        proxy.up()
        assert wait_for(lambda: e.store.conn.execute("SELECT status FROM runs WHERE id = %s",
                                                      (run_id,)).fetchone()[0] == "Succeeded", timeout=120)
        e.store.flush()
        assert len(vendor.first) == 2
    finally:
        err = first + stop(worker)
        proxy.down()
    assert "Traceback" not in err and "pa'ss" not in err, err
    e.close()


@pytest.mark.parametrize("url, says", [
    (postgres.SERVER.replace("postgres@", "no_such_role_q@"), 'role "no_such_role_q" does not exist'),
    ("postgresql://u:p@ss@127.0.0.1:1/test", "the URL cannot be read"),
])
def test_a_worker_with_a_wrong_login_or_url_exits_non_zero_with_one_line(url, says):
    got = subprocess.run([sys.executable, "-m", "engine.cli", "--state", url, "worker"], capture_output=True,
                         timeout=60)
    err = got.stderr.decode()
    assert got.returncode != 0
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "p@ss" not in err


def test_an_idle_worker_cut_off_says_so_once_and_stops_on_sigterm_during_the_outage_with_status_0(pg_state):
    proxy = TcpProxy(5432).up()
    worker = start_worker(proxy.url(pg_state))
    try:
        names = [f"flowrun-writer-{worker.pid}", f"flowrun-listen-{worker.pid}"]
        wait_for(lambda: postgres_count("SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)",
                                        names) == 2, timeout=60)
        proxy.down()
        said = line_of(worker)  # the writer finds it at its next look for work (--poll 0.3)
        assert "the database connection was lost; reconnecting" in said, said
        assert worker.poll() is None
        os.killpg(worker.pid, signal.SIGTERM)
        _, rest = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        proxy.down()
    assert worker.returncode == 0
    assert "Traceback" not in rest.decode(), rest


def postgres_count(sql, *args) -> int:
    with psycopg.connect(postgres.SERVER, autocommit=True) as conn:
        return conn.execute(sql, args).fetchone()[0]
