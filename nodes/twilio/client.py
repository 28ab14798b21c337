"""The Twilio connection: settings, the client factory and the one place errors are mapped.

The SDK (``twilio``) is imported only inside ``build_client`` and ``TwilioVendor``.

Every connection's ``twilio.rest.Client`` sends through a ``_FlowrunHttpClient`` (a
``TwilioHttpClient`` subclass, built lazily) that

- rewrites the scheme and host of each request to the connection's ``endpoint`` when one
  is set, keeping the path and query the SDK built (``/2010-04-01/Accounts/AC.../
  Messages.json``), so sandboxes, proxies and tests receive exactly what Twilio would;
- keeps the last response of each thread (``_LAST``), so an action's output is the resource JSON as
  Twilio returned it (snake_case keys, RFC 2822 dates), and a failed call's Retry-After
  and ``more_info`` are known when the error is mapped.

The SDK does not retry by itself (requests' default adapter makes one attempt), so an
action's ``retryPolicy`` is the only retry loop and ``step.attempts`` counts real calls.
Twilio has no idempotency key for creating messages or calls: a retry after a 5xx may
send twice if Twilio had in fact accepted the first request.
"""
from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Callable, Iterator

from engine.plugin import (ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor,
                           endpoint_url, secret, status_is_retryable, trace_headers)

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
            self.endpoint = endpoint

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            url = endpoint_url(url, self.endpoint)
            if len(args) < 3:  # headers not given by position (the SDK names them): add the traceparent
                kwargs["headers"] = trace_headers(kwargs.get("headers"))
            _LAST.response = None
            response = super().request(method, url, *args, **kwargs)
            _LAST.response = response
            return response

    _HTTP_CLIENT = FlowrunHttpClient
    return FlowrunHttpClient


_HTTP_CLIENT: type | None = None
_LAST = threading.local()  # the last response this worker thread received (one call at a time)


def _last_response() -> Any:
    return getattr(_LAST, "response", None)


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




# -- calls and errors ---------------------------------------------------------------------

class TwilioVendor(Vendor):
    """The ``twilio`` SDK (over requests): what it needs, and how its exceptions map.

    =========================  ==========  ==========================================
    exception                  retried?    code
    =========================  ==========  ==========================================
    TwilioRestException 429    yes         Twilio's error code (``20429``)
    TwilioRestException 5xx    yes         Twilio's error code, else ``http_<status>``
    TwilioRestException 4xx    no          Twilio's error code (``21211``, ``20003``)
    TwilioServiceException     as above    its ``code`` (RFC 9457 problem details)
    requests Timeout           yes         ``timeout``
    other requests errors      yes         ``connection_error``
    other TwilioException      no          ``twilio_error``
    =========================  ==========  ==========================================

    ``details`` holds status, Twilio's numeric ``twilio_code``, ``more_info`` (the error's
    documentation page), method and uri; ``retry_after`` comes from Retry-After.
    """

    name = "Twilio"
    modules = ("twilio",)
    extra = "twilio"

    def rules(self) -> list[Rule]:
        import requests
        from twilio.base.exceptions import (TwilioException, TwilioRestException,
                                            TwilioServiceException)

        def code(fault: Fault, exc: Any) -> str:
            return fault.code or f"http_{fault.status}"

        return [
            Rule((TwilioRestException, TwilioServiceException), code,
                 retryable=lambda fault, exc: status_is_retryable(fault.status)),
            Rule((requests.Timeout,), "timeout", retryable=True),
            Rule((requests.RequestException,), "connection_error", retryable=True),
            Rule((TwilioException,), "twilio_error", fallback=True),
        ]

    def describe(self, err: Any) -> Fault:
        import requests
        from twilio.base.exceptions import TwilioRestException, TwilioServiceException

        if isinstance(err, (TwilioRestException, TwilioServiceException)):
            return _describe_rest(err, _last_response())
        if isinstance(err, requests.Timeout):
            return Fault(f"Twilio did not answer in time: {err}")
        if isinstance(err, requests.RequestException):
            return Fault(f"cannot reach Twilio: {err}")
        return Fault(f"Twilio: {err}")


TWILIO = TwilioVendor()
CONNECTION = ConnectionSpec(
    kind="twilio",
    description="Twilio REST API (SMS, WhatsApp, Voice) with the account's Auth Token or an "
                "API Key; the Auth Token also verifies inbound webhooks "
                "(`auth: {type: twilio}`). `endpoint` overrides the https://*.twilio.com "
                "hosts (sandboxes, proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    vendor=TWILIO,
    example={"kind": "twilio", "settings": {"account_sid": "AC0123456789abcdef0123456789abcdef"},
             "secrets": {"auth_token": "TWILIO_AUTH_TOKEN"}},
)


async def call(context: Any, fn: Callable[[Any], Any]) -> dict:
    """Run ``fn(client)`` in a worker thread; return the response JSON Twilio sent."""
    client = await TWILIO.client(context)
    return await TWILIO.call(context, _call_sync, client, fn)


def _call_sync(client: Any, fn: Callable[[Any], Any]) -> dict:
    _LAST.response = None
    fn(client)
    response = _last_response()
    return json.loads(response.text) if response is not None and response.text else {}


@contextlib.contextmanager
def map_errors(connection: Any = None) -> Iterator[None]:
    """Turn ``twilio`` SDK (and requests) exceptions into flowrun errors (see TwilioVendor)."""
    with TWILIO.mapped(connection):
        yield


def _body(response: Any) -> dict:
    try:
        data = json.loads(response.text)
    except (AttributeError, TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe_rest(err: Any, response: Any) -> Fault:
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
    label = f"Twilio error {twilio_code}" if twilio_code else "Twilio error"
    return Fault(f"{label} (HTTP {status}): {reason}",
                 code=str(twilio_code) if twilio_code else None, status=status,
                 headers=getattr(response, "headers", None), details=details)
