"""Inbound Stripe webhooks: verify Stripe-Signature, filter event types, de-duplicate.

A trigger opts in with::

    auth: {type: stripe, connection: stripe, tolerance: 300,
           events: [payment_intent.succeeded, "customer.subscription.*"]}

``verify`` checks the ``Stripe-Signature`` header (HMAC-SHA256 of ``<t>.<raw body>``
with the connection's ``webhook_secret``, via the SDK's ``WebhookSignature``) and that
``t`` is no older than ``tolerance`` seconds; then it returns the event id (``evt_...``)
as the de-duplication key, so a redelivered or replayed event maps to the same key.

Refusals raise AuthError: 401 when the header is missing, 403 when the signature is
wrong, the timestamp is outside the tolerance, or the signed body is not a Stripe event.

Event types not listed in ``events``: ``handshake`` (called by the listener before
``verify``) verifies the event and answers ``202 {"received": true, "ignored": <type>}``
itself, so no run starts. Stripe treats any 2xx as delivered: ignored types are not
redelivered and do not count against the endpoint's health, as a 4xx would. Should
``verify`` be reached with such an event anyway, it raises ``IgnoredEvent`` (an AuthError
whose status is 202).
"""
from __future__ import annotations

import fnmatch
import json
import time

from engine.plugin import AuthError, Connection, InboundRequest, WebhookAuth, unix_timestamp

DEFAULT_TOLERANCE = 300


class IgnoredEvent(AuthError):
    """An authentic event of a type the trigger does not accept: acknowledge, do not run."""

    def __init__(self, event_type: str, event_id: str | None):
        super().__init__(202, f"event type {event_type!r} is not accepted by this trigger")
        self.event_type = event_type
        self.event_id = event_id


def _authentic_event(request: InboundRequest, connection: Connection | None,
                     options: dict) -> dict:
    """The verified event as a dict, or AuthError."""
    secret = connection.get("webhook_secret") if connection is not None else None
    if not secret:
        name = connection.name if connection is not None else "(none)"
        raise AuthError(403, f"connection {name} has no webhook_secret: cannot verify "
                             "Stripe signatures")
    header = request.headers.get("stripe-signature")
    if not header:
        raise AuthError(401, "missing Stripe-Signature header")

    tolerance = options.get("tolerance", DEFAULT_TOLERANCE)
    for item in header.split(","):  # the SDK reads t= with int(): ' 5', '+5', '1_000' would pass
        name, _, value = item.partition("=")
        if name.strip() == "t":
            stamp = unix_timestamp(value, "the t= timestamp of Stripe-Signature")
            if tolerance and stamp > time.time() + tolerance:  # the SDK checks the past only
                raise AuthError(403, f"Stripe signature rejected: timestamp {stamp} is in the future")

    from stripe import SignatureVerificationError, WebhookSignature

    try:
        WebhookSignature.verify_header(request.body, header, secret, tolerance or None)
    except SignatureVerificationError as exc:
        raise AuthError(403, f"Stripe signature rejected: {exc.user_message}") from exc
    except UnicodeDecodeError as exc:
        raise AuthError(403, "body is not UTF-8: not a Stripe event") from exc

    try:
        event = json.loads(request.body)
    except ValueError as exc:
        raise AuthError(403, "signed body is not JSON") from exc
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise AuthError(403, "signed body is not a Stripe event (no id/type)")
    return event


def _accepted(event_type: str, options: dict) -> bool:
    patterns = options.get("events")
    return not patterns or any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


class StripeWebhookAuth(WebhookAuth):
    kind = "stripe"
    header = "Stripe-Signature"
    connection = "stripe"
    options = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tolerance": {"type": "integer", "minimum": 0, "default": DEFAULT_TOLERANCE,
                          "description": "Refuse events signed more than this many seconds "
                                         "ago (replay protection). 0 disables the check."},
            "events": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                       "description": "Event types to accept, e.g. [invoice.paid, "
                                      "customer.subscription.*] (shell-style wildcards). "
                                      "Other authentic events are answered 202 and start "
                                      "no run. Default: all."},
        },
    }

    def handshake(self, request: InboundRequest, connection: Connection | None,
                  options: dict) -> tuple[int, dict[str, str], bytes] | None:
        """Acknowledge (202) an authentic event whose type the trigger does not accept."""
        if not options.get("events"):
            return None
        event = _authentic_event(request, connection, options)
        if _accepted(event["type"], options):
            return None
        body = json.dumps({"received": True, "ignored": event["type"]}).encode()
        return 202, {"Content-Type": "application/json"}, body

    def verify(self, request: InboundRequest, connection: Connection | None,
               options: dict) -> str | None:
        event = _authentic_event(request, connection, options)
        if not _accepted(event["type"], options):
            raise IgnoredEvent(event["type"], event["id"])
        return str(event["id"])
