"""The Tableau connection: server, site, REST API version, sign-in, and the one place
tableauserverclient's errors are mapped.

``tableauserverclient`` (TSC) and PyJWT are imported only inside the session, the minting
helper and ``TableauVendor``. Sign-in is by personal access token (``token_name`` +
``token_secret``) or by a connected app's JWT (``client_id``, ``secret_id``, ``secret_value``,
signing in as ``username``). The REST API version is fixed by the connection (TSC never asks
the server for it). The session token is a secret (redacted from then on), is re-used by
every action of the connection, and when the server answers 401 (the session expired) the
call signs in again once and repeats.
"""
from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

from engine.plugin import (ActionError, Connection, ConnectionSpec, Fault, RetryableError, Rule, Vendor, secret,
                           tracing_session)
from engine.vendor import keep_to_host

API_VERSION = "3.25"  # Tableau 2025.1: incremental refreshes (TSC) need 3.25, PDF view filters 3.23
UNREADABLE = (SyntaxError, IndexError, KeyError, AttributeError, TypeError)  # xml's ParseError is a SyntaxError
RESERVED_CLAIMS = ("iss", "sub", "aud", "exp", "jti", "scp", "iat", "nbf", "kid")
MAX_TOKEN_SECONDS = 600  # Tableau refuses connected-app tokens that live longer than 10 minutes

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["server"],
    "properties": {
        "server": {"type": "string", "pattern": "^https?://", "description": "Server URL, e.g. "
                   "https://prod-useast-a.online.tableau.com."},
        "site": {"type": "string", "default": "", "description": "The site's content URL (`\"\"`: the "
                 "default site)."},
        "api_version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$", "default": API_VERSION,
                        "description": "REST API version every call uses (3.25 or later for "
                                       "incremental refreshes, 3.23 for view filters on PDF exports)."},
        "timeout": {"type": "integer", "minimum": 1, "default": 60,
                    "description": "Seconds one HTTP request may take."},
        "token_name": {"type": "string", "minLength": 1,
                       "description": "Personal access token: its name."},
        "token_secret": secret("Personal access token: its secret."),
        "client_id": {"type": "string", "minLength": 1,
                      "description": "Connected app (direct trust): the client id (JWT `iss`)."},
        "secret_id": {"type": "string", "minLength": 1,
                      "description": "Connected app: the secret's id (JWT `kid`)."},
        "secret_value": secret("Connected app: the secret's value (signs the JWTs, HS256)."),
        "username": {"type": "string", "minLength": 1,
                     "description": "Connected app sign-in: the user the REST session acts as "
                                    "(JWT `sub`)."},
        "scopes": {"type": "array", "items": {"type": "string"},
                   "default": ["tableau:content:read", "tableau:views:download",
                               "tableau:tasks:run", "tableau:jobs:read", "tableau:jobs:update",
                               "tableau:views:read", "tableau:workbooks:read",
                               "tableau:datasources:read"],
                   "description": "Connected app sign-in: the JWT's `scp` scopes."},
    },
}


def mint(conn: Connection, *, user: str, scopes: list[str], now: float, seconds: int,
         attributes: dict | None = None) -> tuple[str, str]:
    """A connected-app (direct trust) JWT: ``iss`` client id, ``kid`` secret id, ``sub`` user,
    ``aud`` "tableau", ``exp`` now + ``seconds`` (at most 10 minutes), a unique ``jti``,
    ``scp`` scopes and user-attribute claims, signed HS256. Returns (token, jti)."""
    client_id, secret_id, value = conn.settings.get("client_id"), conn.settings.get("secret_id"), conn.secret("secret_value")
    if not (client_id and secret_id and value):
        raise ActionError(f"connection '{conn.name}' needs a connected app: the settings client_id "
                          "and secret_id and the secret secret_value", code="MissingSetting")
    import jwt

    jti = str(uuid.uuid4())
    claims = {**(attributes or {}), "iss": client_id, "sub": user, "aud": "tableau", "jti": jti,
              "exp": int(now) + min(int(seconds), MAX_TOKEN_SECONDS), "scp": list(scopes)}
    token = jwt.encode(claims, value, algorithm="HS256", headers={"kid": secret_id, "iss": client_id})
    return token, jti


