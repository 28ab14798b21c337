"""aws.sqs.Queue inside `flowrun serve` (the ASGI app in process) against moto: one run per
message or per batch, delete after commit or after success, redrive to the DLQ, bad messages,
back pressure with the visibility timeout extended."""
from __future__ import annotations

import json
import re

from tests.listener.inprocess import serving, wait_for
from tests.support.moto import KEY_ID, connections_yaml

from .conftest import SECRET

FLOW = """\
name: orders
triggers:
  queue:
    type: aws.sqs.Queue
    connection: aws
    queue: {queue}
    waitTimeSeconds: 1
{options}
actions:
  check:
    type: Compose
    inputs: "{{{{ triggerBody() }}}}"
  verdict:
    type: Terminate
    runAfter: {{check: [Succeeded]}}
    inputs: {{runStatus: "{{{{ 'Failed' if triggerBody() is mapping and triggerBody().get('fail') else 'Succeeded' }}}}"}}
"""


def serve(tmp_path, monkeypatch, moto, queue: str, options: dict | None = None, flow: str = FLOW, **kw):
    monkeypatch.setenv("TEST_AWS_KEY_ID", KEY_ID)
    monkeypatch.setenv("TEST_AWS_SECRET", SECRET)
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    (folder / "connections.yaml").write_text(connections_yaml(moto.url))
    opts = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in (options or {}).items())
    (folder / "orders.yaml").write_text(flow.format(queue=queue, options=opts.rstrip("\n")))
    return serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch, **kw)


def finished(app, n: int) -> list[dict]:
    runs = app.runs("orders")
    return runs if len(runs) >= n and all(r["status"] not in ("Queued", "Running") for r in runs) else []


def send(moto, url: str, *bodies, **kw) -> list[str]:
    return [moto.sqs.send_message(QueueUrl=url, MessageBody=b if isinstance(b, str) else json.dumps(b),
                                  **kw)["MessageId"] for b in bodies]


def metric(app, outcome: str) -> float:
    text = app.client.get("/metrics").text
    m = re.search(r'flowrun_trigger_events_total\{flow="orders",outcome="%s",trigger="queue"\} ([0-9.]+)' % outcome,
                  text) or re.search(r'flowrun_trigger_events_total\{[^}]*outcome="%s"[^}]*\} ([0-9.]+)' % outcome, text)
    return float(m.group(1)) if m else 0.0


def test_each_message_is_one_run_with_its_id_and_attributes_and_is_deleted_once_committed(tmp_path, monkeypatch, moto):
    url, _ = moto.queue("orders")
    ids = send(moto, url, {"n": 1}, {"n": 2}, MessageAttributes={"kind": {"DataType": "String", "StringValue": "o"}})
    with serve(tmp_path, monkeypatch, moto, url) as app:
        runs = wait_for(lambda: finished(app, 2), "two runs")
        wait_for(lambda: moto.count(url) == 0, "the messages deleted")
    assert [r["dedupe_key"] for r in runs] == [f"queue:{i}" for i in ids]
    payloads = [json.loads(r["payload"]) for r in runs]
    assert [p["body"] for p in payloads] == [{"n": 1}, {"n": 2}]
    assert payloads[0]["messageId"] == ids[0] and payloads[0]["messageAttributes"] == {"kind": "o"}
    assert payloads[0]["attributes"]["ApproximateReceiveCount"] == "1" and payloads[0]["sentTime"]
    assert all(r["status"] == "Succeeded" for r in runs)


def test_batch_size_groups_the_messages_of_a_receive_into_one_run(tmp_path, monkeypatch, moto):
    url, _ = moto.queue("batch")
    send(moto, url, *({"n": i} for i in range(6)))
    with serve(tmp_path, monkeypatch, moto, url, {"batchSize": 3}) as app:
        wait_for(lambda: moto.count(url) == 0, "every message deleted")
        runs = wait_for(lambda: finished(app, 1), "the runs")
        bodies = [json.loads(r["payload"])["body"] for r in app.runs("orders")]
    assert sorted(b["n"] for body in bodies for b in body) == list(range(6))
    assert all(1 <= len(body) <= 3 for body in bodies) and len(bodies) >= 2
    assert all(r["dedupe_key"].startswith("queue:batch:") for r in runs)


