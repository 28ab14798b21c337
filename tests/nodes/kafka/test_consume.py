"""The kafka.Consume trigger inside the listener (its real ASGI app in this process), consuming
from librdkafka's mock cluster: one run per message or per batch, what the flow sees, offsets
committed after the runs, the dead-letter topic, and pause/resume under back pressure."""
from __future__ import annotations

import base64
import json
import threading

import pytest
import yaml

from tests.listener.inprocess import serving, wait_for
from tests.support.recorder import Recorder

FLOW = """\
name: {name}
triggers:
  orders:
    type: kafka.Consume
    connection: kafka
{trigger}
actions:
  note:
    type: Compose
    inputs:
      body: "{{{{ triggerBody() }}}}"
      key: "{{{{ triggerOutputs().key }}}}"
      headers: "{{{{ triggerOutputs().headers }}}}"
      where: "{{{{ triggerOutputs().topic }}}}/{{{{ triggerOutputs().partition }}}}/{{{{ triggerOutputs().offset }}}}"
      timestamp: "{{{{ triggerOutputs().timestamp }}}}"
outputs:
  note: {{value: "{{{{ outputs('note') }}}}"}}
"""


def flows(tmp_path, cluster, name: str, trigger: dict, flow: str = FLOW) -> dict:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    (folder / "connections.yaml").write_text(yaml.safe_dump({"connections": {"kafka": cluster.connection()}}))
    text = yaml.safe_dump(trigger, default_flow_style=False)
    (folder / f"{name}.yaml").write_text(flow.format(name=name, trigger="".join(f"    {line}\n" for line in
                                                                               text.splitlines())))
    return folder


def outputs(app, name: str) -> list[dict]:
    return [json.loads(r["outputs"])["note"] for r in app.runs(name) if r["outputs"]]


def done(app, name: str, n: int) -> bool:
    runs = app.runs(name)
    return len(runs) >= n and all(r["status"] == "Succeeded" for r in runs)


def test_each_message_is_one_run_that_sees_its_key_headers_timestamp_and_offset(tmp_path, monkeypatch,
                                                                              kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("orders"), 2)
    group = f"g-{topic}"
    kafka_cluster.produce(topic, [json.dumps({"id": i}).encode() for i in range(6)], key=b"cust-1",
                          headers=[("trace", b"abc"), ("bin", b"\xff\x00")])
    folder = flows(tmp_path, kafka_cluster, "orders", {"topics": [topic], "groupId": group})
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: done(app, "orders", 6), "six runs")
        wait_for(lambda: sum(o for o in kafka_cluster.committed(group, topic, 2).values() if o > 0) == 6,
                 "the offsets committed")
        notes = outputs(app, "orders")
        keys = [r["dedupe_key"] for r in app.runs("orders")]
    assert sorted(n["body"]["id"] for n in notes) == list(range(6))
    assert {n["key"] for n in notes} == {"cust-1"}
    assert notes[0]["headers"] == {"trace": "abc", "bin": base64.b64encode(b"\xff\x00").decode()}
    assert all(isinstance(n["timestamp"], int) and n["timestamp"] > 1_600_000_000_000 for n in notes)
    partitions = {n["where"].split("/")[1] for n in notes}
    assert len(partitions) == 1  # one key: one partition
    [p] = partitions
    assert sorted(n["where"] for n in notes) == [f"{topic}/{p}/{i}" for i in range(6)]
    assert sorted(keys) == sorted(f"orders:{n['where']}" for n in notes)


def test_a_pattern_subscription_reads_every_matching_topic_and_runs_a_batch_per_partition(tmp_path, monkeypatch,
                                                                                       kafka_cluster):
    prefix = kafka_cluster.topic("pat")
    a, b = kafka_cluster.create_topic(f"{prefix}-a", 1), kafka_cluster.create_topic(f"{prefix}-b", 1)
    kafka_cluster.create_topic(f"{prefix}x-c", 1)
    kafka_cluster.produce(a, [json.dumps(i).encode() for i in range(5)])
    kafka_cluster.produce(b, [json.dumps(i).encode() for i in range(5, 8)])
    kafka_cluster.produce(f"{prefix}x-c", [b"9"])  # does not match the pattern
    group = f"g-{prefix}"
    batch_flow = FLOW.split("actions:")[0] + BATCH_ACTIONS
    folder = flows(tmp_path, kafka_cluster, "pat", {"topics": [f"^{prefix}-.*"], "groupId": group,
                                                      "batchSize": 100}, flow=batch_flow)
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: sum(len(n["body"]) for n in outputs(app, "pat")) >= 8, "every message of both topics")
        notes = outputs(app, "pat")
    assert sorted(v for n in notes for v in n["body"]) == list(range(8))
    assert {n["where"] for n in notes} <= {f"{a}/0", f"{b}/0"}
    assert all(n["offsets"] == list(range(n["offsets"][0], n["offsets"][0] + len(n["body"]))) for n in notes)


BATCH_ACTIONS = """\
actions:
  note:
    type: Compose
    inputs:
      body: "{{{{ triggerBody() }}}}"
      where: "{{{{ triggerOutputs().topic }}}}/{{{{ triggerOutputs().partition }}}}"
      offsets: "{{{{ triggerOutputs().messages | map(attribute='offset') | list }}}}"
outputs:
  note: {{value: "{{{{ outputs('note') }}}}"}}
"""


BAD = [b"not json {", b'{"id": "seven"}', b'{"id": ' + b"1" * 3000 + b"}", b"[" * 5000]


