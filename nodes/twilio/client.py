"""The Twilio connection: settings, the client factory and the one place errors are mapped.

The SDK (``twilio``) is imported only inside ``build_client`` and ``call``.

Every connection's ``twilio.rest.Client`` sends through a ``_FlowrunHttpClient`` (a
``TwilioHttpClient`` subclass, built lazily) that

- rewrites the scheme and host of each request to the connection's ``endpoint`` when one
  is set, keeping the path and query the SDK built (``/2010-04-01/Accounts/AC.../
  Messages.json``), so sandboxes, proxies and tests receive exactly what Twilio would;
- keeps the last response of each thread, so an action's output is the resource JSON as
  Twilio returned it (snake_case keys, RFC 2822 dates), and a failed call's Retry-After
  and ``more_info`` are known when the error is mapped.

The SDK does not retry by itself (requests' default adapter makes one attempt), so an
action's ``retryPolicy`` is the only retry loop and ``step.attempts`` counts real calls.
Twilio has no idempotency key for creating messages or calls: a retry after a 5xx may
send twice if Twilio had in fact accepted the first request.
"""
from __future__ import annotations

import contextlib
import email.utils
import json
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

from engine.plugin import (ActionError, Connection, ConnectionSpec, RetryableError, run_sync,
                           secret)

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["account_sid"],
    "properties": {
        "account_sid": {"type": "string", "pattern": "^AC",
                        "description": "Account SID (AC...): the account every call acts on."},
        "auth_token": secret("Account Auth Token. Authenticates API calls (unless api_key is "
                             "set) and verifies X-Twilio-Signature on inbound webhooks."),
        "api_key": {"type": "string",
                    "description": "API Key SID (SK...). When set, calls authenticate with "
                                   "api_key + api_secret instead of the Auth Token."},
        "api_secret": secret("Secret of the API Key given in api_key."),
        "webhook_key": secret("Secret of a webhook SharedKey, for requests that carry "
                              "X-Twilio-Webhooks-Signature-Settings. Default: auth_token."),
        "region": {"type": "string",
                   "description": "Twilio Region to process data in, e.g. us1, ie1, au1."},
        "edge": {"type": "string",
                 "description": "Twilio Edge location to connect through, e.g. dublin, sydney, "
                                "ashburn (region defaults to us1 when only edge is set)."},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 60,
                    "description": "Seconds to wait for one HTTP response."},
    },
}


def _http_client_class() -> type:
    """``TwilioHttpClient`` + endpoint rewrite + per-thread last response (built once)."""
    global _HTTP_CLIENT
    if _HTTP_CLIENT is not None:
        return _HTTP_CLIENT
    from twilio.http.http_client import TwilioHttpClient

    class FlowrunHttpClient(TwilioHttpClient):
        def __init__(self, endpoint: str | None, timeout: float) -> None:
            super().__init__(timeout=timeout)
            self.endpoint = urlsplit(endpoint.rstrip("/")) if endpoint else None
            self._local = threading.local()

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if self.endpoint is not None:
                parts = urlsplit(url)
                url = urlunsplit((self.endpoint.scheme, self.endpoint.netloc,
                                  self.endpoint.path + parts.path, parts.query, ""))
            self._local.last = None
            response = super().request(method, url, *args, **kwargs)
            self._local.last = response
            return response

        @property
        def last_response(self) -> Any:
            return getattr(self._local, "last", None)

        def forget(self) -> None:
            self._local.last = None

    _HTTP_CLIENT = FlowrunHttpClient
    return FlowrunHttpClient


_HTTP_CLIENT: type | None = None


def build_client(conn: Connection) -> Any:
    """One ``twilio.rest.Client`` per connection (Auth Token or API Key credentials)."""
    account_sid = conn.get("account_sid")
    if not account_sid:
        raise ActionError(f"connection '{conn.name}' has no account_sid setting",
                          code="MissingSetting", details={"setting": "account_sid"})
    if conn.get("api_key"):
        username, password, needed = conn.get("api_key"), conn.get("api_secret"), "api_secret"
    else:
        username, password, needed = account_sid, conn.get("auth_token"), "auth_token"
    if not password:
        raise ActionError(f"connection '{conn.name}' has no {needed} secret",
                          code="MissingSetting", details={"setting": needed})
    from twilio.rest import Client

    http = _http_client_class()(conn.endpoint, float(conn.get("timeout", 60)))
    return Client(username, password, account_sid, region=conn.get("region"),
                  edge=conn.get("edge"), http_client=http,
                  # a non-empty mapping: keeps TWILIO_* variables of the process out
                  environment={"FLOWRUN": "1"})


