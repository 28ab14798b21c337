"""tableau.EmbedToken: a connected-app JWT for embedding a view, with row-level claims."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from engine.plugin import Node, inputs_schema

from .client import MAX_TOKEN_SECONDS, RESERVED_CLAIMS, mint

ATTRIBUTE = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def embed_url(conn: Any, view: str) -> str:
    """The view's URL for the Embedding API: <server>/t/<site>/views/<workbook>/<sheet>."""
    server = conn.settings["server"].rstrip("/")
    site = conn.settings.get("site") or ""
    path = "/".join(quote(part, safe="") for part in view.strip("/").split("/"))
    return f"{server}/t/{quote(site, safe='')}/views/{path}" if site else f"{server}/views/{path}"


class EmbedToken(Node):
    type = "tableau.EmbedToken"
    title = "Mint a Tableau embed token (connected app JWT)"
    description = (
        "Mints a connected-app (direct trust) JWT for the Embedding API: `iss` the client id, "
        "`kid` the secret id, `sub` the user, `aud` \"tableau\", `exp` at most 10 minutes ahead, "
        "a unique `jti`, `scp` scopes, and user attribute claims for row-level security, signed "
        "HS256 with the connection's `secret_value`. Nothing is sent to Tableau. The token is a "
        "secret: the outputs hold a sealed stand-in, which is what the state database, logs and "
        "templates see; a `Response` that carries it sends the token itself, and only there.")
    connection = "tableau"
    reads_only = True
    input_schema = inputs_schema(
        ["user"],
        user={"type": "string", "minLength": 1, "description": "The Tableau user the token acts as (`sub`)."},
        view={"type": "string", "minLength": 1, "pattern": "^[^?#]+/[^?#]+$",
              "description": "The view to embed as `<workbook>/<sheet>` (content URLs): gives `embedUrl`."},
        scopes={"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^tableau:"},
                "default": ["tableau:views:embed"], "description": "The `scp` claim."},
        attributes={"type": "object", "additionalProperties": ATTRIBUTE,
                    "propertyNames": {"not": {"enum": list(RESERVED_CLAIMS)}},
                    "description": "User attributes for row-level security (a claim each, e.g. "
                                   "{Region: [East, West]}); registered claim names are refused."},
        expiresIn={"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_SECONDS, "default": 300,
                   "description": "Seconds the token lives (at most 600)."},
    )
    outputs = {"type": "object", "properties": {
        "token": {"type": "string", "description": "A sealed stand-in for the JWT: a Response sends the JWT."},
        "embedUrl": {"type": ["string", "null"], "description": "The view's URL for <tableau-viz src=...>."},
        "expiresAt": {"type": "integer", "description": "`exp`, seconds since the epoch."},
        "jti": {"type": "string", "description": "The token's unique id."},
    }}
    example = {"type": "tableau.EmbedToken", "connection": "tableau",
               "inputs": {"user": "portal@acme.example", "view": "Sales/Overview",
                          "attributes": {"Customer": "{{ triggerBody().customerId }}"}, "expiresIn": 300}}
    example_outputs = {"token": "flowrun-sealed:" + "0" * 32,
                       "embedUrl": "https://tableau.acme.example/t/acme/views/Sales/Overview",
                       "expiresAt": 1767600300, "jti": "0b5c1e9a-3f6d-4a8e-9c2b-7d4e5f6a7b8c"}

    async def run(self, inputs: dict, context: Any) -> Any:
        now, seconds = context.now(), int(inputs.get("expiresIn", 300))
        token, jti = mint(context.connection, user=inputs["user"], now=now, seconds=seconds,
                          scopes=inputs.get("scopes") or ["tableau:views:embed"],
                          attributes=inputs.get("attributes"))
        view = inputs.get("view")
        return {"token": context.seal(token, ttl=seconds), "jti": jti, "expiresAt": int(now) + seconds,
                "embedUrl": embed_url(context.connection, view) if view else None}
