"""Monte Carlo (pycarlo): circuit breakers, dbt artifact uploads, incidents and any GraphQL
call. ``pycarlo`` is imported lazily; importing this module does not import it."""
from __future__ import annotations

from .breaker import CircuitBreaker
from .client import CONNECTION
from .dbt_upload import UploadDbtRun
from .incidents import GetIncidents
from .query import Query

CONNECTIONS = [CONNECTION]
NODES = [CircuitBreaker, UploadDbtRun, GetIncidents, Query]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "FILTERS"]
