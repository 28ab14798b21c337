"""kafka.Produce against librdkafka's mock cluster, read back by a real consumer."""
from __future__ import annotations

import base64
import json

import pytest
import yaml

import engine

SECRET = 'p"a\\ss/w+o%rd-é'


def run(tmp_path, cluster, inputs: dict, *, settings: dict | None = None, secrets: dict | None = None, input=None,
        **action):
    conn = cluster.connection(**(settings or {}))
    if secrets:
        conn["secrets"] = secrets
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"kafka": conn}}))
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": {
        "send": {"type": "kafka.Produce", "connection": "kafka", "inputs": inputs, **action}}}, sort_keys=False))
    return engine.run_file(flow, input=input, state=tmp_path / "state.db", connections=tmp_path / "connections.yaml")


def test_one_json_message_is_delivered_with_its_key_headers_and_partition_and_the_report_says_where(tmp_path,
                                                                                                     kafka_cluster):
    topic = kafka_cluster.topic("orders")
    result = run(tmp_path, kafka_cluster, {"topic": topic, "key": "order-7", "value": {"id": 7, "total": 12.5},
                                           "headers": {"source": "flowrun", "trace": "é"}, "partition": 2})
    assert result.status == "Succeeded", result.error
    out = result.steps["send"].outputs
    assert out["count"] == 1 and out["partition"] == 2 and out["offset"] == 0
    assert out["messages"] == [{"partition": 2, "offset": 0}]  # the topic is the action's
    [msg] = kafka_cluster.read(topic, 1)
    assert (msg.partition(), msg.offset(), msg.key()) == (2, 0, b"order-7")
    assert json.loads(msg.value()) == {"id": 7, "total": 12.5}
    assert dict(msg.headers()) == {"source": b"flowrun", "trace": "é".encode()}


def test_a_list_of_messages_is_one_batch_with_a_report_for_each_in_order(tmp_path, kafka_cluster):
    topic, other = kafka_cluster.topic("batch"), kafka_cluster.topic("other")
    messages = [{"key": f"k{i}", "value": {"n": i}} for i in range(50)] + [{"topic": other, "value": {"n": 50}}]
    result = run(tmp_path, kafka_cluster, {"topic": topic, "messages": messages})
    assert result.status == "Succeeded", result.error
    out = result.steps["send"].outputs
    assert out["count"] == 51 and "partition" not in out
    reports = out["messages"]
    assert [r.get("topic", topic) for r in reports] == [topic] * 50 + [other]
    got = {(m.partition(), m.offset()): json.loads(m.value())["n"] for m in kafka_cluster.read(topic, 50)}
    assert {(r["partition"], r["offset"]): i for i, r in enumerate(reports[:50])} == got
    for key in range(0, 50, 10):  # the same key always lands on the same partition
        assert reports[key]["partition"] == next(r["partition"] for i, r in enumerate(reports) if i == key)


@pytest.mark.parametrize("fmt, value, sent", [
    ("string", "plain text ü", "plain text ü".encode()),
    ("base64", base64.b64encode(b"\x00\xff\x10raw").decode(), b"\x00\xff\x10raw"),
    ("json", [1, "two", None], b'[1,"two",null]'),
])
def test_values_are_json_text_or_bytes_from_base64(tmp_path, kafka_cluster, fmt, value, sent):
    topic = kafka_cluster.topic("fmt")
    result = run(tmp_path, kafka_cluster, {"topic": topic, "value": value, "valueFormat": fmt})
    assert result.status == "Succeeded", result.error
    assert kafka_cluster.read(topic, 1)[0].value() == sent


def test_a_null_value_is_a_tombstone(tmp_path, kafka_cluster):
    topic = kafka_cluster.topic("compacted")
    assert run(tmp_path, kafka_cluster, {"topic": topic, "key": "gone", "value": None}).status == "Succeeded"
    msg = kafka_cluster.read(topic, 1)[0]
    assert msg.value() is None and msg.key() == b"gone"