CONNECTION = ConnectionSpec(
    kind="twilio",
    description="Twilio REST API (SMS, WhatsApp, Voice) with the account's Auth Token or an "
                "API Key; the Auth Token also verifies inbound webhooks "
                "(`auth: {type: twilio}`). `endpoint` overrides the https://*.twilio.com "
                "hosts (sandboxes, proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    example={"kind": "twilio", "settings": {"account_sid": "AC0123456789abcdef0123456789abcdef"},
             "secrets": {"auth_token": "TWILIO_AUTH_TOKEN"}},
)


# -- calls and errors ---------------------------------------------------------------------

async def call(context: Any, fn: Callable[[Any], Any]) -> dict:
    """Run ``fn(client)`` in a worker thread; return the response JSON Twilio sent."""
    return await run_sync(_call_sync, context.connection.client, fn)


def _call_sync(client: Any, fn: Callable[[Any], Any]) -> dict:
    http = client.http_client
    http.forget()
    with map_errors(http):
        fn(client)
    response = http.last_response
    return json.loads(response.text) if response is not None and response.text else {}


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _body(response: Any) -> dict:
    try:
        data = json.loads(response.text)
    except (AttributeError, TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def map_errors(http: Any = None) -> Iterator[None]:
    """Turn ``twilio`` SDK (and requests) exceptions into ActionError / RetryableError.

    =========================  ==========  ==========================================
    exception                  retried?    code
    =========================  ==========  ==========================================
    TwilioRestException 429    yes         Twilio's error code (``20429``)
    TwilioRestException 5xx    yes         Twilio's error code, else ``http_<status>``
    TwilioRestException 4xx    no          Twilio's error code (``21211``, ``20003``)
    TwilioServiceException     as above    its ``code`` (RFC 9457 problem details)
    requests Timeout/Conn...   yes         ``timeout`` / ``connection_error``
    other TwilioException      no          ``twilio_error``
    =========================  ==========  ==========================================

    ``details`` holds status, Twilio's numeric ``twilio_code``, ``more_info`` (the error's
    documentation page), method and uri; ``retry_after`` comes from Retry-After.
    ``http`` is the connection's HTTP client (its last response carries the headers).
    """
    import requests
    from twilio.base.exceptions import (TwilioException, TwilioRestException,
                                        TwilioServiceException)

    try:
        yield
    except (TwilioRestException, TwilioServiceException) as err:
        raise _convert(err, getattr(http, "last_response", None)) from err
    except requests.Timeout as err:
        raise RetryableError(f"Twilio did not answer in time: {err}", code="timeout") from err
    except requests.RequestException as err:
        raise RetryableError(f"cannot reach Twilio: {err}", code="connection_error") from err
    except TwilioException as err:
        raise ActionError(f"Twilio: {err}", code="twilio_error") from err


def _convert(err: Any, response: Any) -> ActionError:
    status = int(err.status)
    body = _body(response)
    twilio_code = err.code if isinstance(err.code, int) and err.code != status else None
    if hasattr(err, "title"):  # RFC 9457 problem details
        reason = err.title + (f": {err.detail}" if err.detail else "")
        if err.errors:
            reason += " (" + "; ".join(f"{e.get('pointer', '?')}: {e.get('detail', '?')}"
                                       for e in err.errors) + ")"
        more_info = err.type
    else:
        reason = body.get("message") or err.msg
        more_info = body.get("more_info")
    details = {"status": status, "twilio_code": twilio_code, "more_info": more_info,
               "method": err.method, "uri": err.uri}
    if getattr(err, "details", None):
        details["details"] = err.details
    details = {k: v for k, v in details.items() if v is not None}
    code = str(twilio_code) if twilio_code else f"http_{status}"
    label = f"Twilio error {twilio_code}" if twilio_code else "Twilio error"
    message = f"{label} (HTTP {status}): {reason}"
    if status == 429 or status >= 500:
        headers = getattr(response, "headers", None)
        return RetryableError(message, code=code, details=details,
                              retry_after=_retry_after(headers))
    return ActionError(message, code=code, details=details)
