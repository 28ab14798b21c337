"""montecarlo.Query: any GraphQL query or mutation, with variables."""
from __future__ import annotations

from typing import Any

from engine.plugin import Node, inputs_schema

from .client import call, no_retry


def _execute(client: Any, query: str, variables: dict | None, operation: str | None,
             timeout: int) -> Any:
    from pycarlo.core.endpoint import Endpoint

    endpoint = Endpoint(url=client.session_endpoint, base_headers=client._get_headers(),
                        timeout=timeout, retry_backoff=no_retry())
    answer = endpoint(query, variables=variables or None, operation_name=operation)
    return answer.get("data") if isinstance(answer, dict) else None


class Query(Node):
    type = "montecarlo.Query"
    title = "Run a Monte Carlo GraphQL query or mutation"
    description = (
        "Sends any GraphQL document to Monte Carlo's API with `variables` (never formatted "
        "into the document) and returns `data` exactly as the API answered it (field names as "
        "written in the query). GraphQL errors fail the action with their message and "
        "extensions code; a timeout or a 5xx is retryable.")
    connection = "montecarlo"
    input_schema = inputs_schema(
        ["query"],
        query={"type": "string", "minLength": 1, "description": "The GraphQL document."},
        variables={"type": "object", "description": "Values of the document's $variables."},
        operation_name={"type": "string", "minLength": 1,
                        "description": "Which operation to run when the document has several."},
    )
    outputs = {"type": "object", "properties": {"data": {"description": "The answer's data."}}}
    example = {"type": "montecarlo.Query", "connection": "montecarlo",
               "inputs": {"query": "query table($id: String!) { getTable(fullTableId: $id) "
                                   "{ mcon tableId } }",
                          "variables": {"id": "analytics:prod.orders"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return None if not str(inputs.get("query", "")).lstrip().startswith("mutation") else "would run a Monte Carlo GraphQL mutation"

    async def run(self, inputs: dict, context: Any) -> Any:
        timeout = int(context.connection.get("timeout", 30)) if context.connection else 30
        data = await call(context, _execute, inputs["query"], inputs.get("variables"),
                          inputs.get("operation_name"), timeout)
        return {"data": data}
