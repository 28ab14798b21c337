"""Avro and JSON Schema values through confluent-kafka's own serializers and SchemaRegistryClient,
against a loopback Schema Registry (tests/support/schema_registry.py): kafka.Produce registers
and serialises, the kafka.Consume trigger reads the writer's schema by id and decodes."""
from __future__ import annotations

import base64
import io
import json
import struct

import pytest
import yaml

import engine
from tests.listener.inprocess import serving, wait_for
from tests.support.schema_registry import SchemaRegistry

USER, SECRET = "sr-key", 'sr"se\\cret/+%é'
ORDER = {"type": "record", "name": "Order", "namespace": "shop",
         "fields": [{"name": "id", "type": "long"}, {"name": "total", "type": "double"},
                    {"name": "note", "type": ["null", "string"], "default": None}]}
ORDER_JSON = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Order", "type": "object",
              "required": ["id"], "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}}


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setenv("TEST_SR_SECRET", SECRET)
    with SchemaRegistry(USER, SECRET) as r:
        yield r


def connections(tmp_path, cluster, registry) -> None:
    conn = cluster.connection(schema_registry_url=registry.url, schema_registry_username=USER)
    conn["secrets"] = {"schema_registry_password": "TEST_SR_SECRET"}
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"kafka": conn}}))


def produce(tmp_path, cluster, registry, inputs: dict):
    connections(tmp_path, cluster, registry)
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": {
        "send": {"type": "kafka.Produce", "connection": "kafka", "inputs": inputs,
                 "retryPolicy": {"type": "none"}}}}, sort_keys=False))
    return engine.run_file(flow, state=tmp_path / "state.db", connections=tmp_path / "connections.yaml")


def framed(raw: bytes) -> tuple[int, bytes]:
    """Confluent's wire format: magic byte 0, a 4-byte big-endian schema id, the payload."""
    assert raw[0] == 0
    return struct.unpack(">I", raw[1:5])[0], raw[5:]


def test_avro_values_are_registered_under_topic_value_and_serialised_with_the_schema_id(tmp_path, kafka_cluster,
                                                                                        registry):
    import fastavro

    topic = kafka_cluster.topic("avro")
    result = produce(tmp_path, kafka_cluster, registry, {
        "topic": topic, "valueSchema": {"type": "avro", "schema": ORDER},
        "messages": [{"key": "a", "value": {"id": 1, "total": 9.5, "note": "gift"}},
                     {"key": "b", "value": {"id": 2, "total": 3.0, "note": None}}]})
    assert result.status == "Succeeded", result.steps["send"].error
    [register] = [r for r in registry.api.requests if r.method == "POST"]
    assert register.path == f"/subjects/{topic}-value/versions"
    assert json.loads(register.json()["schema"]) == ORDER
    assert register.header("authorization") == "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    records = []
    for msg in kafka_cluster.read(topic, 2):
        sid, payload = framed(msg.value())
        assert sid == registry.subjects[f"{topic}-value"][0]
        records.append(fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(ORDER)))
    assert sorted(records, key=lambda r: r["id"]) == [{"id": 1, "total": 9.5, "note": "gift"},
                                                      {"id": 2, "total": 3.0, "note": None}]


def test_json_schema_values_are_registered_as_json_and_validated_before_sending(tmp_path, kafka_cluster, registry):
    topic = kafka_cluster.topic("js")
    ok = produce(tmp_path, kafka_cluster, registry, {
        "topic": topic, "value": {"id": 7, "note": "x"},
        "valueSchema": {"type": "jsonschema", "schema": json.dumps(ORDER_JSON)}})
    assert ok.status == "Succeeded", ok.steps["send"].error
    sid, payload = framed(kafka_cluster.read(topic, 1)[0].value())
    assert registry.schemas[sid]["schemaType"] == "JSON" and json.loads(payload) == {"id": 7, "note": "x"}
    bad = produce(tmp_path, kafka_cluster, registry, {
        "topic": topic, "value": {"id": "seven"}, "valueSchema": {"type": "jsonschema", "schema": ORDER_JSON}})
    assert bad.status == "Failed" and bad.steps["send"].error["code"] == "SerializationError"


def test_a_value_that_does_not_fit_the_avro_schema_fails_clearly_and_nothing_is_sent(tmp_path, kafka_cluster,
                                                                                    registry):
    topic = kafka_cluster.topic("avro-bad")
    result = produce(tmp_path, kafka_cluster, registry, {
        "topic": topic, "messages": [{"value": {"id": 1, "total": 1.0}}, {"value": {"id": "x", "total": 1.0}}],
        "valueSchema": {"type": "avro", "schema": ORDER}})
    assert result.status == "Failed"
    err = result.steps["send"].error
    assert err["code"] == "SerializationError" and "id" in err["message"]
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": kafka_cluster.bootstrap, "group.id": "x", "log_level": 0})
    assert topic not in c.list_topics(timeout=5).topics  # the first message was not sent either
    c.close()


def test_wrong_registry_credentials_fail_without_showing_the_secret(tmp_path, kafka_cluster, monkeypatch):
    with SchemaRegistry(USER, "another") as registry:
        monkeypatch.setenv("TEST_SR_SECRET", SECRET)
        result = produce(tmp_path, kafka_cluster, registry, {
            "topic": kafka_cluster.topic("auth"), "value": {"id": 1, "total": 1.0},
            "valueSchema": {"type": "avro", "schema": ORDER}})
    assert result.status == "Failed"
    err = json.dumps(result.steps["send"].error)
    assert "SchemaRegistry401" in err or "Unauthorized" in err
    assert SECRET not in err and json.dumps(SECRET)[1:-1] not in err
    assert SECRET.encode() not in (tmp_path / "state.db").read_bytes()


CONSUME = """\
name: avro
triggers:
  orders:
    type: kafka.Consume
    connection: kafka
    topics: [{topic}]
    groupId: g-{topic}
    valueFormat: avro
    deadLetterTopic: {topic}-dlq
actions:
  note: {{type: Compose, inputs: "{{{{ triggerBody() }}}}"}}
outputs:
  order: {{value: "{{{{ outputs('note') }}}}"}}
"""


def test_the_trigger_decodes_avro_with_the_writers_schema_from_the_registry_and_dead_letters_the_rest(
        tmp_path, kafka_cluster, registry, monkeypatch):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("avro-in"), 1)
    sent = produce(tmp_path, kafka_cluster, registry, {
        "topic": topic, "valueSchema": {"type": "avro", "schema": ORDER},
        "messages": [{"value": {"id": i, "total": i / 2, "note": None}} for i in range(3)]})
    assert sent.status == "Succeeded"
    kafka_cluster.produce(topic, [b'{"id": 3}'])  # plain JSON: no schema id, not Avro
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "connections.yaml").write_text((tmp_path / "connections.yaml").read_text())
    (folder / "avro.yaml").write_text(CONSUME.format(topic=topic))
    with serving(folder, state=tmp_path / "serve.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: len(app.runs("avro")) == 3 and all(r["status"] == "Succeeded" for r in app.runs("avro")),
                 "three Avro runs")
        [dead] = kafka_cluster.read(f"{topic}-dlq", 1)
    bodies = sorted((json.loads(r["outputs"])["order"] for r in app.runs("avro")), key=lambda o: o["id"])
    assert bodies == [{"id": i, "total": i / 2, "note": None} for i in range(3)]
    assert dict(dead.headers())["flowrun.error"] == b"Undecodable" and dead.value() == b'{"id": 3}'
    assert any(r.method == "GET" and r.path.startswith("/schemas/ids/") for r in registry.api.requests)
