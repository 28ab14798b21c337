"""The SendGrid connection: settings, the client factory and the one place errors are mapped.

The SDK (``sendgrid``, over ``python_http_client``/urllib) is imported only inside
``build_client``, ``request_client`` and ``SendGridVendor``. Each request carries the current
span's ``traceparent`` (``request_client``: per request, never on the shared client). It never retries by itself, so an action's
``retryPolicy`` is the only retry loop. SendGrid's v3 Mail Send has no idempotency key: a
retry after a 5xx or a timeout may deliver twice if SendGrid had in fact accepted the first
request.
"""
from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Iterator

from engine.plugin import (ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, header,
                           retry_after, secret, status_is_retryable)

HOSTS = {"global": "https://api.sendgrid.com", "eu": "https://api.eu.sendgrid.com"}

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["api_key"],
    "properties": {
        "api_key": secret("API key (SG....) with the Mail Send permission; sent as "
                          "Authorization: Bearer."),
        "region": {"enum": list(HOSTS), "default": "global",
                   "description": "Data residency: global (api.sendgrid.com) or eu "
                                  "(api.eu.sendgrid.com, for EU subusers)."},
        "on_behalf_of": {"type": "string",
                         "description": "Subuser to send as (On-Behalf-Of header)."},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 30,
                    "description": "Seconds to wait for one HTTP response."},
    },
}


def build_client(conn: Connection) -> Any:
    """One ``sendgrid.SendGridAPIClient`` per connection."""
    api_key = conn.get("api_key")
    if not api_key:
        raise ActionError(f"connection '{conn.name}' has no api_key secret",
                          code="MissingSetting", details={"setting": "api_key"})
    from sendgrid import SendGridAPIClient

    host = conn.endpoint.rstrip("/") if conn.endpoint else HOSTS[conn.get("region", "global")]
    client = SendGridAPIClient(api_key=api_key, host=host,
                               impersonate_subuser=conn.get("on_behalf_of"))
    client.client.timeout = float(conn.get("timeout", 30))
    return client


def request_client(client: Any, headers: dict[str, str] | None = None) -> Any:
    """The SDK's HTTP client for one request: the connection's headers, plus ``headers`` (the
    current span's ``traceparent``), in a dict of this request's own.

    ``python_http_client`` hands one mutable headers dict to every client it derives
    (``client.mail.send``) and merges a call's ``request_headers`` into it, so headers passed
    per call would stay on the connection's client for every later send, and concurrent sends
    (threads) would see each other's. A fresh ``Client`` per request shares nothing."""
    from python_http_client import Client

    base = client.client
    return Client(host=base.host, request_headers={**base.request_headers, **(headers or {})},
                  version=base._version, url_path=list(base._url_path), append_slash=base.append_slash,
                  timeout=base.timeout)




# -- errors -----------------------------------------------------------------------------

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         413: "payload_too_large", 429: "rate_limited"}


def _wait(headers: Any) -> float | None:
    """Retry-After (seconds or HTTP date), else X-RateLimit-Reset (a Unix time)."""
    if header(headers, "Retry-After") is not None:
        return retry_after(headers)
    reset = header(headers, "X-RateLimit-Reset")
    try:
        return max(0.0, float(reset) - time.time()) if reset is not None else None
    except ValueError:
        return None


def _errors(body: Any) -> list[dict]:
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (AttributeError, TypeError, ValueError):
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _describe(error: dict) -> str:
    message = error.get("message") or "(no message)"
    return f"{error['field']}: {message}" if error.get("field") else message


def _status_code(fault: Fault, exc: Any) -> str:
    default = "server_error" if status_is_retryable(fault.status) else f"http_{fault.status}"
    return CODES.get(fault.status, default)


def _transport_code(fault: Fault, exc: Any) -> str:
    return "timeout" if isinstance(getattr(exc, "reason", exc), TimeoutError) else "connection_error"


class SendGridVendor(Vendor):
    """The ``sendgrid`` SDK (python_http_client over urllib): how its exceptions map.

    ==================================  ==========  ===================================
    exception                           retried?    code
    ==================================  ==========  ===================================
    TooManyRequestsError (429)          yes         ``rate_limited``
    InternalServerError, Service...     yes         ``server_error``
    BadRequestsError (400)              no          ``bad_request``
    UnauthorizedError / ForbiddenError  no          ``unauthorized`` / ``forbidden``
    PayloadTooLargeError (413)          no          ``payload_too_large``
    NotFound, MethodNotAllowed, 415     no          ``not_found`` / ``http_<status>``
    HTTPError, any other status         429/5xx     as above, else ``http_<status>``
    timeout, connection                 yes         ``timeout`` / ``connection_error``
    ==================================  ==========  ===================================

    The message lists SendGrid's ``errors`` as ``field: reason``; ``details`` holds the
    status and the ``errors`` list as SendGrid returned it (message, field, help).
    """

    name = "SendGrid"
    modules = ("sendgrid", "python_http_client")
    extra = "sendgrid"

    def rules(self) -> list[Rule]:
        from http.client import HTTPException
        from urllib.error import URLError

        from python_http_client import exceptions as e

        by_status = (lambda fault, exc: status_is_retryable(fault.status))
        return [
            Rule((e.BadRequestsError, e.UnauthorizedError, e.ForbiddenError, e.NotFoundError,
                  e.MethodNotAllowedError, e.PayloadTooLargeError, e.UnsupportedMediaTypeError,
                  e.TooManyRequestsError, e.InternalServerError, e.ServiceUnavailableError,
                  e.GatewayTimeoutError), _status_code, retryable=by_status),
            Rule((e.HTTPError,), _status_code, retryable=by_status, fallback=True),
            Rule((TimeoutError,), "timeout", retryable=True),
            Rule((URLError, HTTPException, ConnectionError), _transport_code, retryable=True),
        ]

    def describe(self, err: Any) -> Fault:
        from python_http_client.exceptions import HTTPError

        if isinstance(err, HTTPError):
            status = int(err.status_code)
            errors = _errors(err.body)
            reasons = "; ".join(_describe(e) for e in errors) or (err.reason or "no details")
            return Fault(f"SendGrid rejected the request (HTTP {status}): {reasons}",
                         status=status, details={"status": status, "errors": errors},
                         retry_after=_wait(err.headers))
        reason = getattr(err, "reason", err)
        if isinstance(err, TimeoutError) or isinstance(reason, TimeoutError):
            return Fault(f"SendGrid did not answer in time: {reason}")
        return Fault(f"cannot reach SendGrid: {reason}")


SENDGRID = SendGridVendor()
CONNECTION = ConnectionSpec(
    kind="sendgrid",
    description="Twilio SendGrid v3 Web API with an API key. `endpoint` overrides "
                "https://api.sendgrid.com (proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    vendor=SENDGRID,
    example={"kind": "sendgrid", "secrets": {"api_key": "SENDGRID_API_KEY"}},
)


@contextlib.contextmanager
def map_errors(connection: Any = None) -> Iterator[None]:
    """Turn SendGrid SDK (python_http_client / urllib) exceptions into flowrun errors."""
    with SENDGRID.mapped(connection):
        yield
