"""Inbound Event Grid deliveries: handshakes, the delivery key, both event schemas.

Handshakes (answered by ``handshake``, no run is started):

- Event Grid schema: a POST with ``aeg-event-type: SubscriptionValidation`` whose body is
  ``[{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data":
  {"validationCode": ...}}]`` is answered 200 ``{"validationResponse": <validationCode>}``.
  ``aeg-event-type: SubscriptionDeletion`` is acknowledged with 200.
- CloudEvents 1.0 abuse protection: an OPTIONS request with ``WebHook-Request-Origin`` is
  answered 200 with ``WebHook-Allowed-Origin`` (the origin, when it is in ``origins``, by
  default eventgrid.azure.net; ``"*"`` in ``origins`` allows any), ``WebHook-Allowed-Rate``
  (``rate``, default ``*``) and ``Allow: POST, OPTIONS``. An origin not allowed gets 403.

Both handshakes must carry the delivery key, like deliveries: the validation request goes
to the exact endpoint URL, key included, so a stranger cannot subscribe the endpoint.

Deliveries (``verify``): the key must match (401 missing, 403 wrong); the body must be an
Event Grid array (``id``, ``eventType``, ``subject``, ``eventTime``, ``data``...), a
CloudEvent (``specversion``, ``id``, ``source``, ``type``; ``application/cloudevents+json``),
a CloudEvents batch (``application/cloudevents-batch+json``), or a binary-mode CloudEvent
(``ce-id``, ``ce-source``, ... headers); anything else is refused with 400. The returned
de-duplication key is ``<source or topic>|<id>`` for one event (Event Grid's default
batch size is 1) and a digest of every id for a batch, so a redelivery starts no run.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from engine.plugin import AuthError, Connection, InboundRequest, WebhookAuth

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
DEFAULT_ORIGINS = ["eventgrid.azure.net"]
CE_REQUIRED = ("specversion", "id", "source", "type")


class EventGridAuth(WebhookAuth):
    """Azure Event Grid deliveries: subscription handshakes, a shared delivery key."""

    kind = "eventgrid"
    connection = "eventgrid"
    options = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "query": {"type": "string", "default": "code",
                      "description": "query parameter of the endpoint URL carrying the key"},
            "header": {"type": "string", "description": "header carrying the key instead (a secret delivery "
                                                        "property of the subscription)"},
            "origins": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                        "description": "CloudEvents origins allowed to deliver (default eventgrid.azure.net; "
                                       "'*' for any)"},
            "rate": {"type": ["integer", "string"], "description": "WebHook-Allowed-Rate: requests per minute, "
                                                                   "or '*' (default)"},
        },
        "not": {"required": ["query", "header"]},
    }

    # -- the delivery key ---------------------------------------------------------------------
    def _check_key(self, request: InboundRequest, connection: Connection | None, options: dict) -> None:
        expected = connection.get("webhook_key") if connection is not None else None
        if not expected:
            name = connection.name if connection is not None else "(none)"
            raise AuthError(403, f"connection {name} has no webhook_key: cannot verify Event Grid deliveries")
        if "header" in options:
            given, where = request.headers.get(options["header"].lower()), f"header {options['header']}"
        else:
            name = options.get("query", "code")
            given, where = request.query.get(name), f"query parameter '{name}'"
        if not given:
            raise AuthError(401, f"missing delivery key ({where})")
        if not hmac.compare_digest(given.encode(), str(expected).encode()):
            raise AuthError(403, f"wrong delivery key ({where})")

    @staticmethod
    def secret_names(options: dict) -> tuple[frozenset[str], frozenset[str]]:
        if "header" in options:
            return frozenset({options["header"].lower()}), frozenset()
        return frozenset(), frozenset({options.get("query", "code")})

    # -- handshakes ---------------------------------------------------------------------------
    def handshake(self, request: InboundRequest, connection: Connection | None,
                  options: dict) -> tuple[int, dict[str, str], bytes] | None:
        if request.method == "OPTIONS":
            origin = request.headers.get("webhook-request-origin")
            if not origin:
                return None
            self._check_key(request, connection, options)
            allowed = options.get("origins") or DEFAULT_ORIGINS
            if "*" not in allowed and origin.lower() not in {o.lower() for o in allowed}:
                raise AuthError(403, f"origin {origin!r} may not deliver here (allowed: {', '.join(allowed)})")
            headers = {"WebHook-Allowed-Origin": origin if "*" not in allowed else "*",
                       "WebHook-Allowed-Rate": str(options.get("rate", "*")), "Allow": "POST, OPTIONS"}
            return 200, headers, b""
        kind = request.headers.get("aeg-event-type", "")
        if kind == "SubscriptionValidation":
            self._check_key(request, connection, options)
            events = _json(request.body)
            event = events[0] if isinstance(events, list) and events else events
            code = (event or {}).get("data", {}).get("validationCode") if isinstance(event, dict) else None
            if not isinstance(event, dict) or event.get("eventType") != VALIDATION_EVENT or not code:
                raise AuthError(400, "a SubscriptionValidation request must carry a "
                                     f"{VALIDATION_EVENT} with data.validationCode")
            body = json.dumps({"validationResponse": code}).encode()
            return 200, {"Content-Type": "application/json"}, body
        if kind == "SubscriptionDeletion":
            self._check_key(request, connection, options)
            return 200, {}, b""
        return None

    # -- deliveries ---------------------------------------------------------------------------
    def verify(self, request: InboundRequest, connection: Connection | None, options: dict) -> str | None:
        self._check_key(request, connection, options)
        if request.method == "GET":  # polling a run with the trigger's key: nothing to parse
            return None
        ids = _event_ids(request)
        if len(ids) == 1:
            return ids[0]
        return "batch:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise AuthError(400, "the body is not JSON: not an Event Grid or CloudEvents delivery") from None


def _event_ids(request: InboundRequest) -> list[str]:
    """``<source or topic>|<id>`` of every event in the delivery; AuthError(400) when none fits."""
    if "ce-id" in request.headers:  # CloudEvents binary mode
        missing = [h for h in CE_REQUIRED if f"ce-{h}" not in request.headers]
        if missing:
            raise AuthError(400, f"binary-mode CloudEvent without ce-{', ce-'.join(missing)}")
        return [f"{request.headers['ce-source']}|{request.headers['ce-id']}"]
    body = _json(request.body)
    events = body if isinstance(body, list) else [body]
    if not events:
        raise AuthError(400, "the delivery holds no event")
    out = []
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            raise AuthError(400, f"event {i} is not an object")
        if "specversion" in e:
            missing = [k for k in CE_REQUIRED if not e.get(k)]
            if missing:
                raise AuthError(400, f"CloudEvent {i} lacks {', '.join(missing)}")
            out.append(f"{e['source']}|{e['id']}")
        elif e.get("id") and e.get("eventType"):
            out.append(f"{e.get('topic') or ''}|{e['id']}")
        else:
            raise AuthError(400, f"event {i} is neither an Event Grid event (id, eventType) nor a CloudEvent "
                                 f"(specversion, id, source, type)")
    return out
