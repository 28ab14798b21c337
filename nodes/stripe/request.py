"""stripe.Request: any Stripe endpoint the typed nodes do not cover."""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from engine.plugin import ActionError, Node

from .client import STRIPE, options

# Keys StripeClient.raw_request reads as request options instead of API parameters.
_OPTION_KEYS = {"api_key", "stripe_version", "stripe_account", "stripe_context",
                "max_network_retries", "idempotency_key", "content_type", "headers", "base",
                "usage"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _render_path(path: str, path_params: dict) -> str:
    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name not in path_params:
            raise ActionError(f"path placeholder {{{name}}} has no value in path_params",
                              code="InvalidPath", details={"path": path})
        return quote(str(path_params[name]), safe="")

    rendered = _PLACEHOLDER.sub(sub, path)
    if not re.fullmatch(r"/v[12]/[A-Za-z0-9_\-./%]*", rendered) or "/../" in rendered + "/":
        raise ActionError(f"path must be an API path like /v1/customers, got {rendered!r}",
                          code="InvalidPath", details={"path": rendered})
    return rendered


class Request(Node):
    type = "stripe.Request"
    title = "Call any Stripe API endpoint"
    description = (
        "A generic call for endpoints without a dedicated node: `method` + `path` (e.g. "
        "/v1/customers/{id}/balance_transactions, with {id} filled from `path_params` and "
        "URL-escaped) + `params` (query string for GET/DELETE, form body for POST, nested "
        "objects in Stripe's bracket form). POST and DELETE carry the action's "
        "idempotency key. The output is the JSON response as-is.")
    connection = "stripe"
    input_schema = {
        "type": "object", "additionalProperties": False, "required": ["path"],
        "properties": {
            "method": {"enum": ["GET", "POST", "DELETE"], "default": "GET",
                       "description": "HTTP method."},
            "path": {"type": "string", "pattern": "^/v[12]/",
                     "description": "API path starting with /v1/ (or /v2/); {name} "
                                    "placeholders are taken from path_params."},
            "path_params": {"type": "object",
                            "additionalProperties": {"type": ["string", "integer"]},
                            "description": "Values of the {name} placeholders in path."},
            "params": {"type": "object", "description": "Request parameters."},
        },
    }
    outputs = {"type": "object", "description": "The decoded JSON response: an object, or "
               "a list object {object: list, data: [...], has_more}."}
    example = {"type": "stripe.Request", "connection": "stripe",
               "inputs": {"method": "POST", "path": "/v1/customers/{id}/balance_transactions",
                          "path_params": {"id": "{{ body('customer').id }}"},
                          "params": {"amount": -500, "currency": "usd",
                                     "description": "Goodwill credit"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return None if str(inputs.get("method", "GET")).upper() == "GET" else f"would {str(inputs.get('method')).upper()} Stripe {inputs.get('path')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        method = inputs.get("method", "GET").lower()
        path = _render_path(inputs["path"], inputs.get("path_params") or {})
        params = dict(inputs.get("params") or {})
        clash = sorted(_OPTION_KEYS & params.keys())
        if clash:
            raise ActionError(f"params may not contain {', '.join(clash)} (request options, "
                              "not Stripe parameters)", code="InvalidParams")
        if method != "get":
            params.update(options(context))
        client = await STRIPE.client(context)
        response = await STRIPE.call(context, client.raw_request, method, path, **params)
        return json.loads(response.body) if response.body else None
