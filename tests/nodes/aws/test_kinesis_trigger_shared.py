"""aws.kinesis.Stream under several `flowrun serve` on one PostgreSQL state database (moto for
Kinesis): one reader per shard across the instances, an even split, a stopped or killed
instance's shards continued from their checkpoints by the others, a joining instance given a
share, and resharding whoever drained the parent. Every record is exactly one run."""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.listener.conftest import Server
from tests.listener.inprocess import serving, wait_for
from tests.support import postgres
from tests.support.moto import KEY_ID, connections_yaml
from tests.support.waiting import wait_until

from .conftest import SECRET
from .test_kinesis_trigger import FLOW, key_below, put

ALL = {f"shardId-00000000000{i}" for i in range(4)}
pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")


@pytest.fixture
def flows(tmp_path, monkeypatch, moto):
    """flows(stream) -> the folder every instance serves: the clicks flow reading ``stream`` from
    TRIM_HORIZON, refreshing its shard list (and its leases) every 0.2 s."""
    monkeypatch.setenv("TEST_AWS_KEY_ID", KEY_ID)
    monkeypatch.setenv("TEST_AWS_SECRET", SECRET)
    logger = logging.getLogger("flowrun.listener")  # each instance restores its level when it stops:
    monkeypatch.setattr(logger, "level", logger.level)  # INFO, while the others still log
    logger.setLevel(logging.INFO)

    def write(stream: str):
        folder = tmp_path / "flows"
        folder.mkdir(exist_ok=True)
        (folder / "connections.yaml").write_text(connections_yaml(moto.url))
        (folder / "clicks.yaml").write_text(FLOW.format(stream=stream, options="    startingPosition: TRIM_HORIZON"))
        return folder
    return write


def query(url: str, sql: str, *args) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def shares(url: str) -> dict[str, set[str]]:
    """{instance token: the shards it holds}, from the lease rows."""
    out: dict[str, set[str]] = {}
    for key, token in query(url, "SELECT key, token FROM trigger_key_leases WHERE flow = 'clicks'"):
        out.setdefault(token, set()).add(key)
    return out


def split(url: str, *sizes: int):
    """A predicate: the instances hold shards in exactly these numbers (sorted), the shards disjoint."""
    def check():
        got = shares(url)
        return sorted(len(v) for v in got.values()) == sorted(sizes) and got
    return check


def records_run(url: str) -> list[tuple[str, int]]:
    """(dedupe key, n) of every run of the clicks flow."""
    return [(k, json.loads(p)["body"]["n"]) for k, p in
            query(url, "SELECT dedupe_key, payload FROM runs WHERE flow = 'clicks'")]


def all_run(url: str, n: int):
    def check():
        got = records_run(url)
        return len(got) >= n and got
    return check


def put_spread(moto, stream: str, numbers) -> None:
    """One record per number, spread over the shards by partition key."""
    moto.kinesis.put_records(StreamName=stream, Records=[
        {"Data": json.dumps({"n": i}).encode(), "PartitionKey": f"user-{i}"} for i in numbers])


def exactly_once(url: str, n: int) -> None:
    got = records_run(url)
    assert sorted(i for _, i in got) == list(range(n))  # none lost, none run twice
    assert len({k for k, _ in got}) == n


def test_two_instances_read_two_of_four_shards_each_and_every_record_is_one_run(flows, pg_state, monkeypatch, moto):
    stream = moto.stream("two", shards=4)
    folder = flows(stream)
    put_spread(moto, stream, range(40))
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(serving(folder, state=pg_state, monkeypatch=monkeypatch))
        held = wait_for(split(pg_state, 2, 2), "the shards split 2/2")
        assert set().union(*held.values()) == ALL
        put_spread(moto, stream, range(40, 80))
        wait_for(all_run(pg_state, 80), "a run per record")
        members = query(pg_state, "SELECT token FROM trigger_members WHERE flow = 'clicks'")
        assert {t for (t,) in members} == set(held)  # the two instances, each with its two shards
    exactly_once(pg_state, 80)
    assert shares(pg_state) == {}  # a graceful stop gives every lease up


