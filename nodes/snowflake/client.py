"""The Snowflake connection: settings, the client factory and the one place errors are mapped.

The SDK (``snowflake.connector``, and ``cryptography`` for key-pair auth) is imported only
inside ``build_client`` and ``SnowflakeVendor``.

One session per connection is opened in a worker thread on first use and reused by every
action (the connector's connections may be shared between threads). An action that needs a
transaction of its own (``ExecuteScript``/``InsertRows`` with ``transaction: true``) opens a
dedicated session for it and closes it after, so a BEGIN never spans other actions' statements.

Binding is server-side (``paramstyle="qmark"``): the connector sends values beside the SQL
text, never formatted into it.
"""
from __future__ import annotations

import re
from typing import Any

from engine.plugin import ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["account"],
    "properties": {
        "account": {"type": "string", "minLength": 1,
                    "description": "Account identifier, e.g. myorg-myaccount (or xy12345.eu-west-1)."},
        "user": {"type": "string", "description": "Login name."},
        "warehouse": {"type": "string", "description": "Virtual warehouse the queries run on."},
        "database": {"type": "string", "description": "Default database."},
        "schema": {"type": "string", "description": "Default schema."},
        "role": {"type": "string", "description": "Role used for the session."},
        "login_timeout": {"type": "integer", "minimum": 1, "default": 60,
                          "description": "Seconds a login may take."},
        "network_timeout": {"type": "integer", "minimum": 1,
                            "description": "Seconds a request (other than login) may take, retries "
                                           "included. Default: no limit (the action's timeout applies)."},
        "session_parameters": {"type": "object",
                               "additionalProperties": {"type": ["string", "number", "boolean"]},
                               "description": "Session parameters set at login, e.g. {QUERY_TAG: flowrun}."},
        "password": secret("Password (password authentication)."),
        "private_key": secret("PEM private key (-----BEGIN PRIVATE KEY----- ...) for key-pair "
                              "authentication; PKCS#8, encrypted or not."),
        "private_key_passphrase": secret("Passphrase of an encrypted private_key."),
        "token": secret("OAuth access token (authenticator: oauth)."),
    },
}

_KWARGS = ("account", "user", "warehouse", "database", "schema", "role", "login_timeout",
           "network_timeout", "session_parameters")


def connect_kwargs(conn: Connection) -> dict:
    """What ``snowflake.connector.connect`` gets: the settings, one way to authenticate, the
    endpoint override (host/port/protocol) and server-side binding."""
    kwargs: dict[str, Any] = {k: conn.settings[k] for k in _KWARGS if conn.settings.get(k) is not None}
    kwargs.setdefault("login_timeout", 60)
    kwargs["paramstyle"] = "qmark"
    # no probes of cloud metadata services (AWS IMDS, Azure, GCP) at each login: the connector
    # sends them from threads of its own, only to describe the host to Snowflake
    kwargs["platform_detection_timeout_seconds"] = 0.0
    password, pem, token = conn.secret("password"), conn.secret("private_key"), conn.secret("token")
    given = [name for name, value in (("password", password), ("private_key", pem), ("token", token)) if value]
    if len(given) != 1:
        raise ActionError(f"connection '{conn.name}' needs exactly one of the secrets password, "
                          f"private_key or token (got {', '.join(given) or 'none'})",
                          code="MissingSetting", details={"setting": "password | private_key | token"})
    if password:
        kwargs["password"] = password
    elif pem:
        kwargs["authenticator"] = "SNOWFLAKE_JWT"
        kwargs["private_key"] = _private_key(conn, pem, conn.secret("private_key_passphrase"))
    else:
        kwargs["authenticator"] = "oauth"
        kwargs["token"] = token
    if conn.endpoint:
        from urllib.parse import urlsplit

        parts = urlsplit(conn.endpoint)
        kwargs["host"] = parts.hostname
        kwargs["protocol"] = parts.scheme or "https"
        kwargs["port"] = parts.port or (443 if kwargs["protocol"] == "https" else 80)
    return kwargs


