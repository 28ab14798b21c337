"""aws.kinesis.Stream inside `flowrun serve` (in process) against moto: every shard, start
positions, checkpoints committed with the runs, restart, resharding, bad records."""
from __future__ import annotations

import contextlib
import json
import sqlite3

from tests.listener.inprocess import serving, wait_for
from tests.support.moto import KEY_ID, connections_yaml

from .conftest import SECRET

FLOW = """\
name: clicks
triggers:
  stream:
    type: aws.kinesis.Stream
    connection: aws
    stream: {stream}
    pollInterval: 0.05
    shardRefresh: 0.2
{options}
actions:
  note:
    type: Compose
    inputs: "{{{{ triggerBody() }}}}"
"""


def serve(tmp_path, monkeypatch, moto, stream: str, options: dict | None = None, **kw):
    monkeypatch.setenv("TEST_AWS_KEY_ID", KEY_ID)
    monkeypatch.setenv("TEST_AWS_SECRET", SECRET)
    folder = tmp_path / "flows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "connections.yaml").write_text(connections_yaml(moto.url))
    opts = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in (options or {}).items())
    (folder / "clicks.yaml").write_text(FLOW.format(stream=stream, options=opts.rstrip("\n")))
    return serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch, **kw)


def put(moto, stream: str, *values, key: str = "k", **kw) -> list[dict]:
    return [moto.kinesis.put_record(StreamName=stream, Data=v if isinstance(v, bytes) else json.dumps(v).encode(),
                                    PartitionKey=key, **kw) for v in values]


def key_below(limit: int, above: int = 0) -> str:
    """A partition key whose MD5 hash key (Kinesis routes on it) is in [above, limit)."""
    import hashlib

    for i in range(1000):
        if above <= int(hashlib.md5(f"k{i}".encode()).hexdigest(), 16) < limit:
            return f"k{i}"
    raise AssertionError("no key")


def bodies(app) -> list:
    return [json.loads(r["payload"])["body"] for r in app.runs("clicks")]


def done(app, n: int) -> list[dict]:
    runs = app.runs("clicks")
    return runs if len(runs) >= n and all(r["status"] == "Succeeded" for r in runs) else []


def checkpoints(state) -> dict:
    with contextlib.closing(sqlite3.connect(str(state))) as con:
        rows = con.execute("SELECT key, value FROM trigger_checkpoints WHERE flow = 'clicks'").fetchall()
    return {k: json.loads(v) for k, v in rows}


def test_every_shard_is_read_from_trim_horizon_one_run_per_record_with_its_checkpoint(tmp_path, monkeypatch, moto):
    stream = moto.stream("all", shards=2)
    sent = [put(moto, stream, {"n": i}, key=f"user-{i}")[0] for i in range(8)]
    assert len({s["ShardId"] for s in sent}) == 2
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "TRIM_HORIZON"}) as app:
        runs = wait_for(lambda: done(app, 8), "a run per record")
    payloads = [json.loads(r["payload"]) for r in runs]
    assert sorted(p["body"]["n"] for p in payloads) == list(range(8))
    assert {(p["shardId"], p["sequenceNumber"]) for p in payloads} == {(s["ShardId"], s["SequenceNumber"]) for s in sent}
    assert all(p["partitionKey"] == f"user-{p['body']['n']}" for p in payloads)
    last = {}
    for s in sent:
        last[s["ShardId"]] = s["SequenceNumber"]
    assert checkpoints(tmp_path / "state.db") == {shard: {"seq": seq} for shard, seq in last.items()}
    assert sorted(r["dedupe_key"] for r in runs) == sorted(f"stream:{s['ShardId']}:{s['SequenceNumber']}" for s in sent)


def test_latest_starts_after_what_the_stream_held_and_at_timestamp_from_that_time(tmp_path, monkeypatch, moto):
    stream = moto.stream("latest")
    put(moto, stream, {"n": "before"})
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "LATEST"}) as app:
        wait_for(lambda: app.records.events("trigger_shard_reading"), "the shard's iterator")
        put(moto, stream, {"n": "after"})
        wait_for(lambda: done(app, 1), "the new record's run")
        assert bodies(app) == [{"n": "after"}]
    stream = moto.stream("ts")
    put(moto, stream, {"n": "old"})
    it = moto.kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000",
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    old = moto.kinesis.get_records(ShardIterator=it)["Records"][0]["ApproximateArrivalTimestamp"]
    since = None
    for _ in range(10_000):  # until a record arrives after the old one's instant (no wall-clock sleep)
        put(moto, stream, {"n": "new"})
        it = moto.kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000",
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        newest = moto.kinesis.get_records(ShardIterator=it)["Records"][-1]["ApproximateArrivalTimestamp"]
        if newest > old:
            since = newest
            break
    assert since is not None
    with serve(tmp_path / "ts", monkeypatch, moto, stream, {"startingPosition": "AT_TIMESTAMP",
                                                            "timestamp": since.isoformat()}) as app:
        wait_for(lambda: done(app, 1), "the later record's run")
        assert bodies(app)[-1] == {"n": "new"} and {"n": "old"} not in bodies(app)


