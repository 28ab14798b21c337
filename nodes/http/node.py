"""Http: one request with httpx; non-2xx fails the action, 408/429/5xx are retryable."""
from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urljoin

from engine.errors import ActionError, RetryableError
from engine.model import parse_duration
from engine.plugin import (Connection, ConnectionSpec, Context, Fault, Node, Rule, Vendor,
                           retry_after, secret, trace_headers)

RETRYABLE_STATUS = {408, 429} | set(range(500, 600))


def _auth_headers(conn: Connection | None) -> dict[str, str]:
    if conn is None:
        return {}
    kind = conn.get("auth", "none")
    if kind == "basic":
        token = base64.b64encode(f"{conn.get('username', '')}:{conn.secret('password') or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if kind == "bearer":
        return {"Authorization": f"Bearer {conn.secret('token') or ''}"}
    if kind == "header":
        return {conn.get("header_name", "X-API-Key"): conn.secret("token") or ""}
    return {}


def _authentication(auth: Any) -> dict[str, str]:
    """Logic Apps' ``authentication`` input as headers; its secret joins the redactor first."""
    from engine.connections import PROCESS_REDACTOR

    if not isinstance(auth, dict):
        return {}
    kind = str(auth.get("type", "none")).lower()
    if kind == "basic":
        password = str(auth.get("password") or "")
        token = base64.b64encode(f"{auth.get('username', '')}:{password}".encode()).decode()
        for secret_value in (password, token):
            PROCESS_REDACTOR.add(secret_value)
        return {"Authorization": f"Basic {token}"}
    if kind == "raw":
        value = str(auth.get("value") or "")
        PROCESS_REDACTOR.add(value)
        return {"Authorization": value}
    if kind == "none":
        return {}
    raise ActionError(f"authentication type {auth.get('type')!r} is not supported (Basic, Raw or None)",
                      code="UnsupportedAuthentication")


def _derived(values: dict) -> list[str]:
    return [v for v in values.values() if v]


HTTP_CONNECTION = ConnectionSpec(
    kind="http",
    description="Authentication and a base URL for Http actions (secrets from the environment).",
    settings={"type": "object", "additionalProperties": False, "properties": {
        "base_url": {"type": "string", "description": "relative `uri`s are resolved against it"},
        "auth": {"enum": ["none", "basic", "bearer", "header"], "default": "none"},
        "username": {"type": "string", "description": "for basic auth"},
        "header_name": {"type": "string", "description": "for header auth, e.g. x-functions-key"},
        "password": secret("basic auth password"),
        "token": secret("bearer token, or the header value for header auth"),
    }},
    derived_secrets=_derived,
    example={"kind": "http", "settings": {"auth": "bearer", "base_url": "https://api.example.com"},
             "secrets": {"token": "EXAMPLE_API_TOKEN"}},
)


class _Clients:
    """One httpx.AsyncClient per event loop (clients cannot cross loops)."""

    def __init__(self) -> None:
        self._by_loop: dict[int, Any] = {}

    def get(self) -> Any:
        import asyncio

        import httpx

        key = id(asyncio.get_running_loop())
        client = self._by_loop.get(key)
        if client is None or client.is_closed:
            if len(self._by_loop) > 8:
                self._by_loop.clear()
            client = self._by_loop[key] = httpx.AsyncClient(follow_redirects=False)
        return client


_clients = _Clients()


class HttpVendor(Vendor):
    """httpx (a base dependency): how its exceptions map. Statuses are mapped by the node.

    ====================================  ========  ======================
    httpx exception                       retried?  code
    ====================================  ========  ======================
    TimeoutException (Connect/Read/...)   yes       ``HttpTimeout``
    TransportError (network, protocol,    yes       ``HttpConnectionError``
      proxy, unsupported protocol)
    InvalidURL                            no        ``InvalidUri``
    DecodingError                         no        ``HttpDecodingError``
    TooManyRedirects                      no        ``HttpTooManyRedirects``
    HTTPStatusError                       no        ``HttpStatusError``
    StreamError and its subclasses        no        ``HttpStreamError``
    CookieConflict                        no        ``HttpCookieConflict``
    RequestError, HTTPError (others)      no        ``HttpRequestError``
    ====================================  ========  ======================
    """

    name = "httpx"
    modules = ("httpx",)

    def rules(self) -> list[Rule]:
        import httpx

        return [
            Rule((httpx.TimeoutException,), "HttpTimeout", retryable=True),
            Rule((httpx.TransportError,), "HttpConnectionError", retryable=True),
            Rule((httpx.InvalidURL,), "InvalidUri"),
            Rule((httpx.DecodingError,), "HttpDecodingError"),
            Rule((httpx.TooManyRedirects,), "HttpTooManyRedirects"),
            Rule((httpx.HTTPStatusError,), "HttpStatusError"),
            Rule((httpx.StreamError,), "HttpStreamError"),
            Rule((httpx.CookieConflict,), "HttpCookieConflict"),
            Rule((httpx.RequestError, httpx.HTTPError), "HttpRequestError", fallback=True),
        ]


HTTP = HttpVendor()


def _fault(exc: Exception, method: str, uri: str) -> Fault:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return Fault(f"{method} {uri}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.InvalidURL):
        return Fault(f"invalid uri {uri!r}: {exc}")
    return Fault(f"{method} {uri}: {type(exc).__name__}: {exc}")


class Http(Node):
    type = "Http"
    title = "Send an HTTP request"
    description = ("Sends one request with httpx. A non-2xx response fails the action with the status and "
                   "body in its error (408, 429 and 5xx are retried by the retry policy, honouring "
                   "Retry-After). Authentication comes from an optional `http` connection; "
                   "`idempotencyKey: true` sends the action's stable Idempotency-Key header.")
    input_schema = {"type": "object", "additionalProperties": False, "required": ["method", "uri"], "properties": {
        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                            "get", "post", "put", "patch", "delete", "head", "options"]},
        "uri": {"type": "string", "description": "absolute, or relative to the connection's base_url/endpoint"},
        "headers": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "queries": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "body": {"description": "JSON value (sent as JSON) or text"},
        "timeout": {"type": "string", "description": "per-request timeout, ISO 8601 (default PT100S)"},
        "idempotencyKey": {"type": ["boolean", "string"],
                           "description": "true: send Idempotency-Key; a string: the header name to use"},
        "retryPolicy": {"type": "object", "description": "where Logic Apps writes an Http action's retry policy "
                                                         "(the action's own retryPolicy, same shape)"},
        "authentication": {"type": "object", "required": ["type"],
                           "description": "Logic Apps' shape: {type: Basic, username, password} or "
                                          "{type: Raw, value} (the Authorization header); the secret is "
                                          "redacted wherever the step is stored or shown",
                           "properties": {"type": {"type": "string"}, "username": {"type": "string"},
                                          "password": {"type": "string"}, "value": {"type": "string"}}},
    }}
    AUTHENTICATION = ("none", "basic", "raw")
    inputs_required = True
    connection = "http"
    connection_optional = True
    example = {"type": "Http", "inputs": {"method": "POST", "uri": "https://httpbin.org/post",
                                          "headers": {"Content-Type": "application/json"},
                                          "body": {"orderId": "{{ triggerBody().id }}"}}}
    outputs = {"type": "object", "properties": {
        "statusCode": {"type": "integer"}, "headers": {"type": "object"},
        "body": {"description": "parsed JSON when the response is JSON, else text"}}}
    example_outputs = {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": {}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would {str(inputs.get('method', 'GET')).upper()} {inputs.get('uri')}"

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        auth = (action.get("inputs") or {}).get("authentication") if isinstance(action.get("inputs"), dict) else None
        kind = auth.get("type") if isinstance(auth, dict) else None
        if isinstance(kind, str) and not kind.startswith(("@", "{{")) and kind.lower() not in cls.AUTHENTICATION:
            return [("inputs.authentication.type", f"authentication type {kind!r} needs Azure (Microsoft Entra, "
                                                   f"managed identity or certificates), which flowrun does not "
                                                   f"have; use Basic, Raw, or an http connection")]
        return []

    async def run(self, inputs: Any, context: Context) -> Any:
        import httpx

        conn = context.connection
        uri = inputs["uri"]
        base = (conn.endpoint or conn.get("base_url")) if conn else None
        if base and not uri.lower().startswith(("http://", "https://")):
            uri = urljoin(base.rstrip("/") + "/", uri.lstrip("/"))
        headers = {k: str(v) for k, v in (inputs.get("headers") or {}).items()}
        auth = _auth_headers(conn) or _authentication(inputs.get("authentication"))
        headers.update(auth)
        headers = trace_headers(headers)  # the current span's traceparent, when tracing (engine.telemetry)
        for name, value in headers.items():  # httpx would raise a bare UnicodeEncodeError
            if not (name.isascii() and value.isascii()):
                source = (f" (from the {conn.name!r} connection's secret)" if name in auth and conn else "")
                raise ActionError(f"header {name!r} holds non-ASCII characters{source}, which HTTP headers "
                                  "cannot carry; percent-encode or base64 the value", code="InvalidHeader")
        key = inputs.get("idempotencyKey")
        if key:
            headers[key if isinstance(key, str) else "Idempotency-Key"] = context.idempotency_key
        body = inputs.get("body")
        kwargs: dict[str, Any] = {}
        if isinstance(body, (dict, list, int, float, bool)) and not isinstance(body, str):
            kwargs["content"] = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["content"] = str(body).encode()
        try:
            timeout = parse_duration(inputs.get("timeout", "PT100S"))
        except ValueError as exc:
            raise ActionError(str(exc), code="InvalidTimeout") from None
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (inputs.get("queries") or {}).items()}
        try:
            url = httpx.URL(uri)  # the query string of `uri` is kept; `queries` adds to it (same key: replaced)
            resp = await _clients.get().request(inputs["method"].upper(), url.copy_merge_params(params) if params
                                                else url, headers=headers, timeout=timeout, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError) as exc:
            secrets = conn.secret_values() if conn else ()
            raise HTTP.map_error(exc, secrets, _fault(exc, inputs["method"].upper(), uri)) from exc
        out = {"statusCode": resp.status_code, "headers": dict(resp.headers), "body": _body(resp)}
        if 200 <= resp.status_code < 300:
            return out
        message = f"{inputs['method'].upper()} {uri} returned {resp.status_code}: {_snippet(out['body'])}"
        details = {"statusCode": resp.status_code, "body": out["body"]}
        if resp.status_code in RETRYABLE_STATUS:
            raise RetryableError(message, code=f"Http{resp.status_code}", details=details,
                                 retry_after=retry_after(resp.headers))
        raise ActionError(message, code=f"Http{resp.status_code}", details=details)


def _body(resp: Any) -> Any:
    ctype = resp.headers.get("content-type", "")
    if "json" in ctype:
        try:
            return resp.json()
        except ValueError:
            pass
    return resp.text


def _snippet(body: Any) -> str:
    text = " ".join((body if isinstance(body, str) else json.dumps(body)).split())
    return text if len(text) <= 300 else text[:297] + "..."

