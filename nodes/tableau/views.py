"""tableau.ExportView (a view as PDF, PNG or CSV, into the blob store) and tableau.Query."""
from __future__ import annotations

from typing import Any

from engine.plugin import ActionError, Node

from .client import TABLEAU

FORMATS = {"pdf": ("application/pdf", "pdf"), "png": ("image/png", "png"), "csv": ("text/csv", "csv")}
FILTER_VALUE = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"},
                          {"type": "array", "minItems": 1, "items": {"type": ["string", "number"]}}]}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)  # Tableau's several-values form: vf_Region=East,West
    return str(value)


def _find_view(server: Any, name: str) -> Any:
    import tableauserverclient as TSC

    options = TSC.RequestOptions(pagesize=2)
    options.filter.add(TSC.Filter(TSC.RequestOptions.Field.Name, TSC.RequestOptions.Operator.Equals, name))
    views, _ = server.views.get(options)
    if len(views) != 1:
        raise ActionError(f"{'no view' if not views else 'more than one view'} is named {name!r} on the "
                          "site; give `viewId`", code="ViewNotFound" if not views else "AmbiguousView")
    return views[0]


def _export(server: Any, inputs: dict) -> tuple[bytes, str]:
    import tableauserverclient as TSC

    if inputs.get("viewId"):
        view = TSC.ViewItem()
        view._id = inputs["viewId"]
    else:
        view = _find_view(server, inputs["viewName"])
    kind = inputs.get("format", "pdf")
    age = inputs.get("maxAge", -1)
    if kind == "pdf":
        options = TSC.PDFRequestOptions(page_type=inputs.get("pageType"), orientation=inputs.get("orientation"),
                                        maxage=age)
    elif kind == "png":
        options = TSC.ImageRequestOptions(imageresolution="high" if inputs.get("highResolution") else None,
                                          maxage=age)
    else:
        options = TSC.CSVRequestOptions(maxage=age)
    for name, value in (inputs.get("filters") or {}).items():
        options.vf(name, _text(value))
    if kind == "pdf":
        server.views.populate_pdf(view, options)
        data = view.pdf
    elif kind == "png":
        server.views.populate_image(view, options)
        data = view.image
    else:
        server.views.populate_csv(view, options)
        data = b"".join(view.csv)
    return data, view.id


class ExportView(Node):
    type = "tableau.ExportView"
    title = "Export a Tableau view or dashboard as PDF, PNG or CSV"
    description = (
        "Downloads a view (a sheet or a dashboard) as PDF (`pageType`, `orientation`), PNG "
        "(`highResolution`) or CSV (the view's data), with view filters (`filters`: field → "
        "value or list of values, sent as `vf_<field>`) and `maxAge` (minutes Tableau may serve "
        "a cached rendering). The file goes to the blob store beside the state database; the "
        "output `file` is a reference that `sendgrid.SendEmail` takes as an attachment "
        "(`attachments: [{file: \"{{ outputs('export').file }}\"}]`).")
    connection = "tableau"
    reads_only = True
    input_schema = {
        "type": "object", "additionalProperties": False,
        "oneOf": [{"required": ["viewId"]}, {"required": ["viewName"]}],
        "properties": {
            "viewId": {"type": "string", "minLength": 1, "description": "The view's LUID."},
            "viewName": {"type": "string", "minLength": 1,
                         "description": "The view's name (it must be unique on the site)."},
            "format": {"enum": list(FORMATS), "default": "pdf"},
            "filters": {"type": "object", "additionalProperties": FILTER_VALUE,
                        "propertyNames": {"minLength": 1},
                        "description": "View filters: field → value (or several values)."},
            "pageType": {"enum": ["a3", "a4", "a5", "b4", "b5", "executive", "folio", "ledger",
                                  "legal", "letter", "note", "quarto", "tabloid", "unspecified"]},
            "orientation": {"enum": ["portrait", "landscape"]},
            "highResolution": {"type": "boolean"},
            "maxAge": {"type": "integer", "minimum": 1, "maximum": 240000,
                       "description": "Minutes a cached rendering may be old."},
            "filename": {"type": "string", "minLength": 1, "pattern": "^[^/\\\\]+$",
                         "description": "The file's name (default: the view id and the format)."},
        }}
    outputs = {"type": "object", "properties": {
        "file": {"type": "object", "description": "The blob-store reference: {$file, name, contentType, size}."},
        "viewId": {"type": "string"}, "format": {"type": "string"}, "size": {"type": "integer"}}}
    example = {"type": "tableau.ExportView", "connection": "tableau",
               "inputs": {"viewName": "Sales Overview", "format": "pdf", "orientation": "landscape",
                          "filters": {"Region": ["East", "West"]}, "filename": "sales.pdf"}}
    example_outputs = {"file": {"$file": "0" * 64, "name": "sales.pdf", "contentType": "application/pdf",
                                "size": 48213},
                       "viewId": "d79634e1-6063-4ec9-95ff-50acbf609ff5", "format": "pdf", "size": 48213}

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        inputs = action.get("inputs")
        if not isinstance(inputs, dict) or not isinstance(inputs.get("format", "pdf"), str):
            return []
        kind = inputs.get("format", "pdf")
        only = {"pageType": "pdf", "orientation": "pdf", "highResolution": "png"}
        return [(f"inputs.{key}", f"'{key}' applies to format {fmt}, not {kind}")
                for key, fmt in only.items() if key in inputs and kind in FORMATS and kind != fmt]

    async def run(self, inputs: dict, context: Any) -> Any:
        session = await TABLEAU.client(context)
        data, view_id = await TABLEAU.call(context, session.call, lambda server: _export(server, inputs))
        mime, suffix = FORMATS[inputs.get("format", "pdf")]
        name = inputs.get("filename") or f"{view_id}.{suffix}"
        ref = context.save_file(bytes(data or b""), name=name, content_type=mime)
        return {"file": ref, "viewId": view_id, "format": inputs.get("format", "pdf"), "size": ref["size"]}