def test_a_restart_continues_from_the_checkpoint_with_no_record_lost_or_run_twice(tmp_path, monkeypatch, moto):
    stream = moto.stream("restart")
    put(moto, stream, *({"n": i} for i in range(3)))
    opts = {"startingPosition": "TRIM_HORIZON"}
    with serve(tmp_path, monkeypatch, moto, stream, opts) as app:
        wait_for(lambda: done(app, 3), "the first three")
    put(moto, stream, *({"n": i} for i in range(3, 5)))
    with serve(tmp_path, monkeypatch, moto, stream, opts) as app:
        wait_for(lambda: done(app, 5), "the next two")
        assert [b["n"] for b in bodies(app)] == [0, 1, 2, 3, 4]


def test_a_shard_started_at_latest_continues_after_a_restart_from_where_it_started_not_a_later_latest(
        tmp_path, monkeypatch, moto):
    stream = moto.stream("latest-restart")
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "LATEST"}) as app:
        wait_for(lambda: app.records.events("trigger_shard_reading"), "the shard read from LATEST")
    put(moto, stream, {"n": "while down"})
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "LATEST"}) as app:
        wait_for(lambda: done(app, 1), "the record sent while it was down")
        assert bodies(app) == [{"n": "while down"}]
        assert [r["msg"] for r in app.records.events("trigger_shard_reading")] == [
            "reading shard shardId-000000000000 from AT_TIMESTAMP"]


def test_after_a_split_the_parent_shard_is_drained_before_its_children_are_read(tmp_path, monkeypatch, moto):
    # moto routes every write after a split to the closed parent (its first shard whose hash range
    # matches), so the children stay empty here; what moto shows is the order of reading.
    stream = moto.stream("split")
    put(moto, stream, *({"n": f"parent-{i}"} for i in range(4)))
    moto.kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000",
                             NewStartingHashKey=str(2 ** 127))
    children = [s["ShardId"] for s in moto.kinesis.list_shards(StreamName=stream)["Shards"] if s.get("ParentShardId")]
    assert len(children) == 2
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "TRIM_HORIZON"}) as app:
        runs = wait_for(lambda: done(app, 4), "the parent's records")
        wait_for(lambda: len(app.records.events("trigger_shard_reading")) == 3, "the children read")
        events = [r["msg"] for r in app.records.records
                  if r.get("event") in ("trigger_shard_reading", "trigger_shard_drained")]
    assert [json.loads(r["payload"])["body"]["n"] for r in runs] == [f"parent-{i}" for i in range(4)]
    assert events[:2] == ["reading shard shardId-000000000000 from TRIM_HORIZON",
                          "shard shardId-000000000000 drained"]  # the parent to its end, first
    assert sorted(events[2:]) == sorted(f"reading shard {c} from TRIM_HORIZON" for c in children)
    assert checkpoints(tmp_path / "state.db")["shardId-000000000000"] == {"seq": runs[-1] and json.loads(
        runs[-1]["payload"])["sequenceNumber"], "done": True}


def test_batch_size_groups_records_of_a_shard_into_one_run(tmp_path, monkeypatch, moto):
    stream = moto.stream("batch")
    put(moto, stream, *({"n": i} for i in range(5)))
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "TRIM_HORIZON", "batchSize": 2}) as app:
        wait_for(lambda: sum(len(b) for b in bodies(app)) == 5 and done(app, 3), "every record in a run")
        assert [[x["n"] for x in b] for b in bodies(app)] == [[0, 1], [2, 3], [4]]


def test_a_record_that_is_not_json_or_too_big_is_rejected_checkpointed_past_and_reading_goes_on(tmp_path, monkeypatch, moto):
    stream = moto.stream("bad")
    put(moto, stream, b"\xff\xfe not text", {"n": 1}, b"{nope", {"pad": "x" * 500}, {"n": 2})
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "TRIM_HORIZON",
                                                     "maxMessageBytes": 200}) as app:
        wait_for(lambda: done(app, 2), "the good records")
        wait_for(lambda: len(app.records.events("trigger_message_rejected")) == 3, "three rejections")
        rejected = [r["msg"] for r in app.records.events("trigger_message_rejected")]
        assert bodies(app) == [{"n": 1}, {"n": 2}]
    assert "the data is not UTF-8 text" in rejected[0] and "not JSON" in rejected[1]
    assert "more than maxMessageBytes (200)" in rejected[2]


@contextlib.contextmanager
def state_locked(path):
    """Another process's write lock on the state DB: commits fail (busy) until it is released."""
    db = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def test_a_failed_commit_stops_nothing_the_records_are_read_again_from_the_checkpoint_and_run_once(
        tmp_path, monkeypatch, moto):
    from engine.store import Store

    monkeypatch.setattr(Store, "BUSY_TIMEOUT", 0.2)
    stream = moto.stream("fail")
    with serve(tmp_path, monkeypatch, moto, stream, {"startingPosition": "LATEST"}) as app:
        wait_for(lambda: app.records.events("trigger_shard_reading"), "the shard read")
        with state_locked(tmp_path / "state.db"):
            put(moto, stream, {"n": 1}, {"n": 2})
            wait_for(lambda: app.records.events("trigger_accept_failed"), "a commit refused")
        put(moto, stream, {"n": 3})
        wait_for(lambda: len(app.runs("clicks")) >= 3, "every record run")
        assert not app.records.events("trigger_error")
        assert sorted(b["n"] for b in bodies(app)) == [1, 2, 3]  # LATEST did not skip the refused ones
