"""The Stripe connection: settings, the client factory and the one place errors are mapped.

The SDK (``stripe``) is imported only inside ``build_client`` and ``StripeVendor``.

Retries belong to the engine. ``StripeClient`` would otherwise retry network errors, 409s
and 5xx by itself (``max_network_retries``); the client is built with
``max_network_retries=0`` so an action's ``retryPolicy`` is the only retry loop, each
engine attempt is exactly one HTTP request, and ``step.attempts`` counts real calls.
Every mutating call carries ``Idempotency-Key: <context.idempotency_key>`` (stable
across engine retries and resumes), so a retried POST is replayed by Stripe, never
executed twice.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from engine.plugin import (ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor,
                           endpoint_url, header, secret, status_is_retryable, trace_headers)

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "api_key": secret("Secret API key (sk_live_... / sk_test_...) or a restricted key "
                          "(rk_...). Required by every stripe.* action."),
        "webhook_secret": secret("Signing secret of a webhook endpoint (whsec_...), used by "
                                 "triggers with `auth: {type: stripe}`."),
        "stripe_account": {"type": "string",
                           "description": "Connected account id (acct_...): every call is "
                                          "made on its behalf (Stripe-Account header)."},
        "api_version": {"type": "string",
                        "description": "Stripe API version sent as Stripe-Version, e.g. "
                                       "2024-06-20. Default: the SDK's pinned version."},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 80,
                    "description": "Seconds to wait for one HTTP response."},
    },
}


def build_client(conn: Connection) -> Any:
    """One ``stripe.StripeClient`` per connection, with SDK-level retries disabled."""
    api_key = conn.get("api_key")
    if not api_key:
        raise ActionError(f"connection '{conn.name}' has no api_key secret",
                          code="MissingSetting", details={"setting": "api_key"})
    import stripe

    base_addresses = None
    if conn.endpoint:  # the endpoint override: stripe-mock, proxies, loopback tests
        base_addresses = {name: endpoint_url(url, conn.endpoint) for name, url in
                          (("api", "https://api.stripe.com"), ("files", "https://files.stripe.com"),
                           ("connect", "https://connect.stripe.com"))}
    return stripe.StripeClient(
        api_key,
        stripe_account=conn.get("stripe_account"),
        stripe_version=conn.get("api_version"),
        base_addresses=base_addresses,
        max_network_retries=0,  # the engine's retryPolicy is the only retry loop
        http_client=stripe.RequestsClient(timeout=float(conn.get("timeout", 80))),
    )




def options(context: Any, *, suffix: str = "") -> dict:
    """Request options of a mutating call: the action's stable idempotency key."""
    return {"idempotency_key": context.idempotency_key + suffix}