def reading(app) -> list[str]:
    """The shards this instance (of several in this process: one logger) started reading: its
    records are those logged on the thread its event loop runs on."""
    thread = app.client.portal.call(threading.get_ident)
    return [r.msg for r in app.thread_records if r.thread == thread and getattr(r, "event", "") ==
            "trigger_shard_reading"]


@contextlib.contextmanager
def instance(folder, pg_state, monkeypatch):
    """One in-process `flowrun serve`, whose log records keep their thread (``thread_records``)."""
    class Keep(logging.Handler):
        def emit(self, record):
            kept.append(record)

    kept: list[logging.LogRecord] = []
    handler = Keep()
    logging.getLogger("flowrun.listener").addHandler(handler)
    try:
        with serving(folder, state=pg_state, monkeypatch=monkeypatch) as app:
            app.thread_records = kept
            yield app
    finally:
        logging.getLogger("flowrun.listener").removeHandler(handler)


def test_a_stopped_instances_shards_are_continued_from_their_checkpoints_by_the_other(flows, pg_state,
                                                                                      monkeypatch, moto):
    stream = moto.stream("stop", shards=4)
    folder = flows(stream)
    put_spread(moto, stream, range(40))
    leaving = instance(folder, pg_state, monkeypatch)
    leaving.__enter__()
    try:
        with instance(folder, pg_state, monkeypatch) as staying:  # joins second: reads only what it is given
            wait_for(split(pg_state, 2, 2), "the shards split 2/2")
            wait_for(all_run(pg_state, 40), "the first records run")
            before = wait_for(lambda: len(got := reading(staying)) == 2 and got, "its two shards read")
            gone = ALL - {m.split()[2] for m in before}
            leaving.__exit__(None, None, None)
            leaving = None
            put_spread(moto, stream, range(40, 80))
            wait_for(split(pg_state, 4), "the staying instance holding every shard")
            wait_for(all_run(pg_state, 80), "the later records run")
            after = reading(staying)[len(before):]
    finally:
        if leaving is not None:
            leaving.__exit__(None, None, None)
    exactly_once(pg_state, 80)
    assert sorted(after) == sorted(f"reading shard {s} from AFTER_SEQUENCE_NUMBER" for s in gone)


def test_a_third_instance_joining_gets_a_share_and_no_record_runs_twice(flows, pg_state, monkeypatch, moto):
    stream = moto.stream("three", shards=4)
    folder = flows(stream)
    put_spread(moto, stream, range(30))
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(serving(folder, state=pg_state, monkeypatch=monkeypatch))
        wait_for(split(pg_state, 2, 2), "the shards split 2/2")
        put_spread(moto, stream, range(30, 60))
        stack.enter_context(serving(folder, state=pg_state, monkeypatch=monkeypatch))
        put_spread(moto, stream, range(60, 90))
        held = wait_for(split(pg_state, 1, 1, 2), "the shards split 2/1/1")
        assert len(held) == 3
        put_spread(moto, stream, range(90, 120))
        wait_for(all_run(pg_state, 120), "a run per record")
    exactly_once(pg_state, 120)


