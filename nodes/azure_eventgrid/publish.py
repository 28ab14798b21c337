"""``azure.eventgrid.Publish``: events to an Event Grid topic, through the azure-eventgrid SDK.

Events are CloudEvents 1.0 (default) or Event Grid schema events, as the topic's input schema
says. The list is split into requests of at most 1 MB each (Event Grid refuses bigger ones); an
event that alone is over the limit fails the action before anything is sent. Each event gets an
id (given, or derived from the action's idempotency key and its index, so a retried action sends
the same ids and subscribers can de-duplicate). The SDK's own retries are off (``retry_total=0`` on each
request): the action's ``retryPolicy`` is the only retry loop; throttling (429), 5xx and connection errors are
retryable, the rest are not. Outputs: the ids sent, in order.

The SDK (``azure.eventgrid``, on ``azure.core``) is imported only in ``build_client`` and the
vendor's error table.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from engine.plugin import (ActionError, Connection, Fault, Node, Rule, Vendor, count, endpoint_url, inputs_schema,
                           status_is_retryable, trace_headers)

MAX_REQUEST = 1_048_576  # bytes of one publish request (Event Grid's limit)
ENVELOPE = 512  # what the SDK adds around an event we measure (ids, times, separators), generously

CLOUD_EVENT = {
    "type": "object", "required": ["type"], "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "minLength": 1}, "source": {"type": "string", "minLength": 1},
        "subject": {"type": "string"}, "id": {"type": "string", "minLength": 1},
        "time": {"type": "string", "description": "RFC 3339 (default: now)"},
        "data": {"description": "the payload (JSON)"}, "datacontenttype": {"type": "string"},
        "dataschema": {"type": "string"},
        "extensions": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                       "propertyNames": {"pattern": "^[a-z0-9]{1,20}$"}},
    },
}
EVENT_GRID_EVENT = {
    "type": "object", "required": ["subject", "eventType", "data"], "additionalProperties": False,
    "properties": {
        "subject": {"type": "string", "minLength": 1}, "eventType": {"type": "string", "minLength": 1},
        "data": {"description": "the payload (JSON)"}, "dataVersion": {"type": "string", "default": "1.0"},
        "id": {"type": "string", "minLength": 1}, "eventTime": {"type": "string", "description": "RFC 3339"},
        "topic": {"type": "string", "description": "for a domain: the domain topic"},
    },
}


def build_client(conn: Connection) -> Any:
    """An ``EventGridPublisherClient`` for the connection's topic: key or SAS credential, no SDK retries."""
    topic = conn.settings.get("topic_endpoint")
    if not topic:
        raise ActionError(f"connection '{conn.name}' has no topic_endpoint to publish to", code="MissingSetting",
                          details={"setting": "topic_endpoint"})
    from azure.core.credentials import AzureKeyCredential, AzureSasCredential
    from azure.eventgrid import EventGridPublisherClient

    if conn.get("sas_token"):
        credential: Any = AzureSasCredential(conn.get("sas_token"))
    elif conn.get("topic_key"):
        credential = AzureKeyCredential(conn.get("topic_key"))
    else:
        raise ActionError(f"connection '{conn.name}' has neither a topic_key nor a sas_token secret",
                          code="MissingSetting", details={"setting": "topic_key"})
    _quiet_pipeline_options()
    return EventGridPublisherClient(endpoint_url(topic, conn.endpoint), credential)


PIPELINE_OPTIONS = frozenset({"retry_total", "connection_timeout", "read_timeout", "headers"})  # what run() passes to send


