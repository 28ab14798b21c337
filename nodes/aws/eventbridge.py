"""``aws.eventbridge.PutEvents``: events onto an EventBridge bus, optionally as CloudEvents 1.0."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from engine.plugin import ActionError, Node, inputs_schema, count

from .client import RETRY_SCHEMA, call, retryable_code, send_in_batches, to_json

MAX_ENTRIES = 10
MAX_BYTES = 256 * 1024

ENTRY = {
    "type": "object", "additionalProperties": False, "required": ["source", "detailType", "detail"],
    "properties": {
        "source": {"type": "string", "minLength": 1, "maxLength": 256,
                   "description": "Who sent it, e.g. com.example.shop (rules match on it)."},
        "detailType": {"type": "string", "minLength": 1, "maxLength": 128,
                       "description": "What happened, e.g. OrderPaid."},
        "detail": {"type": "object", "description": "The event's data (sent as JSON)."},
        "resources": {"type": "array", "items": {"type": "string"}, "description": "ARNs the event is about."},
        "busName": {"type": "string", "minLength": 1, "description": "Bus name or ARN (default: the input's "
                                                                     "busName, else the account's default bus)."},
        "traceHeader": {"type": "string", "description": "X-Ray trace header (X-Amzn-Trace-Id)."},
        "time": {"type": "string", "format": "date-time", "description": "Event time (default: now)."},
        "id": {"type": "string", "minLength": 1, "description": "CloudEvents id (cloudEvents: true). Default: "
                                                                "the action's idempotency key and the entry's index."},
    },
}

CLOUDEVENTS = {"type": "boolean", "default": False,
               "description": "Wrap each `detail` in a CloudEvents 1.0 envelope (structured JSON): id, source, "
                              "type (= detailType), specversion 1.0, time, datacontenttype application/json, data."}


def cloudevent(entry: dict, default_id: str, now: datetime) -> dict:
    """The CloudEvents 1.0 structured-mode envelope of an entry (spec: required id, source,
    specversion, type; optional time (RFC 3339), datacontenttype, data)."""
    return {"specversion": "1.0", "id": entry.get("id") or default_id, "source": entry["source"],
            "type": entry["detailType"], "time": entry.get("time") or now.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json", "data": entry["detail"]}


def entry_size(entry: dict) -> int:
    """The size AWS counts against 256 KB: Source, DetailType, Detail, Resources, bus, trace, 14 for Time."""
    size = 14 if "Time" in entry else 0
    for key in ("Source", "DetailType", "Detail", "EventBusName", "TraceHeader"):
        if key in entry:
            size += len(entry[key].encode())
    return size + sum(len(r.encode()) for r in entry.get("Resources", []))


class PutEvents(Node):
    type = "aws.eventbridge.PutEvents"
    title = "Put events on an Amazon EventBridge bus"
    description = (
        "PutEvents in requests of at most 10 entries and 256 KB. When AWS reports a partial failure "
        "(`FailedEntryCount`), only the failed entries with a retryable code (InternalFailure, "
        "ThrottlingException, ...) are sent again, with exponential backoff and full jitter (`retry`). Entries "
        "that still fail are listed per entry in the outputs; the action fails unless `allowPartial: true`. "
        "`cloudEvents: true` wraps each detail in a CloudEvents 1.0 envelope.")
    connection = "aws"
    input_schema = inputs_schema(
        ["entries"],
        entries={"type": "array", "minItems": 1, "maxItems": 10000, "items": ENTRY},
        busName={"type": "string", "minLength": 1, "description": "Default bus of every entry (name or ARN)."},
        cloudEvents=CLOUDEVENTS,
        allowPartial={"type": "boolean", "default": False,
                      "description": "Succeed even when some entries still failed after the retries."},
        retry=RETRY_SCHEMA,
    )
    outputs = {"type": "object", "properties": {
        "entries": {"type": "array", "description": "One per input entry, in order: {eventId} or "
                                                    "{errorCode, errorMessage}, and attempts."},
        "failedCount": {"type": "integer", "description": "Entries that still failed."}}}
    example = {"type": "aws.eventbridge.PutEvents", "connection": "aws",
               "inputs": {"busName": "orders", "cloudEvents": True, "entries": [
                   {"source": "com.example.shop", "detailType": "OrderPaid",
                    "detail": {"orderId": "{{ triggerBody().id }}", "total": "{{ triggerBody().total }}"}}]}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would put {count(inputs.get('entries'))} event(s) on EventBridge {inputs.get('busName') or 'default'}"

    async def run(self, inputs: dict, context: Any) -> Any:
        now = datetime.fromtimestamp(context.now(), timezone.utc)
        entries = [self._entry(e, i, inputs, context, now) for i, e in enumerate(inputs["entries"])]
        sizes = [entry_size(e) for e in entries]
        for i, size in enumerate(sizes):
            if size > MAX_BYTES:
                raise ActionError(f"entry {i} is {size} bytes: an EventBridge entry is at most {MAX_BYTES} bytes",
                                  code="EntryTooLarge", details={"entry": i, "bytes": size})
        results: list[dict] = [{} for _ in entries]

        async def send(indexes: list[int]) -> dict[int, dict]:
            reply = await call(context, "events", "put_events", Entries=[entries[i] for i in indexes])
            failed = {}
            for i, got in zip(indexes, reply.get("Entries", [])):
                if got.get("ErrorCode"):
                    failed[i] = {"code": got["ErrorCode"], "message": got.get("ErrorMessage")}
                else:
                    results[i] = {"eventId": got.get("EventId")}
            return failed

        return await send_in_batches("PutEvents", send, results, sizes, "entries", inputs,
                                     max_count=MAX_ENTRIES, max_bytes=MAX_BYTES, retryable=retryable_code)

    @staticmethod
    def _entry(entry: dict, index: int, inputs: dict, context: Any, now: datetime) -> dict:
        detail = entry["detail"]
        if inputs.get("cloudEvents"):
            default_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowrun:{context.idempotency_key}:{index}"))
            detail = cloudevent(entry, default_id, now)
        out = {"Source": entry["source"], "DetailType": entry["detailType"],
               "Detail": to_json(detail, f"entries[{index}].detail")}
        bus = entry.get("busName") or inputs.get("busName")
        if bus:
            out["EventBusName"] = bus
        if entry.get("resources"):
            out["Resources"] = list(entry["resources"])
        if entry.get("traceHeader"):
            out["TraceHeader"] = entry["traceHeader"]
        if entry.get("time"):
            out["Time"] = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        return out