@pytest.mark.parametrize("inputs, message", [
    ({"value": "%%%", "valueFormat": "base64"}, "value is not valid base64"),
    ({"value": {"a": 1}, "valueFormat": "string"}, "value: string format needs text, got dict"),
    ({"messages": [{"value": "ok"}, {"value": 5}], "valueFormat": "string"},
     "messages[1].value: string format needs text, got int"),
    ({"messages": [{"value": 1, "key": "!!"}], "keyFormat": "base64"}, "messages[0].key is not valid base64"),
    ({"messages": [{"value": 1}, {"valu": 2}]}, "messages[1]: unknown field 'valu'"),
    ({"messages": [{"key": "k"}]}, "messages[0]: 'value' is required (null for a tombstone)"),
    ({"messages": [{"value": 1, "partition": -1}]}, "messages[0].partition must be an integer >= 0"),
    ({"messages": [{"value": 1, "partition": True}]}, "messages[0].partition must be an integer >= 0"),
    ({"messages": [{"value": 1, "headers": {"a": 1}}]}, "messages[0].headers must map names to text"),
])
def test_bad_values_fail_clearly_before_anything_is_sent(tmp_path, kafka_cluster, inputs, message):
    topic = kafka_cluster.topic("bad")
    # given through the trigger, so the check happens at run time (a literal list is checked by validate)
    result = run(tmp_path, kafka_cluster, {"topic": topic, **inputs,
                                           **({"messages": "{{ triggerBody() }}"} if "messages" in inputs else {})},
                 input=inputs.get("messages"))
    assert result.status == "Failed"
    assert result.steps["send"].error["code"] == "InvalidInput"
    assert message in result.steps["send"].error["message"]


def test_the_producer_is_idempotent_with_acks_all_and_compression_by_default(tmp_path, kafka_cluster):
    from nodes.kafka.client import PRODUCER_DEFAULTS

    assert PRODUCER_DEFAULTS == {"enable.idempotence": True, "acks": "all", "compression.type": "lz4",
                                 "linger.ms": 5}
    topic = kafka_cluster.topic("idem")
    # a property the connection passes through reaches librdkafka (an unknown one is refused by it)
    bad = run(tmp_path, kafka_cluster, {"topic": topic, "value": 1},
              settings={"properties": {"compression.type": "no-such-codec"}})
    assert bad.status == "Failed"
    assert "no-such-codec" in bad.steps["send"].error["message"]


def test_a_failed_delivery_is_reported_per_message_and_is_retryable_when_the_broker_error_is(tmp_path,
                                                                                            kafka_cluster):
    topic = kafka_cluster.topic("small")
    # the topic does not take messages this big: librdkafka refuses them locally (MSG_SIZE_TOO_LARGE)
    result = run(tmp_path, kafka_cluster, {"topic": topic, "messages": [{"value": "x" * 2000}, {"value": 1}]},
                 settings={"properties": {"message.max.bytes": 1000}})
    assert result.status == "Failed"
    err = result.steps["send"].error
    assert err["code"] == "MSG_SIZE_TOO_LARGE"


def test_a_secret_in_properties_is_refused_and_secrets_never_reach_errors(tmp_path, kafka_cluster, monkeypatch):
    topic = kafka_cluster.topic("sec")
    result = run(tmp_path, kafka_cluster, {"topic": topic, "value": 1},
                 settings={"properties": {"sasl.password": "inline"}})
    assert result.status == "Failed" and "sasl.password holds a secret" in result.steps["send"].error["message"]
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", SECRET)
    # SASL against a broker that speaks PLAINTEXT: the client fails; the password shows nowhere
    result = run(tmp_path, kafka_cluster, {"topic": topic, "value": 1, "timeout": 3},
                 settings={"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                           "sasl_username": "u", "properties": {"message.timeout.ms": 1500}},
                 secrets={"sasl_password": "TEST_KAFKA_PASSWORD"}, retryPolicy={"type": "none"})
    assert result.status == "Failed"
    dump = json.dumps(result.steps["send"].error, ensure_ascii=False) + repr(result.steps["send"].error)
    assert SECRET not in dump and json.dumps(SECRET)[1:-1] not in dump
    import sqlite3

    raw = (tmp_path / "state.db").read_bytes()
    assert SECRET.encode() not in raw and json.dumps(SECRET).encode()[1:-1] not in raw
    sqlite3.connect(tmp_path / "state.db").close()