class TableauSession:
    """One TSC ``Server`` per connection, signed in on first use and again when the session
    expires; calls from worker threads share it (TSC keeps a requests session per thread)."""

    def __init__(self, conn: Connection, clock: Callable[[], float]):
        import tableauserverclient as TSC

        self.conn, self.clock = conn, clock
        url = (conn.endpoint or conn.settings["server"]).rstrip("/")
        self.server = TSC.Server(url, use_server_version=False,
                                 http_options={"timeout": int(conn.settings.get("timeout", 60))},
                                 session_factory=lambda: one_host_session(url))  # one host; each request sends traceparent
        self.server.version = conn.settings.get("api_version", API_VERSION)
        self._lock = threading.Lock()
        self.sign_ins = 0

    def _credentials(self) -> Any:
        import tableauserverclient as TSC

        conn, site = self.conn, self.conn.settings.get("site", "")
        if conn.settings.get("token_name") and conn.secret("token_secret"):
            return TSC.PersonalAccessTokenAuth(conn.settings["token_name"], conn.secret("token_secret"),
                                               site_id=site)
        if conn.settings.get("username") and conn.settings.get("client_id"):
            token, _ = mint(conn, user=conn.settings["username"], now=self.clock(), seconds=MAX_TOKEN_SECONDS,
                            scopes=conn.settings.get("scopes") or SETTINGS["properties"]["scopes"]["default"])
            conn.add_secret(token)
            return TSC.JWTAuth(token, site_id=site)
        raise ActionError(f"connection '{conn.name}' needs token_name + the secret token_secret, or a "
                          "connected app (client_id, secret_id, the secret secret_value) and a "
                          "username to sign in as", code="MissingSetting")

    def sign_in(self, stale: str | None = None) -> None:
        """Sign in, unless another thread already replaced the ``stale`` token."""
        with self._lock:
            if self.server.is_signed_in() and self.server.auth_token != stale:
                return
            with TABLEAU.mapped(self.conn):
                self.server.auth.sign_in(self._credentials())
            self.sign_ins += 1
            self.conn.add_secret(self.server.auth_token)  # the session token is a secret too

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(server)`` signed in; a 401 (expired or revoked session) signs in again, once.
        An answer TSC cannot read (a proxy's HTML page, an empty or truncated body: TSC fails
        on it with ParseError, IndexError, AttributeError ...) is a retryable TableauBadAnswer."""
        from tableauserverclient import FailedSignInError, NotSignedInError

        try:
            if not self.server.is_signed_in():
                self.sign_in()
            token = self.server.auth_token
            try:
                return fn(self.server)
            except (FailedSignInError, NotSignedInError):
                self.sign_in(stale=token)
                return fn(self.server)
        except UNREADABLE as exc:
            raise bad_answer("a call", exc) from None

    def close(self) -> None:
        self.server.close()


def one_host_session(server: str) -> Any:
    """A requests session that sends nothing to a host other than ``server``'s. TSC follows
    redirects itself and forwards the X-Tableau-Auth header and the sign-in body (a personal
    access token's secret, a JWT) to any host a redirect names; such a request is refused
    before it leaves (``RedirectError``: TableauRedirect, not retried). Redirects within the
    server's host (a path moved, http to https) still work."""
    import requests
    from tableauserverclient.server.endpoint.exceptions import RedirectError

    return keep_to_host(requests.Session(), server, lambda message: RedirectError(f"Tableau: {message}"))


def build_client(conn: Connection) -> TableauSession:
    import time

    return TableauSession(conn, time.time)


class TableauVendor(Vendor):
    """tableauserverclient: what it needs, and how its exceptions map.

    ==================================================  ==========  =============================
    TSC exception                                       retried?    code
    ==================================================  ==========  =============================
    InternalServerError (5xx)                           yes         ``TableauUnavailable``
    ServerResponseError 429 / 409093 (refresh queued)   yes         Tableau's error code
    FailedSignInError (401 after a new sign-in)         no          ``TableauSignInFailed``
    ServerResponseError (4xx: 404, 403, 400 ...)        no          Tableau's error code
    NonXMLResponseError (a proxy's page)                yes         ``TableauBadAnswer``
    EndpointUnavailableError / ServerInfoEndpoint...    no          ``TableauApiVersion``
    ValueError (TSC's checks, e.g. of the API version)  no          ``TableauInvalidRequest``
    requests' ConnectionError / Timeout                 yes         ``TableauUnavailable``
    other TableauError                                  no          ``TableauError``
    ==================================================  ==========  =============================
    """

    name = "Tableau"
    modules = ("tableauserverclient", "jwt")
    extra = "tableau"

    def rules(self) -> list[Rule]:
        import requests
        from tableauserverclient.server import exceptions as server_errors
        from tableauserverclient.server.endpoint import exceptions as e

        def code(fault: Fault, exc: Any) -> str:
            return fault.code or type(exc).__name__

        def retry(fault: Fault, exc: Any) -> bool:
            return fault.status == 429 or (fault.code or "").startswith("429") or fault.code == "409093"

        return [
            Rule((e.FailedSignInError, e.NotSignedInError), "TableauSignInFailed"),
            Rule((e.ServerResponseError, e.XMLError), code, retryable=retry),
            Rule((e.InternalServerError,), "TableauUnavailable", retryable=True),
            Rule((e.NonXMLResponseError,), "TableauBadAnswer", retryable=True),
            Rule((server_errors.EndpointUnavailableError, server_errors.ServerInfoEndpointNotFoundError,
                  e.UnsupportedAttributeError), "TableauApiVersion"),
            Rule((e.ItemTypeNotAllowed, e.MissingRequiredFieldError, e.InvalidGraphQLQuery), "InvalidInputs"),
            Rule((e.RedirectError,), "TableauRedirect"),
            Rule((ValueError,), "TableauInvalidRequest"),  # TSC's own checks (a feature the API version lacks)
            Rule((e.TableauError,), "TableauError", fallback=True),
            Rule((requests.ConnectionError, requests.Timeout, TimeoutError, ConnectionError),
                 "TableauUnavailable", retryable=True),
        ]

    def describe(self, exc: BaseException) -> Fault:
        code = getattr(exc, "code", None)
        summary, detail = getattr(exc, "summary", None), getattr(exc, "detail", None)
        if summary or detail:
            message = f"Tableau {code}: {summary or ''}{' — ' + detail if detail else ''}"
        else:
            message = " ".join(str(exc).split())[:500] or type(exc).__name__
        status = int(str(code)[:3]) if isinstance(code, str) and code[:3].isdigit() else (
            code if isinstance(code, int) else None)
        return Fault(message=message, code=str(code) if code not in (None, "") else None, status=status,
                     details={"tableauCode": code if code not in (None, "") else None})


def bad_answer(what: str, exc: BaseException) -> RetryableError:
    return RetryableError(f"Tableau's answer to {what} could not be read ({type(exc).__name__})",
                          code="TableauBadAnswer")


TABLEAU = TableauVendor()
CONNECTION = ConnectionSpec(
    kind="tableau",
    description="Tableau Server or Tableau Cloud through tableauserverclient: server URL, site, "
                "REST API version, and sign-in by personal access token or by a connected app's "
                "JWT (whose secret also signs tableau.EmbedToken's tokens). `endpoint` replaces "
                "the server URL (proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    vendor=TABLEAU,
    example={"kind": "tableau", "settings": {"server": "https://prod-useast-a.online.tableau.com",
                                             "site": "acme", "token_name": "flowrun"},
             "secrets": {"token_secret": "TABLEAU_PAT_SECRET"}},
)
