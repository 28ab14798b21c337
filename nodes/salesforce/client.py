"""The Salesforce connection: settings, the per-connection session, and error mapping.

``build_client`` returns a ``SalesforceClient``: it holds one ``simple_salesforce``
session per connection, logs in lazily on the first call (in the worker thread, never on
the event loop), and when a call answers 401 (INVALID_SESSION_ID: the session expired or
was revoked) logs in again **once** and repeats the call. simple-salesforce's own
re-login loop is not used: the session is handed to it as a plain session id
(``Salesforce(session_id=..., instance_url=...)``) so the refresh policy lives here.

Every SDK exception is mapped by ``SalesforceVendor`` (the declared table):

==========================================  ========  ==================================
Salesforce answer                           retried?  code
==========================================  ========  ==================================
400 SalesforceMalformedRequest              no        Salesforce errorCode (first error)
300 SalesforceMoreThanOneRecord             no        MULTIPLE_RECORDS
401 after one re-login                      no        INVALID_SESSION_ID
403 REQUEST_LIMIT_EXCEEDED                  yes       REQUEST_LIMIT_EXCEEDED
403 other (SalesforceRefusedRequest)        no        errorCode
404 SalesforceResourceNotFound              no        NOT_FOUND (or errorCode)
429, 5xx (SalesforceGeneralError)           yes       errorCode, else HTTP_<status>
login refused (SalesforceAuthenticationF.)  no        e.g. INVALID_LOGIN, invalid_grant
connection error / timeout                  yes       ConnectionError / Timeout
Bulk 2.0 job failed (SalesforceOperationE.) no        BULK_JOB_FAILED
==========================================  ========  ==================================

``details`` = {status, errors: [{errorCode, message, fields}]}; ``retry_after`` comes
from a Retry-After header when Salesforce sends one.

The ``endpoint`` override replaces the scheme and host of every URL the SDK calls
(login.salesforce.com, <mydomain>.my.salesforce.com, the instance), so one server
(a sandbox proxy, a test double) answers the SOAP/OAuth login and the REST calls.
"""
from __future__ import annotations

import threading
from typing import Any, Callable
from urllib.parse import urlsplit

from engine.plugin import ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret

DEFAULT_VERSION = "59.0"

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "auth": {"enum": ["password", "jwt", "client_credentials"], "default": "password",
                 "description": "password: username + password + security_token (SOAP "
                                "login). jwt: OAuth JWT bearer (username + consumer_key + "
                                "private_key). client_credentials: OAuth client credentials "
                                "(consumer_key + consumer_secret; needs a My Domain)."},
        "username": {"type": "string", "description": "Salesforce username (password, jwt)."},
        "domain": {"type": "string", "default": "login",
                   "description": "Login host prefix: login (production), test (sandbox) or "
                                  "a My Domain such as acme.my (→ acme.my.salesforce.com)."},
        "instance_url": {"type": "string", "pattern": r"^https://[^/]+\.salesforce\.com/?$",
                         "description": "Your My Domain URL, e.g. "
                                        "https://acme.my.salesforce.com; sets `domain`."},
        "api_version": {"type": "string", "pattern": r"^\d+\.\d$",
                        "default": DEFAULT_VERSION,
                        "description": "REST API version, e.g. 59.0."},
        "consumer_key": {"type": "string",
                         "description": "Connected app consumer key (jwt, "
                                        "client_credentials)."},
        "password": secret("Password of `username` (auth: password)."),
        "security_token": secret("Security token appended to the password (auth: password); "
                                 "empty when the login IP is trusted."),
        "private_key": secret("PEM private key whose certificate is uploaded to the "
                              "connected app (auth: jwt). Literal \\n sequences are read "
                              "as newlines."),
        "consumer_secret": secret("Connected app consumer secret (auth: "
                                  "client_credentials)."),
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 60,
                    "description": "Seconds to wait for one HTTP response."},
    },
}

_REQUIRED = {
    "password": ("username", "password"),
    "jwt": ("username", "consumer_key", "private_key"),
    "client_credentials": ("consumer_key", "consumer_secret"),
}


