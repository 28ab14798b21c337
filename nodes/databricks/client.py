"""The Databricks connection: settings, the client factory and the one place errors are mapped.

The SDK (``databricks.sdk``) is imported only inside ``build_client`` and ``DatabricksVendor``.
Authentication is explicit: a personal access token (``auth_type="pat"``) or OAuth M2M with a
service principal's client id and secret (``auth_type="oauth-m2m"``); the SDK's discovery of
other credentials (~/.databrickscfg profiles, the CLI, cloud identities) is switched off, so it
never looks beyond the workspace host. Every request carries the current span's ``traceparent``
(``_tracing_adapter``), when tracing is on.
"""
from __future__ import annotations

import os
from typing import Any

from engine.plugin import ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret, tracing_adapter

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["host"],
    "properties": {
        "host": {"type": "string", "minLength": 1,
                 "description": "Workspace URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net."},
        "http_timeout_seconds": {"type": "integer", "minimum": 1, "default": 60,
                                 "description": "Seconds one HTTP request may take."},
        "retry_timeout_seconds": {"type": "integer", "minimum": 0, "default": 30,
                                  "description": "How long the SDK itself retries 429/503 answers before "
                                                 "the error reaches the action's retryPolicy."},
        "token": secret("Personal access token (dapi...)."),
        "client_id": secret("OAuth M2M: the service principal's client (application) id."),
        "client_secret": secret("OAuth M2M: the service principal's OAuth secret."),
    },
}


def build_client(conn: Connection) -> Any:
    token, client_id, client_secret = conn.secret("token"), conn.secret("client_id"), conn.secret("client_secret")
    if bool(token) == bool(client_id or client_secret) or (not token and not (client_id and client_secret)):
        raise ActionError(f"connection '{conn.name}' needs either the secret token, or both client_id "
                          "and client_secret", code="MissingSetting",
                          details={"setting": "token | client_id + client_secret"})
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    host = (conn.endpoint or conn.settings["host"]).rstrip("/")
    auth = ({"token": token, "auth_type": "pat"} if token else
            {"client_id": client_id, "client_secret": client_secret, "auth_type": "oauth-m2m",
             # the workspace's own OIDC server: no discovery beyond the host
             "discovery_url": f"{host}/oidc/.well-known/oauth-authorization-server"})
    retry_timeout = int(conn.settings.get("retry_timeout_seconds", 30))
    with DATABRICKS.mapped(conn):
        config = Config(host=host, **auth, config_file=os.devnull, clock=_bounded_clock(retry_timeout),
                        http_timeout_seconds=int(conn.settings.get("http_timeout_seconds", 60)),
                        retry_timeout_seconds=retry_timeout, http_adapter=tracing_adapter(pool_connections=20, pool_maxsize=20,
                                                                       pool_block=True))
        return WorkspaceClient(config=config)


def _bounded_clock(limit: float) -> Any:
    """The SDK's clock with its sleeps kept within [0, ``limit``] seconds.

    The SDK sleeps for a 429/503's Retry-After (parsed with ``int()``) before it looks at its
    retry deadline: a hostile ``Retry-After: -5`` raised "sleep length must be non-negative",
    and ``Retry-After: 99999999999`` slept for millennia. No single wait outlasts the time the
    connection allows the SDK's own retries (``retry_timeout_seconds``)."""
    import math

    from databricks.sdk.clock import RealClock

    class BoundedClock(RealClock):
        def sleep(self, seconds: float) -> None:
            wait = seconds if isinstance(seconds, (int, float)) and math.isfinite(seconds) else 0.0
            super().sleep(min(max(wait, 0.0), float(limit)))

    return BoundedClock()


class DatabricksVendor(Vendor):
    """The ``databricks-sdk``: what it needs, and how its exceptions map.

    =====================================================  ==========  ========================
    SDK exception                                          retried?    code
    =====================================================  ==========  ========================
    TooManyRequests, RequestLimitExceeded,
    ResourceExhausted, TemporarilyUnavailable,
    InternalError, DeadlineExceeded, Aborted               yes         Databricks' error_code
    requests' ConnectionError / Timeout, TimeoutError      yes         ``DatabricksUnavailable``
    Unauthenticated, PermissionDenied, NotFound,
    BadRequest, ResourceConflict, ... (DatabricksError)    no          Databricks' error_code
    ValueError (the SDK's own config checks)               no          ``DatabricksConfig``
    =====================================================  ==========  ========================
    """

    name = "Databricks"
    modules = ("databricks.sdk",)
    extra = "databricks"

    def rules(self) -> list[Rule]:
        import requests
        from databricks.sdk import errors as e

        def code(fault: Fault, exc: Any) -> str:
            return fault.code or type(exc).__name__

        return [
            Rule((e.TooManyRequests, e.RequestLimitExceeded, e.ResourceExhausted, e.TemporarilyUnavailable,
                  e.InternalError, e.DeadlineExceeded, e.Aborted), code, retryable=True),
            Rule((e.DatabricksError,), code, fallback=True),
            Rule((requests.ConnectionError, requests.Timeout, TimeoutError, ConnectionError),
                 "DatabricksUnavailable", retryable=True),
            Rule((ValueError,), "DatabricksConfig"),
        ]

    def describe(self, exc: BaseException) -> Fault:
        code = getattr(exc, "error_code", None)
        wait = getattr(exc, "retry_after_secs", None)
        return Fault(message=str(exc) or type(exc).__name__, code=code,
                     details={"errorCode": code}, retry_after=_seconds(wait))


def _seconds(wait: Any) -> float | None:
    """The SDK's Retry-After (it parses the header with int()): a hostile negative or huge value
    is no usable wait here (the engine caps what it honours)."""
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 < wait < 86_400 * 365:
        return None
    return float(wait)


DATABRICKS = DatabricksVendor()
CONNECTION = ConnectionSpec(
    kind="databricks",
    description="A Databricks workspace through databricks-sdk: the host, and either a personal "
                "access token or OAuth M2M (client id and secret). `endpoint` replaces the host "
                "(proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    vendor=DATABRICKS,
    example={"kind": "databricks", "settings": {"host": "https://adb-1234567890123456.7.azuredatabricks.net"},
             "secrets": {"client_id": "DATABRICKS_CLIENT_ID", "client_secret": "DATABRICKS_CLIENT_SECRET"}},
)
