"""The Stripe connection: settings, the client factory and the one place errors are mapped.

The SDK (``stripe``) is imported only inside ``build_client`` and ``map_errors``.

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

from engine.plugin import (ActionError, Connection, ConnectionSpec, RetryableError, run_sync,
                           secret)

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
    if conn.endpoint:
        base = conn.endpoint.rstrip("/")
        base_addresses = {"api": base, "files": base, "connect": base}
    return stripe.StripeClient(
        api_key,
        stripe_account=conn.get("stripe_account"),
        stripe_version=conn.get("api_version"),
        base_addresses=base_addresses,
        max_network_retries=0,  # the engine's retryPolicy is the only retry loop
        http_client=stripe.RequestsClient(timeout=float(conn.get("timeout", 80))),
    )


CONNECTION = ConnectionSpec(
    kind="stripe",
    description="Stripe API with a secret key; optionally a webhook signing secret for "
                "inbound events. `endpoint` overrides https://api.stripe.com (stripe-mock, "
                "proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    example={"kind": "stripe", "settings": {"api_version": "2024-06-20"},
             "secrets": {"api_key": "STRIPE_API_KEY",
                         "webhook_secret": "STRIPE_WEBHOOK_SECRET"}},
)


def options(context: Any, *, suffix: str = "") -> dict:
    """Request options of a mutating call: the action's stable idempotency key."""
    return {"idempotency_key": context.idempotency_key + suffix}


def plain(obj: Any) -> Any:
    """A StripeObject (or anything nested in one) as plain JSON-able data."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict(recursive=True, for_json=True)
    return obj


def compact(values: dict) -> dict:
    """Drop the inputs that were not given (None), so Stripe applies its defaults."""
    return {k: v for k, v in values.items() if v is not None}


def _header(headers: Any, name: str) -> str | None:
    """A response header, whatever the case of its name."""
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _retry_after(headers: Any) -> float | None:
    try:
        return float(_header(headers, "retry-after"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _error_body(err: Any) -> dict:
    body = err.json_body if isinstance(getattr(err, "json_body", None), dict) else {}
    data = body.get("error")
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def map_errors() -> Iterator[None]:
    """Turn ``stripe`` SDK exceptions into ActionError / RetryableError.

    ====================  ==========  ============================================
    SDK exception         retried?    code
    ====================  ==========  ============================================
    CardError (402)       no          decline_code, else code (``card_declined``)
    InvalidRequestError   no          Stripe's code, else ``invalid_request_error``
    IdempotencyError      no          ``idempotency_error``
    AuthenticationError   no          ``authentication_error``
    PermissionError       no          ``permission_error``
    RateLimitError (429)  yes         Stripe's code, else ``rate_limit``
    APIConnectionError    yes [1]     ``api_connection_error``
    APIError 409 / 5xx    yes [2]     Stripe's code, else ``api_error``
    ====================  ==========  ============================================

    [1] unless the SDK marks it not retryable (TLS certificate failures).
    [2] a ``Stripe-Should-Retry`` response header overrides the status rule.
    ``details`` holds status, type, code, decline_code, param and request_id.
    """
    import stripe

    try:
        yield
    except stripe.StripeError as err:
        raise _convert(err, stripe) from err


def _convert(err: Any, stripe: Any) -> ActionError:
    data = _error_body(err)
    status = err.http_status
    headers = err.headers or {}
    message = data.get("message") or getattr(err, "user_message", None) or str(err)
    details = {
        "status": status,
        "type": data.get("type"),
        "code": data.get("code") or err.code,
        "decline_code": data.get("decline_code"),
        "param": data.get("param") or getattr(err, "param", None),
        "request_id": err.request_id,
    }
    details = {k: v for k, v in details.items() if v is not None}

    if isinstance(err, stripe.CardError):
        code = data.get("decline_code") or data.get("code") or err.code or "card_error"
        details.setdefault("type", "card_error")
        return ActionError(message, code=code, details=details)
    if isinstance(err, stripe.InvalidRequestError):
        details.setdefault("type", "invalid_request_error")
        return ActionError(message, code=details.get("code") or "invalid_request_error",
                           details=details)
    if isinstance(err, stripe.IdempotencyError):
        return ActionError(message, code="idempotency_error", details=details)
    if isinstance(err, stripe.AuthenticationError):
        return ActionError(message, code="authentication_error", details=details)
    if isinstance(err, stripe.PermissionError):
        return ActionError(message, code="permission_error", details=details)
    if isinstance(err, stripe.RateLimitError):
        return RetryableError(message, code=details.get("code") or "rate_limit",
                              details=details, retry_after=_retry_after(headers))
    if isinstance(err, stripe.APIConnectionError):
        cls = RetryableError if getattr(err, "should_retry", True) else ActionError
        return cls(message, code="api_connection_error", details=details)

    should_retry = _header(headers, "stripe-should-retry")
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    else:
        retryable = status is not None and (status == 409 or status >= 500)
    cls = RetryableError if retryable else ActionError
    return cls(message, code=details.get("code") or "api_error", details=details,
               retry_after=_retry_after(headers) if retryable else None)


async def call(context: Any, method: Any, *args: Any, params: dict | None = None,
               mutating: bool = False, key_suffix: str = "") -> Any:
    """Call ``method(client)(*args, params, options)`` in a worker thread; plain result.

    ``method`` picks the SDK service method from the client, e.g.
    ``lambda c: c.v1.customers.create``. Mutating calls send the action's
    idempotency key (plus ``key_suffix`` when one action makes several calls).
    """
    client = context.connection.client
    opts = options(context, suffix=key_suffix) if mutating else None
    with map_errors():
        result = await run_sync(method(client), *args, params or None, opts)
    return plain(result)
