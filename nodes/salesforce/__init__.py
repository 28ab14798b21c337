"""Salesforce: record CRUD and upsert, SOQL queries with paging, sObject Collections for
many records, and the `soql` / `soql_like` template filters for safe SOQL literals.

The ``simple_salesforce`` SDK is imported lazily (login, calls, error mapping);
importing this module does not import it.
"""
from __future__ import annotations

from .bulk import BulkInsert, BulkUpdate
from .client import CONNECTION, SalesforceClient
from .query import Query
from .records import Create, Delete, Get, Update, Upsert
from .soql import FILTERS, soql, soql_like

CONNECTIONS = [CONNECTION]
NODES = [Create, Update, Upsert, Delete, Get, Query, BulkInsert, BulkUpdate]
AUTH: list = []

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "AUTH", "SalesforceClient", "soql",
           "soql_like"]
