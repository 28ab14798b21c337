"""engine.pglease.KeyLeases on a real PostgreSQL: the keys of a pull trigger (Kinesis shards)
split evenly among the instances consuming it, taken over from a dead one at once, given up
only when the trigger says its reader stopped."""
from __future__ import annotations

import random

import psycopg
import pytest

from tests.support import postgres
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

SHARDS = [f"shardId-00000000000{i}" for i in range(4)]
_rng = random.Random(7)
NOISE = "".join(chr(_rng.randrange(0x21, 0x2FFF)) for _ in range(4000))  # long, and compresses badly


@pytest.fixture
def url():
    url, schema = postgres.postgres_url()
    yield url
    postgres.drop(schema)


@pytest.fixture
def instance(url):
    """instance(ttl=30) -> a KeyLeases of flow 'clicks', trigger 'stream', on a store (and a
    database backend) of its own, as each `flowrun serve` has."""
    from engine.pglease import KeyLeases
    from engine.storage import open_store

    stores = []

    def make(ttl: float = 30.0, flow: str = "clicks", trigger: str = "stream") -> KeyLeases:
        store = open_store(url)
        stores.append(store)
        return KeyLeases(store, flow, trigger, ttl=ttl)

    yield make
    for store in stores:
        try:
            store.close()
        except Exception:  # a test ended this store's backend on purpose
            pass


def holders(url) -> dict[str, str]:
    """{key: token} of every lease row (live or not)."""
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT key, token FROM trigger_key_leases").fetchall())


def settle(*members, keys=SHARDS, rounds: int = 3) -> list[set[str]]:
    """Balance every member a few times, releasing what each is told to give up (as a trigger
    does once its reader stopped); the last round's answers."""
    got: list[set[str]] = []
    for _ in range(rounds):
        got = []
        for m in members:
            held = m.balance(keys)
            m.release(set(keys) - held)
            got.append(held)
    return got


def test_a_lone_instance_holds_every_key(instance, url):
    a = instance()
    assert a.balance(SHARDS) == set(SHARDS)
    assert set(holders(url).values()) == {a.token}


def test_two_instances_split_four_keys_two_and_two_and_each_key_has_one_holder(instance, url):
    a, b = instance(), instance()
    a.balance(SHARDS)  # a alone at first: all four
    got = settle(a, b)
    assert [len(g) for g in got] == [2, 2]
    assert got[0] | got[1] == set(SHARDS) and not got[0] & got[1]
    assert holders(url) == {**{k: a.token for k in got[0]}, **{k: b.token for k in got[1]}}


def test_a_key_given_up_stays_held_until_released_so_no_two_readers_overlap(instance, url):
    a = instance()
    assert a.balance(SHARDS) == set(SHARDS)
    b = instance()
    assert b.balance(SHARDS) == set()  # nothing free yet: a still reads all four
    kept = a.balance(SHARDS)  # a is told to give two up ...
    assert len(kept) == 2
    assert b.balance(SHARDS) == set()  # ... but they are a's until its readers stopped
    assert set(holders(url).values()) == {a.token}
    a.release(set(SHARDS) - kept)
    assert b.balance(SHARDS) == set(SHARDS) - kept


def test_a_third_instance_gets_a_share_and_no_one_holds_more_than_the_ceiling(instance, url):
    a, b = instance(), instance()
    settle(a, b)
    c = instance()
    got = settle(a, b, c)
    assert sorted(len(g) for g in got) == [1, 1, 2]  # ceil(4 / 3) = 2 at most, every key read
    assert set().union(*got) == set(SHARDS)
    assert len(holders(url)) == 4


def test_a_dead_instances_keys_are_taken_at_once_when_its_backend_is_gone(instance, url):
    a, b = instance(ttl=3600), instance(ttl=3600)  # the expiry is far: only the dead backend frees them
    settle(a, b)
    pid = a.store.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(url, autocommit=True) as conn:  # what kill -9 of its process does to its connection
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
                   "the backend to end")
    assert b.balance(SHARDS) == set(SHARDS)  # b alone among the live members: all four
    assert set(holders(url).values()) == {b.token}


def test_an_expired_lease_of_a_stalled_instance_is_taken_and_the_stalled_one_reads_it_no_more(instance, url):
    a, b = instance(), instance()
    settle(a, b)
    with psycopg.connect(url, autocommit=True) as conn:  # a stalled past its ttl: its rows' expiry has passed
        conn.execute("UPDATE trigger_key_leases SET expires = 0 WHERE token = %s", (a.token,))
        conn.execute("UPDATE trigger_members SET expires = 0 WHERE token = %s", (a.token,))
    assert b.balance(SHARDS) == set(SHARDS)
    assert a.balance(SHARDS) == set()  # its leases were taken over: it stops reading them
    got = settle(a, b)
    assert sorted(len(g) for g in got) == [2, 2]  # and once back, it gets its share again


def test_keys_of_other_triggers_and_flows_are_leased_apart(instance, url):
    a, other_trigger, other_flow = instance(), instance(trigger="other"), instance(flow="views")
    for m in (a, other_trigger, other_flow):
        assert m.balance(SHARDS) == set(SHARDS)


def test_closing_gives_every_key_and_the_membership_up_for_the_others_to_take(instance, url):
    a, b = instance(), instance()
    settle(a, b)
    a.close()
    assert b.balance(SHARDS) == set(SHARDS)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT token FROM trigger_members").fetchall() == [(b.token,)]


