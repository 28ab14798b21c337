"""The ``eventgrid`` connection kind: the secret deliveries carry, and a topic to publish to.

    connections:
      eventgrid:
        kind: eventgrid
        settings: {topic_endpoint: "https://orders.westeurope-1.eventgrid.azure.net/api/events"}
        secrets: {webhook_key: EVENTGRID_WEBHOOK_KEY, topic_key: EVENTGRID_TOPIC_KEY}

The subscription's endpoint URL carries the key (``https://host/flows/f/triggers/t?code=KEY``),
or a delivery property (a custom header marked secret) does; the trigger's auth options say
which. Event Grid has no signature: a long random key over HTTPS is the authentication.
"""
from __future__ import annotations

from engine.plugin import ConnectionSpec, secret

from .publish import EVENTGRID, build_client

CONNECTION = ConnectionSpec(
    kind="eventgrid",
    description="Azure Event Grid. For inbound deliveries: the shared key the subscription's endpoint "
                "URL (or a secret delivery header) carries. For azure.eventgrid.Publish: the topic endpoint "
                "and its access key or a SAS token. `endpoint` overrides the topic endpoint's host (tests, "
                "proxies).",
    settings={"type": "object", "additionalProperties": False, "properties": {
        "webhook_key": secret("Key every delivery to a trigger must carry (query parameter or header, as "
                              "the trigger's auth says)."),
        "topic_endpoint": {"type": "string", "pattern": "^https?://",
                           "description": "The topic endpoint events are published to "
                                          "(https://<topic>.<region>-1.eventgrid.azure.net/api/events)."},
        "topic_key": secret("An access key of the topic (sent as aeg-sas-key)."),
        "sas_token": secret("A shared access signature for the topic (sent as aeg-sas-token), instead of "
                            "the key."),
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 60,
                    "description": "Seconds to wait for one publish request."},
    }},
    client=build_client,
    vendor=EVENTGRID,
    example={"kind": "eventgrid", "settings": {"topic_endpoint":
                                               "https://orders.westeurope-1.eventgrid.azure.net/api/events"},
             "secrets": {"webhook_key": "EVENTGRID_WEBHOOK_KEY", "topic_key": "EVENTGRID_TOPIC_KEY"}},
)
