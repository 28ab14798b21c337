"""Azure Event Grid: inbound deliveries (the ``eventgrid`` trigger auth) and publishing
(``azure.eventgrid.Publish``, through the azure-eventgrid SDK: ``pip install 'flowrun[azure]'``).

A Request trigger opts in with::

    auth: {type: eventgrid, connection: eventgrid}            # key in ?code=... (default)
    auth: {type: eventgrid, connection: eventgrid, header: X-Delivery-Key}

It answers both subscription handshakes without starting a run (Event Grid schema:
the ``SubscriptionValidationEvent``; CloudEvents schema: the OPTIONS abuse-protection
pre-flight), checks the delivery key, accepts Event Grid (a JSON array of events) and
CloudEvents 1.0 (structured, batched, or binary mode) bodies, and returns the event id
as the de-duplication key. No SDK is needed for inbound deliveries; publishing imports it lazily.
"""
from __future__ import annotations

from .connection import CONNECTION
from .publish import Publish
from .webhook import EventGridAuth

CONNECTIONS = [CONNECTION]
NODES = [Publish]
FILTERS: dict = {}
AUTH = [EventGridAuth]

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "AUTH", "EventGridAuth", "Publish"]