def test_a_key_no_longer_listed_is_not_returned_and_new_keys_are_shared_out(instance, url):
    a, b = instance(), instance()
    reader = a if SHARDS[0] in settle(a, b)[0] else b
    children = ["shardId-000000000004", "shardId-000000000005"]
    now = SHARDS[1:] + children  # shard 0 drained, two children appeared
    got = settle(a, b, keys=now)
    assert sorted(len(g) for g in got) == [2, 3] and got[0] | got[1] == set(now)
    assert holders(url)[SHARDS[0]] == reader.token  # not returned, yet its reader's until it says it stopped
    reader.release([SHARDS[0]])
    assert SHARDS[0] not in holders(url)


@pytest.mark.parametrize("key", ["it's", 'a "quoted" \\ key', "ключ-é", "x" * 300, "%s %(x)s", "nul\x00in", "\x00",
                                 "y" * 100_000, "é" * 5_000, "100%_\\%", NOISE, "#sha256:" + "0" * 64,
                                 "lone \ud800 surrogate"])
def test_any_key_text_is_a_key(instance, url, key):
    """Shard ids come from outside: a NUL (which PostgreSQL text cannot hold) or a key too long
    for an index entry is leased like any other, and never makes the whole balance fail."""
    a = instance()
    assert a.balance([key, "plain"]) == {key, "plain"}
    a.release([key])
    assert len(holders(url)) == 1 and "plain" in holders(url)
    b = instance()
    got = settle(a, b, keys=[key, "plain", "other"])
    assert sorted(len(g) for g in got) == [1, 2] and got[0] | got[1] == {key, "plain", "other"}


def test_a_lost_database_connection_is_one_store_error_naming_the_trigger_not_a_driver_traceback(url):
    """Lost, and not replaceable now (the server refuses): the balance says so in one line."""
    from engine.errors import StoreError
    from engine.pglease import KeyLeases
    from engine.storage import open_store
    from tests.support.tcpproxy import TcpProxy

    with TcpProxy(5432) as proxy:
        store = open_store(proxy.url(url))
        try:
            a = KeyLeases(store, "clicks", "stream")
            a.balance(SHARDS)
            proxy.down()
            with pytest.raises(StoreError) as error:
                a.balance(SHARDS)
            assert "key leases of clicks/stream" in str(error.value)
            assert "Traceback" not in str(error.value) and "\n" not in str(error.value)
        finally:
            store.close()


def end_backend(url, store) -> None:
    """End the store's writer backend (a restart, an idle timeout, an operator) and wait until it is gone."""
    pid = store._conn.info.backend_pid
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
                   "the backend to end")


def test_after_its_connection_is_replaced_an_instance_keeps_its_keys_and_a_peer_balancing_first_takes_none(
        instance, url):
    a, b = instance(ttl=3600), instance(ttl=3600)  # the expiry is far: only the backend decides
    held = settle(a, b)
    end_backend(url, a.store)
    a.store.conn.execute("SELECT 1")  # its next use of the store replaces the connection
    assert b.balance(SHARDS) == held[1]  # a's rows already name its new backend: live, not free
    assert a.balance(SHARDS) == held[0]  # renewed, the same keys: no handover, no two readers
    assert sorted(holders(url).values()) == sorted([a.token] * 2 + [b.token] * 2)


def test_a_peer_that_took_the_keys_while_the_connection_was_down_keeps_them_until_it_gives_them_up(instance, url):
    a, b = instance(ttl=3600), instance(ttl=3600)
    settle(a, b)
    end_backend(url, a.store)
    assert b.balance(SHARDS) == set(SHARDS)  # before a reconnected: a's keys were free
    assert a.balance(SHARDS) == set()  # a reads none of them now (its readers stop at their next boundary)
    got = settle(a, b)
    assert sorted(len(g) for g in got) == [2, 2]  # shared again once b gave two up


def test_a_failing_trigger_lease_take_rolls_back_only_itself_not_the_stores_pending_writes(url):
    import time

    from engine.errors import StoreError
    from engine.pglease import TriggerLease
    from engine.storage import open_store

    store = open_store(url)
    try:
        lease = TriggerLease(store, "clicks", "queue")
        store.create_run({"id": "pending", "flow": "f", "status": "Queued", "created": time.time()}, commit=False)
        with psycopg.connect(url, autocommit=True) as conn:  # the take fails (a statement PostgreSQL rejects)
            conn.execute("ALTER TABLE trigger_leases RENAME TO trigger_leases_gone")
        with pytest.raises(StoreError, match="trigger lease of clicks/queue"):
            lease.take()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM runs WHERE id = 'pending'").fetchone()[0] == 1
    finally:
        store.close()


def test_thousands_of_keys_split_evenly_and_a_batch_takes_no_more_than_the_share(instance, url):
    """Keys are taken a batch per statement (a stream of 3,000 shards costs a round trip, not
    3,000, on the server's event loop): each instance still takes exactly its share, the
    keys another took meanwhile are skipped, and every key has one holder."""
    keys = [f"shardId-{i:012d}" for i in range(3000)]
    a, b, c = instance(), instance(), instance()
    assert len(a.balance(keys)) == 3000  # alone: all of them
    b.balance(keys[:10])  # (b joins, sees only ten keys: takes its share of those, none free)
    got = settle(a, b, c, keys=keys)
    assert sorted(len(g) for g in got) == [1000, 1000, 1000]
    assert set().union(*got) == set(keys)
    rows = holders(url)
    assert len(rows) == 3000 and {rows[k] for k in got[0]} == {a.token}