FIELDS = {"name": "Name", "projectName": "ProjectName", "ownerName": "OwnerName", "tags": "Tags",
          "contentUrl": "ContentUrl"}


def _item(kind: str, item: Any) -> dict:
    out = {"id": item.id, "name": item.name, "contentUrl": getattr(item, "content_url", None),
           "projectId": getattr(item, "project_id", None), "projectName": getattr(item, "project_name", None),
           "ownerId": getattr(item, "owner_id", None), "tags": sorted(getattr(item, "tags", None) or [])}
    updated = getattr(item, "updated_at", None)
    out["updatedAt"] = updated.isoformat() if updated is not None else None
    if kind == "views":
        out["workbookId"] = getattr(item, "workbook_id", None)
    if kind == "workbooks":
        out["webpageUrl"] = getattr(item, "webpage_url", None)
    if kind == "datasources":
        out["type"] = getattr(item, "datasource_type", None)
        out["hasExtracts"] = getattr(item, "has_extracts", None)
    return out


def _list(server: Any, kind: str, where: dict, limit: int) -> tuple[list[dict], int | None]:
    import tableauserverclient as TSC

    endpoint = getattr(server, kind)
    items: list[dict] = []
    page, total = 1, None
    while len(items) < limit:
        options = TSC.RequestOptions(pagenumber=page, pagesize=min(100, limit))
        for key, value in where.items():
            field = getattr(TSC.RequestOptions.Field, FIELDS[key])
            if isinstance(value, list):
                options.filter.add(TSC.Filter(field, TSC.RequestOptions.Operator.In, [str(v) for v in value]))
            else:
                options.filter.add(TSC.Filter(field, TSC.RequestOptions.Operator.Equals, str(value)))
        found, pagination = endpoint.get(options)
        total = pagination.total_available
        items += [_item(kind, i) for i in found]
        if not found or total is None or page * pagination.page_size >= int(total):
            break
        page += 1
    return items[:limit], total


class Query(Node):
    type = "tableau.Query"
    title = "List Tableau workbooks, views or data sources"
    description = (
        "Lists `workbooks`, `views` or `datasources` of the site, filtered by name, project, "
        "owner, tags or content URL (a value means equals; a list means any of them), page by "
        "page up to `limit` items.")
    connection = "tableau"
    reads_only = True
    input_schema = {
        "type": "object", "additionalProperties": False, "required": ["resource"],
        "properties": {
            "resource": {"enum": ["workbooks", "views", "datasources"]},
            "filter": {"type": "object", "additionalProperties": False,
                       "properties": {k: {"anyOf": [{"type": "string", "minLength": 1},
                                                    {"type": "array", "minItems": 1, "items": {"type": "string"}}]}
                                      for k in FIELDS}},
            "limit": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
        }}
    outputs = {"type": "object", "properties": {
        "items": {"type": "array", "description": "id, name, contentUrl, projectName, ownerId, tags, "
                                                  "updatedAt (+ workbookId, webpageUrl, type)."},
        "count": {"type": "integer"}, "totalAvailable": {"type": ["integer", "null"]}}}
    example = {"type": "tableau.Query", "connection": "tableau",
               "inputs": {"resource": "workbooks", "filter": {"projectName": "Finance"}, "limit": 50}}
    example_outputs = {"items": [{"id": "3cc6cd06-89ce-4fdc-b935-5294135d6d42", "name": "Sales", "contentUrl": "Sales",
                                  "projectId": "1f2f3e4d-0000-4000-8000-000000000001", "projectName": "Finance",
                                  "ownerId": "9f9e8d7c-0000-4000-8000-000000000002", "tags": ["monthly"],
                                  "updatedAt": "2026-01-05T06:03:12+00:00",
                                  "webpageUrl": "https://tableau.acme.example/#/workbooks/42"}],
                       "count": 1, "totalAvailable": 1}

    async def run(self, inputs: dict, context: Any) -> Any:
        session = await TABLEAU.client(context)
        kind, limit = inputs["resource"], int(inputs.get("limit", 100))
        items, total = await TABLEAU.call(context, session.call,
                                          lambda server: _list(server, kind, inputs.get("filter") or {}, limit))
        return {"items": items, "count": len(items), "totalAvailable": int(total) if total is not None else None}
