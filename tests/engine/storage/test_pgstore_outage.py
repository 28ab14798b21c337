"""engine/pgstore.py when its connection is lost: reconnect, drop what died with it, never
commit half a transaction.

The connection is lost the ways it is in production: its backend terminated by
``pg_terminate_backend`` (an operator, a failover, an idle timeout), or every socket cut by a
TCP proxy in front of the real server (a network cut; the server "down" while it refuses).
"""
import asyncio
import logging
import time

import psycopg
import pytest

from engine.errors import LeaseLost, StoreError, StoreUnavailable
from engine.pgstore import PgStore
from tests.support import postgres
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")


@pytest.fixture
def url():
    url, schema = postgres.postgres_url()
    yield url
    postgres.drop(schema)


def terminate(store) -> None:
    """End the store's writer backend, and wait until PostgreSQL has (its pid is gone)."""
    pid = store._conn.info.backend_pid
    with psycopg.connect(postgres.SERVER, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            admin.execute("SELECT pg_sleep(0.01)")  # the server's own wait: the backend is exiting


def run_row(run_id: str) -> dict:
    return {"id": run_id, "flow": "f", "status": "Queued", "created": time.time()}


def count(url, sql, *args) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchone()[0]


def test_the_writer_connection_is_named_for_its_process_and_role(url):
    import os

    store = PgStore(url)
    try:
        name = store.conn.execute("SHOW application_name").fetchone()[0]
        assert name == f"flowrun-writer-{os.getpid()}"
    finally:
        store.close()


def test_the_writer_connection_comes_from_the_stores_pool_which_discards_a_lost_one_and_opens_its_replacement(url):
    import os

    store = PgStore(url)
    try:
        stats = store.pool.get_stats()
        assert (stats["pool_max"], stats["connections_num"]) == (1, 1)  # a pool of one: the writer
        terminate(store)
        assert store.conn.execute("SHOW application_name").fetchone()[0] == f"flowrun-writer-{os.getpid()}"
        stats = store.pool.get_stats()
        assert stats["returns_bad"] == 1  # the lost one was given back and discarded
        assert stats["connections_num"] == 2 and stats["pool_size"] == 1  # the pool opened its replacement
        assert stats.get("connections_errors", 0) == 0
    finally:
        store.close()


def test_a_terminated_backend_is_replaced_at_the_next_use_with_one_warning_and_one_info(url, caplog):
    store = PgStore(url)
    try:
        store.create_run(run_row("r1"))
        before = store._conn.info.backend_pid
        terminate(store)
        with caplog.at_level(logging.INFO, logger="flowrun.store"):
            assert store.get_run("r1").status == "Queued"  # read through a new connection
            store.get_run("r1")
        assert store._conn.info.backend_pid != before
        lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "flowrun.store"]
        assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
        assert "connection was lost" in lines[0][1] and "reconnected" in lines[1][1]
        assert not any(r.exc_info for r in caplog.records)
        store.create_run(run_row("r2"))  # writes work again
        assert count(url, "SELECT count(*) FROM runs") == 2
    finally:
        store.close()


def test_a_transaction_torn_by_a_lost_connection_fails_at_its_commit_and_nothing_of_it_is_kept(url):
    store = PgStore(url)
    try:
        store.create_run(run_row("a"), commit=False)  # sent, not committed
        store.update_run("a", status="Running", commit=False)  # batched
        terminate(store)
        with pytest.raises(StoreUnavailable):
            store.flush()
        assert count(url, "SELECT count(*) FROM runs") == 0
        store.create_run(run_row("b"))  # the next transaction is whole again
        assert count(url, "SELECT count(*) FROM runs") == 1
    finally:
        store.close()


def test_writes_made_after_the_reconnect_in_a_torn_transaction_are_not_committed_either(url):
    store = PgStore(url)
    try:
        store.create_run(run_row("a"), commit=False)
        terminate(store)
        try:  # written on the new connection, or refused on the old one: "a" is gone, so "b" alone would be half
            store.create_run(run_row("b"), commit=False)
        except StoreUnavailable:
            pass
        with pytest.raises(StoreUnavailable, match="nothing of it was kept"):
            store.flush()
        assert count(url, "SELECT count(*) FROM runs") == 0
    finally:
        store.close()


def test_every_waiter_of_a_group_commit_torn_by_a_lost_connection_gets_store_unavailable(url):
    store = PgStore(url)

    async def two_waiters():
        store.create_run(run_row("a"), commit=False)
        store.create_run(run_row("b"), commit=False)
        terminate(store)
        return await asyncio.gather(store.durable(), store.durable(), return_exceptions=True)
    try:
        results = asyncio.run(two_waiters())
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert count(url, "SELECT count(*) FROM runs") == 0
    finally:
        store.close()


def test_waiters_of_a_lost_commit_learn_it_even_when_another_caller_flushes_first(url):
    """The loss is found by someone else's flush (a worker's claim) before the group commit
    runs: the waiters must not be handed an empty commit that "succeeded"."""
    store = PgStore(url)

    async def scenario():
        store.create_run(run_row("a"), commit=False)
        waiting = asyncio.ensure_future(store.durable())
        await asyncio.sleep(0)  # one loop turn: the waiter is registered, its group commit not run yet
        terminate(store)
        with pytest.raises(StoreUnavailable):
            store.flush()  # another caller meets the loss first
        with pytest.raises(StoreUnavailable, match="nothing of it was kept"):
            await waiting
    try:
        asyncio.run(scenario())
        assert count(url, "SELECT count(*) FROM runs") == 0
    finally:
        store.close()