def _domain(conn: Connection) -> str:
    instance_url = conn.get("instance_url")
    if instance_url and not conn.settings.get("domain"):
        host = urlsplit(instance_url).hostname or ""
        if host.endswith(".salesforce.com"):
            return host[: -len(".salesforce.com")]
        raise ActionError(f"instance_url {instance_url!r} is not a *.salesforce.com URL",
                          code="MissingSetting")
    return conn.get("domain") or "login"


class SalesforceClient:
    """One logged-in simple-salesforce session per connection, rebuilt once on 401."""

    def __init__(self, conn: Connection):
        self.auth = conn.get("auth") or "password"
        missing = [k for k in _REQUIRED[self.auth] if conn.get(k) in (None, "")]
        if missing:
            raise ActionError(f"connection '{conn.name}' (auth: {self.auth}) is missing "
                              f"{', '.join(missing)}", code="MissingSetting",
                              details={"missing": missing})
        self.domain = _domain(conn)
        if self.auth == "client_credentials" and self.domain in ("login", "test"):
            raise ActionError("auth client_credentials needs a My Domain: set domain (e.g. "
                              "acme.my) or instance_url", code="MissingSetting")
        self.version = str(conn.get("api_version") or DEFAULT_VERSION)
        self.endpoint = conn.endpoint
        self.timeout = float(conn.get("timeout", 60))
        self._conn = conn
        self._lock = threading.Lock()
        self._sf: Any = None
        self._generation = 0
        self._http: Any = None

    # -- session -------------------------------------------------------------------------
    def _login(self) -> Any:
        from simple_salesforce import Salesforce, SalesforceLogin

        from ._transport import EndpointSession

        if self._http is None:
            self._http = EndpointSession(self.endpoint, self.timeout, _LOCAL)
        conn = self._conn
        common = {"session": self._http, "domain": self.domain, "sf_version": self.version}
        if self.auth == "password":
            session_id, instance = SalesforceLogin(
                username=conn.get("username"), password=conn.get("password"),
                security_token=conn.get("security_token") or "", **common)
        elif self.auth == "jwt":
            key = conn.get("private_key").replace("\\n", "\n")
            session_id, instance = SalesforceLogin(
                username=conn.get("username"), consumer_key=conn.get("consumer_key"),
                privatekey=key, **common)
        else:
            session_id, instance = SalesforceLogin(
                consumer_key=conn.get("consumer_key"),
                consumer_secret=conn.get("consumer_secret"), **common)
        return Salesforce(session_id=session_id, instance=instance, version=self.version,
                          session=self._http, object_pairs_hook=dict)

    def _session(self) -> tuple[Any, int]:
        with self._lock:
            if self._sf is None:
                self._sf = self._login()
                self._generation += 1
            return self._sf, self._generation

    def _relogin(self, stale: int) -> None:
        with self._lock:
            if self._generation == stale:  # nobody refreshed it meanwhile
                self._sf = None
                self._sf = self._login()
                self._generation += 1

    # -- calls ---------------------------------------------------------------------------
    def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(sf)``; on 401 log in again once and repeat; map errors. Blocking."""
        from simple_salesforce import SalesforceExpiredSession

        _LOCAL.retry_after = None
        with SALESFORCE.mapped(self._conn):
            sf, generation = self._session()
            try:
                return fn(sf)
            except SalesforceExpiredSession:
                self._relogin(generation)
                sf, _ = self._session()
                return fn(sf)


_LOCAL = threading.local()  # the Retry-After of this worker thread's last 429/503 answer


def build_client(conn: Connection) -> SalesforceClient:
    return SalesforceClient(conn)




# -- error mapping -------------------------------------------------------------------------

def _errors(content: Any) -> list[dict]:
    """Salesforce error bodies: [{errorCode, message, fields}] (or a single object)."""
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return [{"message": str(content)[:500]}] if content else []
    out = []
    for item in content:
        if isinstance(item, dict):
            out.append({k: item[k] for k in ("errorCode", "message", "fields") if k in item})
    return out


def _code(default: str) -> Any:
    return lambda fault, exc: fault.code or default


def _general_retry(fault: Fault, exc: Any) -> bool:
    from simple_salesforce import SalesforceGeneralError

    status = fault.status if isinstance(fault.status, int) else 0
    return (fault.code == "REQUEST_LIMIT_EXCEEDED" or status == 429
            or (isinstance(exc, SalesforceGeneralError) and status >= 500))


def _login_code(fault: Fault, exc: Any) -> str:
    if isinstance(exc.code, int):
        return f"LOGIN_HTTP_{exc.code}"
    return str(exc.code) if exc.code is not None else "AUTHENTICATION_FAILED"


def _login_retry(fault: Fault, exc: Any) -> bool:
    return isinstance(exc.code, int) and (exc.code == 429 or exc.code >= 500)


class SalesforceVendor(Vendor):
    """simple-salesforce (over requests): what it needs, and how its exceptions map (see the
    table at the top of this module)."""

    name = "Salesforce"
    modules = ("simple_salesforce",)
    extra = "salesforce"

    def rules(self) -> list[Rule]:
        import requests
        from simple_salesforce import exceptions as e

        return [
            Rule((e.SalesforceAuthenticationFailed,), _login_code, retryable=_login_retry),
            Rule((e.SalesforceMoreThanOneRecord,), "MULTIPLE_RECORDS"),
            Rule((e.SalesforceExpiredSession,), _code("INVALID_SESSION_ID")),
            Rule((e.SalesforceResourceNotFound,), _code("NOT_FOUND")),
            Rule((e.SalesforceMalformedRequest, e.SalesforceRefusedRequest,
                  e.SalesforceGeneralError), lambda f, x: f.code or f"HTTP_{f.status}",
                 retryable=_general_retry),
            Rule((e.SalesforceError,), lambda f, x: f.code or f"HTTP_{f.status}",
                 retryable=_general_retry, fallback=True),
            Rule((e.SalesforceOperationError,), "BULK_JOB_FAILED"),
            Rule((requests.ConnectionError, requests.Timeout),
                 lambda fault, exc: type(exc).__name__, retryable=True),
        ]

    def describe(self, exc: Any) -> Fault:
        import requests
        from simple_salesforce import exceptions as e

        wait = getattr(_LOCAL, "retry_after", None)
        if isinstance(exc, e.SalesforceAuthenticationFailed):
            return Fault(f"Salesforce login failed: {exc.auth_message[:300]}",
                         details={"status": exc.code if isinstance(exc.code, int) else 401},
                         retry_after=wait)
        if isinstance(exc, e.SalesforceMoreThanOneRecord):
            return Fault("more than one record matches the external id", status=exc.status,
                         details={"status": exc.status, "matches": exc.content})
        if isinstance(exc, e.SalesforceError):
            errors = _errors(exc.content)
            first = errors[0] if errors else {}
            return Fault(first.get("message") or f"Salesforce answered HTTP {exc.status}",
                         code=first.get("errorCode"), status=exc.status,
                         details={"status": exc.status, "errors": errors}, retry_after=wait)
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return Fault(f"cannot reach Salesforce: {type(exc).__name__}")
        return Fault(f"Salesforce: {str(exc)[:500]}")


SALESFORCE = SalesforceVendor()
CONNECTION = ConnectionSpec(
    kind="salesforce",
    description="Salesforce REST API (simple-salesforce): username/password + security "
                "token, OAuth JWT bearer, or OAuth client credentials. `endpoint` sends "
                "the login and every API call to another server (proxy, test double).",
    settings=SETTINGS,
    client=build_client,
    vendor=SALESFORCE,
    example={"kind": "salesforce",
             "settings": {"auth": "password", "username": "integration@acme.com",
                          "domain": "login", "api_version": "59.0"},
             "secrets": {"password": "SF_PASSWORD", "security_token": "SF_SECURITY_TOKEN"}},
)
