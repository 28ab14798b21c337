"""The ``eventgrid`` connection kind: the secret deliveries carry (and, later, publishing).

    connections:
      eventgrid:
        kind: eventgrid
        secrets: {webhook_key: EVENTGRID_WEBHOOK_KEY}

The subscription's endpoint URL carries the key (``https://host/flows/f/triggers/t?code=KEY``),
or a delivery property (a custom header marked secret) does; the trigger's auth options say
which. Event Grid has no signature: a long random key over HTTPS is the authentication.
"""
from __future__ import annotations

from engine.plugin import ConnectionSpec, secret

CONNECTION = ConnectionSpec(
    kind="eventgrid",
    description="Azure Event Grid. For inbound deliveries: the shared key the subscription's endpoint "
                "URL (or a secret delivery header) carries.",
    settings={"type": "object", "additionalProperties": False, "properties": {
        "webhook_key": secret("Key every delivery to a trigger must carry (query parameter or header, as "
                              "the trigger's auth says)."),
    }},
    example={"kind": "eventgrid", "secrets": {"webhook_key": "EVENTGRID_WEBHOOK_KEY"}},
)
