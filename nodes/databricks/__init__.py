"""Databricks: Jobs runs (run a job, submit a one-time run) polled durably, and SQL through the
Statement Execution API.

``databricks-sdk`` is imported lazily (client factory, error mapping, node starts); importing
this module does not import it.
"""
from __future__ import annotations

from .client import CONNECTION, DATABRICKS
from .runs import RunJob, SubmitRun
from .statements import ExecuteStatement

CONNECTIONS = [CONNECTION]
NODES = [RunJob, SubmitRun, ExecuteStatement]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "DATABRICKS"]
