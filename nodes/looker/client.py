"""The Looker connection: base URL plus API client id and secret, the SDK built in code, and
the one place looker-sdk's errors are mapped.

``looker_sdk`` is imported only inside ``build_client``, ``LookerVendor`` and the nodes'
``run``. ``looker_sdk.init40()`` reads ``looker.ini`` and ``LOOKERSDK_*`` environment variables,
one configuration per process; here each connection builds its own settings object (read
from the connection, never from a file or the environment), transport and auth session, so
any number of Looker connections coexist. The access token the SDK obtains (and renews when
it expires) is a secret from the moment it arrives.
"""
from __future__ import annotations

import threading
from typing import Any

from engine.plugin import (ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret, status_is_retryable,
                           tracing_session)
from engine.vendor import keep_to_host

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["base_url", "client_id", "client_secret"],
    "properties": {
        "base_url": {"type": "string", "pattern": "^https?://",
                     "description": "The instance's API URL, e.g. https://acme.cloud.looker.com (port 19999 "
                                    "on older self-hosted instances); without /api/4.0."},
        "client_id": secret("API3 client id."),
        "client_secret": secret("API3 client secret."),
        "timeout": {"type": "integer", "minimum": 1, "default": 120,
                    "description": "Seconds one request may take."},
        "verify_ssl": {"type": "boolean", "default": True},
    },
}
_last = threading.local()  # the HTTP status of the last answer this thread's SDK call got


