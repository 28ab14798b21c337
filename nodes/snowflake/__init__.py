"""Snowflake: one statement as a durable job (snowflake.Query), scripts, and batched inserts.

``snowflake-connector-python`` is imported lazily (client factory, error mapping); importing
this module does not import it.
"""
from __future__ import annotations

from .client import CONNECTION, SNOWFLAKE
from .query import ExecuteScript, InsertRows, Query

CONNECTIONS = [CONNECTION]
NODES = [Query, ExecuteScript, InsertRows]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "SNOWFLAKE"]