def plain(obj: Any) -> Any:
    """A StripeObject (or anything nested in one) as plain JSON-able data."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict(recursive=True, for_json=True)
    return obj


def _error_body(err: Any) -> dict:
    body = err.json_body if isinstance(getattr(err, "json_body", None), dict) else {}
    data = body.get("error")
    return data if isinstance(data, dict) else {}


class StripeVendor(Vendor):
    """The ``stripe`` SDK: what it needs, and how its exceptions map.

    ====================================  ==========  ===========================================
    SDK exception                         retried?    code
    ====================================  ==========  ===========================================
    CardError (402)                       no          decline_code, else code (``card_declined``)
    InvalidRequestError                   no          Stripe's code, else ``invalid_request_error``
    IdempotencyError                      no          ``idempotency_error``
    AuthenticationError                   no          ``authentication_error``
    PermissionError                       no          ``permission_error``
    RateLimitError (429)                  yes         Stripe's code, else ``rate_limit``
    APIConnectionError                    yes [1]     ``api_connection_error``
    APIError, v2 API errors [3]           409/5xx [2] Stripe's code, else ``api_error``
    SignatureVerificationError            no          ``signature_verification_error``
    TemporarySessionExpiredError          no          ``temporary_session_expired``
    OAuthError and its subclasses         no          Stripe's code, else ``oauth_error``
    StripeError (anything else)           409/5xx [2] Stripe's code, else ``api_error``
    ====================================  ==========  ===========================================

    [1] unless the SDK marks it not retryable (TLS certificate failures).
    [2] a ``Stripe-Should-Retry`` response header overrides the status rule.
    [3] AlreadyCanceledError, BlockedByStripeError, ... (``_V2_ERRORS``): v2 endpoints' errors.
    ``details`` holds status, type, code, decline_code, param and request_id.
    """

    name = "Stripe"
    modules = ("stripe",)
    extra = "stripe"

    def rules(self) -> list[Rule]:
        import stripe
        import stripe.oauth_error as oauth

        def vendor_code(default: str) -> Any:
            return lambda fault, exc: fault.details.get("code") or default

        def card_code(fault: Fault, exc: Any) -> str:
            return fault.details.get("decline_code") or fault.details.get("code") or "card_error"

        v2 = tuple(getattr(stripe, name) for name in _V2_ERRORS if hasattr(stripe, name))
        return [
            Rule((stripe.CardError,), card_code),
            Rule((stripe.InvalidRequestError, stripe.StripeErrorWithParamCode),
                 vendor_code("invalid_request_error")),
            Rule((stripe.IdempotencyError,), "idempotency_error"),
            Rule((stripe.AuthenticationError,), "authentication_error"),
            Rule((stripe.PermissionError,), "permission_error"),
            Rule((stripe.RateLimitError,), vendor_code("rate_limit"), retryable=True),
            Rule((stripe.APIConnectionError,), "api_connection_error",
                 retryable=lambda fault, exc: getattr(exc, "should_retry", True) is not False),
            Rule((stripe.APIError, *v2), vendor_code("api_error"), retryable=_should_retry),
            Rule((stripe.SignatureVerificationError,), "signature_verification_error"),
            Rule((stripe.TemporarySessionExpiredError,), "temporary_session_expired"),
            Rule((oauth.OAuthError,), lambda fault, exc: exc.code or "oauth_error"),
            Rule((stripe.StripeError,), vendor_code("api_error"), retryable=_should_retry,
                 fallback=True),
        ]

    def describe(self, err: Any) -> Fault:
        data = _error_body(err)
        details = {
            "status": err.http_status,
            "type": data.get("type"),
            "code": data.get("code") or err.code,
            "decline_code": data.get("decline_code"),
            "param": data.get("param") or getattr(err, "param", None),
            "request_id": err.request_id,
        }
        import stripe

        if isinstance(err, stripe.CardError):
            details["type"] = details["type"] or "card_error"
        elif isinstance(err, stripe.InvalidRequestError):
            details["type"] = details["type"] or "invalid_request_error"
        message = data.get("message") or getattr(err, "user_message", None) or str(err)
        return Fault(message=message, code=details["code"], status=err.http_status,
                     headers=err.headers or {}, details=details)


# v2 API errors: raised by /v2 endpoints, each its own class in the SDK.
_V2_ERRORS = ("AlreadyCanceledError", "BlockedByStripeError", "CannotProceedError",
              "CapabilityNotEnabledError", "ControlledByAlternateResourceError",
              "FeatureNotEnabledError", "FinancialAccountNotOpenError",
              "FxQuoteNeedsRefreshError", "InsufficientFundsError", "InvalidPaymentMethodError",
              "InvalidPayoutMethodError", "InvalidVaultedCredentialError", "NotCancelableError",
              "QuotaExceededError", "RecipientNotNotifiableError",
              "VerificationAttemptFailedError", "VerificationExpiredError",
              "VerificationNotInitiatedError")


def _should_retry(fault: Fault, exc: Any) -> bool:
    should_retry = header(fault.headers, "stripe-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    return status_is_retryable(fault.status, also=(409,))


STRIPE = StripeVendor()
CONNECTION = ConnectionSpec(
    kind="stripe",
    description="Stripe API with a secret key; optionally a webhook signing secret for "
                "inbound events. `endpoint` overrides https://api.stripe.com (stripe-mock, "
                "proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    vendor=STRIPE,
    example={"kind": "stripe", "settings": {"api_version": "2024-06-20"},
             "secrets": {"api_key": "STRIPE_API_KEY",
                         "webhook_secret": "STRIPE_WEBHOOK_SECRET"}},
)


@contextlib.contextmanager
def map_errors(connection: Any = None) -> Iterator[None]:
    """Turn ``stripe`` SDK exceptions into ActionError / RetryableError (see StripeVendor)."""
    with STRIPE.mapped(connection):
        yield


async def call(context: Any, method: Any, *args: Any, params: dict | None = None,
               mutating: bool = False, key_suffix: str = "") -> Any:
    """Call ``method(client)(*args, params, options)`` in a worker thread; plain result.

    ``method`` picks the SDK service method from the client, e.g.
    ``lambda c: c.v1.customers.create``. Mutating calls send the action's
    idempotency key (plus ``key_suffix`` when one action makes several calls).
    """
    client = await STRIPE.client(context)
    opts = options(context, suffix=key_suffix) if mutating else None
    trace = trace_headers({})  # the current span's traceparent, when tracing (engine.telemetry)
    if trace:
        opts = {**(opts or {}), "headers": trace}
    result = await STRIPE.call(context, method(client), *args, params or None, opts)
    return plain(result)
