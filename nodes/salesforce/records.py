"""Single-record operations on /services/data/vXX.X/sobjects/{SObject}/..."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from engine.plugin import Node, inputs_schema

SOBJECT = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*$",
           "description": "SObject API name: Account, Contact, Invoice__c, ns__Thing__c."}
RECORD_ID = {"type": "string", "pattern": r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$",
             "description": "15- or 18-character record Id."}
FIELD = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_.]*$"}
RECORD = {"type": "object", "minProperties": 1,
          "description": "Field API names → values, e.g. {LastName: Doe, Email: ...}."}
SAVE_RESULT = {"type": "object", "properties": {
    "id": {"type": "string", "description": "Record Id."},
    "success": {"type": "boolean", "description": "Always true (failures fail the action)."},
}}


def sobject(sf: Any, name: str) -> Any:
    """The SDK's SFType for ``name`` (built directly: getattr(sf, 'bulk') is not one)."""
    from simple_salesforce import SFType

    return SFType(name, sf.session_id, sf.sf_instance, sf_version=sf.sf_version,
                  session=sf.session, salesforce=sf, object_pairs_hook=dict)


async def call(context: Any, fn: Any) -> Any:
    """Run ``fn(sf)`` in a worker thread through the connection's SalesforceClient."""
    from .client import SALESFORCE

    client = await SALESFORCE.client(context)
    return await SALESFORCE.call(context, client.call, fn)


class Create(Node):
    type = "salesforce.Create"
    idempotent = False  # the vendor takes no idempotency key: a retry after a crash may repeat it
    title = "Create a Salesforce record"
    description = ("POST /sobjects/{sobject}. Salesforce has no idempotency keys: a retry "
                   "after a timeout or 5xx can create a duplicate; prefer salesforce.Upsert "
                   "on an external id when the action has a retryPolicy.")
    connection = "salesforce"
    input_schema = inputs_schema(["sobject", "record"], sobject=SOBJECT, record=RECORD)
    outputs = SAVE_RESULT
    example = {"type": "salesforce.Create", "connection": "salesforce",
               "inputs": {"sobject": "Lead",
                          "record": {"LastName": "{{ triggerBody().last_name }}",
                                     "Company": "{{ triggerBody().company }}",
                                     "Email": "{{ triggerBody().email }}"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would create a Salesforce {inputs.get('sobject')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        result = await call(context, lambda sf: sobject(sf, inputs["sobject"]).create(
            inputs["record"]))
        return {"id": result.get("id"), "success": bool(result.get("success", True))}


class Update(Node):
    type = "salesforce.Update"
    title = "Update a Salesforce record"
    description = "PATCH /sobjects/{sobject}/{id} with the fields to change."
    connection = "salesforce"
    input_schema = inputs_schema(["sobject", "id", "record"], sobject=SOBJECT, id=RECORD_ID,
                           record=RECORD)
    outputs = SAVE_RESULT
    example = {"type": "salesforce.Update", "connection": "salesforce",
               "inputs": {"sobject": "Opportunity", "id": "{{ body('find').records[0].Id }}",
                          "record": {"StageName": "Closed Won"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would update Salesforce {inputs.get('sobject')} {inputs.get('id')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        await call(context, lambda sf: sobject(sf, inputs["sobject"]).update(
            inputs["id"], inputs["record"]))
        return {"id": inputs["id"], "success": True}


class Upsert(Node):
    type = "salesforce.Upsert"
    title = "Insert or update a Salesforce record by external id"
    description = (
        "PATCH /sobjects/{sobject}/{external_id_field}/{external_id}: updates the record "
        "whose external id matches, or creates it. Safe to retry. Fails with "
        "MULTIPLE_RECORDS when several records match.")
    connection = "salesforce"
    input_schema = inputs_schema(
        ["sobject", "external_id_field", "external_id", "record"], sobject=SOBJECT,
        external_id_field={**FIELD, "description": "External Id field, e.g. Email__c."},
        external_id={"type": ["string", "integer"], "minLength": 1,
                     "description": "Its value (URL-escaped when sent)."},
        record={**RECORD, "description": "Fields to set (without the external id field)."})
    outputs = {"type": "object", "properties": {
        "id": {"type": ["string", "null"], "description": "Record Id."},
        "created": {"type": "boolean", "description": "True when a new record was inserted."},
    }}
    example = {"type": "salesforce.Upsert", "connection": "salesforce",
               "inputs": {"sobject": "Contact", "external_id_field": "Customer_Id__c",
                          "external_id": "{{ triggerBody().customer_id }}",
                          "record": {"LastName": "{{ triggerBody().last_name }}",
                                     "Email": "{{ triggerBody().email }}"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would upsert Salesforce {inputs.get('sobject')} where {inputs.get('external_id_field')} = {inputs.get('external_id')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        key = f"{inputs['external_id_field']}/{quote(str(inputs['external_id']), safe='')}"

        def upsert(sf: Any) -> Any:
            response = sobject(sf, inputs["sobject"]).upsert(key, inputs["record"],
                                                             raw_response=True)
            body = response.json() if response.content else {}
            return response.status_code, body

        status, body = await call(context, upsert)
        return {"id": body.get("id"), "created": status == 201 or bool(body.get("created"))}


class Delete(Node):
    type = "salesforce.Delete"
    title = "Delete a Salesforce record"
    description = "DELETE /sobjects/{sobject}/{id} (moves it to the recycle bin)."
    connection = "salesforce"
    input_schema = inputs_schema(["sobject", "id"], sobject=SOBJECT, id=RECORD_ID)
    outputs = {"type": "object", "properties": {
        "id": {"type": "string", "description": "The deleted record's Id."},
        "deleted": {"type": "boolean", "description": "Always true."},
    }}
    example = {"type": "salesforce.Delete", "connection": "salesforce",
               "inputs": {"sobject": "Lead", "id": "00Q5e00000AbCdEFGH"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would delete Salesforce {inputs.get('sobject')} {inputs.get('id')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        await call(context, lambda sf: sobject(sf, inputs["sobject"]).delete(inputs["id"]))
        return {"id": inputs["id"], "deleted": True}


class Get(Node):
    type = "salesforce.Get"
    title = "Get a Salesforce record"
    description = ("GET /sobjects/{sobject}/{id}, optionally only `fields`. An unknown Id "
                   "fails with NOT_FOUND.")
    connection = "salesforce"
    reads_only = True
    input_schema = inputs_schema(["sobject", "id"], sobject=SOBJECT, id=RECORD_ID,
                           fields={"type": "array", "items": FIELD, "minItems": 1,
                                   "description": "Fields to return (default: all)."})
    outputs = {"type": "object", "description": "The record: field → value, plus "
               "attributes {type, url}.", "properties": {
                   "Id": {"type": "string", "description": "Record Id."},
                   "attributes": {"type": "object", "description": "{type, url}."}}}
    example = {"type": "salesforce.Get", "connection": "salesforce",
               "inputs": {"sobject": "Account", "id": "0015e00000XyZabAAB",
                          "fields": ["Name", "Industry", "OwnerId"]}}

    async def run(self, inputs: dict, context: Any) -> Any:
        params = {"fields": ",".join(inputs["fields"])} if inputs.get("fields") else None
        return await call(context, lambda sf: sobject(sf, inputs["sobject"]).get(
            inputs["id"], params=params))
