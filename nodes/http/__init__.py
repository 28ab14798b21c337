"""The Http action (httpx) and the ``http`` connection kind that carries its authentication.

Plain HTTP endpoints, Azure Functions and Logic Apps are all reached with this action.
"""
from .node import HTTP_CONNECTION, Http

NODES = [Http]
CONNECTIONS = [HTTP_CONNECTION]
