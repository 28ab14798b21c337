"""``kafka.Produce``: one message, or a list sent as one batch, each with its delivery report.

The connection's one producer (idempotent, acks=all, lz4) takes every message of the action,
then the action waits for every delivery report: the outputs give each message's partition
and offset, in the order given. A message whose report carries an error fails the action:
retryable when every failure is (a broker timeout, a leader change), else not; the error's
``details.failed`` lists each failed message (index, code, message) and ``details.delivered``
the ones that made it, so nothing is left unknown.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import threading
import time
from typing import Any

from engine.plugin import ActionError, Node, RetryableError, count, inputs_schema, scrub, trace_headers

from .client import KAFKA, KafkaClient, kafka_retryable

FORMATS = ["json", "string", "base64"]
HEADERS = {"type": "object", "additionalProperties": {"type": "string"},
           "description": "message headers: name -> text (UTF-8)"}
MESSAGE_KEYS = ("topic", "key", "value", "headers", "partition")
# Each message is checked in Python (_check_message), not by the input schema: jsonschema spent
# 50-90 µs per message on a 100,000-message batch (even for `items: {type: object}`), several
# times what sending it costs.
MESSAGE = {"type": "object", "description": "{value, key?, headers?, partition?, topic?}: like the single "
                                            "message's fields; `topic` overrides the action's"}


SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["type", "schema"],
    "description": "serialise values with confluent-kafka's Schema Registry serializer (the connection's "
                   "schema_registry_url): the value is an object matching the schema",
    "properties": {
        "type": {"enum": ["avro", "jsonschema"]},
        "schema": {"type": ["string", "object"], "description": "the Avro schema or JSON Schema (text or object)"},
        "autoRegister": {"type": "boolean", "default": True,
                         "description": "register the schema under <topic>-value when it is new"},
    },
}


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _check_message(m: Any, i: int) -> None:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise ActionError(f"{where} is not an object", code="InvalidInput")
    extra = [k for k in m if k not in MESSAGE_KEYS]
    if extra:
        raise ActionError(f"{where}: unknown field {extra[0]!r} (fields: {', '.join(MESSAGE_KEYS)})",
                          code="InvalidInput")
    if "value" not in m:
        raise ActionError(f"{where}: 'value' is required (null for a tombstone)", code="InvalidInput")
    topic, partition, headers = m.get("topic"), m.get("partition"), m.get("headers")
    if topic is not None and (not isinstance(topic, str) or not topic):
        raise ActionError(f"{where}.topic must be a non-empty string", code="InvalidInput")
    if partition is not None and (type(partition) is not int or partition < 0):
        raise ActionError(f"{where}.partition must be an integer >= 0", code="InvalidInput")
    if headers is not None and (not isinstance(headers, dict)
                                or not all(isinstance(v, str) for v in headers.values())):
        raise ActionError(f"{where}.headers must map names to text", code="InvalidInput")


def _encode(value: Any, fmt: str, what: str) -> bytes | None:
    if value is None:
        return None
    if fmt == "json":
        try:
            return _JSON(value).encode()
        except (ValueError, TypeError) as exc:
            raise ActionError(f"{what} is not JSON: {exc}", code="InvalidInput") from None
    if fmt == "string":
        if not isinstance(value, str):
            raise ActionError(f"{what}: {fmt} format needs text, got {type(value).__name__}", code="InvalidInput")
        return value.encode()
    if not isinstance(value, str):
        raise ActionError(f"{what}: base64 format needs text, got {type(value).__name__}", code="InvalidInput")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ActionError(f"{what} is not valid base64", code="InvalidInput") from None


class _Reports:
    """Delivery reports of one action's messages, filled in by the producer's poll thread."""

    def __init__(self, n: int):
        self.results: list[Any] = [None] * n
        self.left = n
        self.lock = threading.Lock()
        self.done = threading.Event()
        if n == 0:
            self.done.set()

    def callback(self, index: int) -> Any:
        return functools.partial(self.report, index)

    def report(self, index: int, err: Any, msg: Any) -> None:
        self.results[index] = (err, msg.topic(), msg.partition(), msg.offset())
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.done.set()


class Produce(Node):
    type = "kafka.Produce"
    title = "Produce messages to Kafka and wait for their delivery reports"
    description = (
        "Sends one message (`value`, with `key`, `headers`, `partition`), or a list (`messages`) as one batch, "
        "through the connection's idempotent producer (`enable.idempotence`, `acks=all`, lz4 compression), and "
        "waits for every delivery report. Values are JSON (default), text, or bytes given as base64 "
        "(`valueFormat`); with `valueSchema` they are serialised by confluent-kafka's Avro or JSON Schema "
        "serializer through the connection's Schema Registry. Outputs: the partition and offset of each "
        "message, in order. A failed delivery fails the action (retryable when the broker error is).")
    connection = "kafka"
    transport = "native"  # librdkafka's own sockets (Schema Registry lookups go through httpx)
    input_schema = {
        **inputs_schema(
            ["topic"],
            topic={"type": "string", "minLength": 1, "description": "the topic (a message may name its own)"},
            key={"description": "the message key (text by default, see keyFormat)"},
            value={"description": "the message value (JSON by default, see valueFormat); null is a tombstone"},
            headers=HEADERS,
            partition={"type": "integer", "minimum": 0, "description": "a fixed partition (default: by key hash)"},
            messages={"type": "array", "maxItems": 1_000_000,
                      "description": "several messages, sent as one batch: " + MESSAGE["description"]},
            valueFormat={"enum": FORMATS, "default": "json"},
            keyFormat={"enum": FORMATS, "default": "string"},
            valueSchema=SCHEMA,
            timeout={"type": "number", "exclusiveMinimum": 0, "maximum": 3600, "default": 60,
                     "description": "seconds to wait for the delivery reports"},
        ),
        "oneOf": [{"required": ["value"], "not": {"required": ["messages"]}},
                  {"required": ["messages"], "not": {"required": ["value"]}}],
    }
    outputs = {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "description": "messages delivered"},
            "messages": {"type": "array", "description": "one report per message, in order",
                         "items": {"type": "object", "properties": {
                             "partition": {"type": "integer"}, "offset": {"type": "integer"},
                             "topic": {"type": "string", "description": "only when not the action's topic"}}}},
            "partition": {"type": "integer", "description": "single message: its partition"},
            "offset": {"type": "integer", "description": "single message: its offset"},
        },
    }
    example = {"type": "kafka.Produce", "connection": "kafka",
               "inputs": {"topic": "orders", "key": "{{ triggerBody().id }}", "value": "{{ triggerBody() }}",
                          "headers": {"source": "flowrun"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would produce {count(inputs.get('messages')) if inputs.get('messages') is not None else 1} message(s) to Kafka {inputs.get('topic')}"

    async def run(self, inputs: dict, context: Any) -> dict:
        client: KafkaClient = await KAFKA.client(context)
        return await KAFKA.call(context, produce, client, inputs)


def _messages(client: KafkaClient, inputs: dict) -> list[tuple]:
    """(topic, key bytes, value bytes, headers, partition) per message, all checked before any is sent."""
    single = "messages" not in inputs
    given = [inputs] if single else inputs["messages"]
    vfmt, kfmt = inputs.get("valueFormat", "json"), inputs.get("keyFormat", "string")
    schema = inputs.get("valueSchema")
    ser = None
    if schema:
        from confluent_kafka.serialization import MessageField, SerializationContext

        text = schema["schema"] if isinstance(schema["schema"], str) else json.dumps(schema["schema"])
        ser = client.serializer(schema["type"], text, schema.get("autoRegister", True))
    trace = [(k, v.encode()) for k, v in trace_headers({}).items()]  # the current span's traceparent, if tracing
    out = []
    for i, m in enumerate(given):
        if not single:
            _check_message(m, i)
        what = "value" if single else f"messages[{i}].value"
        topic = m.get("topic") or inputs["topic"]
        if ser is not None and m.get("value") is not None:
            try:
                value = ser(m["value"], SerializationContext(topic, MessageField.VALUE))
            except (TypeError, ValueError, AttributeError) as exc:  # fastavro's own, unwrapped by the serializer
                raise ActionError(f"{what} does not fit the {schema['type']} schema: {exc}",
                                  code="SerializationError") from None
        else:
            value = _encode(m.get("value"), vfmt, what)
        key = _encode(m.get("key"), kfmt, what[:-5] + "key") if m.get("key") is not None else None
        headers = [(k, v.encode()) for k, v in (m.get("headers") or {}).items()]
        if trace and not any(k.lower() == "traceparent" for k, _ in headers):  # a flow's own one is kept
            headers += trace
        headers = headers or None
        partition = m.get("partition")
        if partition is None and single:
            partition = inputs.get("partition")
        out.append((topic, key, value, headers, partition))
    return out


def produce(client: KafkaClient, inputs: dict) -> dict:
    """Blocking: produce every message, then wait for every delivery report."""
    messages = _messages(client, inputs)
    producer = client.producer
    reports = _Reports(len(messages))
    for i, (topic, key, value, headers, partition) in enumerate(messages):
        kw = {"key": key, "headers": headers, "on_delivery": reports.callback(i)}
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                producer.produce(topic, value, **kw)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.005)
    deadline = time.monotonic() + float(inputs.get("timeout", 60))
    while not reports.done.wait(0.05):
        if time.monotonic() > deadline:
            raise RetryableError(f"{reports.left} of {len(messages)} delivery reports did not come within "
                                 f"{inputs.get('timeout', 60)} s", code="DeliveryTimeout")
    delivered, failed = [], []
    default = inputs["topic"]
    for i, (err, topic, partition, offset) in enumerate(reports.results):
        if err is None:
            report = {"partition": partition, "offset": offset}
            if topic != default:
                report["topic"] = topic
            delivered.append(report)
        else:
            failed.append((i, err))
    if failed:
        first = failed[0][1]
        details = {"failed": [{"index": i, "code": e.name(), "message": e.str()} for i, e in failed[:100]],
                   "failedCount": len(failed), "delivered": len(delivered)}
        message = f"{len(failed)} of {len(messages)} messages were not delivered: {first.name()}: {first.str()}"
        message = scrub(message, client.secrets)
        if all(kafka_retryable(e) for _, e in failed):
            raise RetryableError(message, code=first.name(), details=details)
        raise ActionError(message, code=first.name(), details=details)
    out: dict[str, Any] = {"count": len(delivered), "messages": delivered}
    if "messages" not in inputs:
        out["partition"], out["offset"] = delivered[0]["partition"], delivered[0]["offset"]
    return out

