"""dbt: run dbt-core commands in a child process (dbt.Command) and read lineage from
manifest.json (dbt.Lineage). dbt-core is never imported in the flowrun process."""
from __future__ import annotations

from .command import Command
from .connection import CONNECTION
from .lineage import Lineage

CONNECTIONS = [CONNECTION]
NODES = [Command, Lineage]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "FILTERS"]
