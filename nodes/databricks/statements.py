"""databricks.ExecuteStatement: SQL on a warehouse through the Statement Execution API."""
from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.plugin import ActionError, Job, Pending, inputs_schema, excerpt

from .client import DATABRICKS

SAFE_INT = 2 ** 53 - 1
_INTS = {"BYTE", "SHORT", "INT", "LONG"}
_FLOATS = {"FLOAT", "DOUBLE"}
_JSON = {"ARRAY", "MAP", "STRUCT"}
DONE = {"SUCCEEDED", "FAILED", "CANCELED", "CLOSED"}


def value(text: str | None, type_name: str | None) -> Any:
    """One JSON_ARRAY cell (always a string) as a JSON-safe value of its column's type."""
    if text is None:
        return None
    kind = (type_name or "STRING").upper()
    try:
        if kind in _INTS:
            number = int(text)
            return number if -SAFE_INT <= number <= SAFE_INT else text
        if kind in _FLOATS:
            number = float(text)
            return number if math.isfinite(number) else text
        if kind == "DECIMAL":
            exact = Decimal(text)
            if exact == exact.to_integral_value():
                return int(exact) if abs(exact) <= SAFE_INT else text
            return float(exact) if Decimal(repr(float(exact))) == exact else text
        if kind == "BOOLEAN":
            return text.lower() == "true"
        if kind in _JSON:
            return json.loads(text)
    except (ValueError, InvalidOperation, RecursionError):
        return text
    return text  # STRING, DATE, TIMESTAMP (ISO 8601 already), BINARY (base64), INTERVAL


class ExecuteStatement(Job):
    type = "databricks.ExecuteStatement"
    idempotent = False  # any SQL (an INSERT, a MERGE) may write, and there is no idempotency key:
    # after a crash before its result was recorded it may run again (onInterrupted: fail prevents it)
    title = "Run SQL on a Databricks SQL warehouse"
    description = (
        "The Statement Execution API: the statement goes with named parameters (`:name` in "
        "the SQL; values bound by Databricks, never formatted in), waits up to `waitTimeout` "
        "for the answer, and otherwise is polled durably by its statement id (recorded at "
        "once; a resumed run re-attaches to it). Rows come back as objects with JSON-safe "
        "values (numbers where exact, else strings; ARRAY/MAP/STRUCT parsed); every result "
        "chunk is followed, up to `maxRows`. A timeout or Terminate cancels the statement.")
    connection = "databricks"
    poll_interval, max_poll_interval, backoff = 1.0, 30.0, 1.5
    input_schema = inputs_schema(
        ["statement", "warehouseId"],
        statement={"type": "string", "minLength": 1},
        warehouseId={"type": "string", "minLength": 1},
        parameters={"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                    "description": "Named parameters: name → value (:name in the SQL)."},
        catalog={"type": "string"},
        schema={"type": "string"},
        waitTimeout={"type": "integer", "minimum": 0, "maximum": 50, "default": 10,
                     "description": "Seconds the first call waits for the result (0, or 5 to 50)."},
        maxRows={"type": "integer", "minimum": 0, "default": 10_000},
    )
    outputs = {"type": "object", "properties": {
        "statementId": {"type": "string"},
        "columns": {"type": "array", "description": "name and type_name of each column."},
        "rows": {"type": "array", "items": {"type": "object"}},
        "rowCount": {"type": "integer"},
        "truncated": {"type": "boolean"},
    }}
    example = {"type": "databricks.ExecuteStatement", "connection": "databricks",
               "inputs": {"warehouseId": "abcdef1234567890",
                          "statement": "SELECT * FROM main.sales.orders WHERE region = :region LIMIT 100",
                          "parameters": {"region": "{{ triggerBody().region }}"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would run SQL on Databricks warehouse {inputs.get('warehouseId')}: {excerpt(inputs.get('statement'))}"

    async def start(self, inputs: dict, context: Any) -> dict:
        from databricks.sdk.service.sql import ExecuteStatementRequestOnWaitTimeout, StatementParameterListItem

        params = [StatementParameterListItem(name=k, value=None if v is None else
                                             (str(v).lower() if isinstance(v, bool) else str(v)))
                  for k, v in (inputs.get("parameters") or {}).items()]
        wait = inputs.get("waitTimeout", 10)
        if 0 < wait < 5:
            wait = 5
        client = await DATABRICKS.client(context)
        response = await DATABRICKS.call(
            context, client.statement_execution.execute_statement, statement=inputs["statement"],
            warehouse_id=inputs["warehouseId"], parameters=params or None, catalog=inputs.get("catalog"),
            schema=inputs.get("schema"), wait_timeout=f"{wait}s",
            on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE)
        return {"statementId": response.statement_id, "maxRows": inputs.get("maxRows", 10_000)}

    async def poll(self, handle: dict, context: Any) -> Any:
        client = await DATABRICKS.client(context)
        sid = handle["statementId"]
        response = await DATABRICKS.call(context, client.statement_execution.get_statement, sid)
        state = response.status.state.value if response.status and response.status.state else None
        if state not in DONE:
            return Pending(progress=state)
        if state != "SUCCEEDED":
            err = response.status.error
            message = err.message if err and err.message else f"the statement ended {state}"
            raise ActionError(f"{message}", code=(err.error_code.value if err and err.error_code else f"Statement{state.title()}"),
                              details={"statementId": sid, "state": state})
        columns = [{"name": c.name, "type": c.type_name.value if c.type_name else c.type_text}
                   for c in (response.manifest.schema.columns or [])] if response.manifest and response.manifest.schema else []
        limit = handle.get("maxRows", 10_000)
        rows: list[dict] = []
        truncated = False
        total = response.manifest.total_chunk_count if response.manifest else None
        chunk = response.result
        while chunk is not None:
            for raw in chunk.data_array or []:
                if len(rows) >= limit:
                    truncated = True
                    break
                if not isinstance(raw, list) or len(raw) != len(columns):
                    raise ActionError(f"statement {sid}: a result row has {len(raw) if isinstance(raw, list) else 'no'} "
                                      f"cells for {len(columns)} columns", code="BadResultChunks",
                                      details={"statementId": sid})
                rows.append({col["name"]: value(cell, col["type"]) for col, cell in zip(columns, raw)})
            if truncated or chunk.next_chunk_index is None:
                break
            index, following = chunk.chunk_index or 0, chunk.next_chunk_index
            if not isinstance(following, int) or following <= index or (total is not None and following >= total):
                # a peer that points back (or past the end) would keep this loop going forever
                raise ActionError(f"statement {sid}: result chunk {index} points to chunk {following!r}, "
                                  f"not a later one of {total if total is not None else '?'}",
                                  code="BadResultChunks", details={"statementId": sid})
            chunk = await DATABRICKS.call(context, client.statement_execution.get_statement_result_chunk_n,
                                          sid, following)
        return {"statementId": sid, "columns": columns, "rows": rows, "rowCount": len(rows),
                "truncated": truncated}

    async def cancel(self, handle: dict, context: Any) -> None:
        client = await DATABRICKS.client(context)
        await DATABRICKS.call(context, client.statement_execution.cancel_execution, handle["statementId"])