def build_client(conn: Connection) -> Any:
    """A Looker40SDK for this connection alone: settings from the connection, its own requests
    session, and an auth session that reports each new access token as a secret."""
    client_id, client_secret = conn.secret("client_id"), conn.secret("client_secret")
    if not client_id or not client_secret:
        raise ActionError(f"connection '{conn.name}' needs the client_id and client_secret secrets",
                          code="MissingSetting")
    import requests
    from looker_sdk import error
    from looker_sdk.rtl import api_settings, auth_session, requests_transport, serialize, transport
    from looker_sdk.sdk import constants
    from looker_sdk.sdk.api40.methods import Looker40SDK

    base_url = (conn.endpoint or conn.settings["base_url"]).rstrip("/")

    class Settings(api_settings.ApiSettings):
        """ApiSettings from the connection: never a looker.ini, never LOOKERSDK_* variables."""

        def __init__(self) -> None:  # the base reads a file and the environment: not called
            self.filename, self.section, self.env_prefix = "", None, None
            self.base_url = base_url
            self.verify_ssl = bool(conn.settings.get("verify_ssl", True))
            self.timeout = int(conn.settings.get("timeout", 120))
            self.headers = {"Content-Type": "application/json"}
            self.agent_tag = f"{transport.AGENT_PREFIX} {constants.sdk_version} flowrun"

        def read_config(self) -> Any:
            return {"base_url": base_url, "client_id": client_id, "client_secret": client_secret}

    class Session(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            tracing_session(self)  # each request carries the attempt span's traceparent

        def request(self, *args: Any, **kwargs: Any) -> Any:  # the status the SDK drops
            _last.status, _last.headers = None, None
            try:
                resp = super().request(*args, **kwargs)
            except OSError:
                _last.status = "network"
                raise
            _last.status, _last.headers = resp.status_code, resp.headers
            return resp

    class Auth(auth_session.AuthSession):
        def _login(self, transport_options: Any) -> None:
            try:
                super()._login(transport_options)
            except error.SDKError as exc:
                exc.status, exc.headers = getattr(_last, "status", None), getattr(_last, "headers", None)
                raise
            conn.add_secret(self.token.access_token)

    class SDK(Looker40SDK):
        def _return(self, response: Any, structure: Any) -> Any:
            """An error answer becomes the SDK's SDKError, with the HTTP status it dropped. The
            SDK's own version also fetches an error-doc index and page from Looker's CDN for each
            error: flowrun keeps Looker's documentation URL and makes no such request."""
            if response.ok:
                return super()._return(response, structure)
            value = response.value.decode(encoding=response.encoding, errors="replace")
            try:
                exc = self.deserialize(data=value, structure=error.SDKError)
            except serialize.DeserializeError:
                exc = error.SDKError(value)
            exc.status, exc.headers = getattr(_last, "status", None), getattr(_last, "headers", None)
            raise exc

    settings = Settings()
    # requests follows redirects, a 307 keeping the login body (the client secret) for another host
    refuse = lambda message: ActionError(f"Looker: {message}", code="LookerRedirect")  # noqa: E731
    http = requests_transport.RequestsTransport(settings, keep_to_host(Session(), base_url, refuse))
    auth = Auth(settings, http, serialize.deserialize40, "4.0")
    return SDK(auth, serialize.deserialize40, serialize.serialize40, http, "4.0")


class LookerVendor(Vendor):
    """looker-sdk: what it needs, and how its exceptions map (by the HTTP status of the answer).

    ======================================================  ==========  =====================
    looker-sdk exception                                    retried?    code
    ======================================================  ==========  =====================
    SDKError after 429                                      yes         ``LookerRateLimited``
    SDKError after 5xx, or no answer (connection refused)   yes         ``LookerUnavailable``
    SDKError after 401 (login or token refused)             no          ``LookerAuthFailed``
    SDKError after 403                                      no          ``LookerForbidden``
    SDKError after 404                                      no          ``LookerNotFound``
    SDKError after another 4xx (400, 409, 422 ...)          no          ``LookerInvalidRequest``
    DeserializeError (an answer it cannot read)             yes         ``LookerBadAnswer``
    ======================================================  ==========  =====================
    Looker's message, its documentation URL and each error detail (field, code, message) are
    kept in the action's error.
    """

    name = "Looker"
    modules = ("looker_sdk",)
    extra = "looker"

    def rules(self) -> list[Rule]:
        from looker_sdk import error
        from looker_sdk.rtl import serialize

        def code(fault: Fault, exc: Any) -> str:
            status = fault.status
            if status == "network" or status is None or (isinstance(status, int) and status >= 500):
                return "LookerUnavailable"
            return {429: "LookerRateLimited", 401: "LookerAuthFailed", 403: "LookerForbidden",
                    404: "LookerNotFound"}.get(status, "LookerInvalidRequest")

        def retry(fault: Fault, exc: Any) -> bool:
            return fault.status in ("network", None) or status_is_retryable(fault.status)

        return [Rule((error.SDKError,), code, retryable=retry),
                Rule((serialize.DeserializeError,), "LookerBadAnswer", retryable=True)]

    def describe(self, exc: BaseException) -> Fault:
        status = getattr(exc, "status", None)
        message = getattr(exc, "message", None) or str(exc)
        if isinstance(message, str) and message.lstrip().startswith("{"):
            import json

            try:  # the login's error answer reaches the SDK as raw JSON text
                message = json.loads(message).get("message") or message
            except (ValueError, AttributeError):
                pass
        details = [{"field": e.field, "code": e.code, "message": e.message}
                   for e in getattr(exc, "errors", None) or [] if getattr(e, "message", None)]
        text = " ".join(str(message).split())[:500] or type(exc).__name__
        if details:
            text += " (" + "; ".join(f"{d['field'] or '-'}: {d['message']}" for d in details) + ")"
        label = f"Looker {status}: " if isinstance(status, int) else "Looker: "
        return Fault(message=label + text, status=status if isinstance(status, int) else None,
                     headers=getattr(exc, "headers", None),
                     details={"status": status, "documentationUrl": getattr(exc, "documentation_url", None) or None,
                              "errors": details or None})


LOOKER = LookerVendor()
CONNECTION = ConnectionSpec(
    kind="looker",
    description="A Looker instance through looker-sdk (API 4.0): base URL plus an API3 client id "
                "and secret, configured in code (no looker.ini, no LOOKERSDK_* variables), so two "
                "Looker connections coexist. `endpoint` replaces the base URL (proxies, tests).",
    settings=SETTINGS,
    client=build_client,
    vendor=LOOKER,
    example={"kind": "looker", "settings": {"base_url": "https://acme.cloud.looker.com"},
             "secrets": {"client_id": "LOOKER_CLIENT_ID", "client_secret": "LOOKER_CLIENT_SECRET"}},
)
