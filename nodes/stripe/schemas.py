"""JSON Schema fragments shared by the Stripe nodes."""
from __future__ import annotations

METADATA = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "description": "Key/value pairs stored on the object (up to 50 keys; values are "
                   "sent as strings). An empty string value unsets a key.",
}

EXPAND = {
    "type": "array",
    "items": {"type": "string"},
    "description": "Related objects to inline in the response, e.g. [\"customer\"], "
                   "[\"latest_invoice.payment_intent\"].",
}

EXTRA = {
    "type": "object",
    "description": "Any other parameters of this Stripe endpoint, sent as given "
                   "(nested objects become Stripe's bracket form). Named inputs win "
                   "over the same key here.",
}

ID = {"type": "string", "minLength": 1}

ADDRESS = {
    "type": "object",
    "additionalProperties": False,
    "description": "Postal address.",
    "properties": {k: {"type": "string"} for k in
                   ("line1", "line2", "city", "state", "postal_code", "country")},
}


def resource(description: str, **properties: dict) -> dict:
    """Output schema of a call that returns one Stripe object (as a plain dict)."""
    props = {"id": {"type": "string", "description": "Stripe id of the object."},
             "object": {"type": "string", "description": "Stripe object type."}}
    props.update(properties)
    return {"type": "object", "description": description + " The whole Stripe object, as "
            "returned by the API (JSON), is the output.", "properties": props}


def merge(inputs_: dict, *named: str) -> dict:
    """Stripe params: ``extra`` first, then the named inputs that were given."""
    params = dict(inputs_.get("extra") or {})
    for key in named:
        if inputs_.get(key) is not None:
            params[key] = inputs_[key]
    return params
