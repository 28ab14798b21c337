"""``aws.sqs.SendMessage``: one message or a batch onto an SQS queue (standard or FIFO)."""
from __future__ import annotations

import hashlib
from typing import Any

from engine.plugin import ActionError, Node, count, inputs_schema, trace_headers

from .client import ATTRIBUTES, RETRY_SCHEMA, attributes, body_text, call, send_in_batches

MAX_ENTRIES = 10
MAX_BYTES = 256 * 1024
MAX_ATTRIBUTES = 10  # message attributes SQS takes on one message

MESSAGE = {
    "type": "object", "additionalProperties": False, "required": ["body"],
    "properties": {
        "body": {"description": "The message: a string as is, anything else as JSON."},
        "attributes": ATTRIBUTES,
        "groupId": {"type": "string", "minLength": 1, "maxLength": 128,
                    "description": "FIFO queues: the message group (order is kept within a group)."},
        "deduplicationId": {"type": "string", "minLength": 1, "maxLength": 128,
                            "description": "FIFO queues: the deduplication id. Default: derived from the "
                                           "action's idempotency key, so an engine retry is not delivered twice."},
        "delaySeconds": {"type": "integer", "minimum": 0, "maximum": 900},
    },
}


def queue_url_schema() -> dict:
    return {"type": "string", "minLength": 1,
            "description": "Queue URL, or a queue name (its URL is looked up with GetQueueUrl)."}


async def queue_url(context: Any, queue: str) -> str:
    if "://" in queue:
        return queue
    return (await call(context, "sqs", "get_queue_url", QueueName=queue))["QueueUrl"]


def message_size(entry: dict) -> int:
    """What SQS counts against 256 KB: the body plus every attribute's name, type and value."""
    size = len(entry["MessageBody"].encode())
    for name, attr in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(attr["DataType"].encode())
        size += len(attr.get("StringValue", "").encode()) + len(attr.get("BinaryValue", b""))
    return size


class SendMessage(Node):
    type = "aws.sqs.SendMessage"
    title = "Send a message (or a batch) to an Amazon SQS queue"
    description = (
        "SendMessage for one `message`, SendMessageBatch (at most 10 messages and 256 KB a request) for "
        "`messages`. FIFO queues take a group id and a deduplication id (by default derived from the "
        "action's idempotency key: an engine retry is not delivered twice within 5 minutes). In a batch, only "
        "the entries SQS failed that were not the sender's fault are sent again, with backoff and jitter; the "
        "action fails when some still failed, unless `allowPartial: true`.")
    connection = "aws"
    input_schema = {
        **inputs_schema(
            ["queue"],
            queue=queue_url_schema(),
            message=MESSAGE,
            messages={"type": "array", "minItems": 1, "maxItems": 10000, "items": MESSAGE},
            allowPartial={"type": "boolean", "default": False},
            retry=RETRY_SCHEMA),
        "oneOf": [{"required": ["message"]}, {"required": ["messages"]}],
    }
    outputs = {"type": "object", "properties": {
        "messageId": {"type": "string", "description": "`message`: the id SQS gave it."},
        "sequenceNumber": {"type": "string", "description": "`message` on a FIFO queue."},
        "messages": {"type": "array", "description": "`messages`: one per input message, in order: "
                                                     "{messageId, sequenceNumber} or {errorCode, errorMessage, "
                                                     "senderFault}, and attempts."},
        "failedCount": {"type": "integer"}}}
    example = {"type": "aws.sqs.SendMessage", "connection": "aws",
               "inputs": {"queue": "orders.fifo",
                          "message": {"body": {"orderId": "{{ triggerBody().id }}"}, "groupId": "orders",
                                      "attributes": {"kind": "OrderPaid"}}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would send {count(inputs.get('messages')) if inputs.get('messages') is not None else 1} message(s) to SQS {inputs.get('queue')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        url = await queue_url(context, inputs["queue"])
        fifo = url.endswith(".fifo")
        if "message" in inputs:
            entry = self._entry(inputs["message"], 0, fifo, context, "message")
            if message_size(entry) > MAX_BYTES:
                raise _too_big(0, message_size(entry))
            entry.pop("Id")
            got = await call(context, "sqs", "send_message", QueueUrl=url, **entry)
            return {k: v for k, v in (("messageId", got.get("MessageId")),
                                      ("sequenceNumber", got.get("SequenceNumber"))) if v}
        entries = [self._entry(m, i, fifo, context, f"messages[{i}]") for i, m in enumerate(inputs["messages"])]
        sizes = [message_size(e) for e in entries]
        for i, size in enumerate(sizes):
            if size > MAX_BYTES:
                raise _too_big(i, size)
        results: list[dict] = [{} for _ in entries]

        async def send(indexes: list[int]) -> dict[int, dict]:
            got = await call(context, "sqs", "send_message_batch", QueueUrl=url,
                             Entries=[entries[i] for i in indexes])
            for ok in got.get("Successful", []):
                i = int(ok["Id"])
                results[i] = {k: v for k, v in (("messageId", ok.get("MessageId")),
                                                 ("sequenceNumber", ok.get("SequenceNumber"))) if v}
            return {int(f["Id"]): {"code": f.get("Code"), "message": f.get("Message"),
                                   "senderFault": bool(f.get("SenderFault"))} for f in got.get("Failed", [])}

        return await send_in_batches("SendMessageBatch", send, results, sizes, "messages", inputs,
                                     max_count=MAX_ENTRIES, max_bytes=MAX_BYTES,
                                     retryable=lambda f: not f["senderFault"])

    @staticmethod
    def _entry(message: dict, index: int, fifo: bool, context: Any, what: str) -> dict:
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": body_text(message["body"], f"{what}.body")}
        if not entry["MessageBody"]:
            raise ActionError(f"{what}.body is empty: SQS needs at least one character", code="InvalidInput")
        if message.get("attributes"):
            entry["MessageAttributes"] = attributes(message["attributes"])
        _with_trace(entry)
        if message.get("delaySeconds") is not None:
            entry["DelaySeconds"] = message["delaySeconds"]
        if fifo or message.get("groupId"):
            if not message.get("groupId"):
                raise ActionError(f"{what}.groupId is required for a FIFO queue", code="InvalidInput")
            entry["MessageGroupId"] = message["groupId"]
            entry["MessageDeduplicationId"] = message.get("deduplicationId") or hashlib.sha256(
                f"{context.idempotency_key}:{index}".encode()).hexdigest()[:128]
        return entry


def _with_trace(entry: dict) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) as message attributes, when
    tracing, unless the message carries one, or has no room for it: SQS takes 10 attributes and
    MAX_BYTES in all, and a message that fits without the trace is never made too big by it."""
    trace = trace_headers({})
    given = entry.get("MessageAttributes") or {}
    if not trace or any(k.lower() == "traceparent" for k in given) or len(given) + len(trace) > MAX_ATTRIBUTES:
        return
    entry["MessageAttributes"] = {**given, **{k: {"DataType": "String", "StringValue": v} for k, v in trace.items()}}
    if message_size(entry) > MAX_BYTES:
        if given:
            entry["MessageAttributes"] = given
        else:
            del entry["MessageAttributes"]


def _too_big(index: int, size: int) -> ActionError:
    return ActionError(f"message {index} is {size} bytes: an SQS message (body and attributes) is at most "
                       f"{MAX_BYTES} bytes", code="MessageTooLarge", details={"message": index, "bytes": size})
