"""The SendGrid connection: settings, the client factory and the one place errors are mapped.

The SDK (``sendgrid``, over ``python_http_client``/urllib) is imported only inside
``build_client`` and ``map_errors``. It never retries by itself, so an action's
``retryPolicy`` is the only retry loop. SendGrid's v3 Mail Send has no idempotency key: a
retry after a 5xx or a timeout may deliver twice if SendGrid had in fact accepted the first
request.
"""
from __future__ import annotations

import contextlib
import email.utils
import json
import time
from typing import Any, Iterator

from engine.plugin import ActionError, Connection, ConnectionSpec, RetryableError, secret

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


CONNECTION = ConnectionSpec(
    kind="sendgrid",
    description="Twilio SendGrid v3 Web API with an API key. `endpoint` overrides "
                "https://api.sendgrid.com (proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    example={"kind": "sendgrid", "secrets": {"api_key": "SENDGRID_API_KEY"}},
)


# -- errors -----------------------------------------------------------------------------

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         413: "payload_too_large", 429: "rate_limited"}


def _retry_after(headers: Any) -> float | None:
    """Retry-After (seconds or HTTP date), else X-RateLimit-Reset (a Unix time)."""
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp()
                           - time.time())
            except (TypeError, ValueError):
                return None
    reset = headers.get("X-RateLimit-Reset")
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


@contextlib.contextmanager
def map_errors() -> Iterator[None]:
    """Turn SendGrid SDK (python_http_client / urllib) exceptions into flowrun errors.

    ======================  ==========  ===================================
    exception               retried?    code
    ======================  ==========  ===================================
    HTTPError 429           yes         ``rate_limited``
    HTTPError 5xx           yes         ``server_error``
    HTTPError 400           no          ``bad_request``
    HTTPError 401 / 403     no          ``unauthorized`` / ``forbidden``
    HTTPError 413           no          ``payload_too_large``
    timeout, connection     yes         ``timeout`` / ``connection_error``
    ======================  ==========  ===================================

    The message lists SendGrid's ``errors`` as ``field: reason``; ``details`` holds the
    status and the ``errors`` list as SendGrid returned it (message, field, help).
    """
    from http.client import HTTPException
    from urllib.error import URLError

    from python_http_client.exceptions import HTTPError

    try:
        yield
    except HTTPError as err:
        raise _convert(err) from err
    except TimeoutError as err:
        raise RetryableError(f"SendGrid did not answer in time: {err}", code="timeout") from err
    except (URLError, HTTPException, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, TimeoutError):
            raise RetryableError(f"SendGrid did not answer in time: {reason}",
                                 code="timeout") from err
        raise RetryableError(f"cannot reach SendGrid: {reason}",
                             code="connection_error") from err


def _convert(err: Any) -> ActionError:
    status = int(err.status_code)
    errors = _errors(err.body)
    reasons = "; ".join(_describe(e) for e in errors) or (err.reason or "no details")
    message = f"SendGrid rejected the request (HTTP {status}): {reasons}"
    details = {"status": status, "errors": errors}
    if status == 429 or status >= 500:
        return RetryableError(message, code=CODES.get(status, "server_error"),
                              details=details, retry_after=_retry_after(err.headers))
    return ActionError(message, code=CODES.get(status, f"http_{status}"), details=details)
