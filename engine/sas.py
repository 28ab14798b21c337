"""Logic Apps' protection of a Request trigger: a SAS signature in its callback URL.

A Logic Apps definition has no ``auth`` block: whoever holds the trigger's callback URL may
call it, and the URL carries a signature. flowrun gives a definition's Request trigger the
same protection (``auth: {type: sas}``, which a YAML flow may also name):

    <base>/flows/<flow>/triggers/<trigger>/invoke[/<relativePath>]
        ?api-version=2022-05-01&sp=%2Ftriggers%2F<trigger>%2Frun&sv=1.0&sig=<sig>

    sig = base64url(HMAC-SHA256(key, "<flow>/<trigger>\\n<sp>\\n<sv>")), without '=' padding

``sp`` (the permission: ``/triggers/<trigger>/run``) and ``sv`` (the signature version,
``1.0``) are signed; ``api-version`` is not. The key is ``$FLOWRUN_SAS_KEY`` when set (every
server sharing it accepts the same URLs), else a random key kept in the state database, made
on first use, so callback URLs outlive restarts. A missing ``sig`` is 401, a wrong one (or a
wrong ``sp`` / ``sv``) 403, compared in constant time; nothing starts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any
from urllib.parse import quote

ENV = "FLOWRUN_SAS_KEY"
KEY_NAME = "trigger-sas"
API_VERSION = "2022-05-01"
VERSION = "1.0"


def key(engine: Any) -> bytes:
    """The signing key: ``$FLOWRUN_SAS_KEY``, else the state database's own."""
    given = os.environ.get(ENV)
    if given:
        return given.encode("utf-8", "surrogatepass")
    server_key = getattr(engine, "server_key", None)
    return server_key(KEY_NAME) if callable(server_key) else b"flowrun-validate-only"


def permission(trigger: str) -> str:
    return f"/triggers/{trigger}/run"


def signature(secret: bytes, flow: str, trigger: str, sp: str, sv: str = VERSION) -> str:
    text = f"{flow}/{trigger}\n{sp}\n{sv}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(hmac.new(secret, text, hashlib.sha256).digest()).decode().rstrip("=")


def callback_url(secret: bytes, base: str, flow: str, trigger: str, relative_path: str | None = None) -> str:
    sp = permission(trigger)
    path = f"{base.rstrip('/')}/flows/{quote(flow, safe='')}/triggers/{quote(trigger, safe='')}/invoke"
    if relative_path:
        path += "/" + relative_path.strip("/")
    return (f"{path}?api-version={API_VERSION}&sp={quote(sp, safe='')}&sv={VERSION}"
            f"&sig={signature(secret, flow, trigger, sp)}")


def check(secret: bytes, flow: str, trigger: str, query: dict[str, str]) -> tuple[int, str] | None:
    """None when ``query`` carries a valid signature, else (401 | 403, why)."""
    given = query.get("sig")
    if not given:
        return 401, "missing sig query parameter (call the trigger's callback URL)"
    sp, sv = query.get("sp", ""), query.get("sv", "")
    expected = signature(secret, flow, trigger, sp, sv)
    good = hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())
    if not good or sp != permission(trigger) or sv != VERSION:
        return 403, "the sig does not match this trigger's callback URL"
    return None
