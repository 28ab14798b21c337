"""looker.RunLook, looker.RunInlineQuery and looker.RenderDashboard."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from engine.plugin import ActionError, Job, Node, Pending, RetryableError, excerpt

from .client import LOOKER

FILTERS = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
           "propertyNames": {"minLength": 1},
           "description": "Field → Looker filter expression (e.g. {\"orders.created_date\": \"7 days\"})."}
RENDERING = {"enqueued_for_query", "querying", "enqueued_for_render", "rendering"}
ROWS = {"type": "array", "description": "The rows as objects keyed by field name."}


def _rows(text: Any, what: str) -> list:
    try:
        rows = json.loads(text if isinstance(text, str) else bytes(text).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RetryableError(f"Looker's {what} result is not JSON", code="LookerBadAnswer") from None
    if isinstance(rows, dict) and rows.get("looker_error"):  # a query error inside a 200 answer
        raise ActionError(f"Looker query error: {rows['looker_error']}", code="LookerQueryError")
    if not isinstance(rows, list):
        raise RetryableError(f"Looker's {what} result is not a list of rows", code="LookerBadAnswer")
    return rows


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class RunLook(Node):
    type = "looker.RunLook"
    title = "Run a Looker Look"
    description = (
        "Runs a saved Look and returns its result: `json` rows, `csv` text, or a `png` of its "
        "visualisation. `limit` overrides the Look's row limit. The CSV and the PNG are also "
        "kept in the blob store: `file` is a reference SendGrid attachments take.")
    connection = "looker"
    reads_only = True
    input_schema = {"type": "object", "additionalProperties": False, "required": ["lookId"],
                    "properties": {
                        "lookId": {"type": ["string", "integer"], "minLength": 1, "minimum": 1},
                        "format": {"enum": ["json", "csv", "png"], "default": "json"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 5000000},
                        "applyFormatting": {"type": "boolean"},
                        "cache": {"type": "boolean", "description": "Use Looker's result cache (default: Looker's)."},
                        "imageWidth": {"type": "integer", "minimum": 1, "maximum": 10000},
                        "imageHeight": {"type": "integer", "minimum": 1, "maximum": 10000},
                        "filename": {"type": "string", "minLength": 1, "pattern": "^[^/\\\\]+$"}}}
    outputs = {"type": "object", "properties": {
        "rows": ROWS, "count": {"type": "integer"}, "csv": {"type": "string"},
        "file": {"type": "object", "description": "The CSV or PNG in the blob store."}}}
    example = {"type": "looker.RunLook", "connection": "looker",
               "inputs": {"lookId": "42", "format": "csv", "limit": 5000, "filename": "orders.csv"}}
    example_outputs = {"csv": "orders.created_date,orders.count\n2026-01-04,118\n", "count": 1,
                       "file": {"$file": "0" * 64, "name": "orders.csv", "contentType": "text/csv", "size": 48}}

    async def run(self, inputs: dict, context: Any) -> Any:
        sdk = await LOOKER.client(context)
        kind, look = inputs.get("format", "json"), str(inputs["lookId"])
        result = await LOOKER.call(context, sdk.run_look, look, kind, limit=inputs.get("limit"),
                                   apply_formatting=inputs.get("applyFormatting"), cache=inputs.get("cache"),
                                   image_width=inputs.get("imageWidth"), image_height=inputs.get("imageHeight"))
        if kind == "json":
            rows = _rows(result, f"Look {look}")
            return {"rows": rows, "count": len(rows)}
        data = result.encode("utf-8") if isinstance(result, str) else bytes(result or b"")
        name = inputs.get("filename") or f"look-{look}.{kind}"
        ref = context.save_file(data, name=name, content_type="text/csv" if kind == "csv" else "image/png")
        if kind == "csv":
            return {"csv": data.decode("utf-8", "replace"), "file": ref,
                    "count": max(0, len(data.decode("utf-8", "replace").splitlines()) - 1)}
        return {"file": ref}


class RunInlineQuery(Node):
    type = "looker.RunInlineQuery"
    title = "Run an inline Looker query"
    description = (
        "Runs a query defined in the action (model, view/explore, fields, filters, sorts, "
        "limit) without saving it, and returns its rows as JSON objects keyed by field name. "
        "A query error Looker reports inside its answer fails the action (`LookerQueryError`).")
    connection = "looker"
    reads_only = True
    input_schema = {"type": "object", "additionalProperties": False, "required": ["model", "view", "fields"],
                    "properties": {
                        "model": {"type": "string", "minLength": 1},
                        "view": {"type": "string", "minLength": 1, "description": "The explore."},
                        "fields": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                        "filters": FILTERS,
                        "filterExpression": {"type": "string"},
                        "sorts": {"type": "array", "items": {"type": "string", "minLength": 1},
                                  "description": "e.g. [\"orders.count desc\"]"},
                        "pivots": {"type": "array", "items": {"type": "string", "minLength": 1}},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 5000000, "default": 500},
                        "cache": {"type": "boolean"}}}
    outputs = {"type": "object", "properties": {"rows": ROWS, "count": {"type": "integer"}}}
    example = {"type": "looker.RunInlineQuery", "connection": "looker",
               "inputs": {"model": "thelook", "view": "orders", "fields": ["orders.created_date", "orders.count"],
                          "filters": {"orders.created_date": "7 days"}, "sorts": ["orders.created_date desc"],
                          "limit": 100}}
    example_outputs = {"rows": [{"orders.created_date": "2026-01-04", "orders.count": 118}], "count": 1}

    async def run(self, inputs: dict, context: Any) -> Any:
        from looker_sdk.sdk.api40 import models

        body = models.WriteQuery(model=inputs["model"], view=inputs["view"], fields=list(inputs["fields"]),
                                 filters={k: _text(v) for k, v in (inputs.get("filters") or {}).items()} or None,
                                 filter_expression=inputs.get("filterExpression"),
                                 sorts=inputs.get("sorts"), pivots=inputs.get("pivots"),
                                 limit=str(inputs.get("limit", 500)))
        sdk = await LOOKER.client(context)
        result = await LOOKER.call(context, sdk.run_inline_query, "json", body, cache=inputs.get("cache"))
        rows = _rows(result, "query")
        return {"rows": rows, "count": len(rows)}


class RenderDashboard(Job):
    type = "looker.RenderDashboard"
    title = "Render a Looker dashboard to PDF or PNG"
    description = (
        "Creates a render task for a dashboard (PDF or PNG, with dashboard filters, style and "
        "paper options) and waits for it durably: the task id is recorded in the step at once "
        "and polled (2 s, backing off to 30 s); a resumed run polls the same task and never "
        "creates another. `success` downloads the result into the blob store (`file`, a "
        "reference SendGrid attachments take); `failure` fails the action with Looker's status "
        "detail. Looker has no call to cancel a render task: a timeout or Terminate stops waiting.")
    connection = "looker"
    poll_interval, max_poll_interval, backoff = 2.0, 30.0, 1.5
    input_schema = {"type": "object", "additionalProperties": False, "required": ["dashboardId"],
                    "properties": {
                        "dashboardId": {"type": ["string", "integer"], "minLength": 1, "minimum": 1,
                                        "description": "A dashboard id, or a LookML dashboard's model::name."},
                        "format": {"enum": ["pdf", "png"], "default": "pdf"},
                        "width": {"type": "integer", "minimum": 100, "maximum": 10000, "default": 1280},
                        "height": {"type": "integer", "minimum": 100, "maximum": 20000, "default": 1024},
                        "filters": {**FILTERS, "description": "Dashboard filter name → value."},
                        "style": {"enum": ["tiled", "single_column"]},
                        "paperSize": {"enum": ["letter", "legal", "tabloid", "a0", "a1", "a2", "a3", "a4", "a5"]},
                        "landscape": {"type": "boolean"},
                        "longTables": {"type": "boolean"},
                        "filename": {"type": "string", "minLength": 1, "pattern": "^[^/\\\\]+$"}}}
    outputs = {"type": "object", "properties": {
        "file": {"type": "object", "description": "The rendered dashboard in the blob store."},
        "taskId": {"type": "string"}, "size": {"type": "integer"}}}
    example = {"type": "looker.RenderDashboard", "connection": "looker", "timeout": "PT30M",
               "inputs": {"dashboardId": "17", "format": "pdf", "filters": {"Region": "EMEA"},
                          "paperSize": "a4", "landscape": True}}
    example_outputs = {"file": {"$file": "0" * 64, "name": "dashboard-17.pdf", "contentType": "application/pdf",
                                "size": 48213}, "taskId": "a1b2c3d4e5f6", "size": 48213}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return (f"would create a Looker render task of dashboard {excerpt(inputs.get('dashboardId'))} "
                f"as {inputs.get('format', 'pdf')} and wait for it")

    async def start(self, inputs: dict, context: Any) -> dict:
        from looker_sdk.sdk.api40 import models

        filters = inputs.get("filters")
        body = models.CreateDashboardRenderTask(
            dashboard_filters=urlencode({k: _text(v) for k, v in filters.items()}) if filters else None,
            dashboard_style=inputs.get("style"))
        sdk = await LOOKER.client(context)
        task = await LOOKER.call(context, sdk.create_dashboard_render_task, str(inputs["dashboardId"]),
                                 inputs.get("format", "pdf"), body, int(inputs.get("width", 1280)),
                                 int(inputs.get("height", 1024)), pdf_paper_size=inputs.get("paperSize"),
                                 pdf_landscape=inputs.get("landscape"), long_tables=inputs.get("longTables"))
        if not getattr(task, "id", None):
            raise RetryableError("Looker created a render task without an id", code="LookerBadAnswer")
        return {"taskId": str(task.id), "format": inputs.get("format", "pdf"), "filename": inputs.get("filename"),
                "dashboardId": str(inputs["dashboardId"])}

    async def poll(self, handle: dict, context: Any) -> Any:
        sdk = await LOOKER.client(context)
        task = await LOOKER.call(context, sdk.render_task, handle["taskId"])
        status = getattr(task, "status", None)
        if status == "failure":
            raise ActionError(f"Looker render task {handle['taskId']} failed: {task.status_detail or 'no detail'}",
                              code="RenderFailed", details={"taskId": handle["taskId"], "status": status,
                                                            "statusDetail": task.status_detail})
        if status in RENDERING:
            return Pending(progress=status)
        if status != "success":  # no status Looker documents: a status check that failed
            raise RetryableError(f"Looker render task {handle['taskId']} has an unknown status {str(status)[:40]!r}",
                                 code="LookerBadAnswer")
        data = await LOOKER.call(context, sdk.render_task_results, handle["taskId"])
        data = data.encode("latin-1") if isinstance(data, str) else bytes(data or b"")
        kind = handle.get("format", "pdf")
        name = handle.get("filename") or f"dashboard-{handle.get('dashboardId', 'x')}.{kind}"
        ref = context.save_file(data, name=name, content_type="application/pdf" if kind == "pdf" else "image/png")
        return {"file": ref, "taskId": handle["taskId"], "size": ref["size"]}
