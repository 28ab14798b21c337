"""Looker: Looks, inline queries and dashboard renders (polled durably, into the blob store)
through looker-sdk, configured per connection in code.

looker-sdk is not imported by this module: the client factory, the error table and the nodes'
``run`` import it.
"""
from __future__ import annotations

from .client import CONNECTION, LOOKER
from .nodes import RenderDashboard, RunInlineQuery, RunLook

CONNECTIONS = [CONNECTION]
NODES = [RunLook, RunInlineQuery, RenderDashboard]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "LOOKER"]
