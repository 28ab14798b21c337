"""Many records at once through the sObject Collections API (composite/sobjects).

Records are sent in chunks of 200 (the API's maximum per request), one HTTP request per
chunk, and the per-record results are returned in input order. The Bulk API 2.0 (CSV
jobs, polling) suits millions of rows; collections answer synchronously and fit flows.
"""
from __future__ import annotations

import json
from typing import Any

from engine.plugin import ActionError, Node, count

from .records import SOBJECT, call

CHUNK = 200

_RESULTS = {"type": "object", "properties": {
    "results": {"type": "array", "description": "One per input record, in order: "
                "{id, success, errors: [{statusCode, message, fields}]}.",
                "items": {"type": "object"}},
    "succeeded": {"type": "integer", "description": "Records saved."},
    "failed": {"type": "integer", "description": "Records rejected."},
}}


def _schema(update: bool) -> dict:
    record = {"type": "object", "minProperties": 1}
    if update:
        record = {**record, "required": ["Id"]}
    return {
        "type": "object", "additionalProperties": False, "required": ["sobject", "records"],
        "properties": {
            "sobject": SOBJECT,
            "records": {"type": "array", "items": record, "minItems": 1,
                        "description": "Records (field → value)"
                                       + (", each with its Id." if update else ".")},
            "all_or_none": {"type": "boolean", "default": False,
                            "description": "Roll back a chunk of up to 200 records when "
                                           "any of them fails."},
            "allow_partial": {"type": "boolean", "default": False,
                              "description": "Succeed even when some records were "
                                             "rejected (inspect `results`); by default "
                                             "any rejection fails the action."},
        },
    }


def _save(sf: Any, method: str, sobject: str, records: list[dict], all_or_none: bool) -> list:
    results: list = []
    for start in range(0, len(records), CHUNK):
        chunk = [{"attributes": {"type": sobject}, **r} for r in records[start:start + CHUNK]]
        body = json.dumps({"allOrNone": all_or_none, "records": chunk})
        results.extend(sf.restful("composite/sobjects", method=method, data=body) or [])
    return results


async def _run(method: str, inputs: dict, context: Any) -> dict:
    results = await call(context, lambda sf: _save(
        sf, method, inputs["sobject"], inputs["records"], bool(inputs.get("all_or_none"))))
    failed = [i for i, r in enumerate(results) if not r.get("success")]
    out = {"results": results, "succeeded": len(results) - len(failed), "failed": len(failed)}
    if failed and not inputs.get("allow_partial"):
        errors = results[failed[0]].get("errors") or [{}]
        code = errors[0].get("statusCode") or "RECORDS_FAILED"
        raise ActionError(f"{len(failed)} of {len(results)} records were rejected; first "
                          f"(index {failed[0]}): {errors[0].get('message', code)}",
                          code=code, details={**out, "failed_indexes": failed})
    return out


class BulkInsert(Node):
    type = "salesforce.BulkInsert"
    idempotent = False  # the vendor takes no idempotency key: a retry after a crash may repeat it
    title = "Create many Salesforce records"
    description = (
        "POST composite/sobjects in chunks of 200. Fails when any record is rejected "
        "(error code: the first rejection's statusCode, e.g. REQUIRED_FIELD_MISSING; "
        "details carry every result) unless `allow_partial`. Not idempotent: a retry "
        "after a 5xx may insert a chunk twice.")
    connection = "salesforce"
    input_schema = _schema(update=False)
    outputs = _RESULTS
    example = {"type": "salesforce.BulkInsert", "connection": "salesforce",
               "inputs": {"sobject": "Contact",
                          "records": "{{ body('transform') }}", "all_or_none": True}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would insert {count(inputs.get('records'))} Salesforce {inputs.get('sobject')} record(s) (Bulk API)"

    async def run(self, inputs: dict, context: Any) -> Any:
        return await _run("POST", inputs, context)


class BulkUpdate(Node):
    type = "salesforce.BulkUpdate"
    title = "Update many Salesforce records"
    description = ("PATCH composite/sobjects in chunks of 200; every record carries its "
                   "Id. Failure rules as salesforce.BulkInsert.")
    connection = "salesforce"
    input_schema = _schema(update=True)
    outputs = _RESULTS
    example = {"type": "salesforce.BulkUpdate", "connection": "salesforce",
               "inputs": {"sobject": "Opportunity",
                          "records": [{"Id": "0065e00000AbCdEAAV", "StageName": "Closed Won"}]}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would update {count(inputs.get('records'))} Salesforce {inputs.get('sobject')} record(s) (Bulk API)"

    async def run(self, inputs: dict, context: Any) -> Any:
        return await _run("PATCH", inputs, context)