def test_delete_after_succeeded_leaves_a_failed_runs_message_to_reach_the_dead_letter_queue(tmp_path, monkeypatch, moto):
    url, dlq = moto.queue("redrive", dlq_after=2)
    ok, bad = send(moto, url, {"n": 1}, {"n": 2, "fail": True})
    with serve(tmp_path, monkeypatch, moto, url, {"deleteAfter": "succeeded", "retryDelay": 0}) as app:
        wait_for(lambda: moto.count(dlq) == 1, "the failed run's message in the DLQ")
        wait_for(lambda: moto.count(url) == 0, "the queue empty")
        runs = app.runs("orders")
        kept = metric(app, "kept")
    assert sorted((json.loads(r["payload"])["messageId"], r["status"]) for r in runs) == sorted(
        [(ok, "Succeeded"), (bad, "Failed")])  # received again, but run once: deduplicated by MessageId
    assert kept >= 2  # left to SQS after each receive, until the redrive policy moved it
    [dead] = moto.drain(dlq)
    assert dead["MessageId"] == bad


def test_a_message_that_is_not_json_or_too_big_is_rejected_reaches_the_dlq_and_the_loop_goes_on(tmp_path, monkeypatch, moto):
    url, dlq = moto.queue("bad", dlq_after=1)
    not_json, = send(moto, url, "{not json")
    too_big, = send(moto, url, {"pad": "x" * 2000})
    good, = send(moto, url, {"n": 1})
    with serve(tmp_path, monkeypatch, moto, url, {"retryDelay": 0, "maxMessageBytes": 1000}) as app:
        wait_for(lambda: moto.count(dlq) == 2, "both bad messages in the DLQ")
        runs = wait_for(lambda: finished(app, 1), "the good message's run")
        late, = send(moto, url, {"n": 2})  # the loop is still alive
        runs = wait_for(lambda: finished(app, 2), "a later message's run")
        rejected = [r["msg"] for r in app.records.records if "rejected" in r["msg"]]
    assert [json.loads(r["payload"])["messageId"] for r in runs] == [good, late]
    assert sorted(m["MessageId"] for m in moto.drain(dlq)) == sorted([not_json, too_big])
    assert any(f"message {not_json} rejected: the data is not JSON" in m for m in rejected)
    assert any(f"message {too_big} rejected: {len(json.dumps({'pad': 'x' * 2000}))} bytes is more than maxMessageBytes (1000)" in m for m in rejected)


WAIT_FLOW = FLOW.replace("""  check:
    type: Compose""", """  check:
    type: Wait
    inputs: {{interval: {{count: 1.5, unit: Second}}}}
  noop:
    type: Compose""")


def test_back_pressure_holds_messages_and_extends_their_visibility_so_none_is_received_twice(tmp_path, monkeypatch, moto):
    url, _ = moto.queue("slow")
    ids = send(moto, url, *({"n": i} for i in range(3)))
    with serve(tmp_path, monkeypatch, moto, url, {"visibilityTimeout": 1, "maxInFlight": 2,
                                                  "deleteAfter": "succeeded"},
               flow=WAIT_FLOW, max_in_flight=1) as app:
        runs = wait_for(lambda: finished(app, 3), "three runs, one at a time", timeout=30)
        wait_for(lambda: moto.count(url) == 0, "the messages deleted")
        extended = metric(app, "extended")
        duplicates = app.client.get("/metrics").text.count("flowrun_triggers_duplicate_total{")
    assert sorted(json.loads(r["payload"])["messageId"] for r in runs) == sorted(ids)
    assert all(json.loads(r["payload"])["attributes"]["ApproximateReceiveCount"] == "1" for r in runs)
    assert extended >= 2 and duplicates == 0
