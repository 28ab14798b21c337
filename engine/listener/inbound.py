"""What arrived at a trigger: the body as a flow sees it, the outputs, and the stored copy.

One HTTP request becomes

- ``triggerBody()``: JSON bodies parsed; form bodies (``application/x-www-form-urlencoded``,
  as Twilio posts) as ``{name: value}`` (a repeated name gives a list); ``text/*`` as a
  string; anything else as ``{"$content-type": ..., "$content": base64}`` (Logic Apps'
  shape for binary content); an empty body as null;
- ``triggerOutputs()``: ``{"body", "headers", "queries", "relativePathParameters"}`` with
  header names lower-cased and authentication headers and query parameters redacted;
- the stored request (the run's ``request`` column): method, public URL, headers, query
  and the raw body exactly as received (UTF-8 text, or base64), authentication redacted.
  ``flowrun replay`` rebuilds the trigger outputs from it with the same parser.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from engine import safejson
from engine.plugin import InboundRequest

MASK = "***"

# Header and query names that carry credentials, whatever the vendor.
_SECRET_HEADER = re.compile(r"(authorization|cookie|signature|secret|token|password|api[-_]?key|"
                            r"functions-key|sas-key|-key$)", re.I)
_SECRET_QUERY = re.compile(r"^(code|key|sig|signature|token|access_token|api[-_]?key|secret|password|"
                           r"sv|se|sp|skoid)$", re.I)
from engine.errors import BodyError  # noqa: E402,F401  (its home is engine.errors)

_NOT_SECRET = re.compile(r"idempotency|delivery|request-id|event-id|correlation", re.I)


def media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_form(headers: dict[str, str]) -> bool:
    return media_type(headers) == "application/x-www-form-urlencoded"


def parse_form(body: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        out.setdefault(k, []).append(v)
    return out


def parse_body(body: bytes, headers: dict[str, str]) -> Any:
    """The body as ``triggerBody()`` shows it."""
    if not body:
        return None
    mt = media_type(headers)
    if mt == "application/json" or mt.endswith("+json") or (not mt and body[:1] in (b"{", b"[")):
        try:
            return safejson.loads(body)
        except ValueError as exc:
            raise BodyError(f"the body is not valid JSON: {exc}") from None
    if mt == "application/x-www-form-urlencoded":
        return {k: v[0] if len(v) == 1 else v for k, v in parse_form(body).items()}
    if mt.startswith("text/") or mt in ("application/xml", "application/x-ndjson") or not mt:
        try:
            return body.decode(_charset(headers))
        except (UnicodeDecodeError, LookupError):
            pass
    return {"$content-type": headers.get("content-type") or "application/octet-stream",
            "$content": base64.b64encode(body).decode()}


def too_deep(body: bytes, form: dict[str, list[str]] | None) -> str | None:
    """Why the body nests too deeply to parse (JSON, or JSON in a form field), or None.

    Checked on every body before anything parses it, authentication included (a verifier
    may parse the body: Event Grid, Stripe); cheap unless the body holds many brackets.
    """
    limit = safejson.MAX_DEPTH
    if form is None:
        return f"the body nests deeper than {limit} levels" if safejson.too_deep(body, limit) else None
    for name, values in form.items():
        if any(safejson.too_deep(v, limit) for v in (name, *values)):
            return f"form field {name[:40]!r} nests deeper than {limit} levels"
    return None


def _charset(headers: dict[str, str]) -> str:
    m = re.search(r"charset=\"?([\w.:-]+)", headers.get("content-type", ""), re.I)
    return m.group(1) if m else "utf-8"


def secret_header(name: str, extra: frozenset[str] = frozenset()) -> bool:
    return name in extra or (bool(_SECRET_HEADER.search(name)) and not _NOT_SECRET.search(name))


def secret_query(name: str) -> bool:
    """A query parameter whose name says it carries a credential (``sig``, ``access_token`` ...)."""
    return bool(_SECRET_QUERY.match(name))


def redact_headers(headers: dict[str, str], extra: frozenset[str] = frozenset()) -> dict[str, str]:
    return {k: (MASK if secret_header(k, extra) else v) for k, v in headers.items()}


def redact_query(query: dict[str, str], extra: frozenset[str] = frozenset()) -> dict[str, str]:
    return {k: (MASK if k in extra or _SECRET_QUERY.match(k) else v) for k, v in query.items()}


def redact_url(url: str, extra: frozenset[str] = frozenset()) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, MASK if k in extra or _SECRET_QUERY.match(k) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs, safe="*"), parts.fragment))


def credential_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers whose names say they carry credentials (what ``redact_headers`` masks)."""
    return {k: v for k, v in headers.items() if secret_header(k)}


def trigger_outputs(inbound: InboundRequest, body: Any, path_params: dict[str, str],
                    secret_headers: frozenset[str] = frozenset(),
                    secret_queries: frozenset[str] = frozenset(), *, reveal: frozenset[str] = frozenset()) -> dict:
    """What the flow sees; ``reveal``: credential headers it sees as sent (their values are
    secrets of the redactor by then, so nothing persisted or answered holds them)."""
    headers = redact_headers(inbound.headers, secret_headers)
    headers.update({k: inbound.headers[k] for k in reveal if k in inbound.headers})
    return {"body": body, "headers": headers,
            "queries": redact_query(inbound.query, secret_queries),
            "relativePathParameters": path_params}


def stored_request(inbound: InboundRequest, path: str, path_params: dict[str, str],
                   secret_headers: frozenset[str] = frozenset(),
                   secret_queries: frozenset[str] = frozenset()) -> dict:
    """The request as persisted with the run: raw body, credentials redacted."""
    try:
        text, encoding = inbound.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(inbound.body).decode(), "base64"
    return {"via": "http", "method": inbound.method, "url": redact_url(inbound.url, secret_queries),
            "path": path, "headers": redact_headers(inbound.headers, secret_headers),
            "query": redact_query(inbound.query, secret_queries),
            "relativePathParameters": path_params, "body": text, "bodyEncoding": encoding,
            "receivedAt": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")}


def raw_body(stored: dict) -> bytes:
    body = stored.get("body") or ""
    return base64.b64decode(body) if stored.get("bodyEncoding") == "base64" else body.encode("utf-8")


def outputs_from_stored(stored: dict) -> dict:
    """The trigger outputs a stored request gives (``flowrun replay``)."""
    headers = stored.get("headers") or {}
    return {"body": parse_body(raw_body(stored), headers), "headers": dict(headers),
            "queries": dict(stored.get("query") or {}),
            "relativePathParameters": dict(stored.get("relativePathParameters") or {})}
