"""The Databricks connection: settings, the client factory and the one place errors are mapped.

The SDK (``databricks.sdk``) is imported only inside ``build_client`` and ``DatabricksVendor``.
Authentication is explicit: a personal access token (``auth_type="pat"``) or OAuth M2M with a
service principal's client id and secret (``auth_type="oauth-m2m"``); the SDK's discovery of
other credentials (~/.databrickscfg profiles, the CLI, cloud identities) is switched off, so it
never looks beyond the workspace host.
"""
from __future__ import annotations

import os
from typing import Any

from engine.plugin import ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret

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
    with DATABRICKS.mapped(conn):
        config = Config(host=host, **auth, config_file=os.devnull,
                        http_timeout_seconds=int(conn.settings.get("http_timeout_seconds", 60)),
                        retry_timeout_seconds=int(conn.settings.get("retry_timeout_seconds", 30)))
        return WorkspaceClient(config=config)


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
                     details={"errorCode": code}, retry_after=float(wait) if wait else None)


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
