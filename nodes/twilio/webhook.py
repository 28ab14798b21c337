"""Inbound Twilio webhooks: X-Twilio-Signature verification.

Twilio signs each webhook with HMAC-SHA1 (base64) of the full URL it requested, followed by
every POST parameter name+value in sorted order, keyed by the account's Auth Token
(``twilio.request_validator.RequestValidator``). JSON webhooks sign the URL only, which
carries ``bodySHA256`` of the body. Requests carrying ``X-Twilio-Webhooks-Signature-Settings``
name their algorithm (HMAC_SHA1 / HMAC_SHA256) and are keyed by a SharedKey secret
(``webhook_key``, default ``auth_token``).

The URL must be the public one Twilio called (scheme, host, path and query as configured
in the Twilio Console), not the one the listener sees behind a proxy. Signatures carry no
timestamp: de-duplicate on Twilio's ``I-Twilio-Idempotency-Token`` header, which stays the
same when Twilio retries a webhook delivery.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.plugin import AuthError, Connection, InboundRequest, WebhookAuth

SIGNATURE = "x-twilio-signature"
SETTINGS = "x-twilio-webhooks-signature-settings"
IDEMPOTENCY = "i-twilio-idempotency-token"


class _Params(dict):
    """Form parameters in the shape RequestValidator reads repeated values from."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def _body_hash(url: str) -> str | None:
    """The ``bodySHA256`` query parameter of the signed URL, or None."""
    values = parse_qs(urlsplit(url).query, keep_blank_values=True).get("bodySHA256")
    return values[0] if values else None


class TwilioSignature(WebhookAuth):
    kind = "twilio"
    header = "X-Twilio-Signature"
    connection = "twilio"
    options = {"type": "object", "additionalProperties": False, "properties": {}}

    def verify(self, request: InboundRequest, connection: Connection | None,
               options: dict) -> str | None:
        from twilio.request_validator import RequestValidator, get_signature_algorithm

        signature = request.headers.get(SIGNATURE)
        if not signature:
            raise AuthError(401, "missing X-Twilio-Signature header")
        settings = request.headers.get(SETTINGS)
        token = None
        if connection is not None:
            token = (settings and connection.get("webhook_key")) or connection.get("auth_token")
        if not token:
            raise AuthError(403, "cannot verify X-Twilio-Signature: the twilio connection "
                                 "has no auth_token secret")
        params = self._signed_params(request)
        validator = RequestValidator(token)
        if not validator.validate(request.url, params, signature,
                                  get_signature_algorithm(settings)):
            raise AuthError(403, f"X-Twilio-Signature does not match the request to "
                                 f"{request.url} (forged, altered, or signed for another URL)")
        return request.headers.get(IDEMPOTENCY) or None

    @staticmethod
    def _signed_params(request: InboundRequest) -> Any:
        """What the signature covers beside the URL: the form fields of a form post; for any
        other body, nothing, but then the URL must carry ``bodySHA256`` of exactly that body.
        A body on GET is refused: Twilio sends none, and a URL-only signature covers none."""
        body_hash = _body_hash(request.url)
        if request.body and request.method in ("GET", "HEAD"):
            raise AuthError(403, f"a {request.method} webhook carries no body; X-Twilio-Signature "
                                 "covers the URL only")
        if body_hash is not None:  # the URL (signed) pins the body, whatever its type
            actual = hashlib.sha256(request.body).hexdigest()
            if not hmac.compare_digest(body_hash.lower().encode(), actual.encode()):
                raise AuthError(403, "the body does not match bodySHA256 in the signed URL")
            return _Params(request.form) if request.form is not None else {}
        if request.form is not None:
            return _Params(request.form)
        if request.body:
            raise AuthError(403, "a non-form body must be covered by bodySHA256 in the signed URL "
                                 "(X-Twilio-Signature covers the URL and form fields only)")
        return {}