class _PipelineOptionNotice(logging.Filter):
    """The SDK's basic-topic ``send`` hands its keyword arguments to the CloudEvent model as well as
    to the pipeline, and the model logs "<option> is not a known attribute ... will be ignored" for
    each of ours on every request (a warning with no handler: raw lines in serve's JSON log). The
    options do reach the pipeline; this drops only those notices."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # (flowrun's redaction may have formatted it already)
        option, _, rest = message.partition(" ")
        return not (option in PIPELINE_OPTIONS and rest.startswith("is not a known attribute of class "))


_NOTICE = _PipelineOptionNotice()


def _quiet_pipeline_options() -> None:
    for name in ("azure.eventgrid._legacy._generated._serialization", "azure.eventgrid._serialization"):
        logger = logging.getLogger(name)
        if _NOTICE not in logger.filters:
            logger.addFilter(_NOTICE)


class EventGridVendor(Vendor):
    """azure-eventgrid (azure-core's exceptions).

    ===========================================  ==========  ==============================
    SDK exception                                retried?    code
    ===========================================  ==========  ==============================
    ClientAuthenticationError (401, 403)         no          ``AuthenticationFailed``
    ResourceNotFoundError (404)                  no          ``TopicNotFound``
    HttpResponseError (other statuses)           429/5xx     the service's code, else ``HttpError``
    ServiceRequestError (no connection)          yes         ``ServiceRequestError``
    ServiceResponseError (connection dropped)    yes         ``ServiceResponseError``
    AzureError (anything else)                   no          ``AzureError``
    ===========================================  ==========  ==============================
    """

    name = "Azure Event Grid"
    modules = ("azure.eventgrid",)
    extra = "azure"

    def rules(self) -> list[Rule]:
        from azure.core import exceptions as e

        return [
            Rule((e.ClientAuthenticationError,), "AuthenticationFailed"),
            Rule((e.ResourceNotFoundError,), "TopicNotFound"),
            Rule((e.HttpResponseError,), lambda fault, exc: fault.code or "HttpError",
                 retryable=lambda fault, exc: status_is_retryable(fault.status)),
            Rule((e.ServiceRequestError,), "ServiceRequestError", retryable=True),
            Rule((e.ServiceResponseError,), "ServiceResponseError", retryable=True),
            Rule((e.AzureError,), "AzureError", fallback=True),
        ]

    def describe(self, exc: BaseException) -> Fault:
        status = getattr(exc, "status_code", None)
        response = getattr(exc, "response", None)
        code, message = getattr(exc, "error_code", None), None
        if response is not None:
            try:
                body = json.loads(response.text())
                err = body.get("error") if isinstance(body, dict) else None
                if isinstance(err, dict):
                    code, message = code or err.get("code"), err.get("message")
            except (ValueError, AttributeError):
                pass
        headers = getattr(response, "headers", None)
        return Fault(message=message or getattr(exc, "message", None) or str(exc), code=code, status=status,
                     headers=headers, details={"status": status, "code": code})


EVENTGRID = EventGridVendor()


class Publish(Node):
    type = "azure.eventgrid.Publish"
    title = "Publish events to an Azure Event Grid topic"
    description = (
        "Sends `events` to the connection's topic as CloudEvents 1.0 (`schema: CloudEvent`, the default) or "
        "Event Grid schema events (`schema: EventGridEvent`), with the topic's key (`aeg-sas-key`) or a SAS "
        "token (`aeg-sas-token`). The list is split into requests of at most 1 MB; an event over 1 MB fails "
        "before anything is sent. Ids not given are derived from the action's idempotency key, so a retry sends "
        "the same ids. Outputs: the ids sent, in order.")
    connection = "eventgrid"
    input_schema = {
        **inputs_schema(
            ["events"],
            schema={"enum": ["CloudEvent", "EventGridEvent"], "default": "CloudEvent"},
            events={"type": "array", "minItems": 1, "maxItems": 100_000,
                    "items": {"type": "object"},
                    "description": "CloudEvents (type, source, subject, data, ...) or Event Grid events "
                                   "(subject, eventType, data, dataVersion, ...)"},
            source={"type": "string", "minLength": 1,
                    "description": "CloudEvents: the source of events that name none"},
            channelName={"type": "string", "description": "a partner topic's channel"},
        ),
    }
    outputs = {"type": "object", "properties": {
        "ids": {"type": "array", "items": {"type": "string"}, "description": "the ids of the events sent, in order"},
        "count": {"type": "integer"}, "requests": {"type": "integer", "description": "publish requests made"}}}
    example = {"type": "azure.eventgrid.Publish", "connection": "eventgrid",
               "inputs": {"source": "/flowrun/orders", "events": [
                   {"type": "Shop.OrderPaid", "subject": "orders/{{ triggerBody().id }}",
                    "data": "{{ triggerBody() }}"}]}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would publish {count(inputs.get('events'))} event(s) to Event Grid"

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        inputs = action.get("inputs")
        if not isinstance(inputs, dict) or not isinstance(inputs.get("events"), list):
            return []
        import jsonschema

        shape = EVENT_GRID_EVENT if inputs.get("schema") == "EventGridEvent" else CLOUD_EVENT
        out = []
        for i, event in enumerate(inputs["events"]):
            if isinstance(event, dict):
                for err in jsonschema.Draft202012Validator(shape).iter_errors(event):
                    out.append((f"inputs.events.{i}", err.message))
        return out

    async def run(self, inputs: dict, context: Any) -> dict:
        events = build_events(inputs, context.idempotency_key)
        batches = split(events)
        client = await EVENTGRID.client(context)
        timeout = float(context.connection.settings.get("timeout", 60))
        for batch in batches:
            # per request: the client's constructor does not pass pipeline options on for basic topics;
            # retry_total=0: the action's retryPolicy is the only retry loop
            # headers: the current span's traceparent when tracing (azure-core's HeadersPolicy sends them)
            await EVENTGRID.call(context, client.send, [e for e, _ in batch], channel_name=inputs.get("channelName"),
                                 retry_total=0, connection_timeout=timeout, read_timeout=timeout,
                                 headers=trace_headers(None))
        ids = [e.id for e, _ in events]
        return {"ids": ids, "count": len(ids), "requests": len(batches)}


def _event_id(key: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowrun:{key}:{index}"))


def build_events(inputs: dict, key: str) -> list[tuple[Any, int]]:
    """(SDK event, its size in bytes) per input event, checked before anything is sent."""
    import jsonschema

    cloud = inputs.get("schema", "CloudEvent") == "CloudEvent"
    shape = CLOUD_EVENT if cloud else EVENT_GRID_EVENT
    out = []
    for i, e in enumerate(inputs["events"]):
        problems = [f"{'/'.join(str(p) for p in err.absolute_path) or '(event)'}: {err.message}"
                    for err in jsonschema.Draft202012Validator(shape).iter_errors(e)]
        if cloud and not (e.get("source") or inputs.get("source")):
            problems.append("source: a CloudEvent needs a source (the event's, or the action's `source`)")
        if problems:
            raise ActionError(f"events[{i}] is not a{' CloudEvent' if cloud else 'n Event Grid event'}: "
                              + "; ".join(problems), code="InvalidInput")
        try:
            # as the SDK writes it (json.dumps' default ensure_ascii): "é" takes 6 bytes (\u00e9), an
            # emoji 12 (a surrogate pair), not their 2 and 4 of UTF-8; the result is ASCII: chars = bytes
            size = len(json.dumps(e, allow_nan=False)) + ENVELOPE
        except ValueError as exc:
            raise ActionError(f"events[{i}] is not JSON: {exc}", code="InvalidInput") from None
        if size > MAX_REQUEST:
            raise ActionError(f"events[{i}] is {size} bytes: over Event Grid's {MAX_REQUEST} bytes per request",
                              code="EventTooLarge", details={"index": i, "bytes": size})
        out.append((_sdk_event(e, cloud, inputs.get("source"), _event_id(key, i)), size))
    return out


def _sdk_event(e: dict, cloud: bool, source: str | None, default_id: str) -> Any:
    from datetime import datetime

    def when(text: str | None, what: str) -> Any:
        if text is None:
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ActionError(f"{what} {text!r} is not an RFC 3339 time", code="InvalidInput") from None

    if cloud:
        from azure.core.messaging import CloudEvent

        kw = {k: e[k] for k in ("subject", "datacontenttype", "dataschema") if k in e}
        if "time" in e:
            kw["time"] = when(e["time"], "time")
        return CloudEvent(source=e.get("source") or source, type=e["type"], data=e.get("data"),
                          id=e.get("id") or default_id, extensions=e.get("extensions"), **kw)
    from azure.eventgrid import EventGridEvent

    kw = {"topic": e["topic"]} if "topic" in e else {}
    if "eventTime" in e:
        kw["event_time"] = when(e["eventTime"], "eventTime")
    return EventGridEvent(subject=e["subject"], event_type=e["eventType"], data=e["data"],
                          data_version=e.get("dataVersion", "1.0"), id=e.get("id") or default_id, **kw)


def split(events: list[tuple[Any, int]]) -> list[list[tuple[Any, int]]]:
    """Consecutive events in requests of at most MAX_REQUEST bytes."""
    batches: list[list[tuple[Any, int]]] = []
    size = 0
    for event in events:
        if not batches or size + event[1] > MAX_REQUEST:
            batches.append([])
            size = 0
        batches[-1].append(event)
        size += event[1]
    return batches
