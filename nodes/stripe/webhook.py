"""Inbound Stripe webhooks: verify Stripe-Signature, filter event types, de-duplicate.

A trigger opts in with::

    auth: {type: stripe, connection: stripe, tolerance: 300,
           events: [payment_intent.succeeded, invoice.paid]}

``verify`` checks the ``Stripe-Signature`` header (HMAC-SHA256 of ``<t>.<raw body>``
with the connection's ``webhook_secret``, via the SDK's ``WebhookSignature``) and that
``t`` is no older than ``tolerance`` seconds; then it returns the event id (``evt_...``)
as the de-duplication key, so a redelivered or replayed event maps to the same key.

Refusals raise AuthError: 401 when the header is missing, 403 when the signature is
wrong, the timestamp is outside the tolerance, or the signed body is not a Stripe event.

An authentic event whose type is not listed in ``events`` raises ``IgnoredEvent`` (an
AuthError with status 202): the listener should answer 202 without starting a run.
Stripe treats any 2xx as delivered, so ignored types are not redelivered and do not
count against the endpoint's health, which a 4xx would.
"""
from __future__ import annotations

import fnmatch
import json
from engine.plugin import AuthError, Connection, InboundRequest, WebhookAuth

DEFAULT_TOLERANCE = 300


class IgnoredEvent(AuthError):
    """An authentic event of a type the trigger does not accept: acknowledge, do not run."""

    def __init__(self, event_type: str, event_id: str | None):
        super().__init__(202, f"event type {event_type!r} is not accepted by this trigger")
        self.event_type = event_type
        self.event_id = event_id


class StripeWebhookAuth(WebhookAuth):
    kind = "stripe"
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
                                      "Other authentic events are acknowledged with 202 "
                                      "and start no run. Default: all."},
        },
    }

    def verify(self, request: InboundRequest, connection: Connection | None,
               options: dict) -> str | None:
        secret = connection.get("webhook_secret") if connection is not None else None
        if not secret:
            name = connection.name if connection is not None else "(none)"
            raise AuthError(403, f"connection {name} has no webhook_secret: cannot verify "
                                 "Stripe signatures")
        header = request.headers.get("stripe-signature")
        if not header:
            raise AuthError(401, "missing Stripe-Signature header")

        from stripe import SignatureVerificationError, WebhookSignature

        tolerance = options.get("tolerance", DEFAULT_TOLERANCE)
        try:
            WebhookSignature.verify_header(request.body, header, secret, tolerance or None)
        except SignatureVerificationError as exc:
            raise AuthError(403, f"Stripe signature rejected: {exc.user_message}") from exc

        try:
            event = json.loads(request.body)
        except ValueError as exc:
            raise AuthError(403, "signed body is not JSON") from exc
        if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
            raise AuthError(403, "signed body is not a Stripe event (no id/type)")

        accepted = options.get("events")
        if accepted and not any(fnmatch.fnmatchcase(event["type"], p) for p in accepted):
            raise IgnoredEvent(event["type"], event["id"])
        return str(event["id"])