def test_a_lost_connection_drops_the_runs_whose_leases_it_wrote_and_discards_their_writes(url):
    store, other = PgStore(url), PgStore(url)
    try:
        store.create_run(run_row("r"))
        claim = store.claim("r", ttl=30).__enter__()
        told = []
        claim._on_lost = lambda: told.append(True)
        store.update_run("r", status="Running")
        terminate(store)
        # the lease died with the backend: another process may take the run over at once
        assert other.leases(["r"]) == {}
        try:  # the first write after the loss: discarded (or refused, if the loss shows only at its commit)
            store.update_run("r", status="Failed")
        except StoreUnavailable:
            pass
        assert claim.lost and claim.dropped and told == [True]
        assert store.get_run("r").status == "Running"
        assert "r" in store.abandoned
        claim.__exit__(None, None, None)
        # claimed again (here), its writes count again
        with store.claim("r", ttl=30):
            store.update_run("r", status="Succeeded")
        assert store.get_run("r").status == "Succeeded"
    finally:
        store.close()
        other.close()


@pytest.mark.parametrize("runs", [2, 5])
def test_a_connection_found_lost_while_held_back_running_marks_are_written_drops_them_all_without_a_traceback(
        url, runs):
    """The loss is seen by the first mark's write; the others, of runs dropped with it, are
    forgotten then (engine.pgreconnect). They were listed before: the next one's pop raised
    KeyError out of the group commit, a callback's traceback in a worker's log."""
    store = PgStore(url)
    try:
        ids = [f"r{i}" for i in range(runs)]
        for run_id in ids:
            store.create_run(run_row(run_id))
        claims = [store.claim(run_id, ttl=30).__enter__() for run_id in ids]
        for run_id in ids:
            store.step_started(run_id, "a", "a", "Http", time.time() - 1)  # held back, and due
        terminate(store)
        try:
            store.flush()
        except StoreUnavailable:  # (the loss, said once; anything else is a bug)
            pass
        assert store._pending_starts == {} and all(c.dropped for c in claims)
        for c in claims:
            c.__exit__(None, None, None)
        assert count(url, "SELECT count(*) FROM steps") == 0
    finally:
        store.close()


def test_while_the_server_refuses_every_use_raises_store_unavailable_at_once_until_the_backoff_passes(url):
    with TcpProxy(5432) as proxy:
        secret_url = proxy.url(url).replace("postgres@", "postgres:s3cr%27t%5C%22pw@")  # trust auth ignores it
        store = PgStore(secret_url)
        try:
            proxy.down()
            errors = []
            for _ in range(20):
                try:
                    store.get_run("x")
                except StoreUnavailable as exc:
                    errors.append(str(exc))
            assert len(errors) == 20
            assert proxy.accepted == 1  # no connection attempt went through (the proxy was refusing)
            assert all("s3cr" not in e and "\n" not in e for e in errors), errors
            assert store._backoff.attempts <= 2  # not one connect per call: the backoff spaces them
            proxy.up()
            deadline = time.monotonic() + 10
            while True:  # the next try comes after a backoff of at most 0.2 s
                try:
                    store.create_run(run_row("back"))
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline
            assert store.get_run("back").status == "Queued"
        finally:
            store.close()


def test_a_config_error_is_not_transient_but_a_refusal_is():
    from engine.pgconn import connect

    closed = TcpProxy.closed_port()
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        connect(f"postgresql://postgres@127.0.0.1:{closed}/test", "writer", timeout=2)
    with pytest.raises(StoreError, match="does not exist") as got:
        connect(postgres.SERVER.replace("postgres@", "no_such_role_x@"), "writer")
    assert not isinstance(got.value, StoreUnavailable)
    with pytest.raises(StoreError, match="cannot be read") as got:
        connect(f"postgresql://u:p@ss@127.0.0.1:{closed}/test", "writer")
    assert not isinstance(got.value, StoreUnavailable) and "p@ss" not in str(got.value)


FLOW = """\
name: chain
parameters:
  api: {type: string}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  first:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/step", body: {n: 1}, idempotencyKey: true}
  second:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/step", body: {n: 2}, idempotencyKey: true}
    runAfter: {first: [Succeeded]}
  third:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/step", body: {n: 3}, idempotencyKey: true}
    runAfter: {second: [Succeeded]}
"""


def test_a_run_whose_connection_dies_mid_action_stops_with_lease_lost_and_resumes_without_repeats(
        url, recorder, flow_file):
    """The backend is killed while the vendor handles 'second': the run stops (LeaseLost, not
    Failed; 'third' never called), stays Running, and a resume finishes it, 'first' not again."""
    import engine
    from engine.store import RecordedSteps

    e = engine.Engine(url)
    keys: list[str] = []

    def step(req):
        keys.append(req.header("idempotency-key"))
        if req.json() == {"n": 2} and keys.count(keys[-1]) == 1:
            terminate(e.store)  # the kill lands at a known point: during the second call
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
    recorder.route("POST", "/step", handler=step)
    try:
        flow = e.load(flow_file(FLOW))
        run_id = e.start(flow, params={"api": recorder.url})
        with pytest.raises(LeaseLost):
            asyncio.run(e.execute(run_id, flow))
        assert count(url, "SELECT count(*) FROM runs WHERE id = %s AND status IN ('Queued', 'Running')", run_id) == 1
        assert count(url, "SELECT count(*) FROM steps WHERE status = 'Failed'") == 0
        assert [k.rsplit(":", 1)[1] for k in keys] == ["first", "second"]
        run = asyncio.run(e.execute(run_id, reuse=RecordedSteps(e.store, run_id)))
        assert run.status == "Succeeded"
        assert [k.rsplit(":", 1)[1] for k in keys] == ["first", "second", "second", "third"]
    finally:
        e.close()