def _private_key(conn: Connection, pem: str, passphrase: str | None) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(
            pem.encode(), password=passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as exc:
        # the cryptography message never holds the key; it says "bad decrypt", "password was not given", ...
        raise ActionError(f"connection '{conn.name}': cannot read private_key: {exc}",
                          code="InvalidPrivateKey") from None


class SnowflakeClient:
    """One shared session, and dedicated ones on demand (transactions)."""

    def __init__(self, kwargs: dict):
        import snowflake.connector

        self._connect = snowflake.connector.connect
        self._kwargs = kwargs
        self.conn = self._connect(**kwargs)

    def session(self) -> Any:
        """A new session of its own (the caller closes it)."""
        return self._connect(**self._kwargs)

    def close(self) -> None:
        self.conn.close()


def build_client(conn: Connection) -> SnowflakeClient:
    kwargs = connect_kwargs(conn)
    with SNOWFLAKE.mapped(conn):
        return SnowflakeClient(kwargs)


_LINE = re.compile(r"line (\d+)(?: at position (\d+)|, col: (\d+))?", re.IGNORECASE)


class SnowflakeVendor(Vendor):
    """The ``snowflake-connector-python`` SDK: what it needs, and how its exceptions map.

    ====================================================  ==========  ==========================
    SDK exception                                         retried?    code
    ====================================================  ==========  ==========================
    ProgrammingError (SQL compilation, bad object, ...)   no          ``SqlError``
    IntegrityError, DataError, NotSupportedError          no          ``SqlError``
    OperationalError (network, timeouts, login I/O)       yes         ``SnowflakeUnavailable``
    ServiceUnavailable, GatewayTimeout, RequestTimeout,
    BadGateway, InternalServer, TooManyRequests,
    OtherHTTPRetryable, RequestExceedMaxRetry             yes         ``SnowflakeUnavailable``
    ForbiddenError, BadRequest, MethodNotAllowed          no          ``SnowflakeRejected``
    DatabaseError (incorrect login, anything else)        no          ``SnowflakeError``
    Error (any other connector error)                     no          ``SnowflakeError``
    TimeoutError, ConnectionError (socket level)          yes         ``SnowflakeUnavailable``
    ====================================================  ==========  ==========================

    ``details`` holds Snowflake's ``errorCode`` (e.g. ``001003``), ``sqlState``, the ``line``
    and ``position`` a SQL error names, and the ``queryId``.
    """

    name = "Snowflake"
    modules = ("snowflake.connector",)
    extra = "snowflake"

    def rules(self) -> list[Rule]:
        from snowflake.connector import errors as e

        return [
            Rule((e.ProgrammingError, e.IntegrityError, e.DataError, e.NotSupportedError), "SqlError"),
            Rule((e.OperationalError,), "SnowflakeUnavailable", retryable=True),
            Rule((e.ServiceUnavailableError, e.GatewayTimeoutError, e.RequestTimeoutError,
                  e.BadGatewayError, e.InternalServerError, e.TooManyRequests,
                  e.OtherHTTPRetryableError, e.RequestExceedMaxRetryError),
                 "SnowflakeUnavailable", retryable=True),
            Rule((e.ForbiddenError, e.BadRequest, e.MethodNotAllowed), "SnowflakeRejected"),
            Rule((e.DatabaseError,), "SnowflakeError"),
            Rule((e.Error,), "SnowflakeError", fallback=True),
            Rule((TimeoutError, ConnectionError), "SnowflakeUnavailable", retryable=True),
        ]

    def describe(self, exc: BaseException) -> Fault:
        msg = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        errno = getattr(exc, "errno", None)
        code = f"{errno:06d}" if isinstance(errno, int) and errno > 0 else None
        sqlstate = getattr(exc, "sqlstate", None)
        details: dict[str, Any] = {"errorCode": code,
                                   "sqlState": sqlstate if sqlstate not in (None, "n/a") else None,
                                   "queryId": getattr(exc, "sfqid", None)}
        found = _LINE.search(msg)
        if found:
            details["line"] = int(found.group(1))
            position = found.group(2) or found.group(3)
            details["position"] = int(position) if position else None
        return Fault(message=msg, code=code, details=details)


SNOWFLAKE = SnowflakeVendor()
CONNECTION = ConnectionSpec(
    kind="snowflake",
    description="Snowflake through snowflake-connector-python: account, user, warehouse, "
                "database, schema, role; authenticated by exactly one of a password, a PEM "
                "private key (key-pair, optional passphrase) or an OAuth token. One session, "
                "opened in a worker thread on first use, is reused. `endpoint` "
                "(http://host:port) replaces the account's host (fakesnow, proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    vendor=SNOWFLAKE,
    example={"kind": "snowflake",
             "settings": {"account": "myorg-myaccount", "user": "FLOWRUN", "warehouse": "LOAD_WH",
                          "database": "ANALYTICS", "schema": "RAW", "role": "LOADER"},
             "secrets": {"private_key": "SNOWFLAKE_PRIVATE_KEY",
                         "private_key_passphrase": "SNOWFLAKE_KEY_PASSPHRASE"}},
)