def test_a_split_shard_is_drained_by_one_instance_before_its_children_are_read_by_either(flows, pg_state,
                                                                                        monkeypatch, moto):
    # 2 shards: 0 holds hash keys below 2^127. moto sends writes after a split to the closed parent,
    # so records go in before the split (to both shards) and after it only to shard 1.
    stream = moto.stream("split", shards=2)
    folder = flows(stream)
    low, high = key_below(2 ** 127), key_below(2 ** 128, above=2 ** 127)
    put(moto, stream, *({"n": i} for i in range(10)), key=low)
    put(moto, stream, *({"n": i} for i in range(10, 20)), key=high)
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(serving(folder, state=pg_state, monkeypatch=monkeypatch))
        stack.enter_context(serving(folder, state=pg_state, monkeypatch=monkeypatch))
        wait_for(split(pg_state, 1, 1), "one shard each")
        moto.kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000",
                                 NewStartingHashKey=str(2 ** 126))
        put(moto, stream, *({"n": i} for i in range(20, 30)), key=high)
        children = {s["ShardId"] for s in moto.kinesis.list_shards(StreamName=stream)["Shards"]
                    if s.get("ParentShardId")}
        held = wait_for(lambda: (got := split(pg_state, 1, 2)()) and set().union(*got.values())
                        == children | {"shardId-000000000001"} and got, "the children leased")
        wait_for(lambda: len([r for r in first.records.events("trigger_shard_reading")
                              if any(c in r["msg"] for c in children)]) == 2, "the children read")
        wait_for(all_run(pg_state, 30), "a run per record")
        order = [r["msg"] for r in first.records.records  # both instances log to the same logger
                 if r.get("event") in ("trigger_shard_reading", "trigger_shard_drained")]
    exactly_once(pg_state, 30)
    drained = order.index("shard shardId-000000000000 drained")
    assert all(order.index(f"reading shard {c} from TRIM_HORIZON") > drained for c in children)
    assert len(held) == 2
    done = query(pg_state, "SELECT value FROM trigger_checkpoints WHERE key = 'shardId-000000000000'")
    assert json.loads(done[0][0])["done"] is True


KILL_FLOW = """\
name: clicks
triggers:
  stream: {{type: aws.kinesis.Stream, connection: aws, stream: "{stream}", startingPosition: TRIM_HORIZON,
            limit: 5, pollInterval: 0.05, shardRefresh: 0.2}}
actions:
  note: {{type: Compose, inputs: "click {{{{ triggerBody().n }}}}"}}
"""


def test_kill_9_of_one_serve_hands_its_shards_to_the_other_which_runs_every_record_once(tmp_path, pg_state, moto):
    n = 200
    stream = moto.stream("kill", shards=4)
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "connections.yaml").write_text(connections_yaml(moto.url))
    (folder / "clicks.yaml").write_text(KILL_FLOW.format(stream=stream))
    env = {"TEST_AWS_KEY_ID": KEY_ID, "TEST_AWS_SECRET": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}
    put_spread(moto, stream, range(40))
    servers = [Server(folder, pg_state, env=env) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:  # both start at once (a start is seconds on a loaded machine)
            list(pool.map(Server.start, servers))
        wait_until(split(pg_state, 2, 2), "the shards split 2/2")
        put_spread(moto, stream, range(40, 100))
        wait_until(lambda: len(records_run(pg_state)) >= 60, "consumption under way")
        servers[0].kill9()
        put_spread(moto, stream, range(100, n))  # on every shard, the killed one's two too
        survivor = wait_until(split(pg_state, 4), "the survivor holding every shard")
        wait_until(all_run(pg_state, n), "a run per record", timeout=90)
        servers[1].stop()
    finally:
        for s in servers:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
    exactly_once(pg_state, n)
    assert len(survivor) == 1
    assert SECRET not in "\n".join(servers[0].lines + servers[1].lines)


def test_a_shard_started_at_latest_is_handed_over_from_that_moment_not_from_a_later_latest(
        flows, pg_state, monkeypatch, moto):
    stream = moto.stream("latest", shards=2)
    folder = flows(stream)
    (folder / "clicks.yaml").write_text(FLOW.format(stream=stream, options="    startingPosition: LATEST"))
    low, high = key_below(2 ** 127), key_below(2 ** 128, above=2 ** 127)
    with instance(folder, pg_state, monkeypatch) as first:
        wait_for(lambda: len(reading(first)) == 2, "both shards read from LATEST")
        with instance(folder, pg_state, monkeypatch) as second:
            wait_for(split(pg_state, 1, 1), "one shard each")
            taken = wait_for(lambda: reading(second), "the second reading its shard")
            put(moto, stream, *({"n": i} for i in range(5)), key=low)
            put(moto, stream, *({"n": i} for i in range(5, 10)), key=high)
            wait_for(all_run(pg_state, 10), "a run per record")
        started = reading(first)[:2]
    exactly_once(pg_state, 10)
    assert all(m.startswith("reading shard shardId-") and m.endswith(" from LATEST") for m in started)
    assert len(taken) == 1 and taken[0].endswith(" from AT_TIMESTAMP")  # where the first one started
