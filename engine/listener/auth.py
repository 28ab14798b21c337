"""The built-in ways a Request trigger authenticates callers; vendors add theirs (``AUTH``).

    auth: {type: none}                                   # explicit: anyone may call
    auth: {type: key, connection: inbound, header: X-API-Key}
    auth: {type: key, connection: inbound, query: code}
    auth: {type: hmac, connection: github}               # X-Hub-Signature-256: sha256=<hex>

``key`` and ``hmac`` read their secret from a connection (``secret: token`` by default, so
an ``http`` connection with ``secrets: {token: ENV_VAR}`` holds it). Comparisons are
constant-time (``hmac.compare_digest``). A missing credential is 401, a wrong one 403.

``hmac`` signs the raw body, GitHub-style: ``<prefix><hex or base64 digest>`` in a header.
With ``timestampHeader`` the signed text is ``<timestamp>.<body>`` and a timestamp older
than ``tolerance`` seconds is refused, which stops replays of a captured request.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from engine.plugin import AuthError, Connection, InboundRequest, WebhookAuth
from engine.timestamps import within, unix_timestamp


def _secret(connection: Connection | None, options: dict) -> bytes:
    name = options.get("secret", "token")
    value = connection.get(name) if connection is not None else None
    if not value:
        where = connection.name if connection is not None else "(none)"
        raise AuthError(403, f"connection {where} has no secret '{name}': cannot verify callers")
    return str(value).encode()


class NoAuth(WebhookAuth):
    """Open: anyone may call (stated explicitly, never a default)."""

    kind = "none"
    connection = None
    description = "Anyone may call: an explicit choice, never a default."
    example = {"type": "none"}
    options = {"type": "object", "additionalProperties": False, "properties": {}}

    def verify(self, request: InboundRequest, connection: Connection | None, options: dict) -> str | None:
        return None


class KeyAuth(WebhookAuth):
    """A shared key in a header or query parameter, compared in constant time."""

    kind = "key"
    connection = None  # any connection kind holding the secret named by `secret`
    description = ("A shared key in a header (default `X-API-Key`) or a query parameter, compared in "
                   "constant time; `scheme: Bearer` reads `Authorization: Bearer <key>`.")
    header = "X-API-Key"
    example = {"type": "key", "connection": "inbound", "header": "X-API-Key"}
    options = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "header": {"type": "string", "description": "header carrying the key (default X-API-Key)"},
            "query": {"type": "string", "description": "query parameter carrying the key instead"},
            "scheme": {"type": "string", "description": "a prefix to strip, e.g. Bearer for "
                                                        "Authorization: Bearer <key>"},
            "secret": {"type": "string", "default": "token",
                       "description": "which secret of the connection is the key"},
        },
        "not": {"required": ["header", "query"]},
    }

    def verify(self, request: InboundRequest, connection: Connection | None, options: dict) -> str | None:
        expected = _secret(connection, options)
        if "query" in options:
            given = request.query.get(options["query"])
            where = f"query parameter '{options['query']}'"
        else:
            name = options.get("header", "X-API-Key")
            given = request.headers.get(name.lower())
            where = f"header {name}"
        if given is not None and options.get("scheme"):
            scheme, _, rest = given.partition(" ")
            given = rest.strip() if scheme.lower() == options["scheme"].lower() else None
        if not given:
            raise AuthError(401, f"missing key ({where})")
        if not hmac.compare_digest(given.encode(), expected):
            raise AuthError(403, f"wrong key ({where})")
        return None

    @staticmethod
    def secret_names(options: dict) -> tuple[frozenset[str], frozenset[str]]:
        """(header names, query names) holding the credential, to redact."""
        if "query" in options:
            return frozenset(), frozenset({options["query"]})
        return frozenset({options.get("header", "X-API-Key").lower()}), frozenset()


class HmacAuth(WebhookAuth):
    """HMAC-SHA256 of the raw body in a header (GitHub-style sha256=...), optional timestamp."""

    kind = "hmac"
    connection = None
    description = ("HMAC-SHA256 of the raw body, GitHub-style `sha256=<hex>` in a header; with "
                   "`timestampHeader` the signed text is `<timestamp>.<body>` and old timestamps are "
                   "refused.")
    header = "X-Hub-Signature-256"
    example = {"type": "hmac", "connection": "github", "header": "X-Hub-Signature-256"}
    options = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "header": {"type": "string", "default": "X-Hub-Signature-256"},
            "prefix": {"type": "string", "default": "sha256="},
            "encoding": {"enum": ["hex", "base64"], "default": "hex"},
            "secret": {"type": "string", "default": "token"},
            "timestampHeader": {"type": "string", "description": "sign '<timestamp>.<body>' and refuse "
                                                                 "old timestamps (unix seconds)"},
            "tolerance": {"type": "integer", "minimum": 1, "default": 300},
        },
    }

    def verify(self, request: InboundRequest, connection: Connection | None, options: dict) -> str | None:
        key = _secret(connection, options)
        name = options.get("header", "X-Hub-Signature-256")
        given = request.headers.get(name.lower())
        if not given:
            raise AuthError(401, f"missing signature header {name}")
        prefix = options.get("prefix", "sha256=")
        if not given.startswith(prefix):
            raise AuthError(403, f"signature header {name} does not start with '{prefix}'")
        message = request.body
        ts_header = options.get("timestampHeader")
        if ts_header:
            stamp = request.headers.get(ts_header.lower())
            if stamp is None:  # present but empty is malformed: 403 below
                raise AuthError(401, f"missing timestamp header {ts_header}")
            when = unix_timestamp(stamp, f"timestamp header {ts_header}")  # digits only: no nan, inf, 1e10
            if not within(when, time.time(), options.get("tolerance", 300)):
                raise AuthError(403, f"timestamp outside the tolerance of {options.get('tolerance', 300)} s")
            message = stamp.encode() + b"." + request.body
        digest = hmac.new(key, message, hashlib.sha256).digest()
        expected = base64.b64encode(digest).decode() if options.get("encoding") == "base64" else digest.hex()
        if not hmac.compare_digest(given[len(prefix):].strip().encode(), expected.encode()):
            raise AuthError(403, f"signature in {name} does not match the body")
        return None

    @staticmethod
    def secret_names(options: dict) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset({options.get("header", "X-Hub-Signature-256").lower()}), frozenset()


class SasAuth(WebhookAuth):
    """Logic Apps' own: a SAS signature in the trigger's callback URL (``engine.sas``)."""

    kind = "sas"
    connection = None
    description = ("Logic Apps' callback URL signature: `sig` (with `sp` and `sv`) in the query, "
                   "HMAC-SHA256 with `$FLOWRUN_SAS_KEY` or the state database's key. The default of a "
                   "Logic Apps definition's Request trigger; `flowrun serve` prints each callback URL.")
    example = {"type": "sas"}
    options = {"type": "object", "additionalProperties": False, "properties": {}}
    key: bytes = b""
    flow: str = ""
    trigger: str = ""

    def bind(self, key: bytes, flow: str, trigger: str) -> None:
        self.key, self.flow, self.trigger = key, flow, trigger

    def verify(self, request: InboundRequest, connection: Connection | None, options: dict) -> str | None:
        from engine import sas

        refused = sas.check(self.key, self.flow, self.trigger, request.query)
        if refused is not None:
            raise AuthError(*refused)
        return None

    @staticmethod
    def secret_names(options: dict) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset(), frozenset({"sig"})


BUILTIN: dict[str, type[WebhookAuth]] = {a.kind: a for a in (NoAuth, KeyAuth, HmacAuth, SasAuth)}


def auth_kinds(registry: Any) -> dict[str, type[WebhookAuth]]:
    """Every auth kind a trigger may name: the built-in ones, then those node modules declare."""
    kinds = dict(registry.auth)
    kinds.update(BUILTIN)  # built-in names cannot be taken over by a plugin
    return kinds


def secret_names(auth: WebhookAuth, options: dict) -> tuple[frozenset[str], frozenset[str]]:
    """(header names, query names) to redact for this auth, beyond the generic patterns."""
    fn = getattr(auth, "secret_names", None)
    return fn(options) if callable(fn) else (frozenset(), frozenset())


class AdminToken:
    """``Authorization: Bearer <token>`` for operators (GET /runs/{id} of any run)."""

    def __init__(self, token: str | None):
        self.token = token.encode() if token else None

    def allows(self, headers: dict[str, str]) -> bool:
        if not self.token:
            return False
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token)
