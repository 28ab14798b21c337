"""salesforce.Query: run SOQL and follow nextRecordsUrl."""
from __future__ import annotations

from typing import Any

from engine.plugin import Node

from .records import call


def _query(sf: Any, soql: str, include_deleted: bool, limit: int | None,
           page_all: bool) -> dict:
    page = sf.query(soql, include_deleted=include_deleted)
    total = page.get("totalSize", 0)
    records: list = []
    pages = 1
    while True:
        records.extend(page.get("records", []))
        if limit is not None and len(records) >= limit:
            records = records[:limit]
            break
        if page.get("done", True) or not page_all or not page.get("nextRecordsUrl"):
            break
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
        pages += 1
    return {"records": records, "totalSize": total, "returned": len(records),
            "done": len(records) >= total, "pages": pages}


class Query(Node):
    type = "salesforce.Query"
    title = "Run a SOQL query"
    description = (
        "GET /query?q=<soql>, then follows nextRecordsUrl (GET /query/01g...-2000) until "
        "every record is read, `limit` records are read, or (with `all: false`) after the "
        "first page. Quote values from triggers and other actions with the `soql` filter: "
        "`WHERE Email = {{ triggerBody().email | soql }}` renders a safe string literal "
        "(quotes included), so the value cannot change the query.")
    connection = "salesforce"
    reads_only = True
    input_schema = {
        "type": "object", "additionalProperties": False, "required": ["soql"],
        "properties": {
            "soql": {"type": "string", "minLength": 1,
                     "description": "The SOQL query. Use `| soql` on every interpolated "
                                    "value."},
            "all": {"type": "boolean", "default": True,
                    "description": "Follow nextRecordsUrl to read every page."},
            "limit": {"type": "integer", "minimum": 1,
                      "description": "Return at most this many records (stops paging "
                                     "once reached; prefer LIMIT in the SOQL when possible)."},
            "include_deleted": {"type": "boolean", "default": False,
                                "description": "Use queryAll: include deleted and archived "
                                               "records."},
        },
    }
    outputs = {"type": "object", "properties": {
        "records": {"type": "array", "items": {"type": "object"},
                    "description": "Records: field → value, plus attributes {type, url}."},
        "totalSize": {"type": "integer", "description": "Records matching the query "
                      "(Salesforce's count, may exceed `returned`)."},
        "returned": {"type": "integer", "description": "Length of `records`."},
        "done": {"type": "boolean", "description": "Every matching record was returned."},
        "pages": {"type": "integer", "description": "Number of HTTP pages read."},
    }}
    example = {"type": "salesforce.Query", "connection": "salesforce",
               "inputs": {"soql": "SELECT Id, Name FROM Contact WHERE Email = "
                                  "{{ triggerBody().email | soql }} LIMIT 10"}}

    async def run(self, inputs: dict, context: Any) -> Any:
        return await call(context, lambda sf: _query(
            sf, inputs["soql"], bool(inputs.get("include_deleted")), inputs.get("limit"),
            inputs.get("all", True)))
