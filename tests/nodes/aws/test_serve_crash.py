"""kill -9 of a real `flowrun serve` while it consumes from SQS and from Kinesis (moto), then a
restart: every message has exactly one run, none lost, none doubled."""
from __future__ import annotations

import contextlib
import json
import sqlite3

from tests.listener.conftest import Server
from tests.support.moto import KEY_ID, connections_yaml
from tests.support.waiting import wait_until

from .conftest import SECRET

SQS_FLOW = """\
name: orders
triggers:
  queue: {{type: aws.sqs.Queue, connection: aws, queue: "{queue}", waitTimeSeconds: 1, visibilityTimeout: 2,
           maxInFlight: 5}}
actions:
  note: {{type: Compose, inputs: "order {{{{ triggerBody().n }}}}"}}
"""

KINESIS_FLOW = """\
name: clicks
triggers:
  stream: {{type: aws.kinesis.Stream, connection: aws, stream: "{stream}", startingPosition: TRIM_HORIZON,
            limit: 7, pollInterval: 0.05}}
actions:
  note: {{type: Compose, inputs: "click {{{{ triggerBody().n }}}}"}}
"""

ENV = {"TEST_AWS_KEY_ID": KEY_ID, "TEST_AWS_SECRET": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}


def runs(state, flow: str) -> list[dict]:
    with contextlib.closing(sqlite3.connect(str(state), timeout=10)) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM runs WHERE flow = ?", (flow,))]


def serve(folder, state) -> Server:
    return Server(folder, state, "--max-in-flight", "8", env=ENV).start()


def crash_and_restart(tmp_path, flow: str, text: str, started_enough, all_done) -> list[dict]:
    folder, state = tmp_path / "flows", tmp_path / "state.db"
    folder.mkdir()
    (folder / "connections.yaml").write_text(connections_yaml("http://127.0.0.1:" + text[0]))
    (folder / f"{flow}.yaml").write_text(text[1])
    server = serve(folder, state)
    try:
        wait_until(lambda: started_enough(runs(state, flow)), "consumption to be under way")
        server.kill9()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert not all_done(runs(state, flow))  # killed mid-consumption
    assert SECRET not in "\n".join(server.lines)
    again = serve(folder, state)
    try:
        wait_until(lambda: all_done(runs(state, flow)), "every message to have its run", timeout=90)
        again.stop()
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
    return runs(state, flow)


def test_kill_9_while_consuming_sqs_then_a_restart_gives_each_message_exactly_one_run(tmp_path, moto):
    n = 120
    url, _ = moto.queue("crash")
    ids = []
    for start in range(0, n, 10):
        got = moto.sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"n": i})} for i in range(start, start + 10)])
        ids += [m["MessageId"] for m in got["Successful"]]
    port = moto.url.rsplit(":", 1)[1]
    got = crash_and_restart(tmp_path, "orders", (port, SQS_FLOW.format(queue=url)),
                            lambda rs: len(rs) >= 15,
                            lambda rs: len(rs) >= n and moto.count(url) == 0
                            and all(r["status"] == "Succeeded" for r in rs))
    assert len(got) == n
    assert sorted(r["dedupe_key"] for r in got) == sorted(f"queue:{i}" for i in ids)
    assert sorted(json.loads(r["payload"])["body"]["n"] for r in got) == list(range(n))


def test_kill_9_while_consuming_kinesis_then_a_restart_continues_from_the_checkpoint(tmp_path, moto):
    n = 150
    stream = moto.stream("crash", shards=2)
    for start in range(0, n, 50):
        moto.kinesis.put_records(StreamName=stream, Records=[
            {"Data": json.dumps({"n": i}).encode(), "PartitionKey": f"p{i}"} for i in range(start, start + 50)])
    port = moto.url.rsplit(":", 1)[1]
    got = crash_and_restart(tmp_path, "clicks", (port, KINESIS_FLOW.format(stream=stream)),
                            lambda rs: len(rs) >= 20,
                            lambda rs: len(rs) >= n and all(r["status"] == "Succeeded" for r in rs))
    assert len(got) == n
    assert sorted(json.loads(r["payload"])["body"]["n"] for r in got) == list(range(n))
    assert len({r["dedupe_key"] for r in got}) == n