def test_a_message_that_cannot_be_decoded_or_fails_the_schema_goes_to_the_dead_letter_topic_and_the_rest_run(
        tmp_path, monkeypatch, kafka_cluster):
    topic, dlq = kafka_cluster.create_topic(kafka_cluster.topic("dl"), 1), kafka_cluster.topic("dlq")
    values = [b'{"id": 1}', *BAD, b'{"id": 2}', b"\xff\xfe", b'{"id": 3}']
    kafka_cluster.produce(topic, values, key=b"k", headers=[("origin", b"shop")])
    folder = flows(tmp_path, kafka_cluster, "dl", {
        "topics": [topic], "groupId": f"g-{topic}", "deadLetterTopic": dlq, "maxBytes": 2000,
        "schema": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}})
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: done(app, "dl", 3), "the three good messages")
        dead = kafka_cluster.read(dlq, 5)
        wait_for(lambda: kafka_cluster.committed(f"g-{topic}", topic, 1)[0] == len(values), "every offset committed")
        metrics = app.client.get("/metrics").text
    assert sorted(n["body"]["id"] for n in outputs(app, "dl")) == [1, 2, 3]
    by_offset = {int(dict(m.headers())["flowrun.offset"]): m for m in dead}
    assert sorted(by_offset) == [1, 2, 3, 4, 6]
    codes = {o: dict(m.headers())["flowrun.error"].decode() for o, m in by_offset.items()}
    assert codes == {1: "Undecodable", 2: "SchemaMismatch", 3: "TooLarge", 4: "TooLarge", 6: "Undecodable"}
    first = by_offset[2]
    assert first.value() == b'{"id": "seven"}' and first.key() == b"k"
    headers = dict(first.headers())
    assert headers["origin"] == b"shop" and headers["flowrun.topic"] == topic.encode()
    assert b"/id: 'seven' is not of type 'integer'" in headers["flowrun.error.message"]
    assert 'flowrun_trigger_events_total{flow="dl",outcome="dead_lettered",trigger="orders"} 5.0' in metrics


def test_without_a_dead_letter_topic_a_bad_message_is_logged_and_skipped(tmp_path, monkeypatch, kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("skip"), 1)
    kafka_cluster.produce(topic, [b"{", b'{"id": 1}'])
    folder = flows(tmp_path, kafka_cluster, "skip", {"topics": [topic], "groupId": f"g-{topic}"})
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: done(app, "skip", 1), "the good message")
        wait_for(lambda: app.records.events("kafka_invalid"), "the bad one logged")
    [bad] = app.records.events("kafka_invalid")
    assert bad["reason"] == "Undecodable" and f"{topic}/0/0" in bad["msg"]


SLOW = """\
name: slow
triggers:
  orders:
    type: kafka.Consume
    connection: kafka
    topics: [{topic}]
    groupId: g-{topic}
actions:
  call:
    type: Http
    inputs: {{method: POST, uri: "{url}/work", body: "{{{{ triggerBody() }}}}"}}
"""


def test_partitions_pause_while_runs_in_flight_are_at_the_limit_and_resume_below_it(tmp_path, monkeypatch,
                                                                                     kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("slow"), 2)
    release = threading.Event()
    with Recorder() as api:
        api.route("POST", "/work", handler=lambda req: (release.wait(30), (200, {}, b"{}"))[1])
        kafka_cluster.produce(topic, [json.dumps(i).encode() for i in range(12)])
        folder = flows(tmp_path, kafka_cluster, "slow", {"topics": [topic], "groupId": "x"})
        (folder / "slow.yaml").write_text(SLOW.format(topic=topic, url=api.url))
        with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch, max_in_flight=3) as app:
            wait_for(lambda: app.records.events("kafka_paused"), "the partitions paused")
            wait_for(lambda: len(api.requests) >= 3, "three runs calling")
            held = len(app.runs("slow"))
            assert len(api.requests) == 3  # the limit holds while they wait
            release.set()
            wait_for(lambda: len(app.runs("slow")) == 12 and all(r["status"] == "Succeeded"
                                                                 for r in app.runs("slow")), "every message")
            assert app.records.events("kafka_resumed")
    assert held == 3  # consumption stopped while paused: not one message past the limit
    assert sorted(json.loads(r.body) for r in api.requests) == list(range(12))


@pytest.mark.parametrize("trigger, problem", [
    ({"topics": ["^(unclosed"], "groupId": "g"}, "topics.0: not a regular expression"),
    ({"topics": ["t"], "groupId": "g", "schema": {"type": "nope"}}, "schema: not a valid JSON Schema"),
    ({"topics": ["t"], "groupId": "g", "properties": {"enable.auto.commit": True}},
     "properties.enable.auto.commit: is set by the trigger"),
    ({"topics": [], "groupId": "g"}, "topics"),
    ({"topics": ["t"]}, "'groupId' is required"),
])
def test_a_bad_trigger_definition_is_a_problem_at_its_line_and_the_flow_is_not_served(tmp_path, kafka_cluster,
                                                                                    trigger, problem):
    from engine.api import Engine
    from engine.errors import FlowError
    from engine.listener.triggers import load_flow

    folder = flows(tmp_path, kafka_cluster, "v", trigger)
    engine = Engine(tmp_path / "state.db", connections=folder / "connections.yaml")
    try:
        with pytest.raises(FlowError) as info:
            load_flow(engine, folder / "v.yaml")
    finally:
        engine.close()
    assert problem in str(info.value) and "v.yaml:" in str(info.value)
