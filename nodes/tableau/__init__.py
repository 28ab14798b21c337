"""Tableau: embed tokens (connected-app JWTs), extract refreshes polled durably, view exports
into the blob store, and content listings, through tableauserverclient and PyJWT.

Neither is imported by this module: the client factory, the error table and the nodes' ``run``
import them.
"""
from __future__ import annotations

from .client import CONNECTION, TABLEAU
from .embed import EmbedToken
from .refresh import RefreshExtract
from .views import ExportView, Query

CONNECTIONS = [CONNECTION]
NODES = [EmbedToken, RefreshExtract, ExportView, Query]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "TABLEAU"]
